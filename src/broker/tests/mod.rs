//! The broker core driven by plain calls and a fake clock.

use std::time::{Duration, Instant};

use super::*;

mod pacing;
use crate::protocol::{
    Ack, ConnAck, Connect, Packet, Property, Publish, QoS, ReasonOnly, SubAck, SubOptions,
    Subscribe, Version, Will,
};

struct Harness {
    broker: Broker,
    now: Instant,
}

fn opts(qos: QoS) -> SubOptions {
    SubOptions {
        qos,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
    }
}

fn connect_packet(version: Version, client_id: &str, clean: bool, keep_alive: u16) -> Connect {
    Connect {
        version,
        clean_start: clean,
        bridge: false,
        keep_alive,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: Vec::new(),
    }
}

fn publish(topic: &str, payload: &[u8], qos: QoS, packet_id: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id,
        properties: Vec::new(),
        payload: payload.to_vec(),
    }
}

fn ack(packet_id: u16) -> Ack {
    Ack {
        packet_id,
        reason: 0,
        properties: Vec::new(),
    }
}

/// (topic, qos, packet id, dup, retain) of each PUBLISH to `id` in `out`.
fn published(out: &[Action], id: ConnId) -> Vec<(String, QoS, u16, bool, bool)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Publish(to, d) if *to == id => {
                Some((d.msg.topic.clone(), d.qos, d.packet_id, d.dup, d.retain))
            }
            _ => None,
        })
        .collect()
}

fn closed(out: &[Action], id: ConnId) -> bool {
    out.iter()
        .any(|a| matches!(a, Action::Close(to) if *to == id))
}

fn sent(out: &[Action], id: ConnId) -> Vec<&Packet> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send(to, p) if *to == id => Some(p),
            _ => None,
        })
        .collect()
}

impl Harness {
    fn new() -> Harness {
        Harness::with(Config::default())
    }

    fn with(config: Config) -> Harness {
        Harness {
            broker: Broker::new(config),
            now: Instant::now(),
        }
    }

    fn packet(&mut self, id: ConnId, p: Packet) -> Vec<Action> {
        let mut out = Vec::new();
        self.broker.packet(id, p, self.now, &mut out);
        self.check();
        out
    }

    /// Opens connection `id` and sends `c`; returns the CONNACK.
    fn connect_with(&mut self, id: ConnId, c: Connect) -> (ConnAck, Vec<Action>) {
        self.broker.connected(id, 0, self.now);
        let out = self.packet(id, Packet::Connect(Box::new(c)));
        let connack = out
            .iter()
            .find_map(|a| match a {
                Action::Send(to, Packet::ConnAck(c)) if *to == id => Some(c.clone()),
                _ => None,
            })
            .expect("CONNACK");
        (connack, out)
    }

    fn connect(&mut self, id: ConnId, client_id: &str, clean: bool) -> ConnAck {
        self.connect_with(id, connect_packet(Version::V311, client_id, clean, 0))
            .0
    }

    fn subscribe(&mut self, id: ConnId, filter: &str, o: SubOptions) -> Vec<Action> {
        self.packet(
            id,
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                filters: vec![(filter.into(), o)],
                properties: Vec::new(),
            }),
        )
    }

    fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.now += by;
        let mut out = Vec::new();
        self.broker.tick(self.now, &mut out);
        self.check();
        out
    }

    fn close(&mut self, id: ConnId) -> Vec<Action> {
        let mut out = Vec::new();
        self.broker.closed(id, self.now, &mut out);
        self.check();
        out
    }

    /// Every invariant holds after each call, as seen from the next loop
    /// iterations, whose ticks at the same instant have nothing to fire.
    fn check(&mut self) {
        let mut out = Vec::new();
        for _ in 0..2 {
            self.broker.tick(self.now, &mut out);
        }
        assert!(out.is_empty(), "a tick at the same instant did {out:?}");
        self.broker.check_invariants();
    }
}

#[test]
fn first_packet_must_be_connect() {
    // [MQTT-3.1.0-1]
    let mut h = Harness::new();
    h.broker.connected(1, 0, h.now);
    let out = h.packet(1, Packet::PingReq);
    assert!(closed(&out, 1));
    assert!(sent(&out, 1).is_empty());
}

#[test]
fn second_connect_is_a_protocol_error() {
    // [MQTT-3.1.0-2]
    let mut h = Harness::new();
    h.connect_with(1, connect_packet(Version::V5, "a", true, 0));
    let out = h.packet(
        1,
        Packet::Connect(Box::new(connect_packet(Version::V5, "a", true, 0))),
    );
    assert!(matches!(
        sent(&out, 1)[..],
        [Packet::Disconnect(ReasonOnly { reason: 0x82, .. })]
    ));
    assert!(closed(&out, 1));
}

#[test]
fn empty_client_id_rules() {
    let mut h = Harness::new();
    // [MQTT-3.1.3-8]: 3.1.1 without clean session is refused with 0x02.
    let (ack, out) = h.connect_with(1, connect_packet(Version::V311, "", false, 0));
    assert_eq!(ack.code, 0x02);
    assert!(closed(&out, 1));
    // With clean session an id is assigned silently.
    let (ack, _) = h.connect_with(2, connect_packet(Version::V311, "", true, 0));
    assert_eq!(ack.code, 0);
    // [MQTT-3.1.3-7]: v5 is told the assigned id.
    let (ack, _) = h.connect_with(3, connect_packet(Version::V5, "", true, 0));
    assert_eq!(ack.code, 0);
    assert!(
        ack.properties
            .iter()
            .any(|p| matches!(p, Property::AssignedClientIdentifier(id) if !id.is_empty()))
    );
}

#[test]
fn session_present_only_for_a_kept_session() {
    // [MQTT-3.2.2-1] .. [MQTT-3.2.2-3]
    let mut h = Harness::new();
    assert!(!h.connect(1, "c", false).session_present);
    h.close(1);
    assert!(h.connect(2, "c", false).session_present);
    h.close(2);
    assert!(
        !h.connect(3, "c", true).session_present,
        "clean session discards it"
    );
}

#[test]
fn keep_alive_closes_after_one_and_a_half_times() {
    // [MQTT-3.1.2-24]
    let mut h = Harness::new();
    h.connect_with(1, connect_packet(Version::V5, "k", true, 10));
    assert!(!closed(&h.advance(Duration::from_secs(10)), 1));
    // Activity at 10 s moves the deadline to 25 s.
    assert!(matches!(
        h.packet(1, Packet::PingReq)[..],
        [Action::Send(1, Packet::PingResp)]
    ));
    assert!(!closed(&h.advance(Duration::from_millis(14_900)), 1));
    let out = h.advance(Duration::from_millis(100));
    assert!(matches!(
        sent(&out, 1)[..],
        [Packet::Disconnect(ReasonOnly { reason: 0x8D, .. })]
    ));
    assert!(closed(&out, 1));
}

#[test]
fn connection_without_connect_times_out() {
    let mut h = Harness::new();
    h.broker.connected(1, 0, h.now);
    assert!(!closed(&h.advance(Duration::from_millis(9_999)), 1));
    assert!(closed(&h.advance(Duration::from_millis(1)), 1));
    assert_eq!(h.broker.next_deadline(), None, "nothing left to wake for");
}

