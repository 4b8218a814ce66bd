//! Hostile and broken input: malformed packets, truncation, garbage, slow
//! consumers and connection limits. After every case the broker must still
//! be alive and serve a fresh client end to end.
//! Normative statement ids are MQTT 3.1.1 unless marked "v5".

mod common;
#[path = "common/wire.rs"]
mod wire;

use common::Roost;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use wire::*;

/// v5 reason codes.
const MALFORMED: u8 = 0x81;
const PROTOCOL_ERROR: u8 = 0x82;
const TOPIC_NAME_INVALID: u8 = 0x90;

/// The broker is alive and a fresh client can connect, subscribe, publish
/// and receive its own message.
fn assert_serves(r: &mut Roost, after: &str) {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    assert!(r.alive(), "roost died after: {after}");
    let topic = format!("health/{n}");
    let mut c = Client::v4(&r.addr(), &format!("health-{n}"));
    assert_eq!(c.subscribe(1, &[(&topic, 1)]), vec![1], "after: {after}");
    c.publish(&Publish::new(&topic, b"ok").qos(1, 2));
    let m = c.recv_publish_ack();
    assert_eq!(
        (m.topic_str(), m.payload),
        (topic, b"ok".to_vec()),
        "after: {after}"
    );
    c.disconnect();
    assert!(r.alive(), "roost died after: {after}");
}

/// Sends `bytes` on a connection opened with `connect` (raw when None) and
/// checks the broker's reaction:
/// - v3.x: the connection is closed without any packet;
/// - v5 after CONNACK: one DISCONNECT with a reason in `codes`, then close;
/// - v5 CONNECT itself bad: either a CONNACK with a reason in `codes` or a
///   silent close (a DISCONNECT before CONNACK is not allowed, v5 [MQTT-3.2.0-1]).
fn case(r: &mut Roost, what: &str, connect: Option<Connect>, bytes: &[u8], codes: &[u8]) {
    let v5 = connect.as_ref().is_some_and(|c| c.level == 5);
    let mut c = match &connect {
        Some(cn) => Client::connect(&r.addr(), cn).0,
        None => Client::open(&r.addr()),
    };
    c.send(bytes);
    let got = c.expect_closed();
    if v5 {
        assert_eq!(
            got.len(),
            1,
            "{what}: expected one DISCONNECT then close, got {got:?}"
        );
        assert_eq!(got[0].kind(), DISCONNECT, "{what}: {got:?}");
        let reason = got[0].disconnect_reason();
        assert!(
            codes.contains(&reason),
            "{what}: DISCONNECT reason {reason:#04x}, expected one of {codes:02x?}"
        );
    } else {
        assert!(
            got.is_empty(),
            "{what}: expected a silent close, got {got:?}"
        );
    }
    assert_serves(r, what);
}

/// A bad CONNECT (sent as the first packet).
fn connect_case(r: &mut Roost, what: &str, bytes: &[u8], v5: bool, codes: &[u8]) {
    let mut c = Client::open(&r.addr());
    c.send(bytes);
    let got = c.expect_closed();
    if v5 && !got.is_empty() {
        assert_eq!(got.len(), 1, "{what}: {got:?}");
        let ack = got[0].connack(true);
        assert!(
            codes.contains(&ack.code),
            "{what}: CONNACK {:#04x}, expected one of {codes:02x?}",
            ack.code
        );
    } else {
        assert!(
            got.is_empty(),
            "{what}: expected a silent close, got {got:?}"
        );
    }
    assert_serves(r, what);
}

fn v4(id: &str) -> Option<Connect> {
    Some(Connect::v4(id))
}

fn v5(id: &str) -> Option<Connect> {
    Some(Connect::v5(id))
}

/// A PUBLISH with raw topic bytes.
fn publish_raw_topic(topic: &[u8], v5: bool) -> Vec<u8> {
    let mut p = Publish::new("", b"payload");
    p.topic = topic.to_vec();
    p.encode(v5)
}

