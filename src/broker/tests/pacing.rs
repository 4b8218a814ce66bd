//! Memory bounded by pacing: queues that wait for the connection's
//! output, publishers held while a queue is full, retained messages
//! walked as the output takes them.

use super::*;

fn holds(out: &[Action], id: ConnId) -> bool {
    out.iter()
        .any(|a| matches!(a, Action::Hold(to) if *to == id))
}

fn resumes(out: &[Action], id: ConnId) -> bool {
    out.iter()
        .any(|a| matches!(a, Action::Resume(to) if *to == id))
}

impl Harness {
    fn publish_n(&mut self, id: ConnId, topic: &str, qos: QoS, n: u8) -> Vec<Action> {
        let mut out = Vec::new();
        for i in 0..n {
            let packet_id = if qos == QoS::AtMostOnce {
                0
            } else {
                u16::from(i) + 1
            };
            out.extend(self.packet(id, Packet::Publish(publish(topic, &[i], qos, packet_id))));
        }
        out
    }

    fn output_ready(&mut self, id: ConnId) -> Vec<Action> {
        let mut out = Vec::new();
        self.broker
            .output_ready(id, self.broker.config.max_outgoing, self.now, &mut out);
        self.check();
        out
    }

    /// Acknowledges every QoS 1 PUBLISH to `id` in `out`, and those the
    /// acks bring, until none come; returns their payloads' first bytes.
    fn ack_all(&mut self, id: ConnId, mut out: Vec<Action>) -> Vec<u8> {
        let mut got = Vec::new();
        loop {
            let ids: Vec<u16> = published(&out, id).iter().map(|p| p.2).collect();
            got.extend(payloads(&out, id).iter().map(|p| p[0]));
            if ids.is_empty() {
                return got;
            }
            out = ids
                .into_iter()
                .flat_map(|p| self.packet(id, Packet::PubAck(ack(p))))
                .collect();
        }
    }
}

#[test]
fn a_full_output_queues_qos0_too_and_sends_it_in_order_once_there_is_room() {
    let mut h = Harness::new();
    h.connect(1, "sub", true);
    h.subscribe(1, "t", opts(QoS::AtMostOnce));
    h.connect(2, "pub", true);
    h.broker.output_full(1);
    let out = h.publish_n(2, "t", QoS::AtMostOnce, 5);
    assert!(published(&out, 1).is_empty(), "nothing encoded meanwhile");
    assert_eq!(h.broker.stats.publish_dropped, 0);
    let out = h.output_ready(1);
    let got: Vec<u8> = payloads(&out, 1).iter().map(|p| p[0]).collect();
    assert_eq!(got, [0, 1, 2, 3, 4]);
    // Room again: straight through.
    assert_eq!(
        published(&h.publish_n(2, "t", QoS::AtMostOnce, 1), 1).len(),
        1
    );
}

#[test]
fn a_queue_goes_out_max_outgoing_bytes_at_a_time() {
    let mut h = Harness::with(Config {
        max_outgoing: 100,
        ..Config::default()
    });
    h.connect(1, "sub", true);
    h.subscribe(1, "t", opts(QoS::AtMostOnce));
    h.connect(2, "pub", true);
    h.broker.output_full(1);
    for i in 0..10 {
        h.packet(
            2,
            Packet::Publish(publish("t", &[i; 30], QoS::AtMostOnce, 0)),
        );
    }
    // 35 bytes each: the third crosses 100 bytes, and the loop (seeing
    // its output full) says when to go on.
    let out = h.output_ready(1);
    assert_eq!(published(&out, 1).len(), 3);
    h.broker.output_full(1);
    let mut total = 3;
    while total < 10 {
        let n = published(&h.output_ready(1), 1).len();
        assert!(n > 0);
        total += n;
        h.broker.output_full(1);
    }
    assert_eq!(total, 10);
}

/// Messages freed by a subscriber's PUBACK go out up to the room its
/// output has, not `max_outgoing` on top of what it holds.
#[test]
fn what_a_puback_lets_out_stops_at_the_outputs_room() {
    let mut h = Harness::with(Config {
        max_inflight: 1,
        ..Config::default()
    });
    h.connect(1, "sub", true);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.connect(2, "pub", true);
    let first = h.packet(
        2,
        Packet::Publish(publish("t", &[0; 30], QoS::AtLeastOnce, 1)),
    );
    let first_id = published(&first, 1)[0].2;
    h.packet(
        2,
        Packet::Publish(publish("t", &[1; 30], QoS::AtLeastOnce, 2)),
    );
    for i in 2..10 {
        h.packet(
            2,
            Packet::Publish(publish("t", &[i; 30], QoS::AtMostOnce, 0)),
        );
    }
    // About 35 bytes each: the QoS 1 one freed by the ack and one QoS 0
    // behind it cross 40 bytes.
    h.broker.output_room(1, 40);
    let out = h.packet(1, Packet::PubAck(ack(first_id)));
    let got: Vec<u8> = payloads(&out, 1).iter().map(|p| p[0]).collect();
    assert_eq!(got, [1, 2]);
    // The loop says the output has room: the rest, in order.
    h.broker.output_full(1);
    let got: Vec<u8> = payloads(&h.output_ready(1), 1)
        .iter()
        .map(|p| p[0])
        .collect();
    assert_eq!(got, [3, 4, 5, 6, 7, 8, 9]);
}

