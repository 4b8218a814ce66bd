//! Bridges: a gateway roost forwarding to a remote broker and back, over
//! real sockets. Remotes are another roost or a real mosquitto; clients
//! are the hand-written wire client (tests/common/wire.rs). Waits are
//! bounded: a bridge's state is read from its log lines ("connected",
//! the remote's "subscribed to") before anything is published.

mod common;
#[cfg(feature = "tls")]
#[path = "common/pki.rs"]
mod pki;
#[path = "common/wire.rs"]
mod wire;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, Roost, TempDir, free_port, wait_until};
use wire::*;

/// A short window for negative checks ("nothing more arrives").
const QUIET: Duration = Duration::from_millis(500);
const SIGKILL: i32 = 9;

/// A gateway on a free port bridged as "cloud" (remote client id "gw") to
/// 127.0.0.1:`remote`, retrying every second; `extra` adds lines.
fn gateway(remote: u16, extra: &str) -> Roost {
    Roost::with_config(&format!(
        "listener 0 127.0.0.1\nallow_anonymous true\nconnection cloud\naddress 127.0.0.1:{remote}\n\
         remote_clientid gw\nkeepalive_interval 5\nrestart_timeout 1\n{extra}"
    ))
}

fn wait_log(r: &Roost, what: &str) {
    assert!(
        wait_until(|| r.log().iter().any(|l| l.contains(what))),
        "no log line with {what:?}: {:#?}",
        r.log()
    );
}

fn count_log(r: &Roost, what: &str) -> usize {
    r.log().iter().filter(|l| l.contains(what)).count()
}

fn subscriber(addr: &str, id: &str, filters: &[(&str, u8)]) -> Client {
    let mut c = Client::v4(addr, id);
    c.send(&subscribe(1, filters, false, Props::new()));
    c.expect_kind(SUBACK);
    c
}

