//! The mosquitto.conf keys as a gateway owner meets them, each against the
//! real broker with real clients: include_dir, log_dest/log_type (file,
//! reopened on SIGHUP; syslog), socket_domain and listeners on IPv4 and
//! IPv6, retain_available, max_queued_bytes, message_size_limit,
//! persistent_client_expiration, per_listener_settings, pid_file, and
//! errors naming file and line.

mod common;
#[path = "common/wire.rs"]
mod wire;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, Roost, TempDir, refused_to_start, run_roost, text, wait_until};
use wire::{
    Client, Connack, Connect, P_RETAIN_AVAILABLE, P_SERVER_KEEP_ALIVE, P_SESSION_EXPIRY,
    P_WILL_DELAY, PINGRESP, PUBACK, PUBLISH, PropValue, Props, Publish, Will,
};

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn sighup(r: &Roost) {
    assert_eq!(unsafe { libc::kill(r.pid() as i32, libc::SIGHUP) }, 0);
}

/// The addresses of the first `n` "listening on" lines.
fn listening(r: &Roost, n: usize) -> Vec<SocketAddr> {
    let addrs = || -> Vec<SocketAddr> {
        r.log()
            .iter()
            .filter_map(|l| l.split("listening on ").nth(1))
            .map(|a| a.trim().parse().unwrap())
            .collect()
    };
    assert!(wait_until(|| addrs().len() >= n), "{:?}", r.log());
    addrs()
}

fn connack(addr: &str, connect: &Connect) -> (Client, Connack) {
    let mut c = Client::open(addr);
    c.v5 = connect.level == 5;
    c.send(&connect.encode());
    let ack = c.expect().connack(c.v5);
    (c, ack)
}

fn prop(ack: &Connack, id: u8) -> Option<u32> {
    match wire::find_prop(&ack.props, id) {
        Some(PropValue::Int(v)) => Some(*v),
        _ => None,
    }
}

#[test]
fn include_dir_files_are_read_and_their_errors_named() {
    let dir = TempDir::new("roost-include");
    let confd = dir.path.join("conf.d");
    std::fs::create_dir(&confd).unwrap();
    write(&confd.join("10-retain.conf"), "retain_available false\n");
    write(
        &confd.join("20-keepalive.conf"),
        "# v5 clients\nmax_keepalive 30\n",
    );
    write(&confd.join("README"), "not read: no .conf\n");
    let main = write(
        &dir.path.join("roost.conf"),
        &format!(
            "listener 0 127.0.0.1\nallow_anonymous true\ninclude_dir {}\n",
            confd.display()
        ),
    );
    let r = Roost::spawn(&["-c", &main], None);
    let (_c, ack) = connack(&r.addr(), &Connect::v5("inc"));
    assert_eq!(ack.code, 0);
    assert_eq!(prop(&ack, P_RETAIN_AVAILABLE), Some(0), "10-retain.conf");
    assert_eq!(
        prop(&ack, P_SERVER_KEEP_ALIVE),
        Some(30),
        "20-keepalive.conf"
    );

    let bad = write(&confd.join("30-bad.conf"), "\nmax_queued_messages lots\n");
    let out = run_roost(&["--check-config", "-c", &main]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("{bad}:2: ")), "{out:?}");
}

