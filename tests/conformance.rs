//! Raw-socket MQTT conformance tests: every byte sent is built by hand with
//! `common/wire.rs` (independent of roost's codec) and every reply checked.
//! Normative statement ids are MQTT 3.1.1 unless marked "v5".

mod common;
#[path = "common/wire.rs"]
mod wire;

use common::{Roost, SIGINT, SIGTERM};
use std::time::{Duration, Instant};
use wire::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A short window used only for negative checks ("nothing else arrives").
const QUIET: Duration = Duration::from_millis(300);

fn payloads(ps: &[Publish]) -> Vec<String> {
    ps.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

/// A v3.1.1 client `id` subscribed to `filter` at QoS 0, watching for wills.
fn watcher(r: &Roost, id: &str, filter: &str) -> Client {
    let mut watcher = Client::v4(&r.addr(), id);
    watcher.subscribe(1, &[(filter, 0)]);
    watcher
}

/// A fresh client `pub_id` publishes a marker to `topic`; it must be the
/// next message `watcher` gets (so no will went out before it).
fn assert_marker_next(r: &Roost, pub_id: &str, topic: &str, watcher: &mut Client, why: &str) {
    let mut p = Client::v4(&r.addr(), pub_id);
    p.pub0(topic, b"marker");
    assert_eq!(watcher.expect_publish().payload, b"marker", "{why}");
}

// ------------------------------------------------------------ CONNECT / CONNACK

#[test]
fn unsupported_protocol_level_below_5_gets_connack_0x01_then_close() {
    // [MQTT-3.1.2-2] unsupported protocol level -> CONNACK 0x01, then disconnect.
    let r = Roost::start();
    for level in [2u8, 0, 1] {
        let mut c = Client::open(&r.addr());
        c.send(&Connect::new(level, "lvl").encode());
        let got = c.expect_closed();
        assert_eq!(
            got.len(),
            1,
            "level {level}: expected one CONNACK then close, got {got:?}"
        );
        assert_eq!(got[0].first, 0x20, "level {level}: {got:?}");
        assert_eq!(
            got[0].body,
            vec![0x00, 0x01],
            "level {level}: 3.x-layout CONNACK 0x01 expected"
        );
    }
}

#[test]
fn unsupported_protocol_level_above_5_gets_connack_0x01_then_close() {
    // [MQTT-3.1.2-2]: an unsupported level gets CONNACK 0x01 and a close. The
    // 3.x layout is the one every client can read (mosquitto answers so too).
    let r = Roost::start();
    for level in [6u8, 7, 255] {
        let mut c = Client::open(&r.addr());
        c.send(&Connect::new(level, "lvl").encode());
        let got = c.expect_closed();
        assert_eq!(
            got.len(),
            1,
            "level {level}: expected one CONNACK then close, got {got:?}"
        );
        assert_eq!(got[0].first, 0x20);
        assert_eq!(got[0].body, vec![0x00, 0x01], "level {level}");
    }
}

#[test]
fn v311_zero_length_client_id_with_clean_session_0_is_rejected_with_0x02() {
    // [MQTT-3.1.3-8] zero-byte ClientId with CleanSession 0 -> CONNACK 0x02, close.
    let r = Roost::start();
    let mut c = Client::open(&r.addr());
    c.send(&Connect::v4("").clean(false).encode());
    let got = c.expect_closed();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].first, 0x20);
    assert_eq!(got[0].body, vec![0x00, 0x02]);
}

#[test]
fn v31_zero_length_client_id_is_rejected_with_0x02() {
    // MQTT 3.1: client id must be 1..23 characters; contract: 0x02.
    let r = Roost::start();
    let mut c = Client::open(&r.addr());
    c.send(&Connect::v3("").encode());
    let got = c.expect_closed();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].first, 0x20);
    assert_eq!(got[0].body, vec![0x00, 0x02]);
}

#[test]
fn v311_zero_length_client_id_with_clean_session_1_is_accepted() {
    // [MQTT-3.1.3-6] [MQTT-3.1.3-7] the Server assigns a unique ClientId.
    let r = Roost::start();
    let (mut a, ack) = Client::connect(&r.addr(), &Connect::v4(""));
    assert!(!ack.session_present);
    let (mut b, _) = Client::connect(&r.addr(), &Connect::v4(""));
    // Two anonymous clients must not take each other over: both keep working.
    assert_eq!(a.subscribe(1, &[("anon/t", 1)]), vec![1]);
    b.ping();
    b.publish(&Publish::new("anon/t", b"hi").qos(1, 1));
    let p = a.recv_publish_ack();
    assert_eq!(p.payload, b"hi");
    a.ping();
    b.ping();
}

#[test]
fn v5_zero_length_client_id_gets_assigned_client_identifier() {
    // v5 [MQTT-3.2.2-16] Assigned Client Identifier in CONNACK.
    let r = Roost::start();
    let (_a, ack_a) = Client::connect(&r.addr(), &Connect::v5(""));
    let (_b, ack_b) = Client::connect(&r.addr(), &Connect::v5(""));
    let id = |ack: &Connack| match find_prop(&ack.props, P_ASSIGNED_CLIENT_ID) {
        Some(PropValue::Str(s)) => s.clone(),
        other => panic!("no Assigned Client Identifier in {ack:?}: {other:?}"),
    };
    let (ia, ib) = (id(&ack_a), id(&ack_b));
    assert!(!ia.is_empty());
    assert_ne!(ia, ib, "assigned client identifiers must be unique");
    // Not guessable from one another (a client that could guess another's
    // id could take over its session): 128 random bits, as mosquitto's
    // `auto-` UUIDs, so two ids differ in about half of them.
    let bits = |s: &str| {
        let hex = s
            .strip_prefix("auto-")
            .expect("auto- prefix")
            .replace('-', "");
        assert_eq!(hex.len(), 32, "{s}");
        u128::from_str_radix(&hex, 16).expect("hex")
    };
    let differ = (bits(&ia) ^ bits(&ib)).count_ones();
    assert!(
        (32..=96).contains(&differ),
        "{ia} and {ib} differ in {differ} bits"
    );
    let r = Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\nauto_id_prefix gw1-\n");
    let (_c, ack) = Client::connect(&r.addr(), &Connect::v5(""));
    assert!(id(&ack).starts_with("gw1-"), "{ack:?}");
}