fn publish(c: &mut Client, topic: &str, payload: &str, qos: u8, pid: u16) {
    c.send(
        &Publish::new(topic, payload.as_bytes())
            .qos(qos, pid)
            .encode(false),
    );
    match qos {
        0 => {}
        1 => drop(c.expect_kind(PUBACK)),
        _ => {
            c.expect_kind(PUBREC);
            c.send(&ack(PUBREL, pid));
            c.expect_kind(PUBCOMP);
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Msg {
    topic: String,
    payload: String,
    qos: u8,
    retain: bool,
}

/// Takes messages (acknowledging them as a client does) until `n` came,
/// then for `QUIET` more, to see any that should not come.
fn take(c: &mut Client, n: usize) -> Vec<Msg> {
    let mut got = Vec::new();
    let deadline = Instant::now() + common::TIMEOUT;
    loop {
        let wait = if got.len() >= n {
            QUIET
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        let p = match c.recv(wait) {
            Recv::Packet(p) => p,
            Recv::Timeout if got.len() >= n => return got,
            other => panic!("{other:?} after {got:?}"),
        };
        match p.kind() {
            PUBLISH => {
                let m = p.publish(false);
                match m.qos {
                    1 => c.send(&ack(PUBACK, m.pid.unwrap())),
                    2 => c.send(&ack(PUBREC, m.pid.unwrap())),
                    _ => {}
                }
                got.push(Msg {
                    topic: m.topic_str(),
                    payload: String::from_utf8(m.payload).unwrap(),
                    qos: m.qos,
                    retain: m.retain,
                });
            }
            PUBREL => c.send(&ack(PUBCOMP, p.pid())),
            k => panic!("unexpected packet type {k}"),
        }
    }
}

fn topics_and_payloads(msgs: &[Msg]) -> Vec<(&str, &str)> {
    msgs.iter()
        .map(|m| (m.topic.as_str(), m.payload.as_str()))
        .collect()
}

/// 3.1.1 bridges keep `both` from looping with mosquitto's private bit.
#[test]
fn two_roosts_forward_out_in_and_both_with_prefixes() {
    forward_every_way("bridge_protocol_version mqttv311\n");
}

/// 5.0 bridges do it with No Local.
#[test]
fn two_roosts_forward_every_way_over_mqtt5() {
    forward_every_way("bridge_protocol_version mqttv50\n");
}

fn forward_every_way(version: &str) {
    let remote = Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\n");
    let gw = gateway(
        remote.port,
        &format!(
            "{version}topic # out 2 sensors/ site1/sensors/\ntopic # in 2 cmd/ site1/cmd/\n\
             topic shared/# both 1\n"
        ),
    );
    wait_log(&gw, "bridge cloud: connected to 127.0.0.1");
    wait_log(&remote, "client gw subscribed to site1/cmd/#");
    wait_log(&remote, "client gw subscribed to shared/#");

    let mut cloud = subscriber(
        &remote.addr(),
        "cloud",
        &[("site1/sensors/#", 2), ("shared/#", 2)],
    );
    let mut dash = subscriber(&gw.addr(), "dash", &[("cmd/#", 2), ("shared/#", 2)]);
    let mut sensor = Client::v4(&gw.addr(), "sensor");
    for qos in 0..=2u8 {
        publish(
            &mut sensor,
            "sensors/kitchen",
            &format!("q{qos}"),
            qos,
            10 + u16::from(qos),
        );
    }
    let got = take(&mut cloud, 3);
    let seen: Vec<(&str, &str, u8)> = got
        .iter()
        .map(|m| (m.topic.as_str(), m.payload.as_str(), m.qos))
        .collect();
    assert_eq!(
        seen,
        [
            ("site1/sensors/kitchen", "q0", 0),
            ("site1/sensors/kitchen", "q1", 1),
            ("site1/sensors/kitchen", "q2", 2)
        ]
    );

    let mut app = Client::v4(&remote.addr(), "app");
    publish(&mut app, "site1/cmd/heater", "on", 2, 1);
    let got = take(&mut dash, 1);
    assert_eq!(topics_and_payloads(&got), [("cmd/heater", "on")]);
    assert_eq!(got[0].qos, 2);

    // `both`: each side's message reaches the other once, and does not
    // come back.
    publish(&mut sensor, "shared/a", "from the gateway", 1, 20);
    publish(&mut app, "shared/b", "from the cloud", 1, 2);
    let mut at_cloud = topics_and_payloads(&take(&mut cloud, 2))
        .into_iter()
        .map(|(t, p)| format!("{t} {p}"))
        .collect::<Vec<_>>();
    let mut at_gw = topics_and_payloads(&take(&mut dash, 2))
        .into_iter()
        .map(|(t, p)| format!("{t} {p}"))
        .collect::<Vec<_>>();
    at_cloud.sort();
    at_gw.sort();
    let both = ["shared/a from the gateway", "shared/b from the cloud"];
    assert_eq!(at_cloud, both);
    assert_eq!(at_gw, both);
}

#[test]
fn state_is_published_locally_and_remotely_and_retained_flags_carry() {
    let remote = Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\n");
    let gw = gateway(remote.port, "topic state/# out 1\n");
    wait_log(&gw, "bridge cloud: connected");
    // Retained, so a subscriber arriving later sees the state.
    let mut local = subscriber(&gw.addr(), "watch", &[("$SYS/broker/connection/#", 0)]);
    let got = take(&mut local, 1);
    assert_eq!(
        topics_and_payloads(&got),
        [("$SYS/broker/connection/gw/state", "1")]
    );
    assert!(got[0].retain);
    let mut at_remote = subscriber(&remote.addr(), "w", &[("$SYS/broker/connection/#", 0)]);
    assert_eq!(
        topics_and_payloads(&take(&mut at_remote, 1)),
        [("$SYS/broker/connection/gw/state", "1")]
    );
    // A retained message goes out retained (bridge_outgoing_retain true).
    let mut sensor = Client::v4(&gw.addr(), "sensor");
    sensor.send(
        &Publish::new("state/door", b"open")
            .qos(1, 1)
            .retain(true)
            .encode(false),
    );
    sensor.expect_kind(PUBACK);
    let mut late = subscriber(&remote.addr(), "late", &[("state/#", 1)]);
    let got = take(&mut late, 1);
    assert_eq!(topics_and_payloads(&got), [("state/door", "open")]);
    assert!(got[0].retain, "kept retained at the remote");
    // The remote goes: the local state turns to 0.
    drop(remote);
    let got = take(&mut local, 1);
    assert_eq!(
        topics_and_payloads(&got),
        [("$SYS/broker/connection/gw/state", "0")]
    );
}

/// A remote that accepts TCP but never answers CONNECT (a listener whose
/// backlog takes the connection), and one that refuses TCP: local clients
/// are served all along, and the bridge keeps trying.
#[test]
fn an_unanswering_remote_does_not_hold_up_local_clients() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gw = Roost::with_config(&format!(
        "listener 0 127.0.0.1\nallow_anonymous true\nconnection cloud\naddress 127.0.0.1:{refused} \
         127.0.0.1:{silent_port}\nkeepalive_interval 5\nrestart_timeout 1\ntopic # out 1\n"
    ));
    wait_log(&gw, &format!("connecting to 127.0.0.1:{silent_port}"));
    // While the bridge waits for a CONNACK, local traffic flows at once.
    let started = Instant::now();
    let mut dash = subscriber(&gw.addr(), "dash", &[("home/#", 1)]);
    let mut sensor = Client::v4(&gw.addr(), "sensor");
    for i in 0..20u16 {
        publish(&mut sensor, "home/t", &i.to_string(), 1, i + 1);
    }
    assert_eq!(take(&mut dash, 20).len(), 20);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(count_log(&gw, "no CONNACK in time"), 0);
    // Then it gives up on the silent one, after keepalive_interval.
    wait_log(&gw, "bridge cloud: no CONNACK in time, closing");
    wait_log(&gw, "trying again in");
    assert!(
        gw.log()
            .iter()
            .any(|l| l.contains(&format!("connecting to 127.0.0.1:{refused}"))),
        "the refusing address was tried: {:#?}",
        gw.log()
    );
}

fn journal_remote(dir: &Path, port: u16) -> Roost {
    Roost::with_config(&format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_mode journal\n\
         persistence_location {}\nmax_queued_messages 10000\n",
        dir.display()
    ))
}

/// The remote is killed (SIGKILL; it keeps a journal, so what it
/// acknowledged is stored) and restarted while a sensor sends numbered
/// QoS 1 messages to the gateway: every message reaches the cloud
/// subscriber, first arrivals in order.
#[test]
fn a_remote_killed_and_restarted_loses_nothing() {
    let dir = TempDir::new("roost-bridge-remote");
    let mut remote = journal_remote(&dir.path, 0);
    let port = remote.port;
    {
        // A kept session at the remote, offline while the test runs.
        let (mut c, _) = Client::connect(&remote.addr(), &Connect::v4("cloud").clean(false));
        c.send(&subscribe(1, &[("n/#", 1)], false, Props::new()));
        c.expect_kind(SUBACK);
        c.send(&disconnect());
    }
    let gw = gateway(port, "topic n/# out 1\nmax_queued_messages 10000\n");
    wait_log(&gw, "bridge cloud: connected");
    let mut sensor = Client::v4(&gw.addr(), "sensor");
    const N: u16 = 300;
    for i in 0..N {
        if i == 100 {
            remote.signal_and_wait(SIGKILL).expect("killed");
        }
        if i == 200 {
            remote = journal_remote(&dir.path, port);
        }
        publish(&mut sensor, "n/x", &i.to_string(), 1, i + 1);
    }
    wait_log(&gw, "trying again in");
    // Reconnected after the restart: the log says "connected" twice.
    assert!(wait_until(|| count_log(&gw, "bridge cloud: connected") >= 2));

    let (mut cloud, connack) = Client::connect(&remote.addr(), &Connect::v4("cloud").clean(false));
    assert!(connack.session_present);
    let mut firsts = Vec::new();
    let mut seen = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < usize::from(N) && Instant::now() < deadline {
        for m in take(&mut cloud, 1) {
            let n: u16 = m.payload.parse().unwrap();
            if seen.insert(n, ()).is_none() {
                firsts.push(n);
            }
        }
    }
    assert_eq!(firsts, (0..N).collect::<Vec<_>>());
}

/// With persistence on, what waits for the remote survives a restart of
/// the gateway itself.
#[test]
fn what_waits_for_the_remote_survives_a_gateway_restart() {
    let dir = TempDir::new("roost-bridge-gw");
    let remote_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = format!(
        "persistence true\npersistence_location {}\ntopic n/# out 1\n",
        dir.path.display()
    );
    let mut gw = gateway(remote_port, &conf);
    let mut sensor = Client::v4(&gw.addr(), "sensor");
    for i in 0..10u16 {
        publish(&mut sensor, "n/x", &i.to_string(), 1, i + 1);
    }
    gw.signal_and_wait(common::SIGTERM).expect("stopped");
    let remote = Roost::with_config(&format!(
        "listener {remote_port} 127.0.0.1\nallow_anonymous true\n"
    ));
    // A subscriber at the remote before the gateway comes back.
    let mut cloud = subscriber(&remote.addr(), "cloud", &[("n/#", 1)]);
    let gw = gateway(remote_port, &conf);
    wait_log(&gw, "bridge cloud: connected");
    let got: Vec<String> = take(&mut cloud, 10)
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(got, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[test]
fn a_lazy_bridge_connects_at_its_threshold_and_leaves_when_idle() {
    let remote = Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\n");
    let gw = gateway(
        remote.port,
        "start_type lazy\nthreshold 3\nidle_timeout 1\ntopic n/# out 1\n",
    );
    let mut cloud = subscriber(&remote.addr(), "cloud", &[("n/#", 1)]);
    let mut sensor = Client::v4(&gw.addr(), "sensor");
    publish(&mut sensor, "n/x", "0", 1, 1);
    publish(&mut sensor, "n/x", "1", 1, 2);
    assert!(
        matches!(cloud.recv(QUIET), Recv::Timeout),
        "under the threshold"
    );
    assert_eq!(count_log(&gw, "connecting to"), 0);
    publish(&mut sensor, "n/x", "2", 1, 3);
    let got: Vec<String> = take(&mut cloud, 3).into_iter().map(|m| m.payload).collect();
    assert_eq!(got, ["0", "1", "2"]);
    wait_log(&gw, "bridge cloud: idle, disconnecting");
}

/// mosquitto (the Debian package) with `config`, on its listener line's
/// port; ready once it says it runs ("Opening ... listen socket" comes
/// before its sockets listen).
fn mosquitto(dir: &Path, config: &str) -> Proc {
    let path = dir.join("mosquitto.conf");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(MOSQUITTO);
    cmd.arg("-c").arg(&path);
    let m = Proc::spawn(cmd);
    m.wait_line("mosquitto running", |l| l.ends_with(" running"));
    m
}

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

#[test]
fn roost_bridges_into_mosquitto() {
    skip_without!(Path::new(MOSQUITTO).exists(), "mosquitto");
    let dir = TempDir::new("roost-bridge-mosq");
    let port = free_port();
    let m = mosquitto(
        &dir.path,
        &format!("listener {port} 127.0.0.1\nallow_anonymous true\nlog_type all\n"),
    );
    let gw = gateway(
        port,
        "topic # out 1 sensors/ site1/sensors/\ntopic # in 1 cmd/ site1/cmd/\n",
    );
    // With the private bit, and `bridge_attempt_unsubscribe` (default
    // true) unsubscribing from the `out` topic, as mosquitto's bridges do.
    m.wait_line("a bridge", |l| {
        l.contains("New bridge connected") && l.contains("as gw")
    });
    m.wait_line("the UNSUBSCRIBE", |l| {
        l.contains("Received UNSUBSCRIBE from gw")
    });
    m.wait_line("its topic", |l| l.ends_with("\tsite1/sensors/#"));
    m.wait_line("bridge subscription", |l| {
        l.contains("gw") && l.contains("site1/cmd/#")
    });
    both_ways(&gw, &format!("127.0.0.1:{port}"), || true);
    assert_eq!(count_log(&gw, "try_private"), 0, "{:#?}", gw.log());
}

/// Waits until the gateway is subscribed at the remote, then sends a
/// message each way.
fn both_ways(gw: &Roost, remote_addr: &str, subscribed: impl Fn() -> bool) {
    wait_log(gw, "bridge cloud: connected");
    assert!(
        wait_until(subscribed),
        "the bridge subscribed at the remote"
    );
    let mut cloud = subscriber(remote_addr, "cloud", &[("site1/sensors/#", 1)]);
    let mut dash = subscriber(&gw.addr(), "dash", &[("cmd/#", 1)]);
    let mut sensor = Client::v4(&gw.addr(), "sensor");
    publish(&mut sensor, "sensors/t", "21.5", 1, 1);
    assert_eq!(
        topics_and_payloads(&take(&mut cloud, 1)),
        [("site1/sensors/t", "21.5")]
    );
    let mut app = Client::v4(remote_addr, "app");
    publish(&mut app, "site1/cmd/fan", "off", 1, 1);
    assert_eq!(
        topics_and_payloads(&take(&mut dash, 1)),
        [("cmd/fan", "off")]
    );
}

#[test]
fn mosquitto_bridges_into_roost() {
    skip_without!(Path::new(MOSQUITTO).exists(), "mosquitto");
    let dir = TempDir::new("roost-bridge-mosq");
    let roost = Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\n");
    let port = free_port();
    let _m = mosquitto(
        &dir.path,
        &format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nlog_type all\n\
             connection tocloud\naddress 127.0.0.1:{}\nremote_clientid mgw\n\
             topic sensors/# out 1\ntopic cmd/# in 1\n",
            roost.port
        ),
    );
    // mosquitto's bridge: the private bit, its subscription, its state.
    wait_log(&roost, "client mgw subscribed to cmd/#");
    let mut cloud = subscriber(
        &roost.addr(),
        "cloud",
        &[("sensors/#", 1), ("$SYS/broker/connection/#", 0)],
    );
    assert_eq!(
        topics_and_payloads(&take(&mut cloud, 1)),
        [("$SYS/broker/connection/mgw/state", "1")]
    );
    let mut sensor = Client::v4(&format!("127.0.0.1:{port}"), "sensor");
    publish(&mut sensor, "sensors/t", "19", 1, 1);
    assert_eq!(
        topics_and_payloads(&take(&mut cloud, 1)),
        [("sensors/t", "19")]
    );
    let mut dash = subscriber(&format!("127.0.0.1:{port}"), "dash", &[("cmd/#", 1)]);
    let mut app = Client::v4(&roost.addr(), "app");
    publish(&mut app, "cmd/fan", "on", 1, 1);
    assert_eq!(
        topics_and_payloads(&take(&mut dash, 1)),
        [("cmd/fan", "on")]
    );
}

/// The next connection to `remote`, within `common::TIMEOUT`.
fn accept(remote: &std::net::TcpListener) -> std::net::TcpStream {
    remote.set_nonblocking(true).unwrap();
    let mut got = None;
    assert!(
        wait_until(|| {
            got = remote.accept().ok();
            got.is_some()
        }),
        "the bridge did not connect"
    );
    let (s, _) = got.unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

/// Reads one CONNECT from `s` and returns its protocol level byte.
fn connect_level(s: &mut std::net::TcpStream) -> u8 {
    use std::io::Read;
    s.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    let mut head = [0u8; 2];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x10, "CONNECT");
    let mut body = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut body).unwrap();
    assert_eq!(&body[..6], b"\x00\x04MQTT");
    body[6]
}

/// A 3.1.1 remote that refuses mosquitto's private bit (CONNACK 0x01)
/// gets a second CONNECT without it, and the bridge works.
#[test]
fn a_remote_refusing_the_private_bit_is_tried_without_it() {
    use std::io::Write;
    let remote = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = remote.local_addr().unwrap().port();
    let gw = gateway(port, "topic # out 0\n");
    let mut first = accept(&remote);
    assert_eq!(connect_level(&mut first), 0x84, "3.1.1 with the bridge bit");
    first.write_all(&[0x20, 0x02, 0x00, 0x01]).unwrap();
    let mut second = accept(&remote);
    assert_eq!(connect_level(&mut second), 0x04, "plain 3.1.1");
    second.write_all(&[0x20, 0x02, 0x00, 0x00]).unwrap();
    wait_log(&gw, "bridge cloud: connected");
    wait_log(&gw, "unacceptable protocol version (0x01)");
}

/// rumqttd, when installed (`cargo install rumqttd`): on PATH or in
/// ~/.cargo/bin.
fn rumqttd() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/rumqttd"));
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("rumqttd"))
            .find(|p| p.is_file())
    });
    on_path.or(home.filter(|p| p.is_file()))
}

