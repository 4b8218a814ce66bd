//! TLS listeners against real TLS clients: mosquitto_pub/mosquitto_sub
//! (OpenSSL) and paho-mqtt (Python's ssl), with a CA, server and client
//! certificates made for each test (tests/common/pki.rs). Every wait has a
//! deadline; every child is killed on drop.
#![cfg(feature = "tls")]

mod common;
#[path = "common/pki.rs"]
mod pki;
#[path = "common/wire.rs"]
mod wire;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Proc, Roost, TIMEOUT, TempDir, have, have_paho, run_roost, text, wait_until};
use pki::{Ca, Issued};

/// A test's certificates: the CA that signs everything below, a server
/// certificate, a client certificate with CN `sensor-1`, and a second CA
/// that nothing here trusts, with a client certificate of its own.
struct Certs {
    dir: TempDir,
    ca_file: PathBuf,
    server: Issued,
    client: Issued,
    other_ca_file: PathBuf,
    stranger: Issued,
}

impl Certs {
    fn new() -> Certs {
        let dir = TempDir::new("roost-tls");
        let ca = Ca::new("roost test CA");
        let ca_file = ca.write(&dir.path.join("ca.pem"));
        let server = ca.server(&dir.path, "server");
        let client = ca.client(&dir.path, "client", "sensor-1");
        let other = Ca::new("someone else's CA");
        let other_ca_file = other.write(&dir.path.join("other-ca.pem"));
        let stranger = other.client(&dir.path, "stranger", "sensor-1");
        Certs {
            dir,
            ca_file,
            server,
            client,
            other_ca_file,
            stranger,
        }
    }

    /// A TLS listener on a free loopback port with the server certificate,
    /// and `extra` config lines after it.
    fn config(&self, extra: &str) -> String {
        format!(
            "listener 0 127.0.0.1\nallow_anonymous true\ncertfile {}\nkeyfile {}\n{extra}",
            self.server.cert.display(),
            self.server.key.display()
        )
    }

    /// mosquitto_pub/sub's arguments to trust the CA and present `issued`.
    fn presenting<'a>(&'a self, issued: &'a Issued) -> [&'a str; 6] {
        let (ca, cert, key) = (&self.ca_file, &issued.cert, &issued.key);
        [
            "--cafile",
            path(ca),
            "--cert",
            path(cert),
            "--key",
            path(key),
        ]
    }

    /// `cafile` and `require_certificate true`.
    fn requiring_certificates(&self, extra: &str) -> String {
        self.config(&format!(
            "cafile {}\nrequire_certificate true\n{extra}",
            self.ca_file.display()
        ))
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn tools_present() -> bool {
    for tool in ["mosquitto_sub", "mosquitto_pub", "stdbuf"] {
        if !have(tool) {
            eprintln!("SKIPPED: {tool} not installed");
            return false;
        }
    }
    true
}

/// `mosquitto_sub -d -v` over TLS, line-buffered, once its SUBACK is in.
fn subscribe(port: u16, tls: &[&str], args: &[&str]) -> Proc {
    let mut cmd = Command::new("stdbuf");
    cmd.args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-d", "-v", "-W", "10"])
        .args(tls)
        .args(args);
    let sub = Proc::spawn(cmd);
    sub.wait_line("SUBACK", |l| l.contains("received SUBACK"));
    sub
}

/// Runs `mosquitto_pub` to completion: whether it succeeded, and its output.
fn publish(port: u16, tls: &[&str], args: &[&str]) -> (bool, Vec<String>) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(tls)
        .args(args);
    let mut publisher = Proc::spawn(cmd);
    let ok = publisher.wait_exit().success();
    (ok, publisher.output())
}

fn publish_ok(port: u16, tls: &[&str], args: &[&str]) {
    let (ok, output) = publish(port, tls, args);
    assert!(ok, "mosquitto_pub {tls:?} {args:?} failed: {output:#?}");
}

