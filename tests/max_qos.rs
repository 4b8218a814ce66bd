//! `max_qos` on a listener, against mosquitto 2.0.11 with the same
//! setting: what a v5 and a 3.1.1 client see when they subscribe above
//! it, publish above it, or bring a will above it, must be what mosquitto
//! shows them. The same observations are made on both brokers and
//! compared; roost's are also checked against the values mosquitto was
//! seen to give, so the test holds where mosquitto is not installed.

mod common;
#[path = "common/wire.rs"]
mod wire;

use common::{Mosquitto, Roost, have};
use wire::{
    CONNACK, Client, Connect, DISCONNECT, P_MAXIMUM_QOS, PropValue, Publish, Will, find_prop,
};

/// What clients of a `max_qos 1` listener saw.
#[derive(Debug, PartialEq)]
struct Seen {
    /// v5 CONNACK: code and Maximum QoS.
    v5_connack: (u8, Option<u32>),
    /// SUBACK codes for `t/#` asked at QoS 2, by a v5 and a 3.1.1 client.
    v5_granted: Vec<u8>,
    v4_granted: Vec<u8>,
    /// The QoS a QoS 1 message was delivered at to the QoS 2 subscriber.
    delivered: u8,
    /// What a v5 client got for a QoS 2 PUBLISH before the close: packet
    /// kinds with DISCONNECT's reason.
    v5_publish_2: Vec<(u8, u8)>,
    /// What a 3.1.1 client got for one (closed without a word: empty).
    v4_publish_2: Vec<(u8, u8)>,
    /// A v5 CONNECT with a QoS 2 will: CONNACK code and Maximum QoS.
    v5_will_2: (u8, Option<u32>),
    /// A 3.1.1 one: the packets before the close.
    v4_will_2: Vec<(u8, u8)>,
}

fn max_qos(props: &[wire::Prop]) -> Option<u32> {
    match find_prop(props, P_MAXIMUM_QOS) {
        Some(PropValue::Int(v)) => Some(*v),
        _ => None,
    }
}

/// The packets until the close, as (kind, DISCONNECT reason or CONNACK
/// code or 0).
fn until_closed(c: &mut Client) -> Vec<(u8, u8)> {
    c.expect_closed()
        .iter()
        .map(|p| match p.kind() {
            DISCONNECT => (DISCONNECT, p.disconnect_reason()),
            CONNACK => (CONNACK, p.connack(c.v5).code),
            kind => (kind, 0),
        })
        .collect()
}

fn observe(addr: &str) -> Seen {
    let (mut five, ack) = Client::connect(addr, &Connect::v5("five"));
    let v5_connack = (ack.code, max_qos(&ack.props));
    let v5_granted = five.subscribe(1, &[("t/#", 2)]);
    let mut four = Client::v4(addr, "four");
    let v4_granted = four.subscribe(1, &[("t/#", 2)]);

    five.publish(&Publish::new("t/1", b"one").qos(1, 2));
    let delivered = five.recv_publish_ack().qos;
    four.recv_publish_ack();

    five.send(&Publish::new("t/2", b"two").qos(2, 3).encode(true));
    let v5_publish_2 = until_closed(&mut five);
    four.send(&Publish::new("t/2", b"two").qos(2, 3).encode(false));
    let v4_publish_2 = until_closed(&mut four);

    let will = || Will::new("w/t", b"bye").qos(2);
    let mut c = Client::open(addr);
    c.v5 = true;
    c.send(&Connect::v5("willing").will(will()).encode());
    let ack = c.expect().connack(true);
    let v5_will_2 = (ack.code, max_qos(&ack.props));
    let mut c = Client::open(addr);
    c.send(&Connect::v4("willing").will(will()).encode());
    let v4_will_2 = until_closed(&mut c);
    Seen {
        v5_connack,
        v5_granted,
        v4_granted,
        delivered,
        v5_publish_2,
        v4_publish_2,
        v5_will_2,
        v4_will_2,
    }
}

#[test]
fn max_qos_as_mosquitto_has_it() {
    let roost = Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\nmax_qos 1\n");
    let seen = observe(&roost.addr());
    // What mosquitto 2.0.11 was seen to do.
    assert_eq!(
        seen,
        Seen {
            v5_connack: (0, Some(1)),
            v5_granted: vec![1],
            v4_granted: vec![1],
            delivered: 1,
            v5_publish_2: vec![(DISCONNECT, 0x9B)],
            v4_publish_2: vec![],
            v5_will_2: (0x9B, Some(1)),
            v4_will_2: vec![],
        }
    );
    if !have("mosquitto") {
        eprintln!("SKIPPED: mosquitto not installed; roost checked against recorded values");
        return;
    }
    let mosquitto = Mosquitto::with_config("max_qos 1\n");
    assert_eq!(
        seen,
        observe(&mosquitto.addr()),
        "roost and mosquitto differ"
    );
}