#[test]
fn v5_connack_advertises_limits() {
    // Contract: Topic Alias Maximum 10; Maximum Packet Size = max_packet_size,
    // left out by default (no limit but MQTT's, as mosquitto).
    let r = Roost::start();
    let (_c, ack) = Client::connect(&r.addr(), &Connect::v5("limits"));
    assert_eq!(
        find_prop(&ack.props, P_TOPIC_ALIAS_MAXIMUM),
        Some(&PropValue::Int(10)),
        "{ack:?}"
    );
    assert_eq!(
        find_prop(&ack.props, P_MAXIMUM_PACKET_SIZE),
        None,
        "{ack:?}"
    );
    let r =
        Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\nmax_packet_size 4096\n");
    let (_c, ack) = Client::connect(&r.addr(), &Connect::v5("limits"));
    assert_eq!(
        find_prop(&ack.props, P_MAXIMUM_PACKET_SIZE),
        Some(&PropValue::Int(4096)),
        "{ack:?}"
    );
}

#[test]
fn session_present_flag_0_then_1_for_persistent_session() {
    // [MQTT-3.2.2-1] clean 1 -> 0; [MQTT-3.2.2-2] stored session -> 1; [MQTT-3.2.2-3] none -> 0.
    let r = Roost::start();
    let a = r.addr();
    let (c, ack) = Client::connect(&a, &Connect::v4("sp").clean(false));
    assert!(!ack.session_present, "no session existed yet");
    c.disconnect();
    let (c, ack) = Client::connect(&a, &Connect::v4("sp").clean(false));
    assert!(ack.session_present, "session should have been kept");
    c.disconnect();
    let (c, ack) = Client::connect(&a, &Connect::v4("sp").clean(true));
    assert!(!ack.session_present, "clean session 1 -> session present 0");
    c.disconnect();
    let (c, ack) = Client::connect(&a, &Connect::v4("sp").clean(false));
    assert!(
        !ack.session_present,
        "clean session 1 discarded the old session"
    );
    c.disconnect();

    // v5: clean start 0 with a Session Expiry Interval.
    let v5 = || {
        Connect::v5("sp5")
            .clean(false)
            .props(Props::new().u32(P_SESSION_EXPIRY, 60))
    };
    let (c, ack) = Client::connect(&a, &v5());
    assert!(!ack.session_present);
    c.disconnect();
    let (c, ack) = Client::connect(&a, &v5());
    assert!(
        ack.session_present,
        "v5 session with expiry 60 should have been kept"
    );
    c.disconnect();
}

#[test]
fn first_packet_not_connect_closes_connection() {
    // [MQTT-3.1.0-1] the first packet must be CONNECT.
    let r = Roost::start();
    let cases: Vec<Vec<u8>> = vec![
        pingreq(),
        Publish::new("t", b"x").encode(false),
        subscribe(1, &[("t", 0)], false, Props::new()),
        disconnect(),
    ];
    for bytes in cases {
        let mut c = Client::open(&r.addr());
        c.send(&bytes);
        let got = c.expect_closed();
        assert!(got.is_empty(), "sent {bytes:02x?} first, got {got:?}");
    }
}

#[test]
fn second_connect_closes_connection() {
    // [MQTT-3.1.0-2] second CONNECT is a protocol violation.
    let r = Roost::start();
    let mut c = Client::v4(&r.addr(), "twice");
    c.send(&Connect::v4("twice").encode());
    c.expect_closed_silently();
    // v5: DISCONNECT 0x82 (Protocol Error) first.
    let mut c = Client::v5(&r.addr(), "twice5");
    c.send(&Connect::v5("twice5").encode());
    c.expect_disconnect(0x82);
}

// ------------------------------------------------------------ keep-alive

#[test]
fn keep_alive_expiry_closes_silent_v311_client() {
    // [MQTT-3.1.2-24] close after 1.5 x keep-alive without a control packet.
    let r = Roost::start();
    let (mut c, _) = Client::connect(&r.addr(), &Connect::v4("ka4").keep_alive(1));
    let t0 = Instant::now();
    let got = c.expect_closed_within(Duration::from_secs(5));
    let took = t0.elapsed();
    assert!(
        got.is_empty(),
        "v3.1.1 gets no packet before the close: {got:?}"
    );
    assert!(took >= ms(1000), "closed too early: {took:?}");
}

#[test]
fn keep_alive_expiry_sends_v5_disconnect_0x8d() {
    // v5 [MQTT-3.1.2-22] keep-alive; 4.13 reason 0x8D Keep Alive timeout.
    let r = Roost::start();
    let (mut c, ack) = Client::connect(&r.addr(), &Connect::v5("ka5").keep_alive(1));
    assert_eq!(
        find_prop(&ack.props, P_SERVER_KEEP_ALIVE),
        None,
        "no server keep alive expected"
    );
    let t0 = Instant::now();
    let got = c.expect_closed_within(Duration::from_secs(5));
    let took = t0.elapsed();
    assert_eq!(got.len(), 1, "expected DISCONNECT then close: {got:?}");
    assert_eq!(got[0].disconnect_reason(), 0x8D);
    assert!(took >= ms(1000), "closed too early: {took:?}");
}

#[test]
fn pingreq_gets_pingresp_and_keeps_connection_alive() {
    // [MQTT-3.12.4-1] PINGREQ -> PINGRESP; pings keep a 1 s keep-alive connection open.
    let r = Roost::start();
    let (mut c, _) = Client::connect(&r.addr(), &Connect::v4("pinger").keep_alive(1));
    let t0 = Instant::now();
    while t0.elapsed() < ms(2000) {
        c.send(&pingreq());
        let p = c.expect();
        assert_eq!(p.first, 0xD0);
        assert!(p.body.is_empty());
        match c.recv(ms(400)) {
            Recv::Timeout => {}
            other => panic!("unexpected {other:?} while pinging"),
        }
    }
}

