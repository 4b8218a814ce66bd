//! Password file, ACL file and `roost passwd`, against the real broker over
//! real sockets, and against mosquitto's own tools where installed: a file
//! written by either `mosquitto_passwd` or `roost passwd` works in both
//! brokers.

mod common;
#[path = "common/wire.rs"]
mod wire;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{Proc, Roost, TempDir, free_port, have, wait_until};
use sha2::{Digest, Sha512};
use wire::*;

/// A short window for negative checks ("nothing arrives").
const QUIET: Duration = Duration::from_millis(300);

fn roost_passwd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roost"))
        .arg("passwd")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run roost passwd")
}

/// A password file with `users`, written by `roost passwd -b`.
fn password_file(dir: &TempDir, users: &[(&str, &str)]) -> PathBuf {
    let path = dir.path.join("pw");
    for (i, (user, pass)) in users.iter().enumerate() {
        let file = path.to_str().unwrap();
        let args: &[&str] = if i == 0 {
            &["-c", "-b", file, user, pass]
        } else {
            &["-b", file, user, pass]
        };
        let out = roost_passwd(args);
        assert!(out.status.success(), "roost passwd: {out:?}");
    }
    path
}

fn start(password_file: Option<&Path>, acl_file: Option<&Path>, extra: &str) -> Roost {
    let mut config = String::from("listener 0 127.0.0.1\n");
    if let Some(p) = password_file {
        config += &format!("password_file {}\n", p.display());
    }
    if let Some(a) = acl_file {
        config += &format!("acl_file {}\n", a.display());
    }
    Roost::with_config(&(config + extra))
}

fn login(level: u8, id: &str, user: Option<&str>, pass: Option<&str>) -> Connect {
    let mut c = Connect::new(level, id);
    c.username = user.map(Into::into);
    c.password = pass.map(|p| p.as_bytes().to_vec());
    c
}

/// The CONNACK code `connect` gets.
fn connack(addr: &str, connect: &Connect) -> u8 {
    let mut c = Client::open(addr);
    c.send(&connect.encode());
    c.expect().connack(connect.level == 5).code
}

fn client(addr: &str, level: u8, id: &str, user: &str, pass: &str) -> Client {
    Client::connect(addr, &login(level, id, Some(user), Some(pass))).0
}

#[test]
fn credentials_are_checked_with_mosquittos_codes() {
    let dir = TempDir::new("roost-auth");
    let pw = password_file(&dir, &[("alice", "secret"), ("bob", "builder")]);
    let roost = start(Some(&pw), None, "");
    let addr = roost.addr();
    for (level, bad_password, anonymous) in [(4, 0x05, 0x05), (5, 0x86, 0x87)] {
        let code = |user, pass| connack(&addr, &login(level, "c", user, pass));
        assert_eq!(code(Some("alice"), Some("secret")), 0);
        assert_eq!(code(Some("bob"), Some("builder")), 0);
        assert_eq!(code(Some("alice"), Some("builder")), bad_password);
        assert_eq!(code(Some("alice"), None), bad_password);
        assert_eq!(code(Some("mallory"), Some("secret")), bad_password);
        // A password file without `allow_anonymous` refuses anonymous
        // clients, as mosquitto 2 does.
        assert_eq!(code(None, None), anonymous);
    }
    assert!(wait_until(|| {
        roost
            .log()
            .iter()
            .any(|l| l.contains("not authorised") && l.contains("mallory"))
    }));
}

#[test]
fn anonymous_clients_may_be_allowed_beside_a_password_file() {
    let dir = TempDir::new("roost-auth");
    let pw = password_file(&dir, &[("alice", "secret")]);
    let roost = start(Some(&pw), None, "allow_anonymous true\n");
    let addr = roost.addr();
    assert_eq!(connack(&addr, &login(4, "anon", None, None)), 0);
    assert_eq!(
        connack(&addr, &login(5, "a", Some("alice"), Some("x"))),
        0x86
    );
    assert_eq!(
        connack(&addr, &login(5, "a", Some("alice"), Some("secret"))),
        0
    );
}