fn will(topic: &str, properties: Vec<Property>) -> Option<Will> {
    Some(Will {
        topic: topic.into(),
        payload: b"gone".to_vec(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties,
    })
}

#[test]
fn will_on_abnormal_close_not_after_disconnect() {
    let mut h = Harness::new();
    h.connect(1, "watcher", true);
    h.subscribe(1, "wills/#", opts(QoS::AtLeastOnce));
    let mut c = connect_packet(Version::V311, "dev", true, 0);
    c.will = will("wills/dev", Vec::new());
    h.connect_with(2, c.clone());
    // [MQTT-3.1.2-8]: a network close without DISCONNECT publishes it.
    let out = h.close(2);
    assert_eq!(
        published(&out, 1),
        [("wills/dev".into(), QoS::AtLeastOnce, 1, false, false)]
    );
    // [MQTT-3.1.2-10]: DISCONNECT deletes it.
    h.connect_with(3, c);
    let disconnect = Packet::Disconnect(ReasonOnly {
        reason: 0,
        properties: Vec::new(),
    });
    let out = h.packet(3, disconnect);
    assert!(closed(&out, 3));
    assert!(published(&out, 1).is_empty());
}

#[test]
fn keep_alive_expiry_publishes_the_will() {
    let mut h = Harness::new();
    h.connect(1, "watcher", true);
    h.subscribe(1, "wills/#", opts(QoS::AtMostOnce));
    let mut c = connect_packet(Version::V311, "dev", true, 2);
    c.will = will("wills/dev", Vec::new());
    h.connect_with(2, c);
    let out = h.advance(Duration::from_secs(3));
    assert!(closed(&out, 2));
    assert_eq!(published(&out, 1).len(), 1);
}

#[test]
fn will_delay_is_cancelled_by_a_reconnect() {
    // [MQTT-3.1.3-9]
    let mut h = Harness::new();
    h.connect(1, "watcher", true);
    h.subscribe(1, "wills/#", opts(QoS::AtMostOnce));
    let mut c = connect_packet(Version::V5, "dev", false, 0);
    c.properties = vec![Property::SessionExpiryInterval(100)];
    c.will = will("wills/dev", vec![Property::WillDelayInterval(5)]);
    h.connect_with(2, c.clone());
    assert!(published(&h.close(2), 1).is_empty());
    assert!(published(&h.advance(Duration::from_secs(3)), 1).is_empty());
    h.connect_with(3, c);
    assert!(published(&h.advance(Duration::from_secs(10)), 1).is_empty());
    // Without a reconnect it goes out when the delay ends.
    assert!(published(&h.close(3), 1).is_empty());
    assert_eq!(published(&h.advance(Duration::from_secs(5)), 1).len(), 1);
}

#[test]
fn session_expiry_ends_the_session() {
    let mut h = Harness::new();
    let mut c = connect_packet(Version::V5, "s", false, 0);
    c.properties = vec![Property::SessionExpiryInterval(5)];
    h.connect_with(1, c.clone());
    h.close(1);
    h.advance(Duration::from_secs(4));
    let (ack, _) = h.connect_with(2, c.clone());
    assert!(ack.session_present, "within the expiry interval");
    h.close(2);
    h.advance(Duration::from_secs(5));
    let (ack, _) = h.connect_with(3, c);
    assert!(!ack.session_present, "expired");
}

#[test]
fn takeover_closes_the_old_connection_with_0x8e() {
    // [MQTT-3.1.4-3]
    let mut h = Harness::new();
    h.connect_with(1, connect_packet(Version::V5, "same", true, 0));
    let (_, out) = h.connect_with(2, connect_packet(Version::V5, "same", true, 0));
    assert!(matches!(
        sent(&out, 1)[..],
        [Packet::Disconnect(ReasonOnly { reason: 0x8E, .. })]
    ));
    assert!(closed(&out, 1));
    assert!(!closed(&out, 2));
    assert_eq!(h.broker.clients(), 1);
}

#[test]
fn qos2_inbound_is_delivered_exactly_once() {
    // [MQTT-4.3.3-10]: a re-sent PUBLISH before PUBREL is not a new message.
    let mut h = Harness::new();
    h.connect(1, "sub", true);
    h.subscribe(1, "t", opts(QoS::ExactlyOnce));
    h.connect(2, "pub", true);
    let out = h.packet(2, Packet::Publish(publish("t", b"x", QoS::ExactlyOnce, 7)));
    assert_eq!(published(&out, 1).len(), 1);
    assert!(matches!(
        sent(&out, 2)[..],
        [Packet::PubRec(Ack { packet_id: 7, .. })]
    ));
    let mut again = publish("t", b"x", QoS::ExactlyOnce, 7);
    again.dup = true;
    let out = h.packet(2, Packet::Publish(again));
    assert!(published(&out, 1).is_empty());
    assert!(matches!(
        sent(&out, 2)[..],
        [Packet::PubRec(Ack { packet_id: 7, .. })]
    ));
    let out = h.packet(2, Packet::PubRel(ack(7)));
    assert!(matches!(
        sent(&out, 2)[..],
        [Packet::PubComp(Ack {
            packet_id: 7,
            reason: 0,
            ..
        })]
    ));
    // After PUBREL the id is free for a new message.
    let out = h.packet(2, Packet::Publish(publish("t", b"y", QoS::ExactlyOnce, 7)));
    assert_eq!(published(&out, 1).len(), 1);
}

#[test]
fn inflight_window_queues_in_order() {
    let mut h = Harness::with(Config {
        max_inflight: 2,
        ..Config::default()
    });
    h.connect(1, "sub", true);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.connect(2, "pub", true);
    let mut ids = Vec::new();
    for i in 0..4u16 {
        let out = h.packet(
            2,
            Packet::Publish(publish("t", &[i as u8], QoS::AtLeastOnce, i + 1)),
        );
        ids.extend(published(&out, 1).into_iter().map(|p| p.2));
    }
    assert_eq!(ids, [1, 2], "window of 2");
    let out = h.packet(1, Packet::PubAck(ack(1)));
    let next: Vec<u16> = published(&out, 1).into_iter().map(|p| p.2).collect();
    assert_eq!(next, [3]);
    let out = h.packet(1, Packet::PubAck(ack(2)));
    let payload: Vec<u8> = out
        .iter()
        .filter_map(|a| match a {
            Action::Publish(1, d) => Some(d.msg.payload[0]),
            _ => None,
        })
        .collect();
    assert_eq!(payload, [3], "the fourth message, in order");
}

#[test]
fn v5_receive_maximum_lowers_the_window() {
    let mut h = Harness::new();
    let mut c = connect_packet(Version::V5, "sub", true, 0);
    c.properties = vec![Property::ReceiveMaximum(1)];
    h.connect_with(1, c);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.connect(2, "pub", true);
    let mut n = 0;
    for i in 1..=3 {
        n += published(
            &h.packet(2, Packet::Publish(publish("t", b"x", QoS::AtLeastOnce, i))),
            1,
        )
        .len();
    }
    assert_eq!(n, 1);
}

#[test]
fn offline_session_queues_and_resends_unacked_with_dup() {
    // [MQTT-4.4.0-1]
    let mut h = Harness::new();
    h.connect(1, "sub", false);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.connect(2, "pub", true);
    h.packet(2, Packet::Publish(publish("t", b"1", QoS::AtLeastOnce, 1)));
    h.close(1);
    h.packet(2, Packet::Publish(publish("t", b"2", QoS::AtLeastOnce, 2)));
    h.packet(2, Packet::Publish(publish("t", b"3", QoS::AtMostOnce, 0)));
    let (ack, out) = h.connect_with(3, connect_packet(Version::V311, "sub", false, 0));
    assert!(ack.session_present);
    let got: Vec<(u16, bool, u8)> = out
        .iter()
        .filter_map(|a| match a {
            Action::Publish(3, d) => Some((d.packet_id, d.dup, d.msg.payload[0])),
            _ => None,
        })
        .collect();
    // The unacknowledged one again with DUP, then the queued one; QoS 0
    // was not queued for the offline session.
    assert_eq!(got, [(1, true, b'1'), (2, false, b'2')]);
}

#[test]
fn qos2_outbound_pubrel_is_resent_on_reconnect() {
    let mut h = Harness::new();
    h.connect(1, "sub", false);
    h.subscribe(1, "t", opts(QoS::ExactlyOnce));
    h.connect(2, "pub", true);
    let out = h.packet(2, Packet::Publish(publish("t", b"x", QoS::ExactlyOnce, 9)));
    let pid = published(&out, 1)[0].2;
    let out = h.packet(1, Packet::PubRec(ack(pid)));
    assert!(matches!(sent(&out, 1)[..], [Packet::PubRel(Ack { .. })]));
    h.close(1);
    let (_, out) = h.connect_with(3, connect_packet(Version::V311, "sub", false, 0));
    assert!(
        matches!(sent(&out, 3)[..], [Packet::ConnAck(_), Packet::PubRel(Ack { packet_id, .. })] if *packet_id == pid)
    );
    assert!(published(&out, 3).is_empty());
    h.packet(3, Packet::PubComp(ack(pid)));
    let s = h.broker.by_client_id["sub"];
    assert!(h.broker.sessions[s].flow().inflight.is_empty());
}

/// The QoS 1/2 state is allocated while a flow is open and freed once all
/// are done: an idle session holds none.
#[test]
fn qos_state_is_freed_once_every_flow_is_done() {
    let mut h = Harness::new();
    let holds = |h: &Harness, client: &str| {
        let s = h.broker.by_client_id[client];
        h.broker.sessions[s].holds_flow()
    };
    h.connect(1, "sub", false);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.connect(2, "pub", true);
    h.packet(2, Packet::Publish(publish("t", b"0", QoS::AtMostOnce, 0)));
    assert!(!holds(&h, "sub"), "QoS 0 needs none");
    // Outbound QoS 1: held until PUBACK.
    let out = h.packet(2, Packet::Publish(publish("t", b"1", QoS::AtLeastOnce, 1)));
    assert!(
        !holds(&h, "pub"),
        "an inbound QoS 1 flow ends with its PUBACK"
    );
    assert!(holds(&h, "sub"));
    let pid = published(&out, 1)[0].2;
    h.packet(1, Packet::PubAck(ack(pid)));
    assert!(!holds(&h, "sub"));
    // Inbound QoS 2: held until PUBREL.
    h.packet(2, Packet::Publish(publish("u", b"2", QoS::ExactlyOnce, 7)));
    assert!(holds(&h, "pub"));
    h.packet(2, Packet::PubRel(ack(7)));
    assert!(!holds(&h, "pub"));
    // Queued for an offline session: held until delivered and acknowledged.
    h.close(1);
    h.packet(2, Packet::Publish(publish("t", b"3", QoS::AtLeastOnce, 2)));
    assert!(holds(&h, "sub"));
    let (_, out) = h.connect_with(3, connect_packet(Version::V311, "sub", false, 0));
    let pid = published(&out, 3)[0].2;
    assert!(holds(&h, "sub"));
    h.packet(3, Packet::PubAck(ack(pid)));
    assert!(!holds(&h, "sub"));
    // Packet ids go on counting after the state was freed.
    let out = h.packet(2, Packet::Publish(publish("t", b"4", QoS::AtLeastOnce, 3)));
    assert_eq!(published(&out, 3)[0].2, pid + 1);
}

#[test]
fn offline_queue_is_bounded() {
    let mut h = Harness::with(Config {
        max_queued: 3,
        ..Config::default()
    });
    h.connect(1, "sub", false);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.close(1);
    h.connect(2, "pub", true);
    for i in 1..=5 {
        h.packet(
            2,
            Packet::Publish(publish("t", &[i], QoS::AtLeastOnce, u16::from(i))),
        );
    }
    assert_eq!(h.broker.stats.publish_dropped, 2);
    let (_, out) = h.connect_with(3, connect_packet(Version::V311, "sub", false, 0));
    assert_eq!(published(&out, 3).len(), 3);
}

#[test]
fn overlapping_subscriptions_deliver_once_at_the_highest_qos() {
    // [MQTT-3.3.4-2], [MQTT-3.3.4-3]
    let mut h = Harness::new();
    h.connect_with(1, connect_packet(Version::V5, "sub", true, 0));
    let mut sub = |filter: &str, qos, id| {
        h.packet(
            1,
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                filters: vec![(filter.into(), opts(qos))],
                properties: vec![Property::SubscriptionIdentifier(id)],
            }),
        )
    };
    sub("a/#", QoS::AtLeastOnce, 1);
    sub("a/b", QoS::ExactlyOnce, 2);
    h.connect(2, "pub", true);
    let out = h.packet(
        2,
        Packet::Publish(publish("a/b", b"x", QoS::ExactlyOnce, 1)),
    );
    let deliveries: Vec<&Delivery> = out
        .iter()
        .filter_map(|a| match a {
            Action::Publish(1, d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].qos, QoS::ExactlyOnce);
    let mut ids: Vec<u32> = deliveries[0]
        .extra
        .iter()
        .filter_map(|p| match p {
            Property::SubscriptionIdentifier(i) => Some(*i),
            _ => None,
        })
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 2]);
}

#[test]
fn retained_messages_are_sent_on_subscribe_and_cleared_by_empty_payload() {
    let mut h = Harness::new();
    h.connect(1, "pub", true);
    let mut p = publish("home/temp", b"21", QoS::AtLeastOnce, 1);
    p.retain = true;
    h.packet(1, Packet::Publish(p.clone()));
    h.connect(2, "sub", true);
    // [MQTT-3.3.1-8]: retained on subscribe carries RETAIN 1, after SUBACK.
    let out = h.subscribe(2, "home/+", opts(QoS::AtMostOnce));
    assert!(matches!(out[0], Action::Send(2, Packet::SubAck(_))));
    assert_eq!(
        published(&out, 2),
        [("home/temp".into(), QoS::AtMostOnce, 0, false, true)]
    );
    // [MQTT-3.3.1-9]: a live delivery carries RETAIN 0.
    let out = h.packet(1, Packet::Publish(p.clone()));
    assert!(!published(&out, 2)[0].4);
    // [MQTT-3.3.1-10]: an empty retained payload clears it.
    p.payload.clear();
    h.packet(1, Packet::Publish(p));
    h.connect(3, "late", true);
    assert!(published(&h.subscribe(3, "home/#", opts(QoS::AtMostOnce)), 3).is_empty());
}

#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards() {
    // [MQTT-4.7.2-1]
    let mut h = Harness::new();
    h.connect(1, "all", true);
    h.subscribe(1, "#", opts(QoS::AtMostOnce));
    h.connect(2, "sys", true);
    h.subscribe(2, "$app/#", opts(QoS::AtMostOnce));
    h.connect(3, "pub", true);
    // (Not `$SYS`: clients may not publish there.)
    let out = h.packet(
        3,
        Packet::Publish(publish("$app/x", b"1", QoS::AtMostOnce, 0)),
    );
    assert!(published(&out, 1).is_empty());
    assert_eq!(published(&out, 2).len(), 1);
}

#[test]
fn invalid_filters_are_refused_per_filter() {
    let mut h = Harness::new();
    h.connect(1, "c", true);
    let out = h.packet(
        1,
        Packet::Subscribe(Subscribe {
            packet_id: 3,
            filters: vec![
                ("a/#/b".into(), opts(QoS::AtLeastOnce)),
                ("a/+".into(), opts(QoS::AtLeastOnce)),
            ],
            properties: Vec::new(),
        }),
    );
    assert!(matches!(&sent(&out, 1)[..], [Packet::SubAck(s)] if s.codes == [0x80, 0x01]));
}