fn publish_fails(port: u16, tls: &[&str], args: &[&str]) -> String {
    let (ok, output) = publish(port, tls, args);
    assert!(!ok, "mosquitto_pub {tls:?} {args:?} should have failed");
    output.join("\n")
}

/// The message lines ("topic payload") `sub` has printed.
fn messages(sub: &Proc, prefix: &str) -> Vec<String> {
    sub.output()
        .into_iter()
        .filter(|l| l.starts_with(prefix))
        .collect()
}

fn wait_message(sub: &Proc, line: &str) {
    sub.wait_line(line, |l| l == line);
}

/// Waits (bounded) until roost has logged a line with `what` in it.
fn assert_logged(roost: &Roost, what: &str) {
    let found = wait_until(|| roost.log().iter().any(|l| l.contains(what)));
    assert!(found, "no {what:?} in {:#?}", roost.log());
}

/// Sends SIGHUP and waits (bounded) until roost logs one more line with
/// `what` in it.
fn reload(roost: &Roost, what: &str) {
    let lines = || roost.log().iter().filter(|l| l.contains(what)).count();
    let before = lines();
    // SAFETY: kill(2) on the broker's pid.
    assert_eq!(unsafe { libc::kill(roost.pid() as i32, libc::SIGHUP) }, 0);
    assert!(
        wait_until(|| lines() > before),
        "no {what:?}: {:#?}",
        roost.log()
    );
}

#[test]
fn mosquitto_clients_trusting_the_ca_exchange_messages() {
    if !tools_present() {
        return;
    }
    let certs = Certs::new();
    let roost = Roost::with_config(&certs.config(""));
    assert_logged(&roost, "TLS: listening on");
    let ca = ["--cafile", path(&certs.ca_file)];
    for version in ["mqttv311", "mqttv5"] {
        let sub = subscribe(roost.port, &ca, &["-V", version, "-q", "1", "-t", "tls/#"]);
        for qos in ["0", "1", "2"] {
            let payload = format!("{version} at QoS {qos}");
            publish_ok(
                roost.port,
                &ca,
                &["-V", version, "-q", qos, "-t", "tls/m", "-m", &payload],
            );
            wait_message(&sub, &format!("tls/m {payload}"));
        }
    }
}

#[test]
fn paho_over_tls_at_311_and_5() {
    skip_without!(have_paho(), "python3 paho-mqtt");
    let certs = Certs::new();
    let roost = Roost::with_config(&certs.config(""));
    for version in ["311", "5"] {
        paho(&roost, &[path(&certs.ca_file), version], true);
    }
}

/// Runs tests/paho/tls_client.py (PORT CAFILE VERSION [CERT KEY]) and
/// checks whether it got its own message back.
fn paho(roost: &Roost, args: &[&str], succeeds: bool) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paho/tls_client.py");
    let mut cmd = Command::new("python3");
    cmd.arg("-u")
        .arg(script)
        .arg(roost.port.to_string())
        .args(args);
    let mut proc = Proc::spawn(cmd);
    let status = proc.wait_exit();
    let output = proc.output();
    let ok = output.iter().any(|l| l == "PAHO TLS OK");
    assert_eq!(
        (status.success(), ok),
        (succeeds, succeeds),
        "paho {args:?}: {status}: {output:#?}\nroost log: {:#?}",
        roost.log()
    );
    output
}

#[test]
fn a_client_trusting_another_ca_fails_and_the_broker_serves_on() {
    if !tools_present() {
        return;
    }
    let certs = Certs::new();
    let roost = Roost::with_config(&certs.config(""));
    let ca = ["--cafile", path(&certs.ca_file)];
    let sub = subscribe(roost.port, &ca, &["-t", "tls/#"]);
    let wrong = ["--cafile", path(&certs.other_ca_file)];
    let said = publish_fails(roost.port, &wrong, &["-t", "tls/x", "-m", "never"]);
    assert!(
        said.contains("certificate verify failed") || said.contains("TLS"),
        "mosquitto_pub says why: {said}"
    );
    // roost logs the failed handshake (the client's alert) once, at debug.
    assert_logged(&roost, ": TLS: received fatal alert");
    publish_ok(roost.port, &ca, &["-t", "tls/x", "-m", "after"]);
    wait_message(&sub, "tls/x after");
    assert_eq!(messages(&sub, "tls/"), ["tls/x after"]);
}