#[test]
fn connect_timeout_closes_connection_that_sends_nothing() {
    // Contract: `connect_timeout 1` closes a connection that sends no CONNECT.
    let r = Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\nconnect_timeout 1\n");
    let mut c = Client::open(&r.addr());
    let t0 = Instant::now();
    let got = c.expect_closed_within(Duration::from_secs(5));
    assert!(got.is_empty(), "{got:?}");
    assert!(
        t0.elapsed() >= ms(500),
        "closed too early: {:?}",
        t0.elapsed()
    );
    // A client that does connect in time is unaffected.
    let mut ok = Client::v4(&r.addr(), "in-time");
    assert!(
        ok.recv(ms(1500)).is_timeout(),
        "connected client must stay open"
    );
    ok.ping();
}

// ------------------------------------------------------------ takeover

#[test]
fn session_takeover_v5_disconnects_old_with_0x8e_and_publishes_its_will() {
    // [MQTT-3.1.4-2]; v5 [MQTT-3.1.4-3] DISCONNECT 0x8E to the existing client.
    let r = Roost::start();
    let mut watcher = watcher(&r, "watch-takeover", "will/takeover");
    let connect = Connect::v5("dup-id").will(Will::new("will/takeover", b"gone"));
    let (mut old, _) = Client::connect(&r.addr(), &connect);
    let (mut new, ack) = Client::connect(&r.addr(), &Connect::v5("dup-id"));
    assert!(!ack.session_present);
    old.expect_disconnect(0x8E);
    let w = watcher.expect_publish();
    assert_eq!(w.topic_str(), "will/takeover");
    assert_eq!(w.payload, b"gone");
    new.ping();
}

#[test]
fn session_takeover_v311_closes_old_connection() {
    // [MQTT-3.1.4-2] the Server MUST disconnect the existing Client.
    let r = Roost::start();
    let mut watcher = watcher(&r, "watch-takeover4", "will/takeover4");
    let (mut old, _) = Client::connect(
        &r.addr(),
        &Connect::v4("dup4").will(Will::new("will/takeover4", b"gone4")),
    );
    let mut new = Client::v4(&r.addr(), "dup4");
    old.expect_closed_silently();
    assert_eq!(watcher.expect_publish().payload, b"gone4");
    new.ping();
}

// ------------------------------------------------------------ QoS flows

#[test]
fn qos2_inbound_duplicate_before_pubrel_is_delivered_once() {
    // [MQTT-4.3.3-2] PUBREC every copy, no duplicate delivery onward; [MQTT-3.6.4-1] PUBCOMP.
    let r = Roost::start();
    let mut sub = Client::v4(&r.addr(), "q2-sub");
    assert_eq!(sub.subscribe(1, &[("q2/t", 2)]), vec![2]);
    let mut p = Client::v4(&r.addr(), "q2-pub");
    let msg = Publish::new("q2/t", b"once").qos(2, 7);
    p.send(&msg.encode(false));
    let rec = p.expect_kind(PUBREC);
    assert_eq!((rec.first, rec.pid()), (0x50, 7));
    p.send(&msg.clone().dup(true).encode(false));
    let rec = p.expect_kind(PUBREC);
    assert_eq!((rec.first, rec.pid()), (0x50, 7));
    p.send(&ack(PUBREL, 7));
    let comp = p.expect_kind(PUBCOMP);
    assert_eq!((comp.first, comp.pid()), (0x70, 7));
    p.pub0("q2/t", b"end");

    let mut got = Vec::new();
    loop {
        let m = sub.recv_publish_ack();
        if m.payload == b"end" {
            break;
        }
        got.push(m);
    }
    assert_eq!(payloads(&got), vec!["once"], "{got:?}");
    assert_eq!(got[0].qos, 2);
    assert!(!got[0].dup);
}

#[test]
fn outbound_inflight_window_respects_v5_receive_maximum() {
    // v5 [MQTT-3.3.4-9] no more than Receive Maximum unacknowledged QoS 1/2 PUBLISHes;
    // [MQTT-4.6.0-6] order kept.
    let r = Roost::start();
    let connect = Connect::v5("rm-sub").props(Props::new().u16(P_RECEIVE_MAXIMUM, 2));
    let (mut sub, _) = Client::connect(&r.addr(), &connect);
    assert_eq!(sub.subscribe(1, &[("rm/t", 1)]), vec![1]);
    let mut p = Client::v4(&r.addr(), "rm-pub");
    for i in 0..5u16 {
        p.publish(&Publish::new("rm/t", format!("m{i}").as_bytes()).qos(1, i + 1));
    }
    let m0 = sub.expect_publish();
    let m1 = sub.expect_publish();
    assert_eq!(payloads(&[m0.clone(), m1.clone()]), vec!["m0", "m1"]);
    sub.expect_silence(QUIET);
    let mut inflight = vec![m0, m1];
    for next in ["m2", "m3", "m4"] {
        let done = inflight.remove(0);
        sub.send(&ack(PUBACK, done.pid.unwrap()));
        let m = sub.expect_publish();
        assert_eq!(String::from_utf8_lossy(&m.payload), next);
        assert_eq!(m.qos, 1);
        sub.expect_silence(ms(150));
        inflight.push(m);
    }
}

#[test]
fn delivered_qos_is_min_of_publish_and_granted_qos() {
    // [MQTT-3.8.4-6] granted QoS = requested here; 3.3.5: delivered QoS = min(publish, granted).
    let r = Roost::start();
    let mut s0 = Client::v4(&r.addr(), "minq-0");
    assert_eq!(s0.subscribe(1, &[("minq/t", 0)]), vec![0]);
    let mut s2 = Client::v4(&r.addr(), "minq-2");
    assert_eq!(s2.subscribe(1, &[("minq/t", 2)]), vec![2]);
    let mut p = Client::v4(&r.addr(), "minq-pub");
    p.publish(&Publish::new("minq/t", b"q2").qos(2, 1));
    p.publish(&Publish::new("minq/t", b"q1").qos(1, 2));
    let a = s0.recv_publish_ack();
    let b = s0.recv_publish_ack();
    assert_eq!((a.qos, b.qos), (0, 0));
    let a = s2.recv_publish_ack();
    let b = s2.recv_publish_ack();
    assert_eq!((a.qos, b.qos), (2, 1));
}