#[test]
fn remaining_length_longer_than_four_bytes() {
    // [MQTT-2.2.3] at most four bytes; v5 1.5.5: larger is a Malformed Packet.
    let mut r = Roost::start();
    let bad = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F];
    case(
        &mut r,
        "5-byte remaining length first",
        None,
        &[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        &[],
    );
    case(&mut r, "5-byte remaining length v4", v4("rl4"), &bad, &[]);
    case(
        &mut r,
        "5-byte remaining length v5",
        v5("rl5"),
        &bad,
        &[MALFORMED],
    );
}

#[test]
fn reserved_flag_bits_wrong() {
    // [MQTT-2.2.2-2] invalid flags -> close; [MQTT-3.8.1-1] SUBSCRIBE 0010; [MQTT-3.6.1-1] PUBREL 0010;
    // [MQTT-3.10.1-1] UNSUBSCRIBE 0010; v5 2.1.3: invalid flags are a Malformed Packet.
    let mut r = Roost::start();
    let sub = subscribe(1, &[("t", 0)], false, Props::new());
    let sub5 = subscribe(1, &[("t", 0)], true, Props::new());
    let unsub = unsubscribe(1, &["t"], false);
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        (
            "SUBSCRIBE flags 0",
            [&[0x80][..], &sub[1..]].concat(),
            [&[0x80][..], &sub5[1..]].concat(),
        ),
        (
            "SUBSCRIBE flags 3",
            [&[0x83][..], &sub[1..]].concat(),
            [&[0x83][..], &sub5[1..]].concat(),
        ),
        (
            "UNSUBSCRIBE flags 0",
            [&[0xA0][..], &unsub[1..]].concat(),
            packet(0xA0, &[0, 1, 0, 0, 1, b't']),
        ),
        ("PUBREL flags 0", vec![0x60, 2, 0, 1], vec![0x60, 2, 0, 1]),
        ("PUBACK flags 2", vec![0x42, 2, 0, 1], vec![0x42, 2, 0, 1]),
        ("PINGREQ flags 1", vec![0xC1, 0], vec![0xC1, 0]),
        ("DISCONNECT flags 8", vec![0xE8, 0], vec![0xE8, 0]),
    ];
    for (what, b4, b5) in cases {
        case(&mut r, &format!("{what} v4"), v4("flags4"), &b4, &[]);
        case(
            &mut r,
            &format!("{what} v5"),
            v5("flags5"),
            &b5,
            &[MALFORMED],
        );
    }
}

#[test]
fn reserved_packet_types_0_and_15() {
    // 2.2.1: type 0 is reserved/forbidden; 15 is reserved in 3.1.1 (AUTH in v5).
    let mut r = Roost::start();
    case(&mut r, "type 0 first", None, &[0x00, 0x00], &[]);
    case(&mut r, "type 15 first", None, &[0xF0, 0x00], &[]);
    case(&mut r, "type 0 v4", v4("t0"), &[0x00, 0x00], &[]);
    case(&mut r, "type 15 v4", v4("t15"), &[0xF0, 0x00], &[]);
    case(
        &mut r,
        "type 0 v5",
        v5("t0-5"),
        &[0x00, 0x00],
        &[MALFORMED, PROTOCOL_ERROR],
    );
}

#[test]
fn publish_qos_3() {
    // [MQTT-3.3.1-4] QoS 3 -> close; v5 3.3.1.2: Malformed Packet.
    let mut r = Roost::start();
    let mut body4 = lp(b"q3/t");
    body4.extend([0, 1]);
    body4.extend(b"x");
    let mut body5 = lp(b"q3/t");
    body5.extend([0, 1, 0]);
    body5.extend(b"x");
    case(
        &mut r,
        "PUBLISH QoS 3 v4",
        v4("q3"),
        &packet(0x36, &body4),
        &[],
    );
    case(
        &mut r,
        "PUBLISH QoS 3 v5",
        v5("q3-5"),
        &packet(0x36, &body5),
        &[MALFORMED],
    );
}

