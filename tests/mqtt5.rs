//! MQTT 5 features beyond the basics, over real sockets with the
//! hand-written wire client: shared subscriptions, flow control, payload
//! format, outbound topic aliases, reason strings.

mod common;
#[path = "common/wire.rs"]
mod wire;

use common::Roost;
use wire::*;

fn int(props: &[Prop], id: u8) -> Option<u32> {
    match find_prop(props, id) {
        Some(PropValue::Int(n)) => Some(*n),
        _ => None,
    }
}

#[test]
fn shared_subscription_gives_each_message_to_one_member() {
    // MQTT 5.0 4.8.2: one member per message; members may differ in QoS.
    let r = Roost::start();
    let mut a = Client::v5(&r.addr(), "share-a");
    let mut b = Client::v5(&r.addr(), "share-b");
    assert_eq!(a.subscribe(1, &[("$share/g/sensors/+", 0)]), vec![0]);
    assert_eq!(b.subscribe(1, &[("$share/g/sensors/+", 1)]), vec![1]);
    let mut p = Client::v5(&r.addr(), "share-pub");
    for i in 0..10u16 {
        p.publish(&Publish::new("sensors/t", &i.to_be_bytes()).qos(1, i + 1));
    }
    let mut got = Vec::new();
    for (c, qos) in [(&mut a, 0), (&mut b, 1)] {
        for _ in 0..5 {
            let m = c.recv_publish_ack();
            assert_eq!(m.qos, qos, "each member at its own QoS");
            got.push(u16::from_be_bytes([m.payload[0], m.payload[1]]));
        }
        c.ping(); // nothing more is queued for it
        c.expect_silence(std::time::Duration::from_millis(100));
    }
    got.sort();
    assert_eq!(
        got,
        (0..10).collect::<Vec<u16>>(),
        "each message exactly once"
    );
}

#[test]
fn shared_subscription_rules() {
    let r = Roost::start();
    let mut c = Client::v5(&r.addr(), "share-rules");
    // [MQTT-4.8.2-1]: the share name may not hold wildcards.
    assert_eq!(
        c.subscribe(1, &[("$share/g#/t", 0), ("$share/g", 0)]),
        vec![0x8F, 0x8F]
    );
    // [MQTT-3.8.3-4]: No Local on a shared subscription is a protocol error.
    let no_local = 0x04;
    c.send(&subscribe(
        2,
        &[("$share/g/t", no_local)],
        true,
        Props::new(),
    ));
    c.expect_disconnect(0x82);
}

#[test]
fn receive_maximum_is_advertised_and_enforced() {
    let r =
        Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 2\n");
    let (mut c, ack) = Client::connect(&r.addr(), &Connect::v5("rx-max"));
    assert_eq!(int(&ack.props, P_RECEIVE_MAXIMUM), Some(2));
    for pid in 1..=2 {
        c.send(&Publish::new("t", b"x").qos(2, pid).encode(true));
        assert_eq!(c.expect_kind(PUBREC).pid(), pid);
    }
    // A third QoS 2 flow before any PUBREL: [MQTT-3.3.4-8].
    c.send(&Publish::new("t", b"x").qos(2, 3).encode(true));
    c.expect_disconnect(0x93);
}

#[test]
fn payload_format_indicator_utf8_is_checked() {
    let r = Roost::start();
    let mut sub = Client::v5(&r.addr(), "pfi-sub");
    sub.subscribe(1, &[("pfi/#", 1)]);
    let mut c = Client::v5(&r.addr(), "pfi-pub");
    let bad = Publish::new("pfi/a", &[0xff, 0xfe]).props(Props::new().byte(P_PAYLOAD_FORMAT, 1));
    c.send(&bad.clone().qos(1, 7).encode(true));
    let ack = c.expect_kind(PUBACK);
    assert_eq!((ack.pid(), ack.ack_reason()), (7, 0x99));
    // Valid UTF-8 with the same indicator passes, and is the first thing
    // the subscriber sees: the bad one was not forwarded.
    let good =
        Publish::new("pfi/a", "21.5 °C".as_bytes()).props(Props::new().byte(P_PAYLOAD_FORMAT, 1));
    c.publish(&good.qos(1, 8));
    let m = sub.recv_publish_ack();
    assert_eq!(m.payload, "21.5 °C".as_bytes());
    assert_eq!(
        int(&m.props, P_PAYLOAD_FORMAT),
        Some(1),
        "forwarded unchanged"
    );
    // QoS 0 has no ack to refuse in: DISCONNECT 0x99.
    c.send(&bad.encode(true));
    c.expect_disconnect(0x99);
}

#[test]
fn outbound_topic_aliases_when_enabled() {
    let r = Roost::with_config(
        "listener 0 127.0.0.1\nallow_anonymous true\noutbound_topic_aliases true\n",
    );
    let connect = Connect::v5("alias-sub").props(Props::new().u16(P_TOPIC_ALIAS_MAXIMUM, 1));
    let (mut sub, _) = Client::connect(&r.addr(), &connect);
    sub.subscribe(1, &[("home/#", 0)]);
    let mut p = Client::v5(&r.addr(), "alias-pub");
    for topic in ["home/kitchen/temp", "home/kitchen/temp", "home/hall/temp"] {
        p.pub0(topic, b"1");
    }
    let got: Vec<(String, Option<u32>)> = (0..3)
        .map(|_| {
            let m = sub.expect_publish();
            (m.topic_str(), int(&m.props, P_TOPIC_ALIAS))
        })
        .collect();
    assert_eq!(
        got,
        [
            ("home/kitchen/temp".into(), Some(1)),
            ("".into(), Some(1)),
            ("home/hall/temp".into(), None), // over the client's maximum of 1
        ]
    );
}

#[test]
fn no_outbound_topic_aliases_by_default() {
    let r = Roost::start();
    let connect = Connect::v5("noalias").props(Props::new().u16(P_TOPIC_ALIAS_MAXIMUM, 5));
    let (mut sub, _) = Client::connect(&r.addr(), &connect);
    sub.subscribe(1, &[("t", 0)]);
    let mut p = Client::v5(&r.addr(), "noalias-pub");
    p.pub0("t", b"1");
    p.pub0("t", b"2");
    for _ in 0..2 {
        let m = sub.expect_publish();
        assert_eq!(
            (m.topic_str().as_str(), int(&m.props, P_TOPIC_ALIAS)),
            ("t", None)
        );
    }
}

#[test]
fn server_disconnect_says_why() {
    // A Reason String in DISCONNECT is allowed whatever Request Problem
    // Information says ([MQTT-3.1.2-29] limits it only in other packets).
    let r = Roost::start();
    let mut c = Client::v5(&r.addr(), "why");
    c.send(
        &Publish::new("t", b"x")
            .props(Props::new().u16(P_TOPIC_ALIAS, 0))
            .encode(true),
    );
    let got = c.expect_closed();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].disconnect_reason(), 0x94);
    let mut cur = Cursor::new(&got[0].body[1..]);
    let props = cur.props();
    assert!(
        matches!(find_prop(&props, P_REASON_STRING), Some(PropValue::Str(s)) if s.contains("alias")),
        "{props:?}"
    );
}

#[test]
fn subscription_identifier_from_a_client_is_a_protocol_error() {
    // [MQTT-3.3.4-6]
    let r = Roost::start();
    let mut c = Client::v5(&r.addr(), "subid");
    c.send(
        &Publish::new("t", b"x")
            .props(Props::new().varint(P_SUBSCRIPTION_ID, 3))
            .encode(true),
    );
    c.expect_disconnect(0x82);
}