#[test]
fn a_mosquitto_passwd_file_is_accepted() {
    skip_without!(have("mosquitto_passwd"), "mosquitto_passwd");
    let dir = TempDir::new("roost-auth");
    let pw = dir.path.join("pw");
    for (create, user, pass) in [(true, "alice", "secret"), (false, "bob", "builder")] {
        let mut cmd = Command::new("mosquitto_passwd");
        cmd.arg("-b");
        if create {
            cmd.arg("-c");
        }
        assert!(cmd.arg(&pw).args([user, pass]).status().unwrap().success());
    }
    let roost = start(Some(&pw), None, "");
    let addr = roost.addr();
    assert_eq!(
        connack(&addr, &login(4, "a", Some("alice"), Some("secret"))),
        0
    );
    assert_eq!(
        connack(&addr, &login(5, "b", Some("bob"), Some("builder"))),
        0
    );
    assert_eq!(
        connack(&addr, &login(4, "b", Some("bob"), Some("secret"))),
        5
    );
}

#[test]
fn salted_sha512_entries_of_older_files_are_accepted() {
    let dir = TempDir::new("roost-auth");
    let salt = b"older-salt12";
    let hash = Sha512::new()
        .chain_update("hunter2")
        .chain_update(salt)
        .finalize();
    let line = format!("old:$6${}${}\n", BASE64.encode(salt), BASE64.encode(hash));
    let pw = dir.path.join("pw");
    std::fs::write(&pw, line).unwrap();
    let roost = start(Some(&pw), None, "");
    let addr = roost.addr();
    assert_eq!(
        connack(&addr, &login(4, "a", Some("old"), Some("hunter2"))),
        0
    );
    assert_eq!(
        connack(&addr, &login(4, "a", Some("old"), Some("hunter3"))),
        5
    );
}

#[test]
fn a_bad_password_file_stops_start_up_naming_the_line() {
    let dir = TempDir::new("roost-auth");
    let pw = dir.path.join("pw");
    std::fs::write(&pw, "# users\nalice:secret\n").unwrap();
    let config = dir.path.join("roost.conf");
    std::fs::write(&config, format!("password_file {}\n", pw.display())).unwrap();
    let mut p = Proc::spawn({
        let mut c = Command::new(env!("CARGO_BIN_EXE_roost"));
        c.arg("-c").arg(&config);
        c
    });
    assert!(!p.wait_exit().success());
    let out = p.output().join("\n");
    assert!(
        out.contains(&format!("{}:2: not a mosquitto_passwd hash", pw.display())),
        "{out}"
    );
}

#[test]
fn roost_passwd_adds_changes_and_deletes_users() {
    let dir = TempDir::new("roost-auth");
    let pw = password_file(&dir, &[("alice", "one"), ("bob", "two")]);
    let file = pw.to_str().unwrap();
    assert!(
        roost_passwd(&["-b", file, "alice", "-three"])
            .status
            .success()
    );
    assert!(roost_passwd(&["-D", file, "bob"]).status.success());
    let out = roost_passwd(&["-D", file, "bob"]);
    assert!(!out.status.success(), "bob is gone already");
    // Without a terminal the password comes as two lines on stdin.
    let mut child = Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["passwd", file, "carol"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"four\nfour\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["passwd", file, "dave"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"five\nsix\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("do not match"));

    let text = std::fs::read_to_string(&pw).unwrap();
    let users: Vec<&str> = text.lines().filter_map(|l| l.split(':').next()).collect();
    assert_eq!(users, ["alice", "carol"]);
    assert!(
        text.lines()
            .all(|l| l.split(':').nth(1).unwrap().starts_with("$7$101$"))
    );

    let roost = start(Some(&pw), None, "");
    let addr = roost.addr();
    assert_eq!(
        connack(&addr, &login(4, "a", Some("alice"), Some("-three"))),
        0
    );
    assert_eq!(
        connack(&addr, &login(4, "a", Some("alice"), Some("one"))),
        5
    );
    assert_eq!(connack(&addr, &login(4, "b", Some("bob"), Some("two"))), 5);
    assert_eq!(
        connack(&addr, &login(4, "c", Some("carol"), Some("four"))),
        0
    );
}