#[test]
fn invalid_utf8_and_nul_in_topic() {
    // [MQTT-1.5.3-1] ill-formed UTF-8 / surrogates; [MQTT-1.5.3-2] U+0000; v5 1.5.4: Malformed Packet.
    let mut r = Roost::start();
    let topics: [(&str, &[u8]); 4] = [
        ("invalid UTF-8 0xFF", b"a/\xFF\xFE"),
        ("UTF-16 surrogate", b"a/\xED\xA0\x80"),
        ("overlong encoding", b"a/\xC0\xAF"),
        ("U+0000", b"a\x00b"),
    ];
    for (what, topic) in topics {
        case(
            &mut r,
            &format!("PUBLISH {what} v4"),
            v4("utf4"),
            &publish_raw_topic(topic, false),
            &[],
        );
        case(
            &mut r,
            &format!("PUBLISH {what} v5"),
            v5("utf5"),
            &publish_raw_topic(topic, true),
            &[MALFORMED],
        );
        let mut body = vec![0, 1];
        body.extend(lp(topic));
        body.push(0);
        case(
            &mut r,
            &format!("SUBSCRIBE {what} v4"),
            v4("utf4s"),
            &packet(0x82, &body),
            &[],
        );
    }
}

#[test]
fn wildcard_in_publish_topic() {
    // [MQTT-3.3.2-2] Topic Name must not contain wildcards.
    let mut r = Roost::start();
    for topic in ["a/+", "a/#", "#", "+/b"] {
        case(
            &mut r,
            &format!("PUBLISH {topic} v4"),
            v4("wc4"),
            &Publish::new(topic, b"x").encode(false),
            &[],
        );
        case(
            &mut r,
            &format!("PUBLISH {topic} v5"),
            v5("wc5"),
            &Publish::new(topic, b"x").encode(true),
            &[MALFORMED, PROTOCOL_ERROR, TOPIC_NAME_INVALID],
        );
    }
}

#[test]
fn empty_topic_name() {
    // [MQTT-4.7.3-1] at least one character (3.1.1); v5 3.3.2.1: empty topic without alias is a Protocol Error.
    let mut r = Roost::start();
    case(
        &mut r,
        "empty topic v4",
        v4("et4"),
        &Publish::new("", b"x").encode(false),
        &[],
    );
    case(
        &mut r,
        "empty topic QoS 1 v4",
        v4("et4q"),
        &Publish::new("", b"x").qos(1, 1).encode(false),
        &[],
    );
    case(
        &mut r,
        "empty topic v5",
        v5("et5"),
        &Publish::new("", b"x").encode(true),
        &[PROTOCOL_ERROR],
    );
}

#[test]
fn subscribe_and_unsubscribe_without_filters() {
    // [MQTT-3.8.3-3] at least one filter; [MQTT-3.10.3-2] likewise for UNSUBSCRIBE;
    // v5 3.8.3 / 3.10.3: no payload is a Protocol Error.
    let mut r = Roost::start();
    case(
        &mut r,
        "SUBSCRIBE no filters v4",
        v4("nf4"),
        &packet(0x82, &[0, 1]),
        &[],
    );
    case(
        &mut r,
        "SUBSCRIBE no filters v5",
        v5("nf5"),
        &packet(0x82, &[0, 1, 0]),
        &[PROTOCOL_ERROR],
    );
    case(
        &mut r,
        "UNSUBSCRIBE no filters v4",
        v4("nu4"),
        &packet(0xA2, &[0, 1]),
        &[],
    );
    case(
        &mut r,
        "UNSUBSCRIBE no filters v5",
        v5("nu5"),
        &packet(0xA2, &[0, 1, 0]),
        &[PROTOCOL_ERROR],
    );
    // SUBSCRIBE with options QoS 3 ([MQTT-3.8.3-4]); v5 3.8.3.1: Maximum QoS 3 is a Protocol Error.
    case(
        &mut r,
        "SUBSCRIBE QoS 3 v4",
        v4("sq4"),
        &subscribe(1, &[("t", 3)], false, Props::new()),
        &[],
    );
    case(
        &mut r,
        "SUBSCRIBE QoS 3 v5",
        v5("sq5"),
        &subscribe(1, &[("t", 3)], true, Props::new()),
        &[PROTOCOL_ERROR],
    );
    // Packet identifier 0 ([MQTT-2.3.1-1]).
    case(
        &mut r,
        "SUBSCRIBE pid 0 v4",
        v4("sp4"),
        &subscribe(0, &[("t", 0)], false, Props::new()),
        &[],
    );
}