#[test]
fn check_config_tells_unsupported_keys_from_unknown_ones() {
    let dir = TempDir::new("roost-keys");
    for (line, want) in [
        (
            "bridge_psk secret",
            "`bridge_psk` is a mosquitto key roost does not support: roost has no TLS-PSK",
        ),
        ("crlfile /etc/crl.pem", "`crlfile` is a mosquitto key"),
        (
            "queue_qos0_messages true",
            "`queue_qos0_messages true` is not supported by roost",
        ),
        ("connection upstream", "bridge `upstream` has no `address`"),
        ("max_queued_mesages 10", "unknown key `max_queued_mesages`"),
    ] {
        let conf = write(&dir.path.join("k.conf"), &format!("# gateway\n{line}\n"));
        let out = run_roost(&["--check-config", "-c", &conf]);
        assert_eq!(out.status.code(), Some(1), "{line}");
        assert!(
            text(&out.stderr).contains(&format!("{conf}:2: {want}")),
            "{line}: {}",
            text(&out.stderr)
        );
    }
    // Cosmetic values pass, with a warning; values roost behaves as
    // anyway, without.
    let conf = write(&dir.path.join("w.conf"), "set_tcp_nodelay false\n");
    let out = run_roost(&["--check-config", "-c", &conf]);
    assert!(out.status.success(), "{out:?}");
    let warning = format!("warning: {conf}:1: `set_tcp_nodelay false` has no effect");
    assert!(text(&out.stderr).contains(&warning));
    let conf = write(
        &dir.path.join("d.conf"),
        "queue_qos0_messages false\nallow_zero_length_clientid true\nmax_qos 2\n",
    );
    let out = run_roost(&["--check-config", "-c", &conf]);
    assert!(out.status.success(), "{out:?}");
    assert!(!text(&out.stderr).contains("warning"), "{out:?}");
    // The files roost would write are checked too.
    for line in [
        "pid_file /nonexistent/dir/roost.pid",
        "log_dest file /nonexistent/dir/log",
    ] {
        let conf = write(&dir.path.join("p.conf"), &format!("{line}\n"));
        let out = run_roost(&["--check-config", "-c", &conf]);
        assert_eq!(out.status.code(), Some(1), "{line}");
        assert!(text(&out.stderr).contains("/nonexistent/dir"), "{out:?}");
    }
}

#[test]
fn log_file_is_reopened_and_log_settings_reread_on_sighup() {
    let dir = TempDir::new("roost-logfile");
    let log = dir.path.join("roost.log");
    let rotated = dir.path.join("roost.log.1");
    let base = format!(
        "listener 0 127.0.0.1\nallow_anonymous true\nlog_dest stderr\nlog_dest file {}\n",
        log.display()
    );
    let conf = write(&dir.path.join("roost.conf"), &base);
    // Without RUST_LOG, so that log_type decides.
    let r = Roost::spawn_without_rust_log(&["-c", &conf], None);
    assert!(wait_until(|| read(&log).contains("listening on")));
    let mut c = Client::v4(&r.addr(), "logger");
    assert_eq!(c.subscribe(1, &[("before", 0)]), [0]);
    assert!(!read(&log).contains("subscribed"), "not a default log_type");

    // logrotate: move the file away, then SIGHUP. The config now also
    // asks for subscribe lines.
    std::fs::rename(&log, &rotated).unwrap();
    write(
        &dir.path.join("roost.conf"),
        &format!("{base}log_type information\nlog_type subscribe\n"),
    );
    sighup(&r);
    assert!(wait_until(
        || read(&log).contains("reload: password and ACL files read again")
    ));
    assert_eq!(c.subscribe(2, &[("after", 0)]), [0]);
    assert!(
        read(&log).contains("client logger subscribed to after"),
        "{}",
        read(&log)
    );
    let old = read(&rotated);
    assert!(
        old.contains("listening on") && !old.contains("subscribed to after"),
        "{old}"
    );
    // Debug lines were never asked for.
    assert!(!read(&log).contains("connected (") && !old.contains("connected ("));
}

#[test]
fn verbose_overrides_log_type() {
    let dir = TempDir::new("roost-verbose");
    let conf = write(
        &dir.path.join("roost.conf"),
        "listener 0 127.0.0.1\nallow_anonymous true\nlog_type all\nlog_type none\nlog_type notice\n",
    );
    let r = Roost::spawn_without_rust_log(&["-c", &conf, "-v"], None);
    Client::v4(&r.addr(), "loud");
    let debug = |l: &String| l.contains("DEBUG roost::net] connection ");
    assert!(wait_until(|| r.log().iter().any(debug)), "{:#?}", r.log());
}