#[test]
fn a_full_queue_holds_its_publisher_until_it_drains_to_half() {
    let mut h = Harness::with(Config {
        max_inflight: 1,
        max_queued: 4,
        ..Config::default()
    });
    h.connect(1, "sub", true);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.connect(2, "pub", true);
    // One in flight, four queued: full. The sixth is queued all the same,
    // and its publisher is held.
    let out = h.publish_n(2, "t", QoS::AtLeastOnce, 5);
    assert!(!holds(&out, 2));
    let out = h.packet(2, Packet::Publish(publish("t", &[5], QoS::AtLeastOnce, 6)));
    assert!(holds(&out, 2));
    assert!(
        matches!(sent(&out, 2)[..], [Packet::PubAck(_)]),
        "acknowledged: it is queued"
    );
    // Each ack sends the next; the one that leaves two queued frees it.
    let mut packet_id = 1;
    let mut freed_at = None;
    for queued in (2..5).rev() {
        let out = h.packet(1, Packet::PubAck(ack(packet_id)));
        packet_id = published(&out, 1)[0].2;
        if resumes(&out, 2) {
            freed_at = Some(queued);
        }
    }
    assert_eq!(freed_at, Some(2));
    assert_eq!(h.broker.stats.publish_dropped, 0);
    let rest = h.packet(1, Packet::PubAck(ack(packet_id)));
    assert_eq!(h.ack_all(1, rest), [4, 5]);
}

/// Queues that fill and drain again and again keep one stall timer each,
/// not one per fill: under overload that is many a second, each kept
/// until `slow_subscriber_timeout`. (More subscribers than spare states
/// are kept, so some states are made anew.)
#[test]
fn queues_filled_again_and_again_arm_one_stall_timer_each() {
    let mut h = Harness::with(Config {
        max_queued: 2,
        ..Config::default()
    });
    let subs = 1..=70;
    for id in subs.clone() {
        h.connect(id, &format!("sub{id}"), true);
        h.subscribe(id, "t", opts(QoS::AtMostOnce));
    }
    h.connect(100, "pub", true);
    let mut most = 0;
    for _ in 0..20 {
        subs.clone().for_each(|id| h.broker.output_full(id));
        let out = h.publish_n(100, "t", QoS::AtMostOnce, 3);
        assert!(holds(&out, 100), "full");
        for id in subs.clone() {
            assert_eq!(payloads(&h.output_ready(id), id).len(), 3, "drained");
        }
        most = most.max(h.broker.timers.len());
    }
    // One connect timeout per connection and one stall timer per queue.
    assert!(most <= 2 * 71, "{most} timers");
}

/// A subscriber's state, once given up and taken by another session,
/// carries no stall timer with it: the other's full queue frees its
/// publishers after `slow_subscriber_timeout` all the same.
#[test]
fn a_recycled_state_still_arms_its_stall_timer() {
    let mut h = Harness::with(Config {
        max_queued: 2,
        slow_subscriber_timeout: Duration::from_secs(5),
        ..Config::default()
    });
    h.connect(1, "first", true);
    h.subscribe(1, "a", opts(QoS::AtMostOnce));
    h.connect(2, "second", true);
    h.subscribe(2, "b", opts(QoS::AtMostOnce));
    h.connect(3, "pub", true);
    // The first fills, then drains: its state goes back for reuse.
    h.broker.output_full(1);
    assert!(holds(&h.publish_n(3, "a", QoS::AtMostOnce, 3), 3));
    assert_eq!(payloads(&h.output_ready(1), 1).len(), 3);
    // The second fills and stays full.
    h.broker.output_full(2);
    assert!(holds(&h.publish_n(3, "b", QoS::AtMostOnce, 3), 3));
    h.now += Duration::from_secs(6);
    let mut out = Vec::new();
    h.broker.tick(h.now, &mut out);
    assert!(resumes(&out, 3), "the publisher is freed after the timeout");
}