#[test]
fn connect_reserved_flag_set() {
    // [MQTT-3.1.2-3] reserved connect flag must be 0; v5 3.1.2.3: Malformed Packet.
    let mut r = Roost::start();
    connect_case(
        &mut r,
        "CONNECT reserved flag v4",
        &Connect::v4("rf4").extra_flags(0x01).encode(),
        false,
        &[],
    );
    connect_case(
        &mut r,
        "CONNECT reserved flag v3",
        &Connect::v3("rf3").extra_flags(0x01).encode(),
        false,
        &[],
    );
    connect_case(
        &mut r,
        "CONNECT reserved flag v5",
        &Connect::v5("rf5").extra_flags(0x01).encode(),
        true,
        &[MALFORMED],
    );
}

#[test]
fn connect_will_flags_inconsistent() {
    // [MQTT-3.1.2-11] [MQTT-3.1.2-13] Will Flag 0 -> Will QoS 0; [MQTT-3.1.2-15] -> Will Retain 0;
    // [MQTT-3.1.2-14] Will QoS 3 not allowed; [MQTT-3.1.2-22] password without user name (3.1.1).
    let mut r = Roost::start();
    let cases: Vec<(&str, Connect)> = vec![
        (
            "will QoS 1 without will flag",
            Connect::v4("wf").extra_flags(0x08),
        ),
        (
            "will QoS 2 without will flag",
            Connect::v4("wf").extra_flags(0x10),
        ),
        (
            "will retain without will flag",
            Connect::v4("wf").extra_flags(0x20),
        ),
        (
            "will QoS 3",
            Connect::v4("wf").will(Will::new("w/t", b"x").qos(3)),
        ),
    ];
    for (what, c) in cases {
        connect_case(&mut r, &format!("{what} v4"), &c.encode(), false, &[]);
        let mut c5 = c.clone();
        c5.level = 5;
        connect_case(
            &mut r,
            &format!("{what} v5"),
            &c5.encode(),
            true,
            &[MALFORMED, PROTOCOL_ERROR],
        );
    }
    let mut c = Connect::v4("pw");
    c.password = Some(b"secret".to_vec());
    connect_case(
        &mut r,
        "password without user name v4",
        &c.encode(),
        false,
        &[],
    );
    // Will flag set but the payload ends before the will fields.
    let mut bytes = Connect::v4("trunc-will").encode();
    bytes[9] |= 0x04; // connect flags byte: header(2) + "MQTT"(6) + level(1)
    connect_case(
        &mut r,
        "will flag with missing will fields v4",
        &bytes,
        false,
        &[],
    );
}