#[test]
fn unsubscribe_gets_unsuback_and_stops_delivery() {
    // [MQTT-3.10.4-4] UNSUBACK with the same packet id; v5 3.11.3: 0x00 success, 0x11 no subscription existed.
    let r = Roost::start();
    let mut s = Client::v5(&r.addr(), "unsub5");
    assert_eq!(s.subscribe(1, &[("us/a", 0), ("us/b", 0)]), vec![0, 0]);
    s.send(&unsubscribe(9, &["us/a", "us/none"], true));
    let ack = s.expect_kind(UNSUBACK);
    assert_eq!(ack.pid(), 9);
    assert_eq!(ack.suback_codes(true), vec![0x00, 0x11]);
    let mut p = Client::v4(&r.addr(), "unsub-pub");
    p.pub0("us/a", b"gone");
    p.pub0("us/b", b"kept");
    assert_eq!(s.expect_publish().payload, b"kept");

    let mut s4 = Client::v4(&r.addr(), "unsub4");
    s4.subscribe(1, &[("us/a", 0)]);
    s4.send(&unsubscribe(10, &["us/a"], false));
    let ack = s4.expect_kind(UNSUBACK);
    assert_eq!((ack.first, ack.body.clone()), (0xB0, vec![0, 10]));
}

// ------------------------------------------------------------ persistent sessions

#[test]
fn persistent_session_queued_qos1_delivered_in_order_on_reconnect() {
    // [MQTT-3.1.2-5] messages stored for a disconnected clean-session-0 client;
    // [MQTT-4.6.0-6] in order.
    let r = Roost::start();
    let a = r.addr();
    let (mut sub, _) = Client::connect(&a, &Connect::v4("pq-sub").clean(false));
    assert_eq!(sub.subscribe(1, &[("pq/t", 1)]), vec![1]);
    sub.disconnect();
    let mut p = Client::v4(&a, "pq-pub");
    for i in 0..5u16 {
        p.publish(&Publish::new("pq/t", format!("m{i}").as_bytes()).qos(1, i + 1));
        if i == 2 {
            p.pub0("pq/t", b"qos0-not-queued"); // contract: QoS 0 not queued offline
        }
    }
    let (mut sub, ack) = Client::connect(&a, &Connect::v4("pq-sub").clean(false));
    assert!(ack.session_present);
    let mut got = Vec::new();
    for _ in 0..5 {
        let m = sub.recv_publish_ack();
        assert_eq!(m.qos, 1);
        got.push(m);
    }
    assert_eq!(payloads(&got), vec!["m0", "m1", "m2", "m3", "m4"]);
    p.pub0("pq/t", b"live");
    assert_eq!(sub.expect_publish().payload, b"live");
}

#[test]
fn persistent_session_unacked_qos1_resent_with_dup_on_reconnect() {
    // [MQTT-4.4.0-1] re-send unacknowledged PUBLISH with original id; [MQTT-3.3.1-1] DUP=1.
    let r = Roost::start();
    let a = r.addr();
    let (mut sub, _) = Client::connect(&a, &Connect::v4("pd-sub").clean(false));
    assert_eq!(sub.subscribe(1, &[("pd/t", 1)]), vec![1]);
    let mut p = Client::v4(&a, "pd-pub");
    p.publish(&Publish::new("pd/t", b"unacked").qos(1, 1));
    let first = sub.expect_publish();
    assert_eq!((first.qos, first.dup), (1, false));
    sub.drop_abruptly(); // no PUBACK

    let (mut sub, connack) = Client::connect(&a, &Connect::v4("pd-sub").clean(false));
    assert!(connack.session_present);
    let again = sub.expect_publish();
    assert_eq!(again.payload, b"unacked");
    assert!(again.dup, "re-sent PUBLISH must have DUP=1: {again:?}");
    assert_eq!(again.pid, first.pid, "original packet identifier");
    sub.send(&ack(PUBACK, again.pid.unwrap()));
    p.pub0("pd/t", b"live");
    assert_eq!(
        sub.expect_publish().payload,
        b"live",
        "no further re-delivery"
    );
}

#[test]
fn persistent_session_pubrec_d_qos2_gets_pubrel_resent_on_reconnect() {
    // [MQTT-4.4.0-1] re-send PUBREL; [MQTT-3.6.1-1] PUBREL flags 0010.
    let r = Roost::start();
    let a = r.addr();
    let (mut sub, _) = Client::connect(&a, &Connect::v4("pr-sub").clean(false));
    assert_eq!(sub.subscribe(1, &[("pr/t", 2)]), vec![2]);
    let mut p = Client::v4(&a, "pr-pub");
    p.publish(&Publish::new("pr/t", b"two").qos(2, 1));
    let m = sub.expect_publish();
    assert_eq!(m.qos, 2);
    let pid = m.pid.unwrap();
    sub.send(&ack(PUBREC, pid));
    let rel = sub.expect_kind(PUBREL);
    assert_eq!((rel.first, rel.pid()), (0x62, pid));
    sub.disconnect(); // no PUBCOMP

    let (mut sub, connack) = Client::connect(&a, &Connect::v4("pr-sub").clean(false));
    assert!(connack.session_present);
    let rel = sub.expect();
    assert_eq!(
        (rel.first, rel.pid()),
        (0x62, pid),
        "expected PUBREL re-sent, got {rel:?}"
    );
    sub.send(&ack(PUBCOMP, pid));
    p.pub0("pr/t", b"live");
    let next = sub.expect_publish();
    assert_eq!(
        next.payload, b"live",
        "the QoS 2 message must not be re-sent: {next:?}"
    );
}

// ------------------------------------------------------------ topics