#[test]
fn a_queue_full_past_the_timeout_frees_its_publishers_and_drops_until_it_drains() {
    let mut h = Harness::with(Config {
        max_inflight: 1,
        max_queued: 2,
        slow_subscriber_timeout: Duration::from_secs(5),
        ..Config::default()
    });
    h.connect(1, "stuck", true);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.connect(2, "pub", true);
    assert!(holds(&h.publish_n(2, "t", QoS::AtLeastOnce, 4), 2));
    assert!(!resumes(&h.advance(Duration::from_millis(4_999)), 2));
    assert!(resumes(&h.advance(Duration::from_millis(1)), 2));
    // Stuck: drops at its bound, holds no one.
    let out = h.packet(2, Packet::Publish(publish("t", b"x", QoS::AtLeastOnce, 9)));
    assert!(!holds(&out, 2));
    assert_eq!(h.broker.stats.publish_dropped, 1);
    // Once it catches up, it paces again.
    let out = h.packet(1, Packet::PubAck(ack(1)));
    h.ack_all(1, out);
    assert!(holds(&h.publish_n(2, "t", QoS::AtLeastOnce, 4), 2));
}

#[test]
fn without_a_timeout_a_full_queue_drops_as_in_mosquitto() {
    let mut h = Harness::with(Config {
        max_inflight: 1,
        max_queued: 2,
        slow_subscriber_timeout: Duration::ZERO,
        ..Config::default()
    });
    h.connect(1, "sub", true);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.connect(2, "pub", true);
    assert!(!holds(&h.publish_n(2, "t", QoS::AtLeastOnce, 5), 2));
    assert_eq!(h.broker.stats.publish_dropped, 2);
}

#[test]
fn no_one_is_held_by_an_offline_session_or_by_their_own_queue() {
    let mut h = Harness::with(Config {
        max_inflight: 1,
        max_queued: 2,
        ..Config::default()
    });
    h.connect(1, "away", false);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.close(1);
    // A client reading its own messages: its acks come on the connection
    // that would be held.
    h.connect(2, "echo", true);
    h.subscribe(2, "t", opts(QoS::AtLeastOnce));
    let out = h.publish_n(2, "t", QoS::AtLeastOnce, 6);
    assert!(!holds(&out, 2));
    assert_eq!(h.broker.stats.publish_dropped, 4, "the offline session's");
    assert_eq!(h.ack_all(2, out), [0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_held_publisher_outlives_its_keep_alive_and_a_closed_one_is_forgotten() {
    let mut h = Harness::with(Config {
        max_inflight: 1,
        max_queued: 1,
        ..Config::default()
    });
    h.connect(1, "sub", true);
    h.subscribe(1, "t", opts(QoS::AtLeastOnce));
    h.connect_with(2, connect_packet(Version::V311, "pub", true, 2));
    assert!(holds(&h.publish_n(2, "t", QoS::AtLeastOnce, 3), 2));
    // Silent for 3 s only because roost does not read it.
    assert!(!closed(&h.advance(Duration::from_secs(4)), 2));
    h.close(2);
    let out = h.packet(1, Packet::PubAck(ack(1)));
    assert!(!resumes(&out, 2), "gone: nothing to resume");
}

#[test]
fn retained_messages_go_out_as_the_output_takes_them_before_live_ones() {
    let mut h = Harness::with(Config {
        max_outgoing: 200,
        ..Config::default()
    });
    h.connect(1, "pub", true);
    for i in 0..100u8 {
        let mut p = publish(&format!("r/{i:03}"), &[i; 20], QoS::AtMostOnce, 0);
        p.retain = true;
        h.packet(1, Packet::Publish(p));
    }
    h.connect(2, "sub", true);
    let out = h.subscribe(2, "r/#", opts(QoS::AtMostOnce));
    let mut got: Vec<u8> = payloads(&out, 2).iter().map(|p| p[0]).collect();
    assert!(got.len() < 100, "not all at once");
    h.broker.output_full(2);
    // A live message meanwhile waits behind them.
    h.packet(
        1,
        Packet::Publish(publish("r/live", b"L", QoS::AtMostOnce, 0)),
    );
    loop {
        let out = h.output_ready(2);
        let more: Vec<u8> = payloads(&out, 2).iter().map(|p| p[0]).collect();
        if more.is_empty() {
            break;
        }
        h.broker.output_full(2);
        got.extend(more);
    }
    let mut want: Vec<u8> = (0..100).collect();
    want.push(b'L');
    assert_eq!(got, want);
}

#[test]
fn a_repeated_filter_walks_the_retained_messages_once() {
    let mut h = Harness::new();
    h.connect(1, "pub", true);
    let mut p = publish("a/b", b"x", QoS::AtMostOnce, 0);
    p.retain = true;
    h.packet(1, Packet::Publish(p));
    h.connect(2, "sub", true);
    let filters = vec![("a/#".to_string(), opts(QoS::AtMostOnce)); 1000];
    let out = h.packet(
        2,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters,
            properties: Vec::new(),
        }),
    );
    assert_eq!(published(&out, 2).len(), 1);
}