/// mosquitto on a free loopback port, with `config` after its `listener`
/// line; up once it takes connections.
fn mosquitto(dir: &TempDir, config: &str) -> (Proc, u16) {
    let port = free_port();
    let conf = dir.path.join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\n{config}")).unwrap();
    let mut cmd = Command::new("/usr/sbin/mosquitto");
    cmd.arg("-c").arg(&conf);
    let proc = Proc::spawn(cmd);
    assert!(wait_until(
        || TcpStream::connect(("127.0.0.1", port)).is_ok()
    ));
    (proc, port)
}

/// mosquitto 2's rule: once a listener is configured, even on loopback,
/// anonymous clients are refused unless `allow_anonymous true`; without
/// any listener (roost's `-p`, mosquitto's local-only mode) they are in.
#[test]
fn anonymous_clients_are_let_in_as_by_mosquitto_2() {
    let anonymous = |addr: &str| connack(addr, &login(4, "anon", None, None));
    let roost_in = |config: &str| {
        let roost = Roost::with_config(&format!("listener 0 127.0.0.1\n{config}"));
        anonymous(&roost.addr())
    };
    let cases = [
        ("", 0x05),
        ("allow_anonymous true\n", 0),
        ("allow_anonymous false\n", 0x05),
    ];
    for (config, code) in cases {
        assert_eq!(roost_in(config), code, "roost with {config:?}");
    }
    assert_eq!(anonymous(&Roost::start().addr()), 0, "roost -p 0");
    if !Path::new("/usr/sbin/mosquitto").exists() {
        eprintln!("mosquitto not installed: roost not compared with it");
        return;
    }
    for (config, code) in cases {
        let dir = TempDir::new("roost-anon-mosquitto");
        let (_mosquitto, port) = mosquitto(&dir, config);
        assert_eq!(
            anonymous(&format!("127.0.0.1:{port}")),
            code,
            "mosquitto with {config:?}"
        );
    }
}

#[test]
fn a_roost_passwd_file_works_in_mosquitto() {
    skip_without!(
        Path::new("/usr/sbin/mosquitto").exists() && have("mosquitto_pub"),
        "mosquitto"
    );
    let dir = TempDir::new("roost-auth");
    let pw = password_file(&dir, &[("alice", "s3cret")]);
    // mosquitto may run as another user when started as root.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!("allow_anonymous false\npassword_file {}\n", pw.display());
    let (_mosquitto, port) = mosquitto(&dir, &config);
    let publish = |pass: &str| {
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-u", "alice"])
            .args(["-P", pass, "-t", "t", "-m", "x"])
            .output()
            .unwrap()
    };
    let ok = publish("s3cret");
    assert!(ok.status.success(), "{ok:?}");
    assert!(!publish("wrong").status.success());
}

const ACL: &str = "\
# Anonymous clients
topic read public/#

user admin
topic readwrite #

user alice
topic readwrite home/#
topic deny home/secret

user bob
topic read home/#
topic write bob/#

pattern readwrite clients/%c/#
pattern read users/%u/inbox
";

/// A broker with users admin, alice and bob (password = name) and `ACL`.
fn acl_broker(extra: &str) -> (Roost, TempDir) {
    let dir = TempDir::new("roost-acl");
    let pw = password_file(
        &dir,
        &[("admin", "admin"), ("alice", "alice"), ("bob", "bob")],
    );
    let acl = dir.path.join("acl");
    std::fs::write(&acl, ACL).unwrap();
    (start(Some(&pw), Some(&acl), extra), dir)
}

#[test]
fn a_denied_topic_is_not_delivered_even_through_hash() {
    let (roost, _dir) = acl_broker("");
    let addr = roost.addr();
    let mut alice = client(&addr, 4, "alice", "alice", "alice");
    assert_eq!(alice.subscribe(1, &[("#", 1)]), [1], "# overlaps home/#");
    let mut admin = client(&addr, 5, "admin", "admin", "admin");
    for topic in ["home/secret", "garden/shed", "home/kitchen"] {
        admin.publish(&Publish::new(topic, b"x").qos(1, 1));
    }
    assert_eq!(alice.recv_publish_ack().topic_str(), "home/kitchen");
    alice.expect_silence(QUIET);
}