#[test]
fn dollar_topics_not_matched_by_leading_wildcards() {
    // [MQTT-4.7.2-1]
    let r = Roost::start();
    let mut wild = Client::v4(&r.addr(), "dollar-wild");
    assert_eq!(wild.subscribe(1, &[("#", 0), ("+/a", 0)]), vec![0, 0]);
    let mut sys = Client::v4(&r.addr(), "dollar-sys");
    assert_eq!(sys.subscribe(1, &[("$test/#", 0)]), vec![0]);
    let mut p = Client::v4(&r.addr(), "dollar-pub");
    p.pub0("$test/a", b"sys");
    p.pub0("x/a", b"marker");
    let first = wild.expect_publish();
    assert_eq!(
        (first.topic_str(), first.payload),
        ("x/a".into(), b"marker".to_vec())
    );
    let s = sys.expect_publish();
    assert_eq!(
        (s.topic_str(), s.payload),
        ("$test/a".into(), b"sys".to_vec())
    );
}

#[test]
fn overlapping_subscriptions_deliver_once_at_highest_qos() {
    // [MQTT-3.3.5-1] maximum QoS of all matching subscriptions; contract: one delivery.
    let r = Roost::start();
    let mut sub = Client::v4(&r.addr(), "ov-sub");
    assert_eq!(sub.subscribe(1, &[("ov/#", 1), ("ov/b", 2)]), vec![1, 2]);
    let mut p = Client::v4(&r.addr(), "ov-pub");
    p.publish(&Publish::new("ov/b", b"x").qos(2, 1));
    p.pub0("ov/b", b"end");
    let m = sub.recv_publish_ack();
    assert_eq!((m.payload.as_slice(), m.qos), (&b"x"[..], 2));
    let end = sub.recv_publish_ack();
    assert_eq!(end.payload, b"end", "message delivered twice? {end:?}");
}

#[test]
fn v5_overlapping_subscriptions_carry_all_subscription_identifiers() {
    // v5 [MQTT-3.3.4-2] max QoS; [MQTT-3.3.4-4] single copy carries all Subscription Identifiers.
    let r = Roost::start();
    let mut sub = Client::v5(&r.addr(), "ov5-sub");
    assert_eq!(
        sub.subscribe_props(
            1,
            &[("ov5/#", 1)],
            Props::new().varint(P_SUBSCRIPTION_ID, 1)
        ),
        vec![1]
    );
    assert_eq!(
        sub.subscribe_props(
            2,
            &[("ov5/b", 2)],
            Props::new().varint(P_SUBSCRIPTION_ID, 2)
        ),
        vec![2]
    );
    let mut p = Client::v4(&r.addr(), "ov5-pub");
    p.publish(&Publish::new("ov5/b", b"x").qos(2, 1));
    p.pub0("ov5/b", b"end");
    let m = sub.recv_publish_ack();
    assert_eq!((m.payload.as_slice(), m.qos), (&b"x"[..], 2));
    let mut ids = m.sub_ids();
    ids.sort();
    assert_eq!(ids, vec![1, 2], "{m:?}");
    let end = sub.recv_publish_ack();
    assert_eq!(end.payload, b"end", "message delivered twice? {end:?}");
}

#[test]
fn invalid_filters_rejected_individually_v311() {
    // [MQTT-4.7.1-2] '#' last; [MQTT-4.7.1-3] '+' whole level; [MQTT-4.7.3-1] non-empty.
    // Contract: SUBACK 0x80 for the bad filter only.
    let r = Roost::start();
    let mut sub = Client::v4(&r.addr(), "badf4");
    let codes = sub.subscribe(3, &[("a/#/b", 0), ("ok/x", 1), ("a+", 0), ("", 0)]);
    assert_eq!(codes, vec![0x80, 0x01, 0x80, 0x80]);
    let mut p = Client::v4(&r.addr(), "badf4-pub");
    p.publish(&Publish::new("ok/x", b"granted").qos(1, 1));
    let m = sub.recv_publish_ack();
    assert_eq!((m.topic_str().as_str(), m.qos), ("ok/x", 1));
}

#[test]
fn invalid_filters_rejected_individually_v5() {
    // v5 3.9.3: 0x8F Topic Filter invalid, including a malformed shared
    // subscription ([MQTT-4.8.2-1]); a well-formed one is granted.
    let r = Roost::start();
    let mut sub = Client::v5(&r.addr(), "badf5");
    let codes = sub.subscribe(
        3,
        &[
            ("a/#/b", 0),
            ("ok/y", 1),
            ("x/+y", 0),
            ("", 2),
            ("$share/g+/t", 0),
            ("$share/g/t", 0),
        ],
    );
    assert_eq!(codes, vec![0x8F, 0x01, 0x8F, 0x8F, 0x8F, 0x00]);
    let mut p = Client::v4(&r.addr(), "badf5-pub");
    p.publish(&Publish::new("ok/y", b"granted").qos(1, 1));
    let m = sub.recv_publish_ack();
    assert_eq!((m.topic_str().as_str(), m.qos), ("ok/y", 1));
}