/// rumqttd with an MQTT 3.1.1 listener on `port`, and with `tls` (a
/// port, a certificate and its key) a TLS one; ready once it says it
/// listens. Its log (`-v`) says when a client subscribes.
fn rumqttd_on(bin: &Path, dir: &Path, port: u16, tls: Option<(u16, &Path, &Path)>) -> Proc {
    let listener = |n: u8, port: u16, tls: &str| {
        format!(
            "[v4.{n}]\nname = \"v4-{n}\"\nlisten = \"127.0.0.1:{port}\"\n\
             next_connection_delay_ms = 1\n{tls}[v4.{n}.connections]\n\
             connection_timeout_ms = 5000\nmax_payload_size = 20480\n\
             max_inflight_count = 100\ndynamic_filters = true\n\n"
        )
    };
    let mut text = "id = 0\n\n[router]\nid = 0\nmax_connections = 100\n\
                    max_outgoing_packet_count = 200\nmax_segment_size = 1048576\n\
                    max_segment_count = 10\n\n"
        .to_string();
    text += &listener(1, port, "");
    if let Some((port, cert, key)) = tls {
        let files = format!(
            "[v4.2.tls]\ncertpath = \"{}\"\nkeypath = \"{}\"\n",
            cert.display(),
            key.display()
        );
        text += &listener(2, port, &files);
    }
    let conf = dir.join("rumqttd.toml");
    std::fs::write(&conf, text).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-v").arg("-c").arg(&conf).env("NO_COLOR", "1");
    let r = Proc::spawn(cmd);
    // A line for each listener, in no set order.
    for _ in 0..1 + usize::from(tls.is_some()) {
        r.wait_line("rumqttd listening", |l| {
            l.contains("Listening for remote connections")
        });
    }
    r
}