#[test]
fn require_certificate_refuses_clients_without_a_good_one() {
    if !tools_present() {
        return;
    }
    let certs = Certs::new();
    let roost = Roost::with_config(&certs.requiring_certificates(""));
    let ca = path(&certs.ca_file);
    let client = certs.presenting(&certs.client);
    let sub = subscribe(roost.port, &client, &["-t", "tls/#"]);

    // No certificate: the handshake fails.
    publish_fails(
        roost.port,
        &["--cafile", ca],
        &["-t", "tls/x", "-m", "none"],
    );
    // One signed by a CA the listener does not trust: the same.
    let stranger = certs.presenting(&certs.stranger);
    publish_fails(roost.port, &stranger, &["-t", "tls/x", "-m", "stranger"]);

    publish_ok(roost.port, &client, &["-t", "tls/x", "-m", "with cert"]);
    wait_message(&sub, "tls/x with cert");
    assert_eq!(messages(&sub, "tls/"), ["tls/x with cert"]);

    // paho: refused without a certificate, served with one.
    if have_paho() {
        paho(&roost, &[ca, "311"], false);
        let cert = [ca, "5", path(&certs.client.cert), path(&certs.client.key)];
        paho(&roost, &cert, true);
    }
}

#[test]
fn capath_trusts_the_pem_files_in_it() {
    if !tools_present() {
        return;
    }
    let certs = Certs::new();
    let capath = certs.dir.path.join("cas");
    std::fs::create_dir(&capath).unwrap();
    std::fs::copy(&certs.ca_file, capath.join("house.pem")).unwrap();
    // Only `*.pem` files count (mosquitto's rule): not this one.
    std::fs::write(capath.join("README"), "not a certificate").unwrap();
    let roost = Roost::with_config(&certs.config(&format!(
        "capath {}\nrequire_certificate true\n",
        capath.display()
    )));
    let sub = subscribe(
        roost.port,
        &certs.presenting(&certs.client),
        &["-t", "tls/#"],
    );
    let stranger = certs.presenting(&certs.stranger);
    publish_fails(roost.port, &stranger, &["-t", "tls/x", "-m", "stranger"]);
    let client = certs.presenting(&certs.client);
    publish_ok(roost.port, &client, &["-t", "tls/x", "-m", "trusted"]);
    wait_message(&sub, "tls/x trusted");
    assert_eq!(messages(&sub, "tls/"), ["tls/x trusted"]);
}