#[test]
fn v5_duplicate_properties() {
    // v5 2.2.2.2: including a property more than once (other than User Property /
    // Subscription Identifier where allowed) is a Protocol Error.
    let mut r = Roost::start();
    let twice = Props::new()
        .u32(P_SESSION_EXPIRY, 10)
        .u32(P_SESSION_EXPIRY, 20);
    let bytes = Connect::v5("dupprop").props(twice).encode();
    connect_case(
        &mut r,
        "CONNECT with two Session Expiry Interval",
        &bytes,
        true,
        &[PROTOCOL_ERROR],
    );
    let twice = Props::new()
        .u16(P_RECEIVE_MAXIMUM, 10)
        .u16(P_RECEIVE_MAXIMUM, 10);
    let bytes = Connect::v5("dupprop").props(twice).encode();
    connect_case(
        &mut r,
        "CONNECT with two Receive Maximum",
        &bytes,
        true,
        &[PROTOCOL_ERROR],
    );
    let p = Publish::new("dp/t", b"x").props(
        Props::new()
            .u32(P_MESSAGE_EXPIRY, 5)
            .u32(P_MESSAGE_EXPIRY, 6),
    );
    case(
        &mut r,
        "PUBLISH with two Message Expiry Interval",
        v5("dupprop-p"),
        &p.encode(true),
        &[PROTOCOL_ERROR],
    );
    let s = subscribe(
        1,
        &[("t", 0)],
        true,
        Props::new()
            .varint(P_SUBSCRIPTION_ID, 1)
            .varint(P_SUBSCRIPTION_ID, 2),
    );
    case(
        &mut r,
        "SUBSCRIBE with two Subscription Identifiers",
        v5("dupprop-s"),
        &s,
        &[PROTOCOL_ERROR],
    );
    // A property not allowed in the packet (Assigned Client Identifier in CONNECT).
    let bytes = Connect::v5("badprop")
        .props(Props::new().str(P_ASSIGNED_CLIENT_ID, "x"))
        .encode();
    connect_case(
        &mut r,
        "CONNECT with Assigned Client Identifier",
        &bytes,
        true,
        &[MALFORMED, PROTOCOL_ERROR],
    );
    // Unknown property id.
    let bytes = Connect::v5("badprop").props(Props(vec![0x7F, 0])).encode();
    connect_case(
        &mut r,
        "CONNECT with unknown property 0x7F",
        &bytes,
        true,
        &[MALFORMED, PROTOCOL_ERROR],
    );
    // Property length running past the packet.
    let mut body = lp(b"dp/t");
    body.extend([20, P_MESSAGE_EXPIRY, 0, 0]);
    case(
        &mut r,
        "PUBLISH property length past end",
        v5("badprop-p"),
        &packet(0x30, &body),
        &[MALFORMED],
    );
}

#[test]
fn truncated_packets_then_close() {
    // The peer closes mid-packet: the broker must clean up and carry on.
    let mut r = Roost::start();
    let connect = Connect::v4("trunc")
        .will(Will::new("trunc/will", b"w"))
        .encode();
    let publish = Publish::new("trunc/t", &[7u8; 100]).qos(1, 1).encode(false);
    let cases: Vec<(&str, Option<Connect>, Vec<u8>)> = vec![
        ("one byte", None, vec![0x10]),
        ("CONNECT header only", None, connect[..2].to_vec()),
        (
            "half a CONNECT",
            None,
            connect[..connect.len() / 2].to_vec(),
        ),
        (
            "CONNECT minus one byte",
            None,
            connect[..connect.len() - 1].to_vec(),
        ),
        (
            "partial remaining length",
            v4("trunc-rl"),
            vec![0x30, 0x80, 0x80],
        ),
        (
            "half a PUBLISH",
            v4("trunc-p"),
            publish[..publish.len() / 2].to_vec(),
        ),
        (
            "PUBLISH minus one byte",
            v5("trunc-p5"),
            publish[..publish.len() - 1].to_vec(),
        ),
        ("SUBSCRIBE header only", v4("trunc-s"), vec![0x82, 10]),
    ];
    for (what, connect, bytes) in cases {
        let mut c = match &connect {
            Some(cn) => Client::connect(&r.addr(), cn).0,
            None => Client::open(&r.addr()),
        };
        c.send(&bytes);
        let _ = c.stream.shutdown(Shutdown::Write);
        let got = c.expect_closed();
        assert!(
            got.iter().all(|p| p.kind() == DISCONNECT),
            "{what}: {got:?}"
        );
        assert_serves(&mut r, what);
    }
}