/// rumqttd, like AWS IoT Core, closes the connection on mosquitto's
/// bridge bit (protocol level 0x84) without a CONNACK. The bridge tries
/// again at once without it, says so once, and keeps to it when it
/// connects again; QoS 1 messages flow both ways, every one counted, in
/// order.
#[test]
fn a_bridge_to_rumqttd_goes_without_the_private_bit_and_loses_nothing() {
    let Some(bin) = rumqttd() else {
        eprintln!("SKIPPED: rumqttd not installed");
        return;
    };
    let dir = TempDir::new("roost-bridge-rumqttd");
    let port = free_port();
    let r = rumqttd_on(&bin, &dir.path, port, None);
    let gw = gateway(
        port,
        "topic # out 1 up/ site1/up/\ntopic # in 1 down/ site1/down/\n",
    );
    let subscribed = |l: &str| l.contains("Adding subscription on topic site1/down/#");
    r.wait_line("the bridge's subscription", subscribed);
    wait_log(&gw, "bridge cloud: connected");
    wait_log(&gw, "going on without it");
    assert_eq!(count_log(&gw, "connecting to"), 2, "{:#?}", gw.log());
    assert_eq!(count_log(&gw, "trying again in"), 0, "at once");
    exchange_with(&gw, port, 0..100);
    // A client takes the bridge's id at rumqttd: the bridge loses its
    // connection, and its next one goes without the bit from the start.
    let thief = Connect::v4("gw").keep_alive(60);
    let _thief = Client::connect(&format!("127.0.0.1:{port}"), &thief);
    wait_log(&gw, "bridge cloud: lost 127.0.0.1");
    r.wait_line("the bridge's subscription again", subscribed);
    exchange_with(&gw, port, 100..200);
    assert_eq!(count_log(&gw, "connecting to"), 3, "{:#?}", gw.log());
    assert_eq!(count_log(&gw, "closed the connection on CONNECT"), 1);
    assert_eq!(count_log(&gw, "going on without it"), 1, "said once");
}