/// `log_type all` shows roost's debug lines, not mio's trace of every
/// poll: dependencies' are for RUST_LOG to ask for.
#[test]
fn log_type_all_is_roosts_own_debug() {
    let dir = TempDir::new("roost-log-all");
    let conf = write(
        &dir.path.join("roost.conf"),
        "listener 0 127.0.0.1\nallow_anonymous true\nlog_type all\n",
    );
    let r = Roost::spawn_without_rust_log(&["-c", &conf], None);
    let mut c = Client::v4(&r.addr(), "chatty");
    c.ping();
    let debug = |l: &String| l.contains("DEBUG roost::net] connection ");
    assert!(wait_until(|| r.log().iter().any(debug)), "{:#?}", r.log());
    let foreign: Vec<String> = r
        .log()
        .into_iter()
        .filter(|l| l.contains("DEBUG") || l.contains("TRACE"))
        .filter(|l| !l.contains(" roost"))
        .collect();
    assert!(foreign.is_empty(), "{foreign:#?}");
}

/// syslog(3) writes to /dev/log. This machine may have no syslog daemon,
/// so the test runs roost in a mount namespace whose /dev/log is a socket
/// the test reads (needs root and unshare; skipped otherwise).
#[test]
fn syslog_gets_the_log_with_facility_daemon() {
    let can = Command::new("unshare")
        .args(["--mount", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    skip_without!(can, "unshare --mount (root)");
    let dir = TempDir::new("roost-syslog");
    let sock_path = dir.path.join("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    let conf = write(
        &dir.path.join("roost.conf"),
        "listener 0 127.0.0.1\nallow_anonymous true\nlog_dest syslog\n",
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "sh", "-c"])
        .arg(r#"mount -t tmpfs tmpfs /dev && ln -s "$1" /dev/log && shift && exec "$@""#)
        .arg("sh")
        .arg(&sock_path)
        .arg(env!("CARGO_BIN_EXE_roost"))
        .args(["-c", &conf])
        .env_remove("RUST_LOG");
    let _roost = Proc::spawn(cmd);
    let deadline = Instant::now() + common::TIMEOUT;
    let mut buf = [0u8; 2048];
    let line = loop {
        assert!(Instant::now() < deadline, "no syslog line");
        let n = sock.recv(&mut buf).expect("a syslog datagram");
        let line = text(&buf[..n]);
        if line.contains("listening on") {
            break line;
        }
    };
    // <30>: facility daemon (3 << 3) + info (6); then the time, roost[PID]:
    // and the message alone (syslog has its own time and priority).
    assert!(line.starts_with("<30>"), "{line}");
    assert!(line.contains(" roost[") && !line.contains("INFO"), "{line}");
}

fn have_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[test]
fn a_listener_without_address_serves_ipv4_and_ipv6() {
    skip_without!(have_ipv6(), "IPv6 loopback");
    // Port 0: each socket gets its own port (a fixed one could be taken
    // by a test running beside this one).
    let r = Roost::with_config("listener 0\nallow_anonymous true\n");
    let addrs = listening(&r, 2);
    assert!(
        addrs[0].ip().is_unspecified() && addrs[0].is_ipv4(),
        "{addrs:?}"
    );
    assert!(
        addrs[1].ip().is_unspecified() && addrs[1].is_ipv6(),
        "{addrs:?}"
    );
    let mut sub = Client::v4(&format!("[::1]:{}", addrs[1].port()), "v6");
    assert_eq!(sub.subscribe(1, &[("dual", 0)]), [0]);
    let mut publ = Client::v4(&format!("127.0.0.1:{}", addrs[0].port()), "v4");
    publ.pub0("dual", b"across families");
    assert_eq!(sub.expect_publish().payload, b"across families");
}

#[test]
fn socket_domain_keeps_one_family() {
    skip_without!(have_ipv6(), "IPv6 loopback");
    for (domain, served, other) in [
        ("ipv4", "127.0.0.1", "[::1]"),
        ("ipv6", "[::1]", "127.0.0.1"),
    ] {
        let mut r = Roost::with_config(&format!(
            "listener 0\nsocket_domain {domain}\nallow_anonymous true\n"
        ));
        Client::v4(&format!("{served}:{}", r.port), domain).ping();
        let err = std::net::TcpStream::connect(format!("{other}:{}", r.port)).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{domain}"
        );
        // Lines are read in order: once "stopped" is in, all are.
        assert!(r.signal_and_wait(common::SIGTERM).unwrap().success());
        assert!(wait_until(|| r.log().iter().any(|l| l.contains("stopped"))));
        let sockets = r
            .log()
            .iter()
            .filter(|l| l.contains("listening on"))
            .count();
        assert_eq!(sockets, 1, "{domain}: {:?}", r.log());
    }
}

#[test]
fn retain_available_false_refuses_retained_messages() {
    let r =
        Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\nretain_available false\n");
    let (mut v5, ack) = Client::connect(&r.addr(), &Connect::v5("v5"));
    assert_eq!(prop(&ack, P_RETAIN_AVAILABLE), Some(0));
    // [MQTT-3.2.2-14]: DISCONNECT 0x9A (Retain not supported).
    v5.send(
        &Publish::new("t", b"keep")
            .retain(true)
            .qos(1, 1)
            .encode(true),
    );
    v5.expect_disconnect(0x9A);
    // 3.1.1 has no way to say so: closed, as mosquitto does.
    let mut v4 = Client::v4(&r.addr(), "v4");
    v4.send(&Publish::new("t", b"keep").retain(true).encode(false));
    v4.expect_closed_silently();
    // [MQTT-3.2.2-13]: a will with retain set is refused in CONNACK.
    let will = Connect::v5("w").will(Will::new("w", b"x").retain(true));
    assert_eq!(connack(&r.addr(), &will).1.code, 0x9A);
    // Nothing was retained.
    let mut sub = Client::v4(&r.addr(), "sub");
    assert_eq!(sub.subscribe(1, &[("#", 1)]), [1]);
    sub.ping();
}

#[test]
fn message_size_limit_drops_larger_payloads() {
    let r =
        Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\nmessage_size_limit 4\n");
    let mut sub = Client::v4(&r.addr(), "sub");
    assert_eq!(sub.subscribe(1, &[("t", 1)]), [1]);
    // v5: PUBACK 0x95 (packet too large), as mosquitto 2; 3.1.1 cannot be told.
    let mut v5 = Client::v5(&r.addr(), "v5");
    v5.send(&Publish::new("t", b"12345").qos(1, 1).encode(true));
    let ack = v5.expect_kind(PUBACK);
    assert_eq!((ack.pid(), ack.ack_reason()), (1, 0x95));
    let mut v4 = Client::v4(&r.addr(), "v4");
    v4.publish(&Publish::new("t", b"12345").qos(1, 2));
    v4.publish(&Publish::new("t", b"1234").qos(1, 3));
    // Only the message at the limit reaches the subscriber.
    assert_eq!(sub.recv_publish_ack().payload, b"1234");
    sub.ping();
}

/// The payloads of the PUBLISHes that arrive before the PINGRESP to a
/// PINGREQ sent now (acknowledging each): the broker sends everything it
/// has queued for a client before it answers a later PINGREQ.
fn drain(c: &mut Client) -> Vec<Vec<u8>> {
    c.send(&wire::pingreq());
    let mut got = Vec::new();
    loop {
        let p = c.expect();
        match p.kind() {
            PUBLISH => {
                let p = p.publish(c.v5);
                c.ack_publish(&p);
                got.push(p.payload);
            }
            PINGRESP => return got,
            k => panic!("unexpected packet type {k}"),
        }
    }
}

#[test]
fn max_queued_bytes_bounds_what_an_offline_client_gets() {
    let r = Roost::with_config(
        "listener 0 127.0.0.1\nallow_anonymous true\nmax_queued_bytes 10\nmax_queued_messages 0\n",
    );
    let sub = Connect::v4("sleeper").clean(false);
    let (mut c, _) = Client::connect(&r.addr(), &sub);
    assert_eq!(c.subscribe(1, &[("q", 1)]), [1]);
    c.disconnect();
    let mut publ = Client::v4(&r.addr(), "pub");
    for (pid, payload) in [(1, &b"123456"[..]), (2, b"abcdef"), (3, b"x")] {
        publ.publish(&Publish::new("q", payload).qos(1, pid));
    }
    // 6 bytes: under 10, taken; 12: over, so "x" is dropped.
    let (mut c, ack) = Client::connect(&r.addr(), &sub);
    assert!(ack.session_present);
    assert_eq!(drain(&mut c), [b"123456".to_vec(), b"abcdef".to_vec()]);
}

#[test]
fn persistent_client_expiration_ends_offline_sessions() {
    let r = Roost::with_config(
        "listener 0 127.0.0.1\nallow_anonymous true\npersistent_client_expiration 2s\nallow_anonymous true\n",
    );
    let mut watcher = Client::v4(&r.addr(), "watcher");
    assert_eq!(watcher.subscribe(1, &[("gone/#", 0)]), [0]);
    // A 3.1.1 persistent session asks to live forever.
    let v3 = Connect::v4("forever").clean(false);
    let (mut c, _) = Client::connect(&r.addr(), &v3);
    assert_eq!(c.subscribe(1, &[("x", 1)]), [1]);
    c.disconnect();
    // A v5 session asks for an hour, its will for an hour after: the
    // will goes when the session ends, which shows when that is.
    let v5 = Connect::v5("hour")
        .clean(false)
        .props(Props::new().u32(P_SESSION_EXPIRY, 3600))
        .will(Will::new("gone/hour", b"bye").props(Props::new().u32(P_WILL_DELAY, 3600)));
    let (c, _) = Client::connect(&r.addr(), &v5);
    let closed = Instant::now();
    c.drop_abruptly();
    let will = watcher.expect_publish();
    assert_eq!(will.payload, b"bye");
    let after = closed.elapsed();
    assert!(
        after >= Duration::from_millis(1900),
        "session ended after {after:?}, before 2 s"
    );
    // The 3.1.1 session ended first (it closed first): gone too.
    assert!(!connack(&r.addr(), &v3).1.session_present);
    assert!(!connack(&r.addr(), &v5).1.session_present);
}

/// A password file with `user`:`pass`, written by `roost passwd`.
fn passwd(path: &Path, user: &str, create: bool) {
    let path = path.to_str().unwrap();
    let mut args = vec!["passwd"];
    if create {
        args.push("-c");
    }
    args.extend(["-b", path, user, "pass"]);
    let out = run_roost(&args);
    assert!(out.status.success(), "{out:?}");
}

fn login(addr: &str, user: Option<&str>) -> u8 {
    let mut c = Connect::v4("someone");
    c.username = user.map(Into::into);
    c.password = user.map(|_| b"pass".to_vec());
    connack(addr, &c).1.code
}

#[test]
fn per_listener_settings_with_two_password_files() {
    let dir = TempDir::new("roost-per-listener");
    let (one, two) = (dir.path.join("one.pw"), dir.path.join("two.pw"));
    passwd(&one, "alice", true);
    passwd(&two, "bob", true);
    let conf = write(
        &dir.path.join("roost.conf"),
        &format!(
            "per_listener_settings true\n\
             listener 0 127.0.0.1\npassword_file {}\n\
             listener 0 127.0.0.1\npassword_file {}\nallow_anonymous true\n",
            one.display(),
            two.display()
        ),
    );
    let r = Roost::spawn(&["-c", &conf], None);
    let addrs = listening(&r, 2);
    let (a, b) = (addrs[0].to_string(), addrs[1].to_string());
    assert_eq!(login(&a, Some("alice")), 0);
    assert_eq!(login(&a, Some("bob")), 0x05, "bob is not in one.pw");
    assert_eq!(
        login(&a, None),
        0x05,
        "listener one takes no anonymous clients"
    );
    assert_eq!(login(&b, Some("bob")), 0);
    assert_eq!(login(&b, Some("alice")), 0x05, "alice is not in two.pw");
    assert_eq!(login(&b, None), 0, "listener two does");

    // SIGHUP reads each listener's file again.
    passwd(&two, "carol", false);
    assert_eq!(login(&b, Some("carol")), 0x05);
    sighup(&r);
    assert!(wait_until(|| login(&b, Some("carol")) == 0));
    assert_eq!(login(&a, Some("carol")), 0x05);
}

/// The uid line of /proc/PID/status: real, effective, saved, fs.
fn uids(pid: u32) -> String {
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `user`, as in mosquitto: started as root, roost becomes that user once
/// its listener is bound, and the files it goes on writing (its log and
/// its state, made as root) become that user's. A user that does not
/// exist, or a persistence directory the user cannot write, stops
/// start-up.
#[test]
fn user_drops_root_after_binding_and_hands_over_its_files() {
    // SAFETY: no arguments.
    skip_without!(unsafe { libc::geteuid() } == 0, "root");
    let nobody = 65534;
    let dir = TempDir::new("roost-user");
    let state = dir.path.join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(nobody), Some(nobody)).unwrap();
    // Made by root, as a first start as root leaves it.
    let log = dir.path.join("state/roost.log");
    std::fs::write(&log, "").unwrap();
    let conf = format!(
        "listener 0 127.0.0.1\nallow_anonymous true\nuser nobody\n\
         persistence true\npersistence_mode journal\npersistence_location {}/\n\
         log_dest stderr\nlog_dest file {}\n",
        state.display(),
        log.display()
    );
    let mut r = Roost::with_config(&conf);
    assert!(
        wait_until(|| r.log().iter().any(|l| l.contains("running as user nobody"))),
        "{:#?}",
        r.log()
    );
    assert_eq!(uids(r.pid()), "65534 65534 65534 65534");
    let mut c = Client::v4(&r.addr(), "p");
    c.publish(&Publish::new("kept", b"1").qos(1, 1).retain(true));
    assert!(r.signal_and_wait(common::SIGTERM).unwrap().success());
    use std::os::unix::fs::MetadataExt;
    for file in ["roost.log", "roost.db", "roost.db.journal"] {
        let meta = std::fs::metadata(state.join(file)).unwrap();
        assert_eq!(meta.uid(), nobody, "{file} belongs to the user");
    }
    // And the state is there for the next start, as that user too.
    let r = Roost::with_config(&conf);
    let mut c = Client::v4(&r.addr(), "s");
    c.subscribe(1, &[("kept", 0)]);
    assert_eq!(c.expect_publish().payload, b"1");

    let other = TempDir::new("roost-user-refused");
    let no_one = refused_to_start(&other, "listener 0 127.0.0.1\nuser no-such-user-here\n");
    assert!(
        no_one
            .iter()
            .any(|l| l.contains("`user no-such-user-here`: there is no such user")),
        "{no_one:#?}"
    );
    let root_only = format!(
        "listener 0 127.0.0.1\nuser nobody\npersistence true\npersistence_location {}/\n",
        other.path.display()
    );
    let refused = refused_to_start(&other, &root_only);
    assert!(
        refused
            .iter()
            .any(|l| l.contains("as user nobody (`user`)")),
        "{refused:#?}"
    );
}

#[test]
fn pid_file_holds_the_pid_while_running() {
    let dir = TempDir::new("roost-pid");
    let pid_file = dir.path.join("roost.pid");
    let mut r = Roost::with_config(&format!(
        "listener 0 127.0.0.1\nallow_anonymous true\npid_file {}\n",
        pid_file.display()
    ));
    assert!(wait_until(|| read(&pid_file) == format!("{}\n", r.pid())));
    assert!(r.signal_and_wait(common::SIGTERM).unwrap().success());
    assert!(!pid_file.exists(), "removed on exit");
}