#[test]
fn truncated_packet_then_silence_closed_by_keep_alive() {
    // [MQTT-3.1.2-24] a partial packet is not a control packet: keep-alive still expires.
    let mut r = Roost::start();
    let (mut c, _) = Client::connect(&r.addr(), &Connect::v4("trunc-ka").keep_alive(1));
    c.send(&[0x30, 0x0A, 0x00]);
    let t0 = Instant::now();
    let got = c.expect_closed_within(Duration::from_secs(5));
    assert!(got.is_empty(), "{got:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(1000),
        "closed too early: {:?}",
        t0.elapsed()
    );
    assert_serves(&mut r, "truncated packet then silence (keep-alive)");
}

#[test]
fn truncated_connect_then_silence_closed_by_connect_timeout() {
    // Contract: connect_timeout closes a connection that never completes its CONNECT.
    let mut r =
        Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\nconnect_timeout 1\n");
    let connect = Connect::v4("trunc-ct").encode();
    for bytes in [connect[..5].to_vec(), vec![0x10]] {
        let mut c = Client::open(&r.addr());
        c.send(&bytes);
        let got = c.expect_closed_within(Duration::from_secs(5));
        assert!(got.is_empty(), "{got:?}");
        assert_serves(&mut r, "truncated CONNECT then silence");
    }
}

#[test]
fn random_garbage_does_not_crash_broker() {
    let mut r = Roost::start();
    for seed in 1..=8u64 {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x1000_0000_01B3));
        let len = 1 + (rng.next() % 2048) as usize;

        // 1. Pure noise as the first bytes of a connection.
        let noise = rng.bytes(len);
        garbage_case(&mut r, &format!("seed {seed}: noise"), None, &noise);

        // 2. A CONNECT fixed header with a well-formed length and a random body.
        let body_len = (rng.next() % 200) as usize;
        let body = rng.bytes(body_len);
        garbage_case(
            &mut r,
            &format!("seed {seed}: CONNECT random body"),
            None,
            &packet(0x10, &body),
        );

        // 2b. A CONNECT whose protocol name and level are right but the rest is random.
        let mut body = lp(b"MQTT");
        body.push(if seed % 2 == 0 { 4 } else { 5 });
        body.extend(rng.bytes(body_len));
        garbage_case(
            &mut r,
            &format!("seed {seed}: CONNECT valid prefix"),
            None,
            &packet(0x10, &body),
        );

        // 3. After a valid v3.1.1 / v5 CONNECT: random packets with correct lengths.
        for connect in [Connect::v4("garbage4"), Connect::v5("garbage5")] {
            let mut bytes = Vec::new();
            for _ in 0..8 {
                let first = (rng.next() as u8) & 0xF0 | (rng.next() as u8 & 0x0F);
                // Keep CONNECT out: a second CONNECT just closes (tested elsewhere).
                let first = if first >> 4 == CONNECT {
                    first ^ 0x30
                } else {
                    first
                };
                let n = (rng.next() % 64) as usize;
                bytes.extend(packet(first, &rng.bytes(n)));
            }
            let what = format!(
                "seed {seed}: random packets after CONNECT v{}",
                connect.level
            );
            garbage_case(&mut r, &what, Some(connect), &bytes);
        }

        // 4. After a valid CONNECT: pure noise.
        let noise = rng.bytes(len);
        garbage_case(
            &mut r,
            &format!("seed {seed}: noise after CONNECT"),
            Some(Connect::v4("garbage-n")),
            &noise,
        );
    }
}

/// Sends garbage, half-closes, and waits (bounded) for the broker to close.
fn garbage_case(r: &mut Roost, what: &str, connect: Option<Connect>, bytes: &[u8]) {
    let mut c = match &connect {
        Some(cn) => Client::connect(&r.addr(), cn).0,
        None => Client::open(&r.addr()),
    };
    c.send(bytes);
    let _ = c.stream.shutdown(Shutdown::Write);
    // Whatever comes back (SUBACKs, DISCONNECT...), the connection must end.
    let _ = c.expect_closed();
    assert_serves(r, what);
}