#[test]
fn no_local_and_too_large_messages_are_not_sent() {
    let mut h = Harness::new();
    let mut c = connect_packet(Version::V5, "me", true, 0);
    c.properties = vec![Property::MaximumPacketSize(64)];
    h.connect_with(1, c);
    let mut o = opts(QoS::AtMostOnce);
    o.no_local = true;
    h.subscribe(1, "t", o);
    h.subscribe(1, "u", opts(QoS::AtMostOnce));
    assert!(
        published(
            &h.packet(1, Packet::Publish(publish("t", b"x", QoS::AtMostOnce, 0))),
            1
        )
        .is_empty()
    );
    h.connect(2, "other", true);
    assert_eq!(
        published(
            &h.packet(2, Packet::Publish(publish("t", b"x", QoS::AtMostOnce, 0))),
            1
        )
        .len(),
        1
    );
    // [MQTT-3.1.2-25]: larger than the client's Maximum Packet Size.
    let big = vec![0u8; 100];
    assert!(
        published(
            &h.packet(2, Packet::Publish(publish("u", &big, QoS::AtMostOnce, 0))),
            1
        )
        .is_empty()
    );
    assert_eq!(h.broker.stats.publish_dropped, 1);
}

/// Access control for the tests: users "ok" and "admin" (any password);
/// nobody publishes to `locked/..` or subscribes to `forbidden/..`; only
/// "admin" reads `private/..` and `$SYS/..`.
#[derive(Debug)]
struct Rules;

impl Access for Rules {
    fn authenticate(&self, c: &Credentials) -> bool {
        matches!(c.username, Some("ok" | "admin"))
    }
    fn login(&self, user: &str) -> Option<u64> {
        matches!(user, "ok" | "admin").then_some(0)
    }
    fn may_publish(&self, _: &str, _: Option<&str>, topic: &str) -> bool {
        !topic.starts_with("locked/")
    }
    fn may_read(&self, _: &str, user: Option<&str>, topic: &str) -> bool {
        let guarded = topic.starts_with("private/") || topic.starts_with("$SYS/");
        !guarded || user == Some("admin")
    }
}

/// Lets everyone do everything, but keeps user names.
#[derive(Debug)]
struct Open;

impl Access for Open {
    fn authenticate(&self, _: &Credentials) -> bool {
        true
    }
    fn login(&self, _: &str) -> Option<u64> {
        Some(0)
    }
    fn may_publish(&self, _: &str, _: Option<&str>, _: &str) -> bool {
        true
    }
    fn may_read(&self, _: &str, _: Option<&str>, _: &str) -> bool {
        true
    }
}

fn guarded(access: Rc<dyn Access>, allow_anonymous: bool) -> Harness {
    Harness::with(Config {
        auth: vec![Auth {
            allow_anonymous,
            access: Some(access),
        }],
        ..Config::default()
    })
}

fn as_user(version: Version, client_id: &str, user: &str) -> Connect {
    let mut c = connect_packet(version, client_id, true, 0);
    c.username = Some(user.into());
    c
}

#[test]
fn bad_credentials_are_refused_with_the_right_code() {
    let mut h = guarded(Rc::new(Rules), false);
    // As mosquitto: 3.1.1 gets 0x05 whatever was wrong.
    let (ack, out) = h.connect_with(1, as_user(Version::V311, "a", "bad"));
    assert_eq!(ack.code, 0x05);
    assert!(closed(&out, 1));
    assert_eq!(
        h.connect_with(2, as_user(Version::V311, "b", "ok")).0.code,
        0
    );
    assert_eq!(
        h.connect_with(3, as_user(Version::V5, "c", "bad")).0.code,
        0x86
    );
    let anonymous = |v| connect_packet(v, "d", true, 0);
    assert_eq!(h.connect_with(4, anonymous(Version::V311)).0.code, 0x05);
    assert_eq!(h.connect_with(5, anonymous(Version::V5)).0.code, 0x87);
    let mut h = guarded(Rc::new(Rules), true);
    assert_eq!(h.connect_with(1, anonymous(Version::V5)).0.code, 0);
    assert_eq!(
        h.connect_with(2, as_user(Version::V5, "e", "bad")).0.code,
        0x86
    );
}

#[test]
fn a_certificate_names_the_user_in_place_of_connect() {
    // `Rules` knows users "ok" and "admin" only; a certificate's CN is the
    // user name whatever CONNECT says, and no password is checked.
    let mut h = guarded(Rc::new(Rules), false);
    let origin = |cn: Option<&str>| Origin {
        peer: None,
        identity: Some(cn.map(String::from)),
    };
    let certified = |h: &mut Harness, id, c: Connect, cn: Option<&str>| {
        h.broker.connected(id, 0, h.now);
        let mut out = Vec::new();
        h.broker
            .connect(id, Box::new(c), origin(cn), h.now, &mut out);
        h.check();
        match sent(&out, id)[..] {
            [Packet::ConnAck(ack), ..] => ack.code,
            ref other => panic!("{other:?}"),
        }
    };
    let c = as_user(Version::V5, "a", "ok");
    assert_eq!(certified(&mut h, 1, c, Some("admin")), 0);
    // Read as "admin": it may read private/.. ("ok" may not).
    h.subscribe(1, "private/#", opts(QoS::AtMostOnce));
    h.connect_with(2, as_user(Version::V311, "pub", "ok"));
    let p = publish("private/x", b"1", QoS::AtMostOnce, 0);
    assert_eq!(published(&h.packet(2, Packet::Publish(p)), 1).len(), 1);
    // No certificate: refused, as for a bad password (mosquitto's code).
    let c = as_user(Version::V5, "b", "ok");
    assert_eq!(certified(&mut h, 3, c, None), 0x86);
    let c = as_user(Version::V311, "c", "ok");
    assert_eq!(certified(&mut h, 4, c, None), 0x05);
    // Later packets pass as usual; a second CONNECT is still an error.
    let again = Box::new(as_user(Version::V5, "a", "ok"));
    let mut out = Vec::new();
    h.broker
        .connect(1, again, origin(Some("admin")), h.now, &mut out);
    assert!(closed(&out, 1));
}

#[test]
fn denied_publish_is_refused_in_v5_and_dropped_in_v311() {
    let mut h = guarded(Rc::new(Rules), false);
    h.connect_with(1, as_user(Version::V311, "sub", "admin"));
    h.subscribe(1, "#", opts(QoS::ExactlyOnce));
    h.connect_with(2, as_user(Version::V5, "pub5", "ok"));
    h.connect_with(3, as_user(Version::V311, "pub3", "ok"));
    let code = |out: &[Action], id| match sent(out, id)[..] {
        [Packet::PubAck(a)] | [Packet::PubRec(a)] => a.reason,
        ref other => panic!("{other:?}"),
    };
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut p = publish("locked/door", b"open", qos, 7);
        p.retain = true;
        let out = h.packet(2, Packet::Publish(p.clone()));
        assert_eq!(code(&out, 2), 0x87);
        assert!(published(&out, 1).is_empty());
        let out = h.packet(3, Packet::Publish(p));
        assert_eq!(code(&out, 3), 0, "3.1.1: acknowledged, then dropped");
        assert!(published(&out, 1).is_empty());
    }
    let out = h.packet(
        3,
        Packet::Publish(publish("locked/door", b"x", QoS::AtMostOnce, 0)),
    );
    assert!(out.is_empty(), "QoS 0: silently dropped");
    h.connect_with(4, as_user(Version::V311, "late", "admin"));
    let out = h.subscribe(4, "locked/#", opts(QoS::AtLeastOnce));
    assert!(
        published(&out, 4).is_empty(),
        "a denied message is not retained"
    );
}

#[test]
fn nothing_is_delivered_that_the_client_may_not_read() {
    let mut h = guarded(Rc::new(Rules), false);
    h.connect_with(1, as_user(Version::V311, "admin", "admin"));
    h.subscribe(1, "#", opts(QoS::AtLeastOnce));
    h.connect_with(2, as_user(Version::V311, "user", "ok"));
    h.subscribe(2, "#", opts(QoS::AtLeastOnce));
    let mut p = publish("private/diary", b"x", QoS::AtLeastOnce, 1);
    p.retain = true;
    let out = h.packet(2, Packet::Publish(p));
    assert_eq!(published(&out, 1).len(), 1);
    assert!(published(&out, 2).is_empty(), "not even to its publisher");
    // Nor retained on subscribe.
    h.connect_with(3, as_user(Version::V311, "user2", "ok"));
    assert!(published(&h.subscribe(3, "private/+", opts(QoS::AtMostOnce)), 3).is_empty());
    h.connect_with(4, as_user(Version::V311, "admin2", "admin"));
    assert_eq!(
        published(&h.subscribe(4, "private/+", opts(QoS::AtMostOnce)), 4).len(),
        1
    );
}

#[test]
fn every_filter_is_granted_and_reads_are_checked_per_message() {
    // As mosquitto 2: a SUBSCRIBE is granted whatever the ACL says, and
    // only what the client may read is delivered.
    let mut h = guarded(Rc::new(Rules), false);
    h.connect_with(1, as_user(Version::V5, "c1", "ok"));
    let out = h.subscribe(1, "private/#", opts(QoS::AtLeastOnce));
    assert!(matches!(&sent(&out, 1)[..], [Packet::SubAck(s)] if s.codes == [1]));
    h.connect_with(2, as_user(Version::V311, "admin", "admin"));
    let out = h.packet(
        2,
        Packet::Publish(publish("private/x", b"x", QoS::AtMostOnce, 0)),
    );
    assert!(published(&out, 1).is_empty());
}

#[test]
fn a_will_the_client_may_not_publish_is_dropped() {
    let mut h = guarded(Rc::new(Rules), false);
    h.connect_with(1, as_user(Version::V311, "watcher", "admin"));
    h.subscribe(1, "#", opts(QoS::AtLeastOnce));
    for (id, topic, delivered) in [(2, "locked/dev", 0), (3, "wills/dev", 1)] {
        let mut c = as_user(Version::V311, &format!("dev{id}"), "ok");
        c.will = will(topic, Vec::new());
        assert_eq!(
            h.connect_with(id, c).0.code,
            0,
            "accepted, as by mosquitto 2"
        );
        assert_eq!(published(&h.close(id), 1).len(), delivered, "{topic}");
    }
}

#[test]
fn new_access_rules_apply_to_connected_clients_at_once() {
    let mut h = guarded(Rc::new(Open), false);
    h.connect_with(1, as_user(Version::V311, "reader", "ok"));
    h.subscribe(1, "private/#", opts(QoS::AtMostOnce));
    h.connect_with(2, as_user(Version::V311, "writer", "admin"));
    let p = publish("private/x", b"1", QoS::AtMostOnce, 0);
    assert_eq!(
        published(&h.packet(2, Packet::Publish(p.clone())), 1).len(),
        1
    );
    let rules = Auth {
        allow_anonymous: false,
        access: Some(Rc::new(Rules)),
    };
    let mut out = Vec::new();
    assert_eq!(h.broker.set_access(0, rules, h.now, &mut out), 0);
    assert!(out.is_empty());
    assert!(published(&h.packet(2, Packet::Publish(p)), 1).is_empty());
}

/// Users and the password each logs in with, for reloads.
#[derive(Debug)]
struct Users(&'static [(&'static str, u64)]);

impl Access for Users {
    fn authenticate(&self, c: &Credentials) -> bool {
        c.username.and_then(|u| self.login(u)).is_some()
    }
    fn login(&self, user: &str) -> Option<u64> {
        self.0.iter().find(|(u, _)| *u == user).map(|&(_, p)| p)
    }
    fn may_publish(&self, _: &str, _: Option<&str>, _: &str) -> bool {
        true
    }
    fn may_read(&self, _: &str, _: Option<&str>, _: &str) -> bool {
        true
    }
}