#[test]
fn a_denied_publish_is_refused_in_v5_and_dropped_in_v311() {
    let (roost, _dir) = acl_broker("");
    let addr = roost.addr();
    let mut admin = client(&addr, 4, "admin", "admin", "admin");
    admin.subscribe(1, &[("#", 2)]);
    let mut bob5 = client(&addr, 5, "bob5", "bob", "bob");
    let mut bob4 = client(&addr, 4, "bob4", "bob", "bob");
    for qos in [1, 2] {
        let kind = if qos == 1 { PUBACK } else { PUBREC };
        let p = Publish::new("home/door", b"open").qos(qos, 9);
        bob5.send(&p.encode(true));
        assert_eq!(bob5.expect_kind(kind).ack_reason(), 0x87, "Not authorized");
        // 3.1.1 has no way to say no: acknowledged as usual, then dropped.
        bob4.publish(&p);
    }
    bob4.pub0("home/door", b"qos 0");
    bob4.publish(&Publish::new("bob/status", b"ok").qos(1, 3));
    let got = admin.recv_publish_ack();
    assert_eq!(
        got.topic_str(),
        "bob/status",
        "nothing denied got through first"
    );
    admin.expect_silence(QUIET);
}

#[test]
fn patterns_expand_client_id_and_user_name() {
    let (roost, _dir) = acl_broker("");
    let addr = roost.addr();
    let mut admin = client(&addr, 4, "admin", "admin", "admin");
    admin.subscribe(1, &[("clients/#", 1)]);
    let mut dev = client(&addr, 5, "dev1", "bob", "bob");
    let denied = Publish::new("clients/dev2/up", b"x").qos(1, 1);
    dev.send(&denied.encode(true));
    assert_eq!(dev.expect_kind(PUBACK).ack_reason(), 0x87);
    dev.publish(&Publish::new("clients/dev1/up", b"x").qos(1, 2));
    assert_eq!(admin.recv_publish_ack().topic_str(), "clients/dev1/up");
    // Every subscription is granted, as by mosquitto 2; only what the
    // client may read is delivered.
    assert_eq!(
        dev.subscribe(3, &[("users/bob/inbox", 0), ("users/alice/inbox", 0)]),
        [0, 0]
    );
    admin.pub0("users/alice/inbox", b"not for dev1");
    admin.pub0("users/bob/inbox", b"for bob");
    assert_eq!(dev.expect_publish().payload, b"for bob");
}

#[test]
fn the_first_block_applies_to_anonymous_clients() {
    let (roost, _dir) = acl_broker("allow_anonymous true\n");
    let addr = roost.addr();
    let mut anon = Client::v4(&addr, "anon");
    assert_eq!(anon.subscribe(1, &[("public/#", 0), ("home/#", 0)]), [0, 0]);
    let mut anon5 = Client::v5(&addr, "anon5");
    anon5.send(&Publish::new("public/news", b"x").qos(1, 1).encode(true));
    assert_eq!(anon5.expect_kind(PUBACK).ack_reason(), 0x87, "read only");
    let mut admin = client(&addr, 4, "admin", "admin", "admin");
    admin.pub0("public/news", b"hello");
    assert_eq!(anon.expect_publish().payload, b"hello");
    // A named user does not get the anonymous rules.
    let mut alice = client(&addr, 4, "alice", "alice", "alice");
    assert_eq!(alice.subscribe(1, &[("public/#", 0)]), [0]);
    admin.pub0("public/news", b"for anonymous clients");
    assert_eq!(anon.expect_publish().payload, b"for anonymous clients");
    alice.expect_silence(QUIET);
}