/// Sensor to cloud and app to dashboard, each of `numbers` at QoS 1,
/// across a bridge with the rules `# out 1 up/ site1/up/` and `# in 1
/// down/ site1/down/`: all arrive, once each, in order.
fn exchange_with(gw: &Roost, remote: u16, numbers: std::ops::Range<u16>) {
    // rumqttd refuses keep-alive 0 (the test client's default).
    let at_rumqttd = |id: &str| {
        let connect = Connect::v4(id).keep_alive(60);
        Client::connect(&format!("127.0.0.1:{remote}"), &connect).0
    };
    let mut cloud = at_rumqttd("cloud");
    cloud.send(&subscribe(1, &[("site1/up/#", 1)], false, Props::new()));
    cloud.expect_kind(SUBACK);
    let mut dash = subscriber(&gw.addr(), "dash", &[("down/#", 1)]);
    let mut sensor = Client::v4(&gw.addr(), "sensor");
    let mut app = at_rumqttd("app");
    for i in numbers.clone() {
        publish(&mut sensor, "up/t", &i.to_string(), 1, i + 1);
        publish(&mut app, "site1/down/t", &i.to_string(), 1, i + 1);
    }
    let want: Vec<String> = numbers.map(|i| i.to_string()).collect();
    for (c, topic) in [(&mut cloud, "site1/up/t"), (&mut dash, "down/t")] {
        let got = take(c, want.len());
        assert!(
            got.iter().all(|m| m.topic == topic && m.qos == 1),
            "{got:?}"
        );
        let got: Vec<String> = got.into_iter().map(|m| m.payload).collect();
        assert_eq!(got, want, "to {topic}");
    }
}

/// `bridge_attempt_unsubscribe` (default true, as mosquitto): a topic that
/// an earlier config brought `in` and now sends `out` is unsubscribed at
/// the remote, whose kept session for the bridge still had it; with
/// `false` the old subscription stays and still brings messages in.
#[test]
fn an_out_topic_is_unsubscribed_at_the_remote_unless_told_not_to() {
    let remote = Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\n");
    let subscribed = || count_log(&remote, "client gw subscribed to x/#");
    let unsubscribed = || count_log(&remote, "client gw unsubscribed from x/#");
    for (round, attempt) in [(1, true), (2, false)] {
        let before = gateway(remote.port, "topic x/# in 1\n");
        assert!(wait_until(|| subscribed() == round));
        drop(before);
        let gw = gateway(
            remote.port,
            &format!("topic x/# out 1\nbridge_attempt_unsubscribe {attempt}\n"),
        );
        wait_log(&gw, "bridge cloud: connected");
        if attempt {
            assert!(wait_until(|| unsubscribed() == 1));
        }
        let mut dash = subscriber(&gw.addr(), "dash", &[("x/#", 1)]);
        let mut app = Client::v4(&remote.addr(), "app");
        publish(&mut app, "x/1", "from the remote", 1, 1);
        let got = take(&mut dash, usize::from(!attempt));
        assert_eq!(got.len(), usize::from(!attempt), "{attempt}: {got:?}");
        assert_eq!(unsubscribed(), 1, "{attempt}");
    }
}