#[test]
fn retained_set_replaced_cleared_and_retain_flag_rules() {
    // [MQTT-3.3.1-5] store; [MQTT-3.3.1-6] send on subscribe; [MQTT-3.3.1-8] retain=1 then;
    // [MQTT-3.3.1-9] retain=0 on live delivery; [MQTT-3.3.1-10] [MQTT-3.3.1-11] empty clears.
    let r = Roost::start();
    let mut p = Client::v4(&r.addr(), "ret-pub");
    p.publish(&Publish::new("rt/a", b"1").retain(true).qos(1, 1));
    p.publish(&Publish::new("rt/a", b"2").retain(true).qos(1, 2));
    p.publish(&Publish::new("rt/b", b"keep").retain(true).qos(1, 3));

    let mut s1 = Client::v4(&r.addr(), "ret-s1");
    assert_eq!(s1.subscribe(1, &[("rt/a", 1)]), vec![1]);
    let m = s1.recv_publish_ack();
    assert_eq!(
        (m.payload.as_slice(), m.retain),
        (&b"2"[..], true),
        "replaced value with retain=1: {m:?}"
    );

    p.publish(&Publish::new("rt/a", b"3").retain(true).qos(1, 4));
    let m = s1.recv_publish_ack();
    assert_eq!(
        (m.payload.as_slice(), m.retain),
        (&b"3"[..], false),
        "live delivery has retain=0: {m:?}"
    );

    p.publish(&Publish::new("rt/a", b"").retain(true).qos(1, 5));
    let m = s1.recv_publish_ack();
    assert_eq!(
        (m.payload.as_slice(), m.retain),
        (&b""[..], false),
        "empty retained is delivered live: {m:?}"
    );

    let mut s2 = Client::v4(&r.addr(), "ret-s2");
    assert_eq!(s2.subscribe(1, &[("rt/#", 0)]), vec![0]);
    p.pub0("rt/a", b"marker");
    let mut got = Vec::new();
    loop {
        let m = s2.expect_publish();
        if m.payload == b"marker" {
            assert!(!m.retain);
            break;
        }
        got.push(m);
    }
    assert_eq!(got.len(), 1, "only rt/b should still be retained: {got:?}");
    assert_eq!(
        (
            got[0].topic_str().as_str(),
            got[0].payload.as_slice(),
            got[0].retain
        ),
        ("rt/b", &b"keep"[..], true)
    );
}

// ------------------------------------------------------------ will

#[test]
fn will_published_on_abnormal_close_with_its_qos() {
    // [MQTT-3.1.2-8] will published when the connection closes without DISCONNECT.
    let r = Roost::start();
    let mut watcher = Client::v4(&r.addr(), "will-watch");
    assert_eq!(watcher.subscribe(1, &[("will/abn", 2)]), vec![2]);
    let (w, _) = Client::connect(
        &r.addr(),
        &Connect::v4("will-abn").will(Will::new("will/abn", b"bye").qos(1)),
    );
    w.drop_abruptly();
    let m = watcher.recv_publish_ack();
    assert_eq!(
        (m.topic_str().as_str(), m.payload.as_slice(), m.qos),
        ("will/abn", &b"bye"[..], 1)
    );
    assert!(!m.retain);
}

#[test]
fn will_published_when_the_close_comes_with_the_last_data() {
    // [MQTT-3.1.2-8] as above, but CONNECT, a PUBLISH and the FIN leave
    // together, so they often reach the broker in one wakeup: the broker's
    // read must not stop at the data and miss the close (with a keep-alive
    // of 600 s, nothing else would end the connection within WAIT).
    let r = Roost::start();
    let mut watcher = watcher(&r, "fin-watch", "fin/#");
    for i in 0..30 {
        let mut c = Client::open(&r.addr());
        let connect = Connect::v4(&format!("fin-{i}"))
            .keep_alive(600)
            .will(Will::new(&format!("fin/will/{i}"), b"gone"));
        let publish = Publish::new(&format!("fin/data/{i}"), b"last");
        c.send(&[connect.encode(), publish.encode(false)].concat());
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        let got = [watcher.expect_publish(), watcher.expect_publish()];
        assert_eq!(
            got.map(|p| p.topic_str()),
            [format!("fin/data/{i}"), format!("fin/will/{i}")]
        );
        drop(c);
    }
}

#[test]
fn will_not_published_after_disconnect() {
    // [MQTT-3.1.2-10] will removed on DISCONNECT.
    let r = Roost::start();
    let mut watcher = watcher(&r, "will-watch-n", "will/norm");
    let (w, _) = Client::connect(
        &r.addr(),
        &Connect::v4("will-norm").will(Will::new("will/norm", b"bye")),
    );
    w.disconnect();
    assert_marker_next(
        &r,
        "will-norm-pub",
        "will/norm",
        &mut watcher,
        "will must not be published after DISCONNECT",
    );
}

#[test]
fn will_retain_is_honoured() {
    // [MQTT-3.1.2-17] Will Retain 1 -> published as a retained message.
    let r = Roost::start();
    let mut watcher = watcher(&r, "will-watch-r", "will/ret");
    let connect = Connect::v4("will-ret").will(Will::new("will/ret", b"retained-bye").retain(true));
    let (w, _) = Client::connect(&r.addr(), &connect);
    w.drop_abruptly();
    let live = watcher.expect_publish();
    assert_eq!(live.payload, b"retained-bye");
    let mut late = Client::v4(&r.addr(), "will-late");
    late.subscribe(1, &[("will/ret", 0)]);
    let m = late.expect_publish();
    assert_eq!(
        (m.payload.as_slice(), m.retain),
        (&b"retained-bye"[..], true)
    );
}

#[test]
fn v5_disconnect_with_will_message_0x04_publishes_will() {
    // v5 3.14.2.1 reason 0x04 Disconnect with Will Message; [MQTT-3.14.4-3] 0x00 discards it.
    let r = Roost::start();
    let mut watcher = watcher(&r, "will-watch-5", "will/v5");
    let (mut w, _) = Client::connect(
        &r.addr(),
        &Connect::v5("will-04").will(Will::new("will/v5", b"04")),
    );
    w.send(&disconnect_v5(0x04));
    let got = w.expect_closed();
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(watcher.expect_publish().payload, b"04");

    let (mut w, _) = Client::connect(
        &r.addr(),
        &Connect::v5("will-00").will(Will::new("will/v5", b"00")),
    );
    w.send(&disconnect_v5(0x00));
    assert!(w.expect_closed().is_empty());
    assert_marker_next(
        &r,
        "will-5-pub",
        "will/v5",
        &mut watcher,
        "0x00 must discard the will",
    );
}