#[test]
fn retained_messages_are_not_leaked_to_a_client_without_read_rights() {
    let (roost, _dir) = acl_broker("");
    let addr = roost.addr();
    let mut admin = client(&addr, 4, "admin", "admin", "admin");
    admin.publish(&Publish::new("home/secret", b"code").qos(1, 1).retain(true));
    admin.publish(&Publish::new("home/hall", b"on").qos(1, 2).retain(true));
    let mut alice = client(&addr, 4, "alice", "alice", "alice");
    alice.subscribe(1, &[("home/+", 1)]);
    assert_eq!(alice.recv_publish_ack().topic_str(), "home/hall");
    alice.expect_silence(QUIET);
    let mut bob = client(&addr, 4, "bob", "bob", "bob");
    bob.subscribe(1, &[("home/secret", 1)]);
    assert_eq!(bob.recv_publish_ack().payload, b"code", "bob may read it");
}

#[test]
fn a_will_to_a_denied_topic_is_not_published() {
    let (roost, _dir) = acl_broker("");
    let addr = roost.addr();
    let mut admin = client(&addr, 4, "admin", "admin", "admin");
    admin.subscribe(1, &[("#", 0)]);
    for (topic, published) in [("home/bob", false), ("bob/will", true)] {
        let mut c = login(4, "bob", Some("bob"), Some("bob"));
        c.will = Some(Will::new(topic, b"gone"));
        let (bob, _) = Client::connect(&addr, &c);
        bob.drop_abruptly();
        if published {
            assert_eq!(admin.expect_publish().topic_str(), topic);
        } else {
            admin.expect_silence(QUIET);
        }
    }
}

/// Sends SIGHUP and waits (bounded) until roost has logged the reload.
fn reload(roost: &Roost) {
    let reloads = || roost.log().iter().filter(|l| l.contains("reload:")).count();
    let before = reloads();
    assert_eq!(unsafe { libc::kill(roost.pid() as i32, libc::SIGHUP) }, 0);
    assert!(
        wait_until(|| reloads() > before),
        "no reload logged: {:?}",
        roost.log()
    );
}

#[test]
fn sighup_picks_up_a_new_user_and_revoked_rights_without_dropping_clients() {
    let dir = TempDir::new("roost-hup");
    let pw = password_file(&dir, &[("alice", "a")]);
    let acl = dir.path.join("acl");
    std::fs::write(&acl, "user alice\ntopic readwrite home/#\n").unwrap();
    let roost = start(Some(&pw), Some(&acl), "");
    let addr = roost.addr();
    assert_eq!(connack(&addr, &login(4, "b", Some("bob"), Some("b"))), 0x05);
    let mut alice = client(&addr, 4, "alice", "alice", "a");
    assert_eq!(alice.subscribe(1, &[("home/#", 1)]), [1]);

    // Bob is added; alice keeps only home/kitchen.
    let file = pw.to_str().unwrap();
    assert!(roost_passwd(&["-b", file, "bob", "b"]).status.success());
    std::fs::write(
        &acl,
        "user alice\ntopic readwrite home/kitchen\nuser bob\ntopic write home/#\n",
    )
    .unwrap();
    reload(&roost);

    let mut bob = client(&addr, 4, "b", "bob", "b");
    bob.publish(&Publish::new("home/secret", b"1").qos(1, 1));
    bob.publish(&Publish::new("home/kitchen", b"2").qos(1, 2));
    // Alice's connection and subscription survived; the lost right holds.
    assert_eq!(alice.recv_publish_ack().payload, b"2");
    alice.expect_silence(QUIET);
}