/// From now on, connections to 127.0.0.1:`port` are passed on to
/// 127.0.0.1:`to`: a remote that comes within reach when the test says.
fn forward(port: u16, to: u16) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for inbound in listener.incoming().map_while(Result::ok) {
            let outbound = std::net::TcpStream::connect(("127.0.0.1", to)).unwrap();
            for (mut from, mut into) in [
                (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                (outbound, inbound),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut into);
                    let _ = into.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
}

/// `local_cleansession true`: a QoS 1 message published while the remote
/// is out of reach is not kept for it, as in mosquitto. By default roost
/// keeps it, whatever `cleansession` says.
#[test]
fn local_cleansession_keeps_nothing_for_an_absent_remote() {
    let remote = Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\n");
    for (extra, want) in [
        ("cleansession true\n", &["away", "back"][..]),
        ("local_cleansession true\n", &["back"]),
    ] {
        let mut cloud = subscriber(&remote.addr(), "cloud", &[("n/#", 1)]);
        let port = free_port();
        let gw = gateway(port, &format!("topic n/# out 1\n{extra}"));
        wait_log(&gw, "bridge cloud: lost 127.0.0.1");
        let mut sensor = Client::v4(&gw.addr(), "sensor");
        publish(&mut sensor, "n/x", "away", 1, 1);
        forward(port, remote.port);
        wait_log(&gw, "bridge cloud: connected");
        publish(&mut sensor, "n/x", "back", 1, 2);
        let got: Vec<String> = take(&mut cloud, want.len())
            .into_iter()
            .map(|m| m.payload)
            .collect();
        assert_eq!(got, want, "{extra}");
    }
}

/// `bridge_outgoing_retain false` clears the flag on the way out, and
/// `bridge_max_packet_size` keeps what is too large at home.
#[test]
fn outgoing_retain_and_packet_size_limits() {
    let remote = Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\n");
    let gw = gateway(
        remote.port,
        "topic n/# out 1\nbridge_outgoing_retain false\nbridge_max_packet_size 200\n",
    );
    wait_log(&gw, "bridge cloud: connected");
    let mut cloud = subscriber(&remote.addr(), "cloud", &[("n/#", 1)]);
    let mut sensor = Client::v4(&gw.addr(), "sensor");
    let big = "x".repeat(300);
    sensor.send(
        &Publish::new("n/big", big.as_bytes())
            .qos(1, 1)
            .encode(false),
    );
    sensor.expect_kind(PUBACK);
    sensor.send(
        &Publish::new("n/door", b"open")
            .qos(1, 2)
            .retain(true)
            .encode(false),
    );
    sensor.expect_kind(PUBACK);
    let got = take(&mut cloud, 1);
    assert_eq!(
        topics_and_payloads(&got),
        [("n/door", "open")],
        "not the big one"
    );
    let mut late = subscriber(&remote.addr(), "late", &[("n/#", 1)]);
    assert!(
        matches!(late.recv(QUIET), Recv::Timeout),
        "nothing retained at the remote"
    );
}

/// Without `round_robin`, the first address is the main one: connected to
/// the second because the first was down, the bridge moves back once the
/// first answers again, and messages follow it there.
#[test]
fn the_bridge_moves_back_to_the_main_address_when_it_returns() {
    let main_port = free_port();
    let backup = Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\n");
    let gw = Roost::with_config(&format!(
        "listener 0 127.0.0.1\nallow_anonymous true\nconnection cloud\naddress 127.0.0.1:{main_port} \
         127.0.0.1:{}\nremote_clientid gw\nrestart_timeout 1\ntopic n/# out 1\n",
        backup.port
    ));
    wait_log(&gw, &format!("connected to 127.0.0.1:{}", backup.port));
    let main = Roost::with_config(&format!(
        "listener {main_port} 127.0.0.1\nallow_anonymous true\n"
    ));
    let mut cloud = subscriber(&main.addr(), "cloud", &[("n/#", 1)]);
    wait_log(&gw, "answers again, moving back to it");
    wait_log(&gw, &format!("connected to 127.0.0.1:{main_port}"));
    let mut sensor = Client::v4(&gw.addr(), "sensor");
    publish(&mut sensor, "n/x", "on the main one", 1, 1);
    assert_eq!(
        topics_and_payloads(&take(&mut cloud, 1)),
        [("n/x", "on the main one")]
    );
}

/// A 5.0 remote is told the gateway's Receive Maximum: a burst of QoS 2
/// messages larger than the gateway's in-flight window comes in whole,
/// without the connection being dropped (0x93) over it.
#[test]
fn a_v5_remote_keeps_to_the_gateways_receive_maximum() {
    let remote = Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\n");
    let gw = gateway(
        remote.port,
        "max_inflight_messages 3\nbridge_protocol_version mqttv50\ntopic c/# in 2\n",
    );
    wait_log(&remote, "client gw subscribed to c/#");
    let mut dash = subscriber(&gw.addr(), "dash", &[("c/#", 2)]);
    let mut app = Client::v4(&remote.addr(), "app");
    for i in 0..30u16 {
        // Without waiting for each: the remote has them all at once.
        app.send(
            &Publish::new("c/x", i.to_string().as_bytes())
                .qos(2, i + 1)
                .encode(false),
        );
    }
    let got: Vec<String> = take(&mut dash, 30).into_iter().map(|m| m.payload).collect();
    assert_eq!(got, (0..30).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(
        count_log(&gw, "bridge cloud: connected"),
        1,
        "never dropped"
    );
}

/// Bridges over TLS, with certificates made for the test (tests/common/pki.rs).
#[cfg(feature = "tls")]
mod tls {
    use super::pki::{self, Ca};
    use super::*;

    struct Pki {
        _dir: TempDir,
        ca: std::path::PathBuf,
        other_ca: std::path::PathBuf,
        server: pki::Issued,
        client: pki::Issued,
    }

    fn pki() -> Pki {
        let dir = TempDir::new("roost-bridge-tls");
        let ca = Ca::new("roost test CA");
        let other = Ca::new("someone else's CA");
        Pki {
            ca: ca.write(&dir.path.join("ca.pem")),
            other_ca: other.write(&dir.path.join("other-ca.pem")),
            server: ca.server(&dir.path, "server"),
            client: ca.client(&dir.path, "gateway", "site1-gateway"),
            _dir: dir,
        }
    }

    fn p(path: &Path) -> &str {
        path.to_str().unwrap()
    }

    /// A remote roost with a plain listener (its `addr()`, for the test's
    /// clients) and a TLS one on `host` for the bridge, whose port it
    /// returns; `extra` adds lines to the TLS listener.
    fn tls_remote(pki: &Pki, host: &str, extra: &str) -> (Roost, u16) {
        let remote = Roost::with_config(&format!(
            "listener 0 127.0.0.1\nallow_anonymous true\nlistener 0 {host}\ncertfile {}\nkeyfile {}\n{extra}",
            p(&pki.server.cert),
            p(&pki.server.key)
        ));
        let prefix = format!("TLS: listening on {host}:");
        assert!(wait_until(|| remote
            .log()
            .iter()
            .any(|l| l.contains(&prefix))));
        let port = remote
            .log()
            .iter()
            .find_map(|l| l.split(&prefix).nth(1).map(|p| p.trim().parse().unwrap()))
            .unwrap();
        (remote, port)
    }

    fn tls_gateway(host: &str, port: u16, tls_lines: &str) -> Roost {
        Roost::with_config(&format!(
            "listener 0 127.0.0.1\nallow_anonymous true\nconnection cloud\naddress {host}:{port}\n\
             remote_clientid gw\nkeepalive_interval 5\nrestart_timeout 1\n\
             topic # out 1 sensors/ site1/sensors/\ntopic # in 1 cmd/ site1/cmd/\n{tls_lines}"
        ))
    }

    #[test]
    fn a_bridge_over_tls_to_roost_forwards_both_ways() {
        let pki = pki();
        let (remote, port) = tls_remote(&pki, "127.0.0.1", "");
        let gw = tls_gateway(
            "127.0.0.1",
            port,
            &format!("bridge_cafile {}\n", p(&pki.ca)),
        );
        both_ways(&gw, &remote.addr(), || {
            count_log(&remote, "client gw subscribed to site1/cmd/#") > 0
        });
    }

    #[test]
    fn a_bridge_over_tls_to_mosquitto_forwards_both_ways() {
        skip_without!(Path::new(MOSQUITTO).exists(), "mosquitto");
        let pki = pki();
        let dir = TempDir::new("roost-bridge-tls-mosq");
        let (plain, tls_port) = (free_port(), free_port());
        let m = mosquitto(
            &dir.path,
            &format!(
                "allow_anonymous true\nlog_type all\nlistener {plain} 127.0.0.1\nallow_anonymous true\n\
                 listener {tls_port} 127.0.0.1\nallow_anonymous true\ncertfile {}\nkeyfile {}\n",
                p(&pki.server.cert),
                p(&pki.server.key)
            ),
        );
        let gw = tls_gateway(
            "127.0.0.1",
            tls_port,
            &format!("bridge_cafile {}\n", p(&pki.ca)),
        );
        m.wait_line("bridge subscription", |l| {
            l.contains("gw") && l.contains("site1/cmd/#")
        });
        both_ways(&gw, &format!("127.0.0.1:{plain}"), || true);
    }

    #[test]
    fn a_remote_with_a_certificate_from_another_ca_is_refused_and_retried() {
        let pki = pki();
        let (_remote, port) = tls_remote(&pki, "127.0.0.1", "");
        let gw = tls_gateway(
            "127.0.0.1",
            port,
            &format!("bridge_cafile {}\n", p(&pki.other_ca)),
        );
        wait_log(&gw, "bridge cloud: TLS: invalid peer certificate");
        wait_log(&gw, "trying again in");
        assert_eq!(count_log(&gw, "bridge cloud: connected"), 0);
        // Local clients are served meanwhile.
        let mut dash = subscriber(&gw.addr(), "dash", &[("home/#", 0)]);
        let mut sensor = Client::v4(&gw.addr(), "sensor");
        publish(&mut sensor, "home/t", "1", 0, 0);
        assert_eq!(take(&mut dash, 1).len(), 1);
    }

    #[test]
    fn a_remote_requiring_a_certificate_takes_the_bridges() {
        let pki = pki();
        let require = format!("cafile {}\nrequire_certificate true\n", p(&pki.ca));
        let (remote, port) = tls_remote(&pki, "127.0.0.1", &require);
        let without = tls_gateway(
            "127.0.0.1",
            port,
            &format!("bridge_cafile {}\n", p(&pki.ca)),
        );
        wait_log(&without, "trying again in");
        assert_eq!(count_log(&without, "bridge cloud: connected"), 0);
        drop(without);
        let gw = tls_gateway(
            "127.0.0.1",
            port,
            &format!(
                "bridge_cafile {}\nbridge_certfile {}\nbridge_keyfile {}\n",
                p(&pki.ca),
                p(&pki.client.cert),
                p(&pki.client.key)
            ),
        );
        both_ways(&gw, &remote.addr(), || {
            count_log(&remote, "client gw subscribed to site1/cmd/#") > 0
        });
    }

    /// The server certificate names 127.0.0.1 and localhost; reached as
    /// 127.0.0.2 it is refused, unless `bridge_insecure`.
    #[test]
    fn bridge_insecure_lets_a_certificate_for_another_name_through() {
        let pki = pki();
        let (remote, port) = tls_remote(&pki, "127.0.0.2", "");
        let ca = format!("bridge_cafile {}\n", p(&pki.ca));
        let strict = tls_gateway("127.0.0.2", port, &ca);
        wait_log(&strict, "certificate not valid for name");
        assert_eq!(count_log(&strict, "bridge cloud: connected"), 0);
        drop(strict);
        let gw = tls_gateway("127.0.0.2", port, &format!("{ca}bridge_insecure true\n"));
        both_ways(&gw, &remote.addr(), || {
            count_log(&remote, "client gw subscribed to site1/cmd/#") > 0
        });
    }

    /// As AWS IoT Core does: TLS, and the connection closed on the private
    /// bit. The bridge tries again without it once the close follows the
    /// handshake and the whole CONNECT.
    #[test]
    fn a_bridge_over_tls_to_rumqttd_goes_without_the_private_bit() {
        let Some(bin) = rumqttd() else {
            eprintln!("SKIPPED: rumqttd not installed");
            return;
        };
        let pki = pki();
        let dir = TempDir::new("roost-bridge-rumqttd-tls");
        let (plain, tls_port) = (free_port(), free_port());
        let server = Some((tls_port, &*pki.server.cert, &*pki.server.key));
        let r = rumqttd_on(&bin, &dir.path, plain, server);
        let gw = Roost::with_config(&format!(
            "listener 0 127.0.0.1\nallow_anonymous true\nconnection cloud\naddress 127.0.0.1:{tls_port}\n\
             remote_clientid gw\nrestart_timeout 1\nbridge_cafile {}\n\
             topic # out 1 up/ site1/up/\ntopic # in 1 down/ site1/down/\n",
            p(&pki.ca)
        ));
        r.wait_line("the bridge's subscription", |l| {
            l.contains("Adding subscription on topic site1/down/#")
        });
        wait_log(&gw, "going on without it");
        assert_eq!(count_log(&gw, "connecting to"), 2, "{:#?}", gw.log());
        exchange_with(&gw, plain, 0..50);
    }

    /// tests/fixtures/NAME, its certificate keys pointed at the test's
    /// files and, with `remote`, its `address` at that port on 127.0.0.1.
    fn fixture(pki: &Pki, name: &str, remote: Option<u16>) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let text = std::fs::read_to_string(path).unwrap();
        let lines = text.lines().map(|line| {
            let (key, _) = line.split_once(' ').unwrap_or((line, ""));
            match (key, remote) {
                ("bridge_cafile", _) => format!("{key} {}", p(&pki.ca)),
                ("bridge_certfile", _) => format!("{key} {}", p(&pki.client.cert)),
                ("bridge_keyfile", _) => format!("{key} {}", p(&pki.client.key)),
                ("address", Some(port)) => format!("address 127.0.0.1:{port}"),
                _ => line.to_owned(),
            }
        });
        lines.map(|l| l + "\n").collect()
    }

    /// The bridge configs of AWS IoT Core's and Azure IoT Hub's guides for
    /// mosquitto pass `--check-config` as they are, host names that do
    /// not resolve here and all, without a warning; and mosquitto 2.0
    /// starts with them and tries their bridges (to a closed port here).
    #[test]
    fn the_cloud_guides_bridge_configs_pass_check_config_as_in_mosquitto() {
        let pki = pki();
        let dir = TempDir::new("roost-bridge-guides");
        for (name, bridge) in [
            ("aws-iot-bridge.conf", "awsiot"),
            ("azure-iot-hub-bridge.conf", "azure-iot-hub"),
        ] {
            let conf = dir.path.join(name);
            std::fs::write(&conf, fixture(&pki, name, None)).unwrap();
            let out = common::run_roost(&["--check-config", "-c", p(&conf)]);
            let err = common::text(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{name}: {err}");
            assert!(!err.contains("warning"), "{name}: {err}");
            if !Path::new(MOSQUITTO).exists() {
                eprintln!("SKIPPED: mosquitto not installed, {name} not shown to it");
                continue;
            }
            let port = free_port();
            let m = mosquitto(
                &dir.path,
                &format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\n{}",
                    fixture(&pki, name, Some(free_port()))
                ),
            );
            m.wait_line("its bridge", |l| {
                l.contains("Connecting bridge") && l.contains(&format!(" {bridge} ("))
            });
        }
    }

    /// A TLS file that does not read stops start-up (and `--check-config`)
    /// naming the bridge, the key and the file.
    #[test]
    fn a_missing_bridge_cafile_stops_start_up() {
        let dir = TempDir::new("roost-bridge-tls-bad");
        let conf = dir.path.join("roost.conf");
        std::fs::write(
            &conf,
            "connection cloud\naddress 127.0.0.1:8883\ntopic #\nbridge_cafile /nonexistent/ca.pem\n",
        )
        .unwrap();
        let out = common::run_roost(&["--check-config", "-c", p(&conf)]);
        assert_eq!(out.status.code(), Some(1));
        let err = common::text(&out.stderr);
        assert!(
            err.contains("bridge cloud: bridge_cafile /nonexistent/ca.pem: No such file"),
            "{err}"
        );
    }
}