#[test]
fn use_identity_as_username_makes_the_cn_the_user_name() {
    if !tools_present() {
        return;
    }
    let certs = Certs::new();
    // The ACL lets a user at its own topics only; the password file knows
    // only alice, and is not used on this listener.
    let acl = certs.dir.path.join("acl");
    std::fs::write(&acl, "pattern readwrite users/%u/#\n").unwrap();
    let passwords = certs.dir.path.join("passwords");
    let made = run_roost(&["passwd", "-c", "-b", path(&passwords), "alice", "secret"]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let roost = Roost::with_config(&certs.requiring_certificates(&format!(
        "use_identity_as_username true\nacl_file {}\npassword_file {}\n",
        acl.display(),
        passwords.display()
    )));
    let client = certs.presenting(&certs.client);
    // Subscribed to everyone's topics, sensor-1 reads only its own.
    let sub = subscribe(roost.port, &client, &["-t", "users/#"]);
    // The user name and password in CONNECT are not what counts: alice's
    // wrong password is not even checked, and sensor-1 may not write to
    // alice's topics.
    let as_alice = ["-u", "alice", "-P", "wrong"];
    publish_ok(
        roost.port,
        &client,
        &[&as_alice[..], &["-t", "users/alice/t", "-m", "no"]].concat(),
    );
    publish_ok(
        roost.port,
        &client,
        &[&as_alice[..], &["-t", "users/sensor-1/t", "-m", "mine"]].concat(),
    );
    wait_message(&sub, "users/sensor-1/t mine");
    assert_eq!(messages(&sub, "users/"), ["users/sensor-1/t mine"]);
}

#[test]
fn use_identity_as_username_refuses_a_client_without_a_certificate() {
    if !tools_present() {
        return;
    }
    let certs = Certs::new();
    // The certificate is optional for the handshake, but without one there
    // is no user name: CONNACK refuses (mosquitto: bad user name or
    // password), whatever CONNECT says.
    let roost = Roost::with_config(&certs.config(&format!(
        "cafile {}\nuse_identity_as_username true\n",
        certs.ca_file.display()
    )));
    let ca = ["--cafile", path(&certs.ca_file)];
    let args = [
        "-V", "mqttv5", "-u", "alice", "-P", "secret", "-t", "x", "-m", "m",
    ];
    let said = publish_fails(roost.port, &ca, &args);
    assert!(said.contains("Bad User Name or Password"), "{said}");
    assert_logged(&roost, "no client certificate with a CN");
    let client = certs.presenting(&certs.client);
    publish_ok(roost.port, &client, &["-V", "mqttv5", "-t", "x", "-m", "m"]);
}

#[test]
fn plain_tcp_on_the_tls_port_is_closed_and_others_are_unaffected() {
    if !tools_present() {
        return;
    }
    let certs = Certs::new();
    let roost = Roost::with_config(&certs.config("connect_timeout 1\n"));
    let ca = ["--cafile", path(&certs.ca_file)];
    let sub = subscribe(roost.port, &ca, &["-t", "tls/#"]);

    // An MQTT CONNECT in plain text: not TLS, so a TLS alert and closed.
    let mut plain = TcpStream::connect(roost.addr()).unwrap();
    plain
        .write_all(&wire::Connect::v4("plain").encode())
        .unwrap();
    assert_alert_and_closed(plain);
    assert_logged(&roost, ": TLS: received corrupt message");

    // A client that connects and says nothing stalls its handshake: the
    // connect timeout (1 s) closes it.
    assert_alert_and_closed(TcpStream::connect(roost.addr()).unwrap());

    publish_ok(roost.port, &ca, &["-t", "tls/x", "-m", "still here"]);
    wait_message(&sub, "tls/x still here");
}

/// What roost sends before it closes `stream` is a TLS alert, and it does
/// close it.
fn assert_alert_and_closed(mut stream: TcpStream) {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    assert!(read.is_ok(), "not closed: {read:?}");
    const ALERT: u8 = 21;
    assert_eq!(answer.first(), Some(&ALERT), "{answer:?}");
}

#[test]
fn tls_version_sets_the_oldest_version_accepted() {
    skip_without!(have("python3"), "python3");
    let certs = Certs::new();
    let roost = Roost::with_config(&certs.config("tls_version tlsv1.3\n"));
    assert_eq!(handshake(&roost, &certs, "TLSv1_2"), "REFUSED");
    assert_eq!(handshake(&roost, &certs, "TLSv1_3"), "TLSv1.3");
    // The default takes 1.2 as well.
    let roost = Roost::with_config(&certs.config(""));
    assert_eq!(handshake(&roost, &certs, "TLSv1_2"), "TLSv1.2");
    assert_eq!(handshake(&roost, &certs, "TLSv1_3"), "TLSv1.3");
}

/// A TLS handshake by Python's ssl (OpenSSL) offering versions up to
/// `max` (a `ssl.TLSVersion` name): the version agreed, or REFUSED.
fn handshake(roost: &Roost, certs: &Certs, max: &str) -> String {
    const SCRIPT: &str = "
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.maximum_version = getattr(ssl.TLSVersion, sys.argv[3])
sock = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)
try:
    print(ctx.wrap_socket(sock, server_hostname='127.0.0.1').version())
except ssl.SSLError:
    print('REFUSED')
";
    let out = Command::new("python3")
        .args([
            "-c",
            SCRIPT,
            &roost.port.to_string(),
            path(&certs.ca_file),
            max,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

#[test]
fn sighup_makes_new_connections_use_a_renewed_certificate() {
    if !tools_present() {
        return;
    }
    let certs = Certs::new();
    let roost = Roost::with_config(&certs.config(""));
    let old_ca = ["--cafile", path(&certs.ca_file)];
    let new_ca = ["--cafile", path(&certs.other_ca_file)];
    let sub = subscribe(roost.port, &old_ca, &["-t", "tls/#"]);

    // The renewed certificate, from another CA, replaces the files.
    let renewed = Ca::new("renewed CA");
    renewed.write(&certs.other_ca_file);
    let issued = renewed.server(&certs.dir.path, "renewed");
    std::fs::rename(&issued.cert, &certs.server.cert).unwrap();
    std::fs::rename(&issued.key, &certs.server.key).unwrap();
    publish_fails(roost.port, &new_ca, &["-t", "tls/x", "-m", "too early"]);

    reload(&roost, "reload: TLS certificate");
    publish_ok(roost.port, &new_ca, &["-t", "tls/x", "-m", "renewed"]);
    publish_fails(roost.port, &old_ca, &["-t", "tls/x", "-m", "old"]);
    // The subscriber connected before keeps its connection.
    wait_message(&sub, "tls/x renewed");

    // A key file that no longer reads: logged, the renewed one stays.
    std::fs::write(&certs.server.key, "not a key").unwrap();
    reload(&roost, "keeping the TLS certificate in force");
    publish_ok(roost.port, &new_ca, &["-t", "tls/x", "-m", "kept"]);
    wait_message(&sub, "tls/x kept");
}

#[test]
fn bad_certificate_files_stop_start_up_naming_the_file() {
    let certs = Certs::new();
    let dir = &certs.dir.path;
    let missing = dir.join("missing.pem");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n").unwrap();
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let tls = |extra: String| {
        format!(
            "certfile {}\nkeyfile {}\n{extra}",
            certs.server.cert.display(),
            certs.server.key.display()
        )
    };
    let cases = [
        (
            format!(
                "certfile {}\nkeyfile {}\n",
                missing.display(),
                certs.server.key.display()
            ),
            format!("certfile {}: No such file", missing.display()),
        ),
        (
            format!(
                "certfile {}\nkeyfile {}\n",
                certs.server.cert.display(),
                garbage.display()
            ),
            format!("keyfile {}: no PEM private key in it", garbage.display()),
        ),
        (
            // A key that is not the certificate's.
            format!(
                "certfile {}\nkeyfile {}\n",
                certs.server.cert.display(),
                certs.client.key.display()
            ),
            format!("certfile {}", certs.server.cert.display()),
        ),
        (
            tls(format!("cafile {}\n", garbage.display())),
            format!("cafile {}: no PEM certificate in it", garbage.display()),
        ),
        (
            tls(format!("capath {}\n", empty.display())),
            format!("capath {}: no *.pem file in it", empty.display()),
        ),
    ];
    for (tls, expected) in cases {
        let conf = dir.join("roost.conf");
        std::fs::write(
            &conf,
            format!("listener 0 127.0.0.1\nallow_anonymous true\n{tls}"),
        )
        .unwrap();
        for check in [true, false] {
            let mut args = vec!["-c", path(&conf)];
            if check {
                args.push("--check-config");
            }
            let out = run_roost(&args);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
            assert!(
                stderr.contains(&expected),
                "{args:?}: want {expected:?} in {stderr}"
            );
        }
    }
}

/// `protocol websockets` with a certificate serves `wss://`: paho-mqtt
/// over WebSockets over TLS, and mosquitto_sub/mosquitto_pub over plain
/// TCP on the same broker, see each other's messages.
#[test]
fn paho_over_wss_and_tcp_clients_see_each_others_messages() {
    skip_without!(have_paho(), "python3 paho-mqtt");
    if !tools_present() {
        return;
    }
    let certs = Certs::new();
    let roost = Roost::with_config(&format!(
        "listener 0 127.0.0.1\nallow_anonymous true\n{}protocol websockets\n",
        certs.config("")
    ));
    let mut wss = None;
    let listening = wait_until(|| {
        wss = roost.log().iter().find_map(|l| {
            let port = l.split("TLS: listening on wss://127.0.0.1:").nth(1)?;
            port.parse::<u16>().ok()
        });
        wss.is_some()
    });
    assert!(listening, "no wss:// listener: {:#?}", roost.log());
    let wss = format!("wss:{}:{}", wss.unwrap(), path(&certs.ca_file));
    let paho = |args: &[&str]| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paho/client.py");
        let mut cmd = Command::new("python3");
        cmd.arg("-u").arg(script).args(args);
        Proc::spawn(cmd)
    };

    let sub = subscribe(roost.port, &[], &["-t", "from/wss", "-C", "1"]);
    let mut publisher = paho(&["pub", &wss, "from/wss", "hello over wss"]);
    let published = publisher.wait_exit().success();
    assert!(published, "{:#?}\n{:#?}", publisher.output(), roost.log());
    wait_message(&sub, "from/wss hello over wss");

    let subscriber = paho(&["sub", &wss, "from/tcp"]);
    subscriber.wait_line("SUBSCRIBED", |l| l == "SUBSCRIBED");
    publish_ok(roost.port, &[], &["-t", "from/tcp", "-m", "hi", "-q", "1"]);
    subscriber.wait_line("the message", |l| l == "GOT from/tcp hi 1 0");
}

/// A client certificate made as mosquitto-tls(7) makes them (`openssl x509
/// -req` without extensions: X.509 version 1) is refused, as rustls does
/// not take version 1; the warning names the peer and says how to make one
/// it takes.
#[test]
fn a_version_1_certificate_is_refused_with_a_way_out() {
    if !tools_present() || !have("openssl") {
        eprintln!("SKIPPED: openssl not installed");
        return;
    }
    let certs = Certs::new();
    let dir = &certs.dir.path;
    let ca_key = dir.join("ca.key");
    let ca_cert = dir.join("ca.crt");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    openssl(&[
        "req",
        "-new",
        "-x509",
        "-days",
        "1",
        "-nodes",
        "-subj",
        "/CN=recipe CA",
        "-keyout",
        path(&ca_key),
        "-out",
        path(&ca_cert),
    ]);
    let (key, csr, cert) = (dir.join("v1.key"), dir.join("v1.csr"), dir.join("v1.crt"));
    openssl(&[
        "req",
        "-new",
        "-nodes",
        "-subj",
        "/CN=sensor-1",
        "-keyout",
        path(&key),
        "-out",
        path(&csr),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-days",
        "1",
        "-in",
        path(&csr),
        "-CA",
        path(&ca_cert),
        "-CAkey",
        path(&ca_key),
        "-CAcreateserial",
        "-out",
        path(&cert),
    ]);
    let conf = certs.config(&format!(
        "cafile {}\nrequire_certificate true\n",
        ca_cert.display()
    ));
    let roost = Roost::with_config(&conf);
    let ca = path(&certs.ca_file);
    publish_fails(
        roost.port,
        &["--cafile", ca, "--cert", path(&cert), "--key", path(&key)],
        &["-t", "tls/x", "-m", "v1"],
    );
    assert_logged(&roost, "the certificate is X.509 version 1");
    let line = roost
        .log()
        .into_iter()
        .find(|l| l.contains("version 1"))
        .unwrap();
    assert!(
        line.contains("WARN") && line.contains("connection from 127.0.0.1:"),
        "{line}"
    );
    assert!(line.contains("subjectAltName"), "{line}");
}