#[test]
fn client_that_never_reads_cannot_grow_memory_without_bound() {
    // Contract: what a client that never reads is owed waits in its queue
    // (max_queued_messages) and its output (max_outgoing_bytes); the
    // publisher is read more slowly meanwhile, for at most
    // slow_subscriber_timeout, after which the stuck client alone drops.
    let mut r = Roost::with_config(
        "listener 0 127.0.0.1\nallow_anonymous true\nmax_outgoing_bytes 65536\nslow_subscriber_timeout 1\n",
    );
    let mut slow = Client::v4(&r.addr(), "never-reads");
    assert_eq!(slow.subscribe(1, &[("slow/t", 0)]), vec![0]);
    let mut fast = Client::v4(&r.addr(), "fast");
    assert_eq!(fast.subscribe(1, &[("fast/t", 0)]), vec![0]);
    let base = r.rss_kib();

    const MESSAGES: usize = 64_000;
    const BATCH: usize = 64;
    let mut p = Client::v4(&r.addr(), "flooder");
    let one = Publish::new("slow/t", &[0x5A; 1024]).encode(false);
    let batch: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * BATCH)
        .collect();
    let t0 = Instant::now();
    for _ in 0..MESSAGES / BATCH {
        p.try_send(&batch)
            .expect("broker must keep reading from the publisher");
    }
    p.ping(); // everything published has been processed
    let flood = t0.elapsed();

    let t1 = Instant::now();
    p.pub0("fast/t", b"still here");
    assert_eq!(fast.expect_publish().payload, b"still here");
    let latency = t1.elapsed();
    assert!(
        latency < Duration::from_secs(2),
        "other clients starved: {latency:?}"
    );

    let peak = r.peak_rss_kib();
    let growth_kib = peak.saturating_sub(base);
    eprintln!("flood of {MESSAGES} x 1 KiB took {flood:?}; RSS base {base} KiB, peak {peak} KiB");
    assert!(
        growth_kib < 32 * 1024,
        "RSS grew by {growth_kib} KiB for a client that never reads ({MESSAGES} KiB published)"
    );
    assert_serves(&mut r, "slow consumer flood");
    drop(slow);
}

#[test]
fn max_connections_closes_the_extra_connection() {
    // Contract: `max_connections 2` -> the third connection is closed at once.
    let mut r =
        Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\nmax_connections 2\n");
    let mut a = Client::v4(&r.addr(), "mc-a");
    let mut b = Client::v4(&r.addr(), "mc-b");
    let mut c = Client::open(&r.addr());
    c.send(&Connect::v4("mc-c").encode());
    let got = c.expect_closed();
    assert!(
        got.iter()
            .all(|p| p.kind() == CONNACK && p.connack(false).code != 0),
        "third connection must not be accepted: {got:?}"
    );
    // The first two are unaffected.
    assert_eq!(a.subscribe(1, &[("mc/t", 1)]), vec![1]);
    b.publish(&Publish::new("mc/t", b"ab").qos(1, 1));
    assert_eq!(a.recv_publish_ack().payload, b"ab");
    a.disconnect();
    b.disconnect();
    assert_serves(&mut r, "max_connections");
}

/// User plus system CPU time of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn out_of_file_descriptors_neither_spins_nor_crashes() {
    // 24 descriptors: stdio, epoll, signalfd and the listener leave a few
    // for clients; 40 connections exhaust them (EMFILE on accept).
    let mut r = Roost::spawn_limited(&["-p", "0"], None, Some(24));
    let held: Vec<std::net::TcpStream> = (0..40)
        .map(|_| std::net::TcpStream::connect(r.addr()).unwrap())
        .collect();
    assert!(
        common::wait_until(|| r.log().iter().any(|l| l.contains("accept failed"))),
        "expected an accept failure to be logged: {:?}",
        r.log()
    );
    // Waiting for descriptors must not busy-loop: over one second the
    // broker uses a small fraction of a CPU (a spin would use all of it).
    let before = cpu_ticks(r.pid());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(r.pid()) - before;
    assert!(
        used < 50,
        "{used} ticks of CPU in 1 s while out of descriptors"
    );
    drop(held);
    assert_serves(&mut r, "running out of file descriptors");
}