#[test]
fn v5_will_delay_interval_honoured_and_cancelled_by_reconnect() {
    // v5 3.1.3.2.2 Will Delay Interval; [MQTT-3.1.3-9] no will if the session is resumed in time.
    let r = Roost::start();
    let mut watcher = watcher(&r, "wd-watch", "will/delay/#");
    let connect = |id: &str, topic: &str| {
        Connect::v5(id)
            .clean(false)
            .props(Props::new().u32(P_SESSION_EXPIRY, 30))
            .will(Will::new(topic, b"late").props(Props::new().u32(P_WILL_DELAY, 1)))
    };
    // Delayed: not at once, but after about a second.
    let (w, _) = Client::connect(&r.addr(), &connect("wd-a", "will/delay/a"));
    let t0 = Instant::now();
    w.drop_abruptly();
    let m = watcher.expect_publish();
    let took = t0.elapsed();
    assert_eq!(m.topic_str(), "will/delay/a");
    assert!(took >= ms(700), "will published before its delay: {took:?}");
    assert!(
        took < Duration::from_secs(4),
        "will delay overshot: {took:?}"
    );

    // Reconnecting within the delay cancels it.
    let (w, _) = Client::connect(&r.addr(), &connect("wd-b", "will/delay/b"));
    w.drop_abruptly();
    let (mut back, ack) = Client::connect(&r.addr(), &Connect::v5("wd-b").clean(false));
    assert!(ack.session_present);
    // Past the delay, a marker published now arrives first: no will in between.
    std::thread::sleep(ms(1300));
    back.pub0("will/delay/b", b"marker");
    assert_eq!(
        watcher.expect_publish().payload,
        b"marker",
        "will must not be sent after a resumed session"
    );
}

#[test]
fn v5_message_expiry_honoured_and_decremented_while_queued() {
    // v5 3.3.2.3.3: expired messages are not delivered; the forwarded interval is reduced
    // by the time the message waited ([MQTT-3.3.2-6]).
    let r = Roost::start();
    let a = r.addr();
    let connect = || {
        Connect::v5("mx-sub")
            .clean(false)
            .props(Props::new().u32(P_SESSION_EXPIRY, 60))
    };
    let (mut sub, _) = Client::connect(&a, &connect());
    assert_eq!(sub.subscribe(1, &[("mx/t", 1)]), vec![1]);
    sub.disconnect();
    let mut p = Client::v5(&a, "mx-pub");
    p.publish(
        &Publish::new("mx/t", b"short")
            .qos(1, 1)
            .props(Props::new().u32(P_MESSAGE_EXPIRY, 1)),
    );
    p.publish(
        &Publish::new("mx/t", b"long")
            .qos(1, 2)
            .props(Props::new().u32(P_MESSAGE_EXPIRY, 60)),
    );
    std::thread::sleep(ms(2100)); // let the 1 s message expire and the 60 s one age
    let (mut sub, ack) = Client::connect(&a, &connect());
    assert!(ack.session_present);
    let m = sub.recv_publish_ack();
    assert_eq!(m.payload, b"long", "expired message delivered: {m:?}");
    match find_prop(&m.props, P_MESSAGE_EXPIRY) {
        Some(PropValue::Int(n)) => assert!(*n <= 59 && *n >= 50, "expiry not decremented: {n}"),
        other => panic!("Message Expiry Interval missing: {other:?}"),
    }
    p.pub0("mx/t", b"live");
    assert_eq!(sub.expect_publish().payload, b"live");
}

// ------------------------------------------------------------ v5 limits and aliases

#[test]
fn v5_packet_over_max_packet_size_gets_disconnect_0x95() {
    // v5 [MQTT-3.2.2-?] CONNACK Maximum Packet Size; 4.13: 0x95 Packet too large.
    let r =
        Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\nmax_packet_size 1000\n");
    let (mut c, ack) = Client::connect(&r.addr(), &Connect::v5("big"));
    assert_eq!(
        find_prop(&ack.props, P_MAXIMUM_PACKET_SIZE),
        Some(&PropValue::Int(1000)),
        "{ack:?}"
    );
    // A packet just under the limit is fine.
    c.publish(&Publish::new("big/t", &[b'a'; 900]).qos(1, 1));
    c.send(&Publish::new("big/t", &[b'a'; 2000]).encode(true));
    c.expect_disconnect(0x95);
    Client::v5(&r.addr(), "after-big").ping();
}

#[test]
fn v5_client_maximum_packet_size_skips_large_messages_only() {
    // v5 [MQTT-3.1.2-24] never send a packet over the client's Maximum Packet Size;
    // [MQTT-3.1.2-25] discard it for that client.
    let r = Roost::start();
    let connect = Connect::v5("mps-sub").props(Props::new().u32(P_MAXIMUM_PACKET_SIZE, 100));
    let (mut small, _) = Client::connect(&r.addr(), &connect);
    assert_eq!(small.subscribe(1, &[("mps/t", 1)]), vec![1]);
    let mut big = Client::v4(&r.addr(), "mps-other");
    big.subscribe(1, &[("mps/t", 1)]);
    let mut p = Client::v4(&r.addr(), "mps-pub");
    p.publish(&Publish::new("mps/t", &[b'x'; 500]).qos(1, 1));
    p.publish(&Publish::new("mps/t", b"small").qos(1, 2));
    let m = small.recv_publish_ack();
    assert_eq!(
        m.payload,
        b"small",
        "oversized message must be skipped: {} bytes",
        m.payload.len()
    );
    // Other subscribers still get the big one.
    assert_eq!(big.recv_publish_ack().payload.len(), 500);
    assert_eq!(big.recv_publish_ack().payload, b"small");
}

#[test]
fn v5_client_maximum_packet_size_drops_reason_strings_from_other_packets() {
    // v5 [MQTT-3.1.2-24] no packet over the client's Maximum Packet Size;
    // [MQTT-3.14.2-3] a DISCONNECT leaves out its Reason String rather
    // than exceed it. The same take-over sends a roomier client the string.
    let r = Roost::start();
    let disconnect_of = |limit: Option<u32>| {
        let mut props = Props::new();
        if let Some(limit) = limit {
            props = props.u32(P_MAXIMUM_PACKET_SIZE, limit);
        }
        let id = format!("mps-takeover-{limit:?}");
        let (mut old, _) = Client::connect(&r.addr(), &Connect::v5(&id).props(props));
        let _new = Client::v5(&r.addr(), &id);
        let got = old.expect_closed();
        assert_eq!(got.len(), 1, "one DISCONNECT then the close: {got:?}");
        assert_eq!(got[0].disconnect_reason(), 0x8E, "{got:?}");
        got[0].body.len() + 2
    };
    // 30 bytes take roost's CONNACK, not the 47 of this DISCONNECT with
    // its string; without the string it is 3.
    let roomy = disconnect_of(None);
    assert!(roomy > 30, "expected a Reason String in {roomy} bytes");
    assert_eq!(disconnect_of(Some(30)), 3);
}