#[test]
fn a_reload_closes_whom_the_new_rules_would_not_let_in() {
    let users = |list| Auth {
        allow_anonymous: true,
        access: Some(Rc::new(Users(list))),
    };
    let mut h = Harness::with(Config {
        auth: vec![users(&[("kept", 1), ("gone", 1), ("changed", 1)])],
        ..Config::default()
    });
    h.connect_with(1, as_user(Version::V311, "a", "kept"));
    h.connect_with(2, as_user(Version::V5, "b", "gone"));
    h.connect_with(3, as_user(Version::V311, "c", "changed"));
    h.connect(4, "anonymous", true);
    let mut out = Vec::new();
    let closed = h
        .broker
        .set_access(0, users(&[("kept", 1), ("changed", 2)]), h.now, &mut out);
    assert_eq!(closed, 2);
    let closes: Vec<ConnId> = out
        .iter()
        .filter_map(|a| match a {
            Action::Close(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(closes, [2, 3]);
    // A 5.0 client is told why.
    assert!(matches!(
        sent(&out, 2)[..],
        [Packet::Disconnect(ReasonOnly { reason: 0x87, .. })]
    ));

    let mut no_anonymous = users(&[("kept", 1), ("changed", 2)]);
    no_anonymous.allow_anonymous = false;
    out.clear();
    assert_eq!(h.broker.set_access(0, no_anonymous, h.now, &mut out), 1);
    assert!(out.iter().any(|a| matches!(a, Action::Close(4))));
    assert!(!out.iter().any(|a| matches!(a, Action::Close(1))));
}

#[test]
fn topic_alias_maps_and_rejects_out_of_range() {
    let mut h = Harness::new();
    h.connect(1, "sub", true);
    h.subscribe(1, "long/topic", opts(QoS::AtMostOnce));
    h.connect_with(2, connect_packet(Version::V5, "pub", true, 0));
    let mut p = publish("long/topic", b"1", QoS::AtMostOnce, 0);
    p.properties = vec![Property::TopicAlias(3)];
    assert_eq!(
        published(&h.packet(2, Packet::Publish(p.clone())), 1).len(),
        1
    );
    p.topic.clear();
    assert_eq!(
        published(&h.packet(2, Packet::Publish(p.clone())), 1)[0].0,
        "long/topic"
    );
    p.properties = vec![Property::TopicAlias(11)];
    let out = h.packet(2, Packet::Publish(p));
    assert!(matches!(
        sent(&out, 2)[..],
        [Packet::Disconnect(ReasonOnly { reason: 0x94, .. })]
    ));
    assert!(closed(&out, 2));
}

#[test]
fn message_expiry_is_counted_down_and_enforced() {
    let mut h = Harness::new();
    h.connect_with(1, connect_packet(Version::V5, "sub", false, 0));
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.close(1);
    // (Session expiry 0 ended that session; keep one that lasts.)
    let mut c = connect_packet(Version::V5, "sub", false, 0);
    c.properties = vec![Property::SessionExpiryInterval(100)];
    h.connect_with(2, c.clone());
    h.subscribe(2, "t", opts(QoS::AtLeastOnce));
    h.close(2);
    h.connect(3, "pub", true);
    for (payload, expiry) in [(b"a", 10), (b"b", 2)] {
        let mut p = publish("t", payload, QoS::AtLeastOnce, 1);
        p.properties = vec![Property::MessageExpiryInterval(expiry)];
        h.packet(3, Packet::Publish(p));
    }
    h.advance(Duration::from_secs(4));
    let (_, out) = h.connect_with(4, c);
    let got: Vec<&Delivery> = out
        .iter()
        .filter_map(|a| match a {
            Action::Publish(4, d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 1, "the 2 s message expired");
    assert_eq!(got[0].extra, [Property::MessageExpiryInterval(6)]);
}

#[test]
fn shutdown_tells_v5_clients_0x8b() {
    let mut h = Harness::new();
    h.connect_with(1, connect_packet(Version::V5, "a", true, 0));
    h.connect(2, "b", true);
    let mut out = Vec::new();
    h.broker.shutdown(&mut out);
    assert!(matches!(
        sent(&out, 1)[..],
        [Packet::Disconnect(ReasonOnly { reason: 0x8B, .. })]
    ));
    assert!(sent(&out, 2).is_empty());
    assert!(closed(&out, 1) && closed(&out, 2));
}

fn v5(client_id: &str, clean: bool, properties: Vec<Property>) -> Connect {
    let mut c = connect_packet(Version::V5, client_id, clean, 0);
    c.properties = properties;
    c
}

fn payloads(out: &[Action], id: ConnId) -> Vec<Vec<u8>> {
    out.iter()
        .filter_map(|a| match a {
            Action::Publish(to, d) if *to == id => Some(d.msg.payload.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn shared_subscription_round_robins_with_per_member_qos() {
    let mut h = Harness::new();
    h.connect(1, "a", true);
    h.subscribe(1, "$share/g/s/+", opts(QoS::AtMostOnce));
    h.connect(2, "b", true);
    h.subscribe(2, "$share/g/s/+", opts(QoS::AtLeastOnce));
    h.connect(3, "pub", true);
    let mut got = [Vec::new(), Vec::new()];
    for i in 0..4u8 {
        let out = h.packet(
            3,
            Packet::Publish(publish("s/x", &[i], QoS::AtLeastOnce, u16::from(i) + 1)),
        );
        for (k, id) in [(0, 1), (1, 2)] {
            for (_, qos, ..) in published(&out, id) {
                got[k].push((i, qos));
            }
        }
    }
    // Each message to exactly one member, alternating, at that member's QoS.
    assert_eq!(got[0], [(0, QoS::AtMostOnce), (2, QoS::AtMostOnce)]);
    assert_eq!(got[1], [(1, QoS::AtLeastOnce), (3, QoS::AtLeastOnce)]);
    // No retained messages for a shared subscription (MQTT 5.0 4.8.2).
    let mut p = publish("s/r", b"kept", QoS::AtMostOnce, 0);
    p.retain = true;
    h.packet(3, Packet::Publish(p));
    h.connect(4, "c", true);
    assert!(published(&h.subscribe(4, "$share/h/s/#", opts(QoS::AtMostOnce)), 4).is_empty());
}

#[test]
fn shared_subscription_prefers_online_members_and_reroutes_on_session_end() {
    let mut h = Harness::new();
    h.connect_with(
        1,
        v5("a", false, vec![Property::SessionExpiryInterval(100)]),
    );
    h.subscribe(1, "$share/g/t", opts(QoS::AtLeastOnce));
    h.connect(2, "b", true);
    h.subscribe(2, "$share/g/t", opts(QoS::AtLeastOnce));
    h.close(1);
    h.connect(3, "pub", true);
    for i in 1..=2u8 {
        let out = h.packet(
            3,
            Packet::Publish(publish("t", &[i], QoS::AtLeastOnce, u16::from(i))),
        );
        assert_eq!(payloads(&out, 2), [vec![i]], "the online member gets it");
    }
    // b's clean session ends with both unacknowledged: they go to a's
    // session (offline, so queued) and arrive when it returns.
    h.close(2);
    let (_, out) = h.connect_with(
        4,
        v5("a", false, vec![Property::SessionExpiryInterval(100)]),
    );
    assert_eq!(payloads(&out, 4), [vec![1], vec![2]]);
}

#[test]
fn shared_subscription_syntax_and_no_local_are_checked() {
    let mut h = Harness::new();
    h.connect_with(1, v5("a", true, Vec::new()));
    let out = h.subscribe(1, "$share/g+/t", opts(QoS::AtMostOnce));
    assert!(matches!(&sent(&out, 1)[..], [Packet::SubAck(s)] if s.codes == [0x8F]));
    let mut o = opts(QoS::AtMostOnce);
    o.no_local = true;
    // [MQTT-3.8.3-4]
    let out = h.subscribe(1, "$share/g/t", o);
    assert!(matches!(
        sent(&out, 1)[..],
        [Packet::Disconnect(ReasonOnly { reason: 0x82, .. })]
    ));
    assert!(closed(&out, 1));
}

#[test]
fn shared_group_goes_with_its_last_member() {
    let mut h = Harness::new();
    h.connect(1, "a", true);
    h.subscribe(1, "$share/g/t", opts(QoS::AtMostOnce));
    let out = h.packet(
        1,
        Packet::Unsubscribe(crate::protocol::Unsubscribe {
            packet_id: 2,
            filters: vec!["$share/g/t".into()],
            properties: Vec::new(),
        }),
    );
    assert!(matches!(sent(&out, 1)[..], [Packet::UnsubAck(_)]));
    assert!(h.broker.groups.is_empty() && h.broker.group_ids.is_empty());
    h.connect(2, "pub", true);
    let out = h.packet(2, Packet::Publish(publish("t", b"x", QoS::AtMostOnce, 0)));
    assert!(published(&out, 1).is_empty());
}

#[test]
fn payload_format_indicator_is_checked() {
    let mut h = Harness::new();
    h.connect_with(1, v5("p", true, Vec::new()));
    let mut p = publish("t", &[0xff, 0xfe], QoS::AtLeastOnce, 5);
    p.properties = vec![Property::PayloadFormatIndicator(1)];
    let out = h.packet(1, Packet::Publish(p.clone()));
    assert!(matches!(
        sent(&out, 1)[..],
        [Packet::PubAck(Ack { reason: 0x99, .. })]
    ));
    p.qos = QoS::AtMostOnce;
    p.packet_id = 0;
    let out = h.packet(1, Packet::Publish(p));
    assert!(matches!(
        sent(&out, 1)[..],
        [Packet::Disconnect(ReasonOnly { reason: 0x99, .. })]
    ));
    // A will that promises UTF-8 and is not: refused at CONNECT.
    let mut c = v5("w", true, Vec::new());
    c.will = will("w", vec![Property::PayloadFormatIndicator(1)]);
    c.will.as_mut().unwrap().payload = vec![0xc3];
    assert_eq!(h.connect_with(2, c).0.code, 0x99);
}

#[test]
fn receive_maximum_is_advertised_and_enforced() {
    let mut h = Harness::with(Config {
        max_inflight: 2,
        ..Config::default()
    });
    let (ack, _) = h.connect_with(1, v5("p", true, Vec::new()));
    assert!(ack.properties.contains(&Property::ReceiveMaximum(2)));
    assert!(
        ack.properties
            .contains(&Property::SharedSubscriptionAvailable(1))
    );
    assert!(
        ack.properties
            .contains(&Property::SubscriptionIdentifierAvailable(1))
    );
    for id in 1..=2 {
        h.packet(1, Packet::Publish(publish("t", b"x", QoS::ExactlyOnce, id)));
    }
    // [MQTT-3.3.4-8]
    let out = h.packet(1, Packet::Publish(publish("t", b"x", QoS::ExactlyOnce, 3)));
    assert!(matches!(
        &sent(&out, 1)[..],
        [Packet::Disconnect(ReasonOnly { reason: 0x93, properties })] if !properties.is_empty()
    ));
}

#[test]
fn outbound_topic_aliases_up_to_the_clients_maximum() {
    let mut h = Harness::with(Config {
        outbound_topic_aliases: true,
        ..Config::default()
    });
    h.connect_with(1, v5("sub", true, vec![Property::TopicAliasMaximum(2)]));
    h.subscribe(1, "#", opts(QoS::AtMostOnce));
    h.connect(2, "pub", true);
    let mut seen = Vec::new();
    for topic in ["a", "a", "b", "c", "b"] {
        let out = h.packet(2, Packet::Publish(publish(topic, b"x", QoS::AtMostOnce, 0)));
        let d = out
            .iter()
            .find_map(|a| match a {
                Action::Publish(1, d) => Some(d),
                _ => None,
            })
            .unwrap();
        seen.push((d.omit_topic, crate::property!(d.extra, TopicAlias)));
    }
    assert_eq!(
        seen,
        [
            (false, Some(1)),
            (true, Some(1)),
            (false, Some(2)),
            (false, None),
            (true, Some(2))
        ]
    );
}

#[test]
fn a_stale_expiry_timer_spares_the_next_session_in_the_same_slot() {
    let mut h = Harness::new();
    // Session "old" (slot 0) goes offline with a 5 s expiry timer ...
    h.connect_with(
        1,
        v5("old", false, vec![Property::SessionExpiryInterval(5)]),
    );
    h.close(1);
    // ... then ends early: a clean start discards it, freeing the slot,
    // and the new clean session expires at once, freeing it again.
    h.connect_with(2, v5("old", true, Vec::new()));
    h.close(2);
    // A new long-lived session takes the slot; the old timer must not end it.
    h.connect_with(
        3,
        v5("new", false, vec![Property::SessionExpiryInterval(100)]),
    );
    h.close(3);
    h.advance(Duration::from_secs(6));
    let (ack, _) = h.connect_with(
        4,
        v5("new", false, vec![Property::SessionExpiryInterval(100)]),
    );
    assert!(ack.session_present);
}

#[test]
fn connection_churn_does_not_grow_the_timer_heap() {
    let mut h = Harness::new();
    for i in 0..10_000 {
        h.connect_with(i % 4, connect_packet(Version::V311, "churn", true, 30));
        h.close(i % 4);
        h.advance(Duration::ZERO);
    }
    // Each cycle left a connect-timeout and a keep-alive entry behind.
    assert!(
        h.broker.timers.len() < 200,
        "{} timer entries",
        h.broker.timers.len()
    );
}

/// A broker restored from `h`'s snapshot, `later` after it was taken (on
/// both clocks, as when the process was down that long).
fn restarted(h: &Harness, later: Duration) -> Harness {
    let wall = std::time::SystemTime::now();
    let snap = h.broker.snapshot(h.now, wall);
    let mut next = Harness::new();
    next.now = h.now + later;
    next.broker.restore(snap, next.now, wall + later);
    next
}

#[test]
fn a_restored_broker_resumes_sessions_subscriptions_and_retained() {
    let mut h = Harness::new();
    h.connect(1, "sub", false);
    h.subscribe(1, "a/#", opts(QoS::AtLeastOnce));
    h.subscribe(1, "$share/g/b", opts(QoS::ExactlyOnce));
    h.connect(2, "pub", true);
    let mut retained = publish("r/x", b"on", QoS::AtLeastOnce, 1);
    retained.retain = true;
    h.packet(2, Packet::Publish(retained));
    h.packet(
        2,
        Packet::Publish(publish("a/1", b"1", QoS::AtLeastOnce, 2)),
    );
    h.close(1);
    h.packet(
        2,
        Packet::Publish(publish("a/2", b"2", QoS::AtLeastOnce, 3)),
    );
    h.packet(2, Packet::Publish(publish("b", b"3", QoS::ExactlyOnce, 4)));
    h.packet(2, Packet::Publish(publish("a/3", b"-", QoS::AtMostOnce, 0)));

    let mut h = restarted(&h, Duration::from_secs(30));
    let s = h.broker.by_client_id["sub"];
    let queued = h.broker.sessions[s].flow().queued_bytes;
    assert_eq!(
        queued, 2,
        "the restored queue counts towards max_queued_bytes"
    );
    let (ack, out) = h.connect_with(3, connect_packet(Version::V311, "sub", false, 0));
    assert!(ack.session_present);
    // The one sent before the restart again with DUP, then the queue in
    // order; the QoS 0 message was never queued.
    let got: Vec<(u16, bool, Vec<u8>)> = out
        .iter()
        .filter_map(|a| match a {
            Action::Publish(3, d) => Some((d.packet_id, d.dup, d.msg.payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, true, b"1".to_vec()),
            (2, false, b"2".to_vec()),
            (3, false, b"3".to_vec())
        ]
    );
    // Subscriptions, shared ones included, are back.
    h.connect(4, "pub", true);
    let out = h.packet(
        4,
        Packet::Publish(publish("a/4", b"4", QoS::AtLeastOnce, 1)),
    );
    assert_eq!(payloads(&out, 3), [b"4".to_vec()]);
    let out = h.packet(4, Packet::Publish(publish("b", b"5", QoS::AtLeastOnce, 2)));
    assert_eq!(payloads(&out, 3), [b"5".to_vec()]);
    let out = h.subscribe(4, "r/#", opts(QoS::AtLeastOnce));
    assert_eq!(published(&out, 4)[0].0, "r/x");
}

#[test]
fn session_expiry_keeps_running_across_a_restart() {
    let mut h = Harness::new();
    h.connect_with(1, v5("s", false, vec![Property::SessionExpiryInterval(60)]));
    h.close(1);
    h.advance(Duration::from_secs(10));
    // Down for 40 s: 10 s are left.
    let mut h = restarted(&h, Duration::from_secs(40));
    h.advance(Duration::from_secs(9));
    let (ack, _) = h.connect_with(2, v5("s", false, vec![Property::SessionExpiryInterval(60)]));
    assert!(ack.session_present);
    h.close(2);
    // Down for longer than the interval: gone.
    let h2 = restarted(&h, Duration::from_secs(61));
    assert!(h2.broker.sessions.is_empty());
    // Clean sessions are not saved at all.
    let mut h = Harness::new();
    h.connect(1, "c", true);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    assert!(
        h.broker
            .snapshot(h.now, std::time::SystemTime::now())
            .sessions
            .is_empty()
    );
}

#[test]
fn changes_count_what_a_snapshot_would_hold() {
    let mut h = Harness::new();
    h.connect(1, "clean", true);
    h.subscribe(1, "t", opts(QoS::AtMostOnce));
    let before = h.broker.changes();
    h.packet(1, Packet::Publish(publish("t", b"x", QoS::AtMostOnce, 0)));
    assert_eq!(h.broker.changes(), before, "QoS 0 to a clean session");
    h.connect(2, "kept", false);
    h.subscribe(2, "t", opts(QoS::AtLeastOnce));
    let before = h.broker.changes();
    let out = h.packet(1, Packet::Publish(publish("t", b"x", QoS::AtLeastOnce, 1)));
    assert!(h.broker.changes() > before, "queued for a kept session");
    let before = h.broker.changes();
    h.packet(2, Packet::PubAck(ack(published(&out, 2)[0].2)));
    assert!(h.broker.changes() > before, "acknowledged");
}

/// A fresh broker that replayed `records`.
fn replayed(records: Vec<JournalRecord>) -> Harness {
    let mut r = Harness::new();
    let mut keys = ReplayKeys::default();
    for rec in records {
        r.broker
            .replay(rec, &mut keys, r.now, std::time::SystemTime::now());
    }
    r
}

#[test]
fn the_journal_replayed_on_an_empty_broker_rebuilds_kept_sessions() {
    let wall = std::time::SystemTime::now();
    let mut h = Harness::new();
    h.broker.enable_journal(h.now, wall);
    h.connect(1, "sub", false);
    let out = h.subscribe(1, "a/#", opts(QoS::AtLeastOnce));
    assert!(
        matches!(out[..], [Action::SendAfterCommit(1, Packet::SubAck(_))]),
        "a kept session's SUBACK waits for the commit: {out:?}"
    );
    h.subscribe(1, "gone", opts(QoS::AtLeastOnce));
    h.packet(
        1,
        Packet::Unsubscribe(crate::protocol::Unsubscribe {
            packet_id: 2,
            filters: vec!["gone".into()],
            properties: Vec::new(),
        }),
    );
    h.close(1);
    h.connect(2, "pub", false);
    let out = h.packet(
        2,
        Packet::Publish(publish("a/1", b"1", QoS::AtLeastOnce, 1)),
    );
    assert!(matches!(
        out[..],
        [Action::SendAfterCommit(2, Packet::PubAck(_))]
    ));
    let out = h.packet(
        2,
        Packet::Publish(publish("a/2", b"2", QoS::ExactlyOnce, 2)),
    );
    assert!(matches!(
        out[..],
        [Action::SendAfterCommit(2, Packet::PubRec(_))]
    ));
    // Nothing stored, nothing held: QoS 0 to nobody kept.
    let out = h.packet(2, Packet::Publish(publish("b", b"-", QoS::AtLeastOnce, 3)));
    assert!(matches!(out[..], [Action::Send(2, Packet::PubAck(_))]));

    let records = h.broker.take_journal();
    // Each kept session declared once, then named by its key.
    assert_eq!(records.len(), 7, "{records:?}");
    let mut r = replayed(records);
    let (ack, out) = r.connect_with(3, connect_packet(Version::V311, "sub", false, 0));
    assert!(ack.session_present);
    assert_eq!(payloads(&out, 3), [b"1".to_vec(), b"2".to_vec()]);
    // The QoS 2 id awaits PUBREL: the publisher's re-send is not a new message.
    r.connect(4, "pub", false);
    let out = r.packet(
        4,
        Packet::Publish(publish("a/2", b"2", QoS::ExactlyOnce, 2)),
    );
    assert!(published(&out, 3).is_empty());
    // The unsubscribed filter stayed gone.
    let out = r.packet(
        4,
        Packet::Publish(publish("gone", b"x", QoS::AtLeastOnce, 5)),
    );
    assert!(published(&out, 3).is_empty());
}

/// A QoS 2 PUBLISH to a kept session leaves once its packet id is
/// journaled, so after a crash it goes again under that id, with DUP, and a
/// subscriber that has it does not take it twice; PUBREL waits likewise.
#[test]
fn a_kept_sessions_qos2_delivery_leaves_after_its_packet_id_is_journaled() {
    let wall = std::time::SystemTime::now();
    let mut h = Harness::new();
    h.broker.enable_journal(h.now, wall);
    h.connect(1, "sub", false);
    h.subscribe(1, "a/#", opts(QoS::ExactlyOnce));
    h.connect(2, "pub", true);
    let out = h.packet(
        2,
        Packet::Publish(publish("a/1", b"1", QoS::ExactlyOnce, 1)),
    );
    assert!(
        published(&out, 1).is_empty(),
        "not before the commit: {out:?}"
    );
    let held: Vec<(u16, bool)> = out
        .iter()
        .filter_map(|a| match a {
            Action::PublishAfterCommit(1, d) => Some((d.packet_id, d.dup)),
            _ => None,
        })
        .collect();
    let [(pid, false)] = held[..] else {
        panic!("one held PUBLISH expected: {out:?}");
    };
    let records = h.broker.take_journal();

    let mut r = replayed(records);
    let (connack, out) = r.connect_with(3, connect_packet(Version::V311, "sub", false, 0));
    assert!(connack.session_present);
    assert_eq!(
        published(&out, 3),
        [("a/1".to_string(), QoS::ExactlyOnce, pid, true, false)]
    );

    let out = h.packet(1, Packet::PubRec(ack(pid)));
    assert!(
        matches!(out[..], [Action::SendAfterCommit(1, Packet::PubRel(_))]),
        "PUBREL waits for the PUBREC's record: {out:?}"
    );
}

#[test]
fn without_storage_qos1_is_refused_not_acknowledged() {
    let mut h = Harness::new();
    h.broker.enable_journal(h.now, std::time::SystemTime::now());
    // A kept subscriber: its messages must be stored before the ack.
    h.connect(3, "kept", false);
    h.subscribe(3, "t", opts(QoS::AtLeastOnce));
    h.close(3);
    h.broker.take_journal();
    h.broker.set_storage_available(false);
    // What no kept session needs is taken as usual.
    h.connect(4, "p", true);
    let out = h.packet(4, Packet::Publish(publish("u", b"x", QoS::AtLeastOnce, 1)));
    assert!(
        matches!(out[..], [Action::Send(4, Packet::PubAck(_))]),
        "{out:?}"
    );
    h.connect_with(1, v5("p5", true, Vec::new()));
    let out = h.packet(1, Packet::Publish(publish("t", b"x", QoS::AtLeastOnce, 1)));
    assert!(matches!(
        sent(&out, 1)[..],
        [Packet::PubAck(Ack { reason: 0x97, .. })]
    ));
    h.connect(2, "p3", true);
    let out = h.packet(2, Packet::Publish(publish("t", b"x", QoS::AtLeastOnce, 1)));
    assert!(out.is_empty(), "3.1.1: no ack, sent again later");
    let out = h.packet(2, Packet::Publish(publish("t", b"x", QoS::AtMostOnce, 0)));
    assert!(out.is_empty() && !closed(&out, 2), "QoS 0 still flows");
    h.broker.set_storage_available(true);
    let out = h.packet(2, Packet::Publish(publish("t", b"x", QoS::AtLeastOnce, 1)));
    assert!(
        matches!(out[..], [Action::SendAfterCommit(2, Packet::PubAck(_))]),
        "{out:?}"
    );
}

#[test]
fn persistent_client_expiration_bounds_every_session() {
    let mut h = Harness::with(Config {
        persistent_client_expiration: Some(60),
        ..Config::default()
    });
    // 3.x clean session false asks for forever; v5 for 100 s and 10 s.
    let v3 = connect_packet(Version::V311, "v3", false, 0);
    let long = v5("long", false, vec![Property::SessionExpiryInterval(100)]);
    let short = v5("short", false, vec![Property::SessionExpiryInterval(10)]);
    for (id, c) in [(1, v3.clone()), (2, long.clone()), (3, short.clone())] {
        h.connect_with(id, c);
        h.close(id);
    }
    h.advance(Duration::from_secs(11));
    assert!(!h.connect_with(4, short).0.session_present, "its own 10 s");
    h.advance(Duration::from_secs(48));
    assert!(
        h.connect_with(5, v3.clone()).0.session_present,
        "59 s < 60 s"
    );
    h.close(5);
    h.advance(Duration::from_secs(60));
    assert!(
        !h.connect_with(6, v3).0.session_present,
        "expired after 60 s"
    );
    assert!(
        !h.connect_with(7, long).0.session_present,
        "100 s cut to 60 s"
    );
}

#[test]
fn retain_available_false_refuses_retained_messages() {
    let mut h = Harness::with(Config {
        retain_available: false,
        ..Config::default()
    });
    let (ack, _) = h.connect_with(1, connect_packet(Version::V5, "v5", true, 0));
    assert!(ack.properties.contains(&Property::RetainAvailable(0)));
    let mut retained = publish("t", b"x", QoS::AtLeastOnce, 1);
    retained.retain = true;
    // [MQTT-3.2.2-14]: DISCONNECT 0x9A.
    let out = h.packet(1, Packet::Publish(retained.clone()));
    assert!(matches!(
        sent(&out, 1)[..],
        [Packet::Disconnect(ReasonOnly { reason: 0x9A, .. })]
    ));
    assert!(closed(&out, 1));
    // 3.x: closed, as mosquitto does; nothing was retained.
    h.connect(2, "v3", true);
    let out = h.packet(2, Packet::Publish(retained));
    assert!(sent(&out, 2).is_empty() && closed(&out, 2));
    h.connect(3, "sub", true);
    assert!(published(&h.subscribe(3, "#", opts(QoS::AtLeastOnce)), 3).is_empty());
    // A will with retain set: [MQTT-3.2.2-13] CONNACK 0x9A; 3.x closed
    // without CONNACK.
    let mut c = connect_packet(Version::V5, "w5", true, 0);
    c.will = will("w", Vec::new());
    c.will.as_mut().unwrap().retain = true;
    assert_eq!(h.connect_with(4, c.clone()).0.code, 0x9A);
    c.version = Version::V311;
    h.broker.connected(5, 0, h.now);
    let out = h.packet(5, Packet::Connect(Box::new(c)));
    assert!(sent(&out, 5).is_empty() && closed(&out, 5));
}

#[test]
fn message_size_limit_drops_large_payloads() {
    let mut h = Harness::with(Config {
        message_size_limit: 4,
        ..Config::default()
    });
    h.connect(1, "sub", true);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.connect_with(2, connect_packet(Version::V5, "v5", true, 0));
    h.connect(3, "v3", true);
    // As mosquitto 2: v5 gets 0x95, 3.x a plain PUBACK; nothing is routed.
    for (id, code) in [(2, 0x95), (3, 0)] {
        let out = h.packet(
            id,
            Packet::Publish(publish("t", b"12345", QoS::AtLeastOnce, 7)),
        );
        assert!(published(&out, 1).is_empty());
        assert!(matches!(
            sent(&out, id)[..],
            [Packet::PubAck(Ack { packet_id: 7, reason, .. })] if *reason == code
        ));
    }
    let out = h.packet(
        2,
        Packet::Publish(publish("t", b"1234", QoS::AtLeastOnce, 8)),
    );
    assert_eq!(published(&out, 1).len(), 1, "at the limit: delivered");
    // A will over the limit: CONNACK 0x95 (3.x: 0x05).
    let mut c = connect_packet(Version::V5, "w", true, 0);
    c.will = will("w", Vec::new());
    c.will.as_mut().unwrap().payload = b"12345".to_vec();
    assert_eq!(h.connect_with(4, c.clone()).0.code, 0x95);
    c.version = Version::V311;
    assert_eq!(h.connect_with(5, c).0.code, 0x05);
}

#[test]
fn max_queued_bytes_bounds_an_offline_queue() {
    let mut h = Harness::with(Config {
        max_queued_bytes: 10,
        ..Config::default()
    });
    h.connect(1, "sub", false);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.close(1);
    h.connect(2, "pub", true);
    for (i, payload) in [&b"123456"[..], b"123456", b"1"].into_iter().enumerate() {
        h.packet(
            2,
            Packet::Publish(publish("t", payload, QoS::AtLeastOnce, i as u16 + 1)),
        );
    }
    assert_eq!(h.broker.stats.publish_dropped, 1);
    let (_, out) = h.connect_with(3, connect_packet(Version::V311, "sub", false, 0));
    assert_eq!(payloads(&out, 3), [b"123456".to_vec(), b"123456".to_vec()]);
}

/// Two listeners with their own rules (`per_listener_settings`): the
/// second takes known users only, and a session keeps the rules of the
/// listener its client last came through.
/// A reload that lowers `max_inflight_messages` and `max_queued_messages`
/// leaves what is in flight and queued; the subscriber counts as full,
/// and holds its publisher back from the next message on.
#[test]
fn a_reload_lowering_limits_leaves_what_is_in_flight_and_queued() {
    let mut h = Harness::with(Config {
        max_inflight: 3,
        ..Config::default()
    });
    h.connect(1, "sub", true);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.connect(2, "pub", true);
    for i in 1..=8 {
        h.packet(2, Packet::Publish(publish("t", b"x", QoS::AtLeastOnce, i)));
    }
    let lower = Config {
        max_inflight: 1,
        max_queued: 2,
        ..Config::default()
    };
    h.broker.reconfigure(&lower, h.now);
    h.check();
    let out = h.packet(2, Packet::Publish(publish("t", b"y", QoS::AtLeastOnce, 9)));
    assert!(out.iter().any(|a| matches!(a, Action::Hold(2))), "{out:?}");
}

/// `max_qos` as mosquitto 2.0.11 has it: v5 clients told in CONNACK,
/// subscriptions granted at most at it, a PUBLISH or a will above it
/// refused (v5: 0x9B; 3.x: closed).
#[test]
fn max_qos_caps_what_a_listeners_clients_may_use() {
    let mut h = Harness::with(Config {
        listeners: vec![Listener {
            auth: 0,
            max_qos: QoS::AtLeastOnce,
        }],
        ..Config::default()
    });
    let (ack, _) = h.connect_with(1, connect_packet(Version::V5, "five", true, 0));
    assert_eq!(ack.code, 0);
    assert_eq!(crate::property!(ack.properties, MaximumQoS), Some(1));
    let out = h.subscribe(1, "t/#", opts(QoS::ExactlyOnce));
    assert!(matches!(
        sent(&out, 1)[..],
        [Packet::SubAck(SubAck { codes, .. })] if codes == &[1]
    ));
    let out = h.packet(
        1,
        Packet::Publish(publish("t/1", b"1", QoS::AtLeastOnce, 1)),
    );
    assert_eq!(
        published(&out, 1),
        [("t/1".into(), QoS::AtLeastOnce, 1, false, false)]
    );
    let out = h.packet(
        1,
        Packet::Publish(publish("t/2", b"2", QoS::ExactlyOnce, 2)),
    );
    assert!(matches!(
        sent(&out, 1)[..],
        [Packet::Disconnect(ReasonOnly { reason: 0x9B, .. })]
    ));
    assert!(closed(&out, 1));
    // 3.1.1: no way to say it, so closed, as by mosquitto.
    h.connect(2, "four", true);
    let out = h.packet(
        2,
        Packet::Publish(publish("t/2", b"2", QoS::ExactlyOnce, 2)),
    );
    assert!(sent(&out, 2).is_empty() && closed(&out, 2));
    // A will above it: v5 CONNACK 0x9B saying the Maximum QoS; 3.x closed.
    for (id, version) in [(3, Version::V5), (4, Version::V311)] {
        let mut c = connect_packet(version, "willing", true, 0);
        c.will = will("w/t", Vec::new()).map(|w| Will {
            qos: QoS::ExactlyOnce,
            ..w
        });
        h.broker.connected(id, 0, h.now);
        let out = h.packet(id, Packet::Connect(Box::new(c)));
        match version {
            Version::V5 => assert!(matches!(
                sent(&out, id)[..],
                [Packet::ConnAck(ConnAck { code: 0x9B, properties, .. })]
                    if crate::property!(properties, MaximumQoS) == Some(1)
            )),
            _ => assert!(sent(&out, id).is_empty()),
        }
        assert!(closed(&out, id));
    }
    // Unlimited, as by default: no Maximum QoS in CONNACK.
    let mut h = Harness::new();
    let (ack, _) = h.connect_with(1, connect_packet(Version::V5, "five", true, 0));
    assert_eq!(crate::property!(ack.properties, MaximumQoS), None);
}

#[test]
fn each_listener_has_its_own_rules() {
    let mut h = Harness::with(Config {
        auth: vec![
            Auth::default(),
            Auth {
                allow_anonymous: false,
                access: Some(Rc::new(Rules)),
            },
        ],
        listeners: vec![
            Listener::default(),
            Listener {
                auth: 1,
                ..Listener::default()
            },
        ],
        ..Config::default()
    });
    h.connect(1, "open", false);
    h.broker.connected(2, 1, h.now);
    let out = h.packet(
        2,
        Packet::Connect(Box::new(connect_packet(Version::V311, "anon", true, 0))),
    );
    assert!(matches!(
        sent(&out, 2)[..],
        [Packet::ConnAck(ConnAck { code: 0x05, .. })]
    ));
    h.broker.connected(3, 1, h.now);
    let out = h.packet(
        3,
        Packet::Connect(Box::new(as_user(Version::V311, "user", "ok"))),
    );
    assert!(matches!(
        sent(&out, 3)[..],
        [Packet::ConnAck(ConnAck { code: 0, .. })]
    ));
    // Rules' private/ topics: readable through listener 0 (no ACL), not 1.
    h.subscribe(1, "private/#", opts(QoS::AtLeastOnce));
    h.subscribe(3, "private/#", opts(QoS::AtLeastOnce));
    h.close(1);
    let out = h.packet(
        3,
        Packet::Publish(publish("private/x", b"x", QoS::AtMostOnce, 0)),
    );
    assert!(published(&out, 3).is_empty());
    h.packet(
        3,
        Packet::Publish(publish("private/x", b"q", QoS::AtLeastOnce, 1)),
    );
    let (_, out) = h.connect_with(4, connect_packet(Version::V311, "open", false, 0));
    assert_eq!(payloads(&out, 4), [b"q".to_vec()], "queued while offline");
}

#[cfg(target_pointer_width = "64")]
#[test]
fn per_connection_state_stays_small() {
    use std::mem::size_of;
    assert_eq!(size_of::<Conn>(), 56);
    assert_eq!(size_of::<Session>(), 104);
    assert_eq!(
        size_of::<(Instant, timer::Timer)>(),
        32,
        "a timer heap entry"
    );
    assert_eq!(size_of::<session::Outgoing>(), 24, "a queued message");
    assert_eq!(size_of::<Message>(), 104, "a message, stored once");
}

/// (topic, payload as text) of each PUBLISH to `id` in `out`.
fn texts(out: &[Action], id: ConnId) -> Vec<(String, String)> {
    let topics = published(out, id).into_iter().map(|p| p.0);
    let payloads = payloads(out, id).into_iter();
    topics
        .zip(payloads.map(|p| String::from_utf8(p).unwrap()))
        .collect()
}

impl Harness {
    fn sys(&mut self, memory: Memory) -> Vec<Action> {
        let mut out = Vec::new();
        self.broker.publish_sys(self.now, memory, &mut out);
        out
    }
}

#[test]
fn sys_publishes_every_topic_first_then_only_changes() {
    let mut h = Harness::new();
    h.connect(1, "watcher", true);
    // QoS 0: at QoS 1 the unacknowledged updates would fill its window.
    h.subscribe(1, "$SYS/#", opts(QoS::AtMostOnce));
    let memory = Memory {
        heap_current: 1000,
        heap_maximum: 2000,
        rss: 3_000_000,
    };
    let first = texts(&h.sys(memory), 1);
    let value = |got: &[(String, String)], topic: &str| {
        got.iter().find(|(t, _)| t == topic).map(|(_, v)| v.clone())
    };
    assert_eq!(first.len(), 54, "{first:?}");
    assert_eq!(
        value(&first, "$SYS/broker/version").unwrap(),
        format!("roost version {}", env!("CARGO_PKG_VERSION"))
    );
    for (topic, expected) in [
        ("$SYS/broker/uptime", "0 seconds"),
        ("$SYS/broker/clients/connected", "1"),
        ("$SYS/broker/clients/total", "1"),
        ("$SYS/broker/subscriptions/count", "1"),
        ("$SYS/broker/heap/current", "1000"),
        ("$SYS/broker/heap/maximum", "2000"),
        ("$SYS/broker/memory/rss", "3000000"),
        ("$SYS/broker/retained messages/count", "2"),
        // Its version and uptime, as stored messages and their bytes.
        ("$SYS/broker/store/messages/count", "2"),
        ("$SYS/broker/messages/stored", "2"),
        ("$SYS/broker/store/messages/bytes", "28"),
        ("$SYS/broker/clients/active", "1"),
        ("$SYS/broker/clients/expired", "0"),
        ("$SYS/broker/publish/bytes/received", "0"),
        ("$SYS/broker/load/connections/1min", "0.00"),
        ("$SYS/broker/load/bytes/sent/15min", "0.00"),
    ] {
        assert_eq!(value(&first, topic).as_deref(), Some(expected), "{topic}");
    }
    // The first update's own retained messages are counted in the second
    // (as by mosquitto), with its new uptime, which comes first and is a
    // byte longer; otherwise only the time changed.
    h.now += Duration::from_secs(10);
    let bytes: usize = first.iter().map(|(_, v)| v.len()).sum::<usize>() + 1;
    assert_eq!(
        texts(&h.sys(memory), 1),
        [
            ("$SYS/broker/uptime".into(), "10 seconds".into()),
            ("$SYS/broker/store/messages/count".into(), "54".into()),
            ("$SYS/broker/messages/stored".into(), "54".into()),
            ("$SYS/broker/store/messages/bytes".into(), bytes.to_string()),
            ("$SYS/broker/retained messages/count".into(), "54".into())
        ]
    );
    // Those values are longer than the ones they replaced: the bytes
    // stored move once more, then only the time.
    h.now += Duration::from_secs(10);
    h.sys(memory);
    h.now += Duration::from_secs(10);
    assert_eq!(
        texts(&h.sys(memory), 1),
        [("$SYS/broker/uptime".into(), "30 seconds".into())]
    );
    // A persistent client comes and goes; counters move.
    h.connect(2, "sensor", false);
    h.packet(
        2,
        Packet::Publish(publish("home/t", b"21", QoS::AtMostOnce, 0)),
    );
    h.close(2);
    h.broker.stats.bytes_received = 50;
    h.now += Duration::from_secs(10);
    let next = texts(&h.sys(memory), 1);
    for (topic, expected) in [
        ("$SYS/broker/clients/connected", None),
        ("$SYS/broker/clients/total", Some("2")),
        ("$SYS/broker/clients/maximum", Some("2")),
        ("$SYS/broker/clients/disconnected", Some("1")),
        ("$SYS/broker/clients/inactive", Some("1")),
        ("$SYS/broker/publish/messages/received", Some("1")),
        ("$SYS/broker/publish/bytes/received", Some("2")),
        ("$SYS/broker/bytes/received", Some("50")),
        // One CONNECT and one PUBLISH in 10 s: 6 a minute, of which the
        // 1-minute average takes 6 * (1 - exp(-10/60)).
        ("$SYS/broker/load/connections/1min", Some("0.92")),
        ("$SYS/broker/load/publish/received/1min", Some("0.92")),
        ("$SYS/broker/load/publish/received/5min", Some("0.20")),
        ("$SYS/broker/retained messages/count", None),
        ("$SYS/broker/version", None),
    ] {
        assert_eq!(value(&next, topic).as_deref(), expected, "{topic}");
    }
}

#[test]
fn sys_counts_each_stored_message_once_and_expired_sessions() {
    let mut h = Harness::with(Config {
        persistent_client_expiration: Some(60),
        ..Config::default()
    });
    h.connect(1, "watcher", true);
    h.subscribe(1, "$SYS/broker/#", opts(QoS::AtMostOnce));
    for (id, name) in [(2, "a"), (3, "b")] {
        h.connect(id, name, false);
        h.subscribe(id, "q/#", opts(QoS::AtLeastOnce));
        h.close(id);
    }
    let (count, bytes) = message::stored();
    h.connect(4, "publisher", true);
    for i in 1..=3 {
        h.packet(
            4,
            Packet::Publish(publish("q/x", &[b'x'; 10], QoS::AtLeastOnce, i)),
        );
    }
    // Queued for both sessions, stored once.
    assert_eq!(message::stored(), (count + 3, bytes + 30));
    h.sys(Memory::default());
    let (count, bytes) = message::stored();
    h.now += Duration::from_secs(61);
    h.broker.tick(h.now, &mut Vec::new());
    assert_eq!(message::stored(), (count - 3, bytes - 30));
    let out = texts(&h.sys(Memory::default()), 1);
    assert!(
        out.contains(&("$SYS/broker/clients/expired".into(), "2".into())),
        "{out:?}"
    );
}

#[test]
fn sys_topics_are_retained_read_checked_and_not_matched_by_hash() {
    let mut h = guarded(Rc::new(Rules), false);
    h.sys(Memory::default());
    // `#` does not match `$SYS` topics ([MQTT-4.7.2-1]).
    h.connect_with(1, as_user(Version::V311, "admin", "admin"));
    assert!(published(&h.subscribe(1, "#", opts(QoS::AtMostOnce)), 1).is_empty());
    assert!(texts(&h.sys(Memory::default()), 1).is_empty());
    // A new subscriber gets the retained values at once, and updates.
    let out = h.subscribe(1, "$SYS/broker/uptime", opts(QoS::AtMostOnce));
    assert_eq!(
        published(&out, 1)[..],
        [("$SYS/broker/uptime".into(), QoS::AtMostOnce, 0, false, true)]
    );
    assert_eq!(texts(&h.sys(Memory::default()), 1).len(), 1);
    // A client that may not read them gets neither.
    h.connect_with(2, as_user(Version::V311, "user", "ok"));
    assert!(published(&h.subscribe(2, "$SYS/#", opts(QoS::AtMostOnce)), 2).is_empty());
    assert!(texts(&h.sys(Memory::default()), 2).is_empty());
}

#[test]
fn clients_may_not_publish_to_sys() {
    // As mosquitto: any topic that starts with `$SYS` is the broker's.
    let mut h = Harness::new();
    h.sys(Memory::default());
    h.connect_with(1, connect_packet(Version::V5, "spoof", true, 0));
    for topic in ["$SYS/broker/version", "$SYS", "$SYSX/y"] {
        let mut p = publish(topic, b"fake", QoS::AtLeastOnce, 1);
        p.retain = true;
        let out = h.packet(1, Packet::Publish(p));
        assert!(matches!(
            sent(&out, 1)[..],
            [Packet::PubAck(Ack { reason: 0x87, .. })]
        ));
    }
    let out = h.subscribe(1, "$SYS/broker/version", opts(QoS::AtMostOnce));
    assert_eq!(
        texts(&out, 1)[0].1,
        format!("roost version {}", env!("CARGO_PKG_VERSION"))
    );
}

/// A heap the tests set: over `memory_limit` while it says so.
static HEAP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn fake_heap() -> usize {
    HEAP.load(std::sync::atomic::Ordering::Relaxed)
}

impl Harness {
    /// The heap over `memory_limit` or not.
    fn memory_full(&mut self, full: bool) {
        self.broker.set_heap_probe(fake_heap);
        self.broker.set_memory_limit(1000);
        HEAP.store(
            if full { 2000 } else { 0 },
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

#[test]
fn over_the_memory_limit_new_messages_and_subscriptions_are_refused() {
    let mut h = Harness::new();
    h.connect(1, "sub", true);
    h.subscribe(1, "t", opts(QoS::ExactlyOnce));
    h.connect_with(2, connect_packet(Version::V5, "pub5", true, 0));
    h.connect(3, "pub3", true);
    h.memory_full(true);
    // v5: QoS 1 and 2 are refused with 0x97, QoS 0 is dropped.
    let out = h.packet(2, Packet::Publish(publish("t", b"1", QoS::AtLeastOnce, 1)));
    assert!(matches!(
        sent(&out, 2)[..],
        [Packet::PubAck(Ack { reason: 0x97, .. })]
    ));
    let out = h.packet(2, Packet::Publish(publish("t", b"2", QoS::ExactlyOnce, 2)));
    assert!(matches!(
        sent(&out, 2)[..],
        [Packet::PubRec(Ack { reason: 0x97, .. })]
    ));
    let out = h.packet(2, Packet::Publish(publish("t", b"0", QoS::AtMostOnce, 0)));
    assert!(out.is_empty());
    // The refused QoS 2 flow is over: the same id is a new message later.
    assert!(
        h.broker
            .sessions
            .iter()
            .all(|(_, s)| s.flow().awaiting_rel.is_empty())
    );
    // 3.x cannot be told: disconnected.
    let out = h.packet(3, Packet::Publish(publish("t", b"3", QoS::AtLeastOnce, 1)));
    assert!(closed(&out, 3));
    assert!(sent(&out, 3).is_empty());
    // Everything else goes on; once under the limit, messages flow again.
    assert!(matches!(
        sent(&h.packet(1, Packet::PingReq), 1)[..],
        [Packet::PingResp]
    ));
    // A SUBSCRIBE is refused filter by filter, a ping answered.
    let out = h.packet(
        2,
        Packet::Subscribe(Subscribe {
            packet_id: 3,
            filters: vec![
                ("a".into(), opts(QoS::AtMostOnce)),
                ("b".into(), opts(QoS::AtMostOnce)),
            ],
            properties: Vec::new(),
        }),
    );
    assert!(
        matches!(&sent(&out, 2)[..], [Packet::SubAck(SubAck { codes, .. })] if codes[..] == [0x97, 0x97]),
        "{out:?}"
    );
    h.memory_full(false);
    let out = h.packet(2, Packet::Publish(publish("t", b"2", QoS::ExactlyOnce, 2)));
    assert!(matches!(
        sent(&out, 2)[..],
        [Packet::PubRec(Ack { reason: 0, .. })]
    ));
    assert_eq!(texts(&out, 1), [("t".into(), "2".into())]);
}

#[test]
fn sys_topics_are_neither_saved_nor_counted_as_changes() {
    let mut h = Harness::new();
    let before = h.broker.changes();
    h.sys(Memory {
        heap_current: 1,
        heap_maximum: 1,
        rss: 1,
    });
    assert_eq!(h.broker.changes(), before);
    let snap = h.broker.snapshot(h.now, std::time::SystemTime::now());
    assert!(snap.retained.is_empty(), "{snap:?}");
}

impl Harness {
    /// Bridge "local.gw" forwarding `filter` (as `bridge::Bridge` asks).
    fn add_bridge(&mut self, filter: &str) {
        self.add_bridge_keeping(filter, true);
    }

    /// The same, keeping what waits for an absent remote or not
    /// (`local_cleansession`).
    fn add_bridge_keeping(&mut self, filter: &str, keep: bool) {
        let options = SubOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: 1,
        };
        let mut out = Vec::new();
        self.broker.add_bridge(
            "local.gw",
            &[(filter.into(), options)],
            keep,
            self.now,
            &mut out,
        );
        assert!(out.is_empty(), "nothing goes out while the remote is away");
        self.check();
    }

    fn bridge_connected(&mut self, id: ConnId, remote_subs: &[&str]) -> Vec<Action> {
        self.bridge_connected_unsubscribing(id, remote_subs, &[])
    }

    /// The same, unsubscribing from `unsubs` (`bridge_attempt_unsubscribe`).
    fn bridge_connected_unsubscribing(
        &mut self,
        id: ConnId,
        remote_subs: &[&str],
        unsubs: &[&str],
    ) -> Vec<Action> {
        let remote = Remote {
            version: Version::V311,
            receive_max: u16::MAX,
            max_packet: u32::MAX,
        };
        let filters = RemoteFilters {
            subscribe: remote_subs
                .iter()
                .map(|f| (f.to_string(), opts(QoS::AtLeastOnce)))
                .collect(),
            unsubscribe: unsubs.iter().map(|f| f.to_string()).collect(),
        };
        let mut out = Vec::new();
        self.broker
            .bridge_connected(id, "local.gw", remote, filters, self.now, &mut out);
        self.check();
        out
    }
}

#[test]
fn a_bridge_keeps_what_waits_for_its_remote_and_sends_it_in_order() {
    let mut h = Harness::new();
    h.add_bridge("sensors/#");
    h.connect(1, "sensor", true);
    for (i, payload) in [b"1", b"2", b"3"].iter().enumerate() {
        h.packet(
            1,
            Packet::Publish(publish(
                "sensors/t",
                *payload,
                QoS::AtLeastOnce,
                i as u16 + 1,
            )),
        );
    }
    assert_eq!(h.broker.bridge_backlog("local.gw"), 3);
    let out = h.bridge_connected(9, &["cmd/#"]);
    let Some(Action::Send(9, Packet::Subscribe(s))) = out.first() else {
        panic!("SUBSCRIBE first: {out:?}");
    };
    assert_eq!(s.filters[0].0, "cmd/#");
    assert_eq!(payloads(&out, 9), [b"1", b"2", b"3"]);
    let ids: Vec<u16> = published(&out, 9).iter().map(|p| p.2).collect();
    assert!(
        !ids.contains(&s.packet_id),
        "the SUBSCRIBE's id is not reused"
    );
    // The remote loses the connection before acknowledging: all again.
    h.close(9);
    let out = h.bridge_connected(10, &[]);
    assert_eq!(payloads(&out, 10), [b"1", b"2", b"3"]);
    assert!(published(&out, 10).iter().all(|p| p.3), "DUP set");
    for id in ids {
        h.packet(10, Packet::PubAck(ack(id)));
    }
    assert_eq!(h.broker.bridge_backlog("local.gw"), 0);
}

#[test]
fn a_bridge_unsubscribes_then_subscribes_with_ids_of_its_own() {
    let mut h = Harness::new();
    h.add_bridge("sensors/#");
    let out = h.bridge_connected_unsubscribing(9, &["cmd/#"], &["site1/sensors/#"]);
    let [
        Action::Send(9, Packet::Unsubscribe(u)),
        Action::Send(9, Packet::Subscribe(s)),
    ] = &out[..]
    else {
        panic!("UNSUBSCRIBE, then SUBSCRIBE: {out:?}");
    };
    assert_eq!(u.filters, ["site1/sensors/#"]);
    assert_ne!(u.packet_id, s.packet_id);
    // Nothing to unsubscribe from: no UNSUBSCRIBE.
    h.close(9);
    let out = h.bridge_connected(10, &["cmd/#"]);
    assert!(
        matches!(out[..], [Action::Send(10, Packet::Subscribe(_))]),
        "{out:?}"
    );
}

/// `local_cleansession true`: what is published while the remote is away
/// is not kept, nor what was unacknowledged when it went; the session and
/// its subscriptions stay, and what comes while it is up goes out.
#[test]
fn a_bridge_with_local_cleansession_keeps_nothing_for_an_absent_remote() {
    let mut h = Harness::new();
    h.add_bridge_keeping("sensors/#", false);
    h.connect(1, "sensor", true);
    h.packet(
        1,
        Packet::Publish(publish("sensors/t", b"away", QoS::AtLeastOnce, 1)),
    );
    assert_eq!(h.broker.bridge_backlog("local.gw"), 0);
    let out = h.bridge_connected(9, &[]);
    assert!(payloads(&out, 9).is_empty(), "{out:?}");
    let out = h.packet(
        1,
        Packet::Publish(publish("sensors/t", b"up", QoS::AtLeastOnce, 2)),
    );
    assert_eq!(payloads(&out, 9), [b"up"]);
    // Lost before the remote acknowledged it: dropped, not sent again.
    h.close(9);
    assert_eq!(h.broker.bridge_backlog("local.gw"), 0);
    assert_eq!(h.broker.stats.publish_dropped, 2);
    let out = h.bridge_connected(10, &[]);
    assert!(payloads(&out, 10).is_empty(), "{out:?}");
    let snap = h.broker.snapshot(h.now, std::time::SystemTime::now());
    assert!(snap.sessions.is_empty(), "not saved: {snap:?}");
}

#[test]
fn what_a_bridge_brings_in_reaches_clients_but_does_not_go_back_out() {
    let mut h = Harness::new();
    h.add_bridge("#");
    h.connect(1, "dashboard", true);
    h.subscribe(1, "cmd/#", opts(QoS::AtLeastOnce));
    h.bridge_connected(9, &["cmd/#"]);
    let out = h.packet(
        9,
        Packet::Publish(publish("cmd/heater", b"on", QoS::AtLeastOnce, 7)),
    );
    assert_eq!(payloads(&out, 1), [b"on"]);
    assert!(
        payloads(&out, 9).is_empty(),
        "No Local: not back to the remote"
    );
    assert!(sent(&out, 9).contains(&&Packet::PubAck(ack(7))));
}

#[test]
fn a_bridge_passes_access_control_outlives_expiry_and_keeps_its_id() {
    let mut h = guarded(Rc::new(Rules), true);
    h.broker.config.persistent_client_expiration = Some(1);
    h.add_bridge("private/#");
    h.connect(1, "sensor", true);
    h.packet(
        1,
        Packet::Publish(publish("private/x", b"x", QoS::AtLeastOnce, 1)),
    );
    h.advance(Duration::from_secs(3600));
    // Rules let only "admin" read private/..; the bridge is trusted.
    let out = h.bridge_connected(9, &[]);
    assert_eq!(payloads(&out, 9), [b"x"]);
    // A client may not take the bridge's session.
    let (connack, out) = h.connect_with(2, connect_packet(Version::V311, "local.gw", false, 0));
    assert_eq!(connack.code, reason::V3_IDENTIFIER_REJECTED);
    assert!(closed(&out, 2) && !closed(&out, 9));
}

#[test]
fn another_brokers_3x_bridge_gets_no_local_and_retain_as_published() {
    let mut h = Harness::new();
    let mut c = connect_packet(Version::V311, "their-bridge", true, 0);
    c.bridge = true;
    h.connect_with(1, c);
    h.subscribe(1, "t/#", opts(QoS::AtMostOnce));
    let mine = publish("t/1", b"mine", QoS::AtMostOnce, 0);
    let out = h.packet(
        1,
        Packet::Publish(Publish {
            retain: true,
            ..mine
        }),
    );
    assert!(payloads(&out, 1).is_empty(), "not sent back to the bridge");
    h.connect(2, "sensor", true);
    let theirs = publish("t/2", b"live", QoS::AtMostOnce, 0);
    let out = h.packet(
        2,
        Packet::Publish(Publish {
            retain: true,
            ..theirs
        }),
    );
    assert!(published(&out, 1)[0].4, "retain flag kept");
    // It may also publish its state under $SYS, as mosquitto's bridges do.
    h.subscribe(2, "$SYS/broker/connection/#", opts(QoS::AtMostOnce));
    let state = publish("$SYS/broker/connection/x/state", b"1", QoS::AtMostOnce, 0);
    let out = h.packet(1, Packet::Publish(state));
    assert_eq!(payloads(&out, 2), [b"1"]);
}

#[test]
fn a_publisher_reading_its_own_topic_gets_the_ack_before_the_copy() {
    let mut h = Harness::new();
    h.connect(1, "echo", true);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.connect(2, "other", true);
    h.subscribe(2, "t", opts(QoS::AtMostOnce));
    let out = h.packet(1, Packet::Publish(publish("t", b"x", QoS::AtLeastOnce, 7)));
    let to_echo: Vec<&str> = out
        .iter()
        .filter(|a| a.conn() == 1)
        .map(|a| match a {
            Action::Send(_, Packet::PubAck(_)) => "PUBACK",
            Action::Publish(..) => "PUBLISH",
            _ => "other",
        })
        .collect();
    assert_eq!(to_echo, ["PUBACK", "PUBLISH"]);
    assert_eq!(published(&out, 2).len(), 1);
}

#[test]
fn max_keepalive_caps_v5_and_refuses_3x_clients_asking_for_more_but_not_for_0() {
    let mut h = Harness::with(Config {
        max_keepalive: 60,
        ..Config::default()
    });
    let (ack, _) = h.connect_with(1, connect_packet(Version::V311, "zero", true, 0));
    assert_eq!(ack.code, 0, "keep-alive 0, as mosquitto 2.0.11 takes it");
    let (ack, out) = h.connect_with(2, connect_packet(Version::V311, "long", true, 61));
    assert_eq!(ack.code, 0x02);
    assert!(closed(&out, 2));
    let (ack, _) = h.connect_with(3, connect_packet(Version::V5, "five", true, 0));
    assert!(ack.properties.contains(&Property::ServerKeepAlive(60)));
}
