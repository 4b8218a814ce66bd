//! Listeners as mosquitto 2.0 gateway configs write them: Unix domain
//! sockets (`listener 0 PATH`), `bind_interface`, and host names in
//! `listener PORT HOST` and `bind_address`.

mod common;
#[path = "common/wire.rs"]
mod wire;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{
    Mosquitto, Proc, Roost, TempDir, have, refused_to_start, run_roost, text, wait_until,
};
use wire::{CONNACK, Client, Connect, Packet, Publish, SUBACK, WAIT, parse_packet, subscribe};

/// A raw MQTT 3.1.1 client over a Unix socket, speaking through the
/// wire builders.
struct UnixClient {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl UnixClient {
    /// Connects as `id`; returns the client and the CONNACK return code.
    fn connect(path: &Path, id: &str) -> (UnixClient, u8) {
        let stream = UnixStream::connect(path).expect("unix connect");
        let mut c = UnixClient {
            stream,
            buf: Vec::new(),
        };
        c.send(&Connect::v4(id).encode());
        let ack = c.expect(CONNACK);
        let code = ack.connack(false).code;
        (c, code)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next packet, which must be of `kind`, within `WAIT`.
    fn expect(&mut self, kind: u8) -> Packet {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((p, used)) = parse_packet(&self.buf) {
                self.buf.drain(..used);
                assert_eq!(p.kind(), kind, "got {p:?}");
                return p;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no packet of type {kind} in time");
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("closed while waiting for a packet of type {kind}"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn subscribe(&mut self, filter: &str, qos: u8) -> Vec<u8> {
        self.send(&subscribe(1, &[(filter, qos)], false, wire::Props::new()));
        self.expect(SUBACK).suback_codes(false)
    }
}

/// A directory any user may write, for a socket a mosquitto that gave up
/// root makes too.
fn socket_dir() -> TempDir {
    let dir = TempDir::new("roost-unix");
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// `--check-config` on `conf`: its exit status and output.
fn check_config(dir: &TempDir, conf: &str) -> (bool, String) {
    let path = dir.path.join("check.conf");
    std::fs::write(&path, conf).unwrap();
    let out = run_roost(&["-c", path.to_str().unwrap(), "--check-config"]);
    (out.status.success(), text(&out.stdout) + &text(&out.stderr))
}

/// Refused by `--check-config` and at start, both saying `why`.
fn refused(conf: &str, why: &str) {
    let dir = TempDir::new("roost-refused");
    let (ok, out) = check_config(&dir, conf);
    assert!(!ok && out.contains(why), "--check-config: {out}");
    let lines = refused_to_start(&dir, conf);
    assert!(lines.iter().any(|l| l.contains(why)), "{lines:#?}");
}

#[test]
fn unix_socket_clients_are_served_as_tcp_clients_are() {
    let dir = socket_dir();
    let sock = dir.path.join("roost.sock");
    let conf = format!(
        "listener 0 {}\nlistener 0 127.0.0.1\nallow_anonymous true\n",
        sock.display()
    );
    let mut r = Roost::with_config(&conf);
    assert!(
        wait_until(|| r
            .log()
            .iter()
            .any(|l| l.contains("listening on unix socket"))),
        "{:#?}",
        r.log()
    );
    // As mosquitto makes it: for its owner's user and group.
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o770, "{mode:o}");

    let (mut unix, code) = UnixClient::connect(&sock, "over-unix");
    assert_eq!(code, 0);
    assert_eq!(unix.subscribe("from/tcp", 1), [1]);
    let mut tcp = Client::v4(&r.addr(), "over-tcp");
    tcp.subscribe(1, &[("from/unix", 1)]);

    tcp.publish(&Publish::new("from/tcp", b"hello unix").qos(1, 7));
    let got = unix.expect(wire::PUBLISH).publish(false);
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        (&b"from/tcp"[..], &b"hello unix"[..])
    );
    unix.send(&Publish::new("from/unix", b"hello tcp").encode(false));
    assert_eq!(tcp.expect_publish().payload, b"hello tcp");

    // mosquitto's shape: the socket's path, port 0.
    let said = format!(
        "New client connected from {}:0 as over-unix",
        sock.display()
    );
    let logged = wait_until(|| r.log().iter().any(|l| l.contains(&said)));
    assert!(logged, "{:#?}", r.log());
    // Removed at exit, as by mosquitto.
    assert!(r.signal_and_wait(common::SIGTERM).unwrap().success());
    assert!(!sock.exists());
}

#[test]
fn per_listener_rules_apply_on_a_unix_socket() {
    let dir = socket_dir();
    let sock = dir.path.join("roost.sock");
    let conf = format!(
        "per_listener_settings true\nlistener 0 127.0.0.1\nallow_anonymous true\n\
         listener 0 {}\nallow_anonymous false\n",
        sock.display()
    );
    let r = Roost::with_config(&conf);
    let _tcp = Client::v4(&r.addr(), "let-in");
    assert!(wait_until(|| is_socket(&sock)));
    // 3.1.1 CONNACK 5: not authorised.
    assert_eq!(UnixClient::connect(&sock, "kept-out").1, 5);
}

#[test]
fn a_stale_socket_is_replaced_and_any_other_file_kept() {
    let dir = socket_dir();
    let sock = dir.path.join("roost.sock");
    // Left behind by a process that was killed: a socket nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(is_socket(&sock));
    let conf = format!(
        "listener 0 {}\nlistener 0 127.0.0.1\nallow_anonymous true\n",
        sock.display()
    );
    let r = Roost::with_config(&conf);
    assert!(wait_until(|| accepts(&sock)));
    // A second broker finds it in use, and leaves it.
    let other = TempDir::new("roost-second");
    let lines = refused_to_start(&other, &conf);
    assert!(
        lines.iter().any(|l| l.contains("something listens there")),
        "{lines:#?}"
    );
    assert!(accepts(&sock));
    drop(r);

    let file = dir.path.join("notes.txt");
    std::fs::write(&file, "keep me").unwrap();
    refused(
        &format!("listener 0 {}\n", file.display()),
        "a file that is not a socket is in the way",
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

fn accepts(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

#[test]
fn unix_socket_mistakes_are_refused_at_check_config_and_start() {
    refused(
        "listener 0 /no/such/dir/roost.sock\n",
        "listener 0 /no/such/dir/roost.sock: there is no directory /no/such/dir",
    );
    let long = format!("/tmp/{}.sock", "x".repeat(110));
    refused(&format!("listener 0 {long}\n"), "107 bytes long at most");
    refused(
        "listener 0 /tmp/roost-ws.sock\nprotocol websockets\n",
        "a Unix socket listener speaks MQTT only",
    );
    // Keys mosquitto accepts there and does nothing with: a warning.
    let dir = TempDir::new("roost-unix-warn");
    let conf = format!(
        "listener 0 {}/s.sock\nsocket_domain ipv4\nbind_interface lo\n",
        dir.path.display()
    );
    let (ok, out) = check_config(&dir, &conf);
    assert!(ok, "{out}");
    assert!(out.contains("check.conf:2: `socket_domain` does nothing on a Unix socket"));
    assert!(out.contains("check.conf:3: `bind_interface` does nothing on a Unix socket"));
}

#[test]
fn the_unix_socket_is_handed_to_user() {
    // SAFETY: no arguments.
    skip_without!(unsafe { libc::geteuid() } == 0, "root");
    let nobody = 65534;
    let dir = socket_dir();
    let sock = dir.path.join("roost.sock");
    let conf = format!(
        "user nobody\nlistener 0 {}\nlistener 0 127.0.0.1\nallow_anonymous true\n",
        sock.display()
    );
    let r = Roost::with_config(&conf);
    assert!(wait_until(|| r
        .log()
        .iter()
        .any(|l| l.contains("running as user nobody"))));
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (nobody, nobody));
    assert_eq!(UnixClient::connect(&sock, "as-root").1, 0);
}

#[test]
fn mosquitto_clients_over_a_unix_socket_as_with_mosquitto() {
    skip_without!(
        have("mosquitto") && have("mosquitto_sub") && have("mosquitto_pub"),
        "mosquitto"
    );
    let dir = socket_dir();
    for broker in ["roost", "mosquitto"] {
        let sock = dir.path.join(format!("{broker}.sock"));
        let unix = format!("listener 0 {}\n", sock.display());
        let (_roost, _mosquitto, port);
        if broker == "roost" {
            let r = Roost::with_config(&format!(
                "listener 0 127.0.0.1\n{unix}allow_anonymous true\n"
            ));
            port = r.port;
            (_roost, _mosquitto) = (Some(r), None);
        } else {
            let m = Mosquitto::with_config(&unix);
            port = m.port;
            (_roost, _mosquitto) = (None, Some(m));
        }
        assert!(wait_until(|| is_socket(&sock)), "{broker}");
        // A mosquitto_sub on the socket gets what a TCP client publishes,
        // and a TCP subscriber what mosquitto_pub sends through it.
        let mut sub = Command::new("mosquitto_sub");
        sub.args([
            "--unix",
            sock.to_str().unwrap(),
            "-t",
            "t/#",
            "-C",
            "2",
            "-v",
        ]);
        sub.args(["-i", "unix-sub", "-W", "10"]);
        let mut sub = Proc::spawn(sub);
        let mut tcp = Client::v4(&format!("127.0.0.1:{port}"), "tcp-sub");
        tcp.subscribe(1, &[("t/unix", 0)]);
        // mosquitto_sub is subscribed once its SUBSCRIBE got its answer;
        // publish until it has the first message.
        let port = port.to_string();
        let pubs = |args: &[&str]| {
            let status = Command::new("mosquitto_pub").args(args).status().unwrap();
            assert!(status.success(), "{broker}: mosquitto_pub {args:?}");
        };
        assert!(
            wait_until(|| {
                pubs(&[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-t",
                    "t/tcp",
                    "-m",
                    "via tcp",
                ]);
                sub.output().iter().any(|l| l == "t/tcp via tcp")
            }),
            "{broker}: {:#?}",
            sub.output()
        );
        pubs(&[
            "--unix",
            sock.to_str().unwrap(),
            "-t",
            "t/unix",
            "-m",
            "via unix",
        ]);
        assert_eq!(tcp.expect_publish().payload, b"via unix", "{broker}");
        assert!(sub.wait_exit().success(), "{broker}: {:#?}", sub.output());
    }
}

#[test]
fn bind_interface_takes_clients_of_that_interface() {
    let r = Roost::with_config("listener 0 127.0.0.1\nbind_interface lo\nallow_anonymous true\n");
    let mut c = Client::v4(&r.addr(), "on-lo");
    c.subscribe(1, &[("t", 0)]);
    c.publish(&Publish::new("t", b"1"));
    assert_eq!(c.expect_publish().payload, b"1");
    refused(
        "listener 1883 127.0.0.1\nbind_interface no-such-if0\n",
        "listener 127.0.0.1:1883: bind_interface no-such-if0: there is no such network interface",
    );
}

/// A name other than `localhost` that /etc/hosts gives a loopback
/// address: it resolves without DNS. None when there is none.
fn loopback_name() -> Option<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|line| {
        let mut words = line.split('#').next()?.split_whitespace();
        let ip: std::net::IpAddr = words.next()?.parse().ok()?;
        let name = words.find(|w| *w != "localhost")?;
        ip.is_loopback().then(|| name.to_owned())
    })
}

#[test]
fn host_names_are_resolved_at_start() {
    let Some(name) = loopback_name() else {
        return eprintln!("SKIPPED: /etc/hosts names no loopback address but localhost");
    };
    for conf in [
        format!(
            "listener {} {name}\nallow_anonymous true\n",
            common::free_port()
        ),
        format!("port 0\nbind_address {name}\nallow_anonymous true\n"),
    ] {
        let r = Roost::with_config(&conf);
        let mut c = Client::v4(&format!("{name}:{}", r.port), "by-name");
        c.subscribe(1, &[("t", 0)]);
    }
    refused(
        "listener 1883 no-such-host.invalid\n",
        "listener no-such-host.invalid:1883: cannot resolve `no-such-host.invalid`",
    );
}

#[test]
fn a_changed_unix_listener_needs_a_restart() {
    let dir = socket_dir();
    let conf_path: PathBuf = dir.path.join("roost.conf");
    let conf = |sock: &str| {
        format!(
            "listener 0 127.0.0.1\nallow_anonymous true\nlistener 0 {}/{sock}\n",
            dir.path.display()
        )
    };
    std::fs::write(&conf_path, conf("a.sock")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roost"));
    cmd.arg("-c").arg(&conf_path).env("RUST_LOG", "roost=info");
    let p = Proc::spawn(cmd);
    p.wait_line("listening", |l| l.contains("listening on unix socket"));
    std::fs::write(&conf_path, conf("b.sock")).unwrap();
    p.signal(libc::SIGHUP);
    let line = p.wait_line("reload", |l| l.contains("reload: listener 0"));
    assert!(line.contains("needs a restart"), "{line}");
    assert!(is_socket(&dir.path.join("a.sock")));
    assert!(!dir.path.join("b.sock").exists());
}