#[test]
fn v5_connack_over_the_client_maximum_packet_size_is_not_sent() {
    // v5 [MQTT-3.1.2-24]: roost's CONNACK with its properties is over 20
    // bytes, so a 10-byte limit gets the connection closed unanswered, as
    // by mosquitto. A refusal fits once its Reason String is dropped
    // ([MQTT-3.2.2-19]).
    let r = Roost::with_config("listener 0 127.0.0.1\nallow_anonymous false\n");
    let tiny = || Props::new().u32(P_MAXIMUM_PACKET_SIZE, 10);
    let mut c = Client::open(&r.addr());
    c.send(&Connect::v5("mps-refused").props(tiny()).encode());
    let got = c.expect_closed();
    assert_eq!(got.len(), 1, "{got:?}");
    let ack = got[0].connack(true);
    assert_eq!((ack.code, ack.props.len()), (0x87, 0), "{ack:?}");
    assert!(got[0].body.len() + 2 <= 10);

    let r = Roost::start();
    let mut c = Client::open(&r.addr());
    c.send(&Connect::v5("mps-tiny").props(tiny()).encode());
    c.expect_closed_silently();
    Client::v5(&r.addr(), "mps-after").ping();
}

#[test]
fn v5_inbound_topic_alias_set_then_used() {
    // v5 3.3.2.3.4 Topic Alias: set with a topic, then used with an empty topic.
    let r = Roost::start();
    let mut sub = Client::v4(&r.addr(), "alias-sub");
    sub.subscribe(1, &[("al/#", 0)]);
    let mut p = Client::v5(&r.addr(), "alias-pub");
    p.publish(&Publish::new("al/t", b"one").props(Props::new().u16(P_TOPIC_ALIAS, 3)));
    p.publish(&Publish::new("", b"two").props(Props::new().u16(P_TOPIC_ALIAS, 3)));
    // Re-map alias 3 to another topic.
    p.publish(&Publish::new("al/u", b"three").props(Props::new().u16(P_TOPIC_ALIAS, 3)));
    p.publish(
        &Publish::new("", b"four")
            .qos(1, 1)
            .props(Props::new().u16(P_TOPIC_ALIAS, 3)),
    );
    let got: Vec<(String, Vec<u8>)> = (0..4)
        .map(|_| {
            let m = sub.expect_publish();
            (m.topic_str(), m.payload)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("al/t".into(), b"one".to_vec()),
            ("al/t".into(), b"two".to_vec()),
            ("al/u".into(), b"three".to_vec()),
            ("al/u".into(), b"four".to_vec()),
        ]
    );
}

#[test]
fn v5_topic_alias_0_or_over_maximum_gets_disconnect_0x94() {
    // v5 [MQTT-3.3.2-8] alias 0 not permitted; [MQTT-3.3.2-9] alias > Topic Alias Maximum (10).
    let r = Roost::start();
    for alias in [0u16, 11] {
        let mut c = Client::v5(&r.addr(), &format!("alias-bad-{alias}"));
        c.send(
            &Publish::new("al/x", b"x")
                .props(Props::new().u16(P_TOPIC_ALIAS, alias))
                .encode(true),
        );
        c.expect_disconnect(0x94);
    }
    // Empty topic with an alias never set: protocol error (0x82).
    let mut c = Client::v5(&r.addr(), "alias-unset");
    c.send(
        &Publish::new("", b"x")
            .props(Props::new().u16(P_TOPIC_ALIAS, 5))
            .encode(true),
    );
    c.expect_disconnect(0x82);
}

#[test]
fn v5_connect_with_authentication_method_gets_connack_0x8c() {
    // v5 [MQTT-4.12.0-1] unsupported Authentication Method -> 0x8C (or 0x87), close.
    let r = Roost::start();
    let mut c = Client::open(&r.addr());
    let connect = Connect::v5("auth").props(
        Props::new()
            .str(P_AUTH_METHOD, "SCRAM-SHA-1")
            .bin(P_AUTH_DATA, b"n,,"),
    );
    c.send(&connect.encode());
    let got = c.expect_closed();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].connack(true).code, 0x8C, "{got:?}");
}

// ------------------------------------------------------------ shutdown

#[test]
fn sigterm_sends_v5_disconnect_0x8b_and_exits_0() {
    // Contract: SIGTERM -> v5 DISCONNECT 0x8B (Server shutting down), all closed, exit 0 within ~2 s.
    let mut r = Roost::start();
    let mut v5 = Client::v5(&r.addr(), "term5");
    let mut v4 = Client::v4(&r.addr(), "term4");
    v5.ping();
    v4.ping();
    let t0 = Instant::now();
    let status = r
        .signal_and_wait(SIGTERM)
        .expect("roost did not exit after SIGTERM");
    let took = t0.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    v5.expect_disconnect(0x8B);
    v4.expect_closed_silently();
}

#[test]
fn sigint_exits_0_promptly() {
    // Contract: SIGINT behaves like SIGTERM; with no clients nothing needs to drain.
    let mut r = Roost::start();
    Client::v4(&r.addr(), "int4").disconnect();
    let t0 = Instant::now();
    let status = r
        .signal_and_wait(SIGINT)
        .expect("roost did not exit after SIGINT");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "idle shutdown took {:?}",
        t0.elapsed()
    );
}

trait RecvExt {
    fn is_timeout(&self) -> bool;
}

impl RecvExt for Recv {
    fn is_timeout(&self) -> bool {
        matches!(self, Recv::Timeout)
    }
}