/// As mosquitto: after a reload, a client the new rules would not let in
/// is closed (user deleted, password changed, anonymous no longer
/// allowed); the others stay connected.
#[test]
fn sighup_closes_clients_whose_login_is_revoked() {
    let dir = TempDir::new("roost-hup-revoke");
    let pw = password_file(&dir, &[("alice", "a"), ("bob", "b"), ("carol", "c")]);
    let conf = dir.path.join("roost.conf");
    let config = |anonymous| {
        let text = format!(
            "listener 0 127.0.0.1\npassword_file {}\nallow_anonymous {anonymous}\n",
            pw.display()
        );
        std::fs::write(&conf, text).unwrap();
    };
    config(true);
    let roost = Roost::spawn(&["-c", conf.to_str().unwrap()], None);
    let addr = roost.addr();
    let mut alice = client(&addr, 4, "a", "alice", "a");
    let mut bob = client(&addr, 5, "b", "bob", "b");
    let mut carol = client(&addr, 4, "c", "carol", "c");
    let (mut anonymous, ack) = Client::connect(&addr, &login(4, "x", None, None));
    assert_eq!(ack.code, 0);

    let file = pw.to_str().unwrap();
    assert!(roost_passwd(&["-D", file, "bob"]).status.success());
    assert!(roost_passwd(&["-b", file, "carol", "new"]).status.success());
    config(false);
    reload(&roost);

    bob.expect_disconnect(0x87);
    carol.expect_closed();
    anonymous.expect_closed();
    alice.ping();
    assert!(
        roost
            .log()
            .iter()
            .any(|l| l.contains("3 client(s) no longer allowed in closed")),
        "{:#?}",
        roost.log()
    );
    assert_eq!(
        connack(&addr, &login(4, "c", Some("carol"), Some("new"))),
        0
    );
}

#[test]
fn a_reload_with_a_broken_file_keeps_the_rules_in_force() {
    let dir = TempDir::new("roost-hup-bad");
    let pw = password_file(&dir, &[("alice", "a")]);
    let roost = start(Some(&pw), None, "");
    std::fs::write(&pw, "alice:not-a-hash\n").unwrap();
    reload(&roost);
    assert!(
        roost
            .log()
            .iter()
            .any(|l| l.contains("keeping the rules in force"))
    );
    let addr = roost.addr();
    assert_eq!(connack(&addr, &login(4, "a", Some("alice"), Some("a"))), 0);
    assert_eq!(
        connack(&addr, &login(4, "x", None, None)),
        0x05,
        "still closed to anonymous"
    );
}

/// mosquitto's connection log lines, with the client's address: a client
/// connecting with a user name, one refused, one going with and without
/// DISCONNECT, one closed for keep-alive; none with
/// `connection_messages false`.
#[test]
fn clients_coming_and_going_are_logged_as_mosquitto_does() {
    let dir = TempDir::new("roost-conn-log");
    let pw = password_file(&dir, &[("alice", "a")]);
    let roost = start(Some(&pw), None, "");
    let addr = roost.addr();
    let alice = client(&addr, 4, "sensor-1", "alice", "a");
    let logged = |what: &str| wait_until(|| roost.log().iter().any(|l| l.contains(what)));
    assert!(
        logged("New client connected from 127.0.0.1:"),
        "{:#?}",
        roost.log()
    );
    assert!(
        logged("as sensor-1 (p4, c1, k0, u'alice')."),
        "{:#?}",
        roost.log()
    );
    alice.disconnect();
    assert!(logged("Client sensor-1 disconnected."));
    client(&addr, 5, "sensor-2", "alice", "a").drop_abruptly();
    assert!(logged("Client sensor-2 closed its connection."));
    assert_eq!(
        connack(&addr, &login(4, "mallory", Some("mallory"), Some("x"))),
        0x05
    );
    assert!(logged("Client mallory from 127.0.0.1:"));
    let refused = roost
        .log()
        .into_iter()
        .find(|l| l.contains("Client mallory from 127.0.0.1:"));
    assert!(
        refused.is_some_and(|l| l.contains("WARN") && l.contains("refused: not authorised")),
        "{:#?}",
        roost.log()
    );
    let mut c = login(4, "sleepy", Some("alice"), Some("a"));
    c.keep_alive = 1;
    let (_sleepy, _) = Client::connect(&addr, &c);
    assert!(logged("Client sleepy disconnected: keep alive timeout."));

    let quiet = start(Some(&pw), None, "connection_messages false\n");
    client(&quiet.addr(), 4, "sensor-3", "alice", "a").disconnect();
    assert!(
        !quiet.log().iter().any(|l| l.contains("sensor-3")),
        "{:#?}",
        quiet.log()
    );
}
