//! Codec tests: shared helpers and sample packets; the cases live in the
//! submodules.

mod garbage;
mod incomplete;
mod malformed;
mod properties;
mod roundtrip;
mod vectors;

use super::*;

const ALL_VERSIONS: [Version; 3] = [Version::V31, Version::V311, Version::V5];

/// Encodes `packet` for `version`.
fn enc(packet: &Packet, version: Version) -> Vec<u8> {
    let mut out = Vec::new();
    encode(packet, version, &mut out);
    out
}

/// Decodes exactly one whole packet from `bytes`.
fn dec(bytes: &[u8], version: Version) -> Result<Packet, DecodeError> {
    match decode(bytes, version, usize::MAX)? {
        Some((packet, used)) => {
            assert_eq!(
                used,
                bytes.len(),
                "decode consumed {used} of {}",
                bytes.len()
            );
            Ok(packet)
        }
        None => panic!("incomplete: {bytes:02x?}"),
    }
}

/// Encodes, decodes, and checks the packet came back unchanged.
fn round_trip(packet: &Packet, version: Version) {
    let bytes = enc(packet, version);
    assert_eq!(
        dec(&bytes, version).as_ref(),
        Ok(packet),
        "{version:?} {bytes:02x?}"
    );
    if let Packet::Publish(p) = packet {
        assert_eq!(publish_len(&p.as_ref(), version), bytes.len());
    }
}

/// `props` in 5.0, none before.
fn props(version: Version, props: Properties) -> Properties {
    if version == Version::V5 {
        props
    } else {
        Vec::new()
    }
}

fn user(k: &str, v: &str) -> Property {
    Property::UserProperty(k.into(), v.into())
}

fn connect(version: Version) -> Connect {
    Connect {
        version,
        clean_start: true,
        bridge: false,
        keep_alive: 60,
        client_id: "sensor-1".into(),
        will: None,
        username: None,
        password: None,
        properties: vec![],
    }
}

fn publish(qos: QoS, packet_id: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: "home/temp".into(),
        packet_id,
        properties: vec![],
        payload: b"21.5".to_vec(),
    }
}

fn ack(packet_id: u16) -> Ack {
    Ack {
        packet_id,
        reason: 0,
        properties: vec![],
    }
}

fn options(qos: QoS) -> SubOptions {
    SubOptions {
        qos,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
    }
}

fn subscribe(filters: &[(&str, SubOptions)]) -> Subscribe {
    Subscribe {
        packet_id: 7,
        filters: filters.iter().map(|(f, o)| (f.to_string(), *o)).collect(),
        properties: vec![],
    }
}

fn reason_only(reason: u8, properties: Properties) -> ReasonOnly {
    ReasonOnly { reason, properties }
}

/// Every packet type with representative fields, valid for `version`.
fn samples(version: Version) -> Vec<Packet> {
    let v5 = version == Version::V5;
    let mut full = connect(version);
    full.clean_start = false;
    full.will = Some(Will {
        topic: "status/sensor-1".into(),
        payload: b"offline".to_vec(),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: props(version, vec![Property::WillDelayInterval(30)]),
    });
    full.username = Some("alice".into());
    full.password = Some(vec![0, 1, 0xFF]);
    full.properties = props(version, vec![Property::SessionExpiryInterval(3600)]);

    let mut publishes = vec![
        publish(QoS::AtMostOnce, 0),
        Publish {
            dup: true,
            retain: true,
            payload: vec![],
            ..publish(QoS::AtLeastOnce, 1)
        },
        Publish {
            properties: props(version, vec![Property::MessageExpiryInterval(9)]),
            ..publish(QoS::ExactlyOnce, 0xFFFF)
        },
    ];
    if v5 {
        publishes.push(Publish {
            topic: String::new(),
            properties: vec![Property::TopicAlias(3)],
            ..publish(QoS::AtMostOnce, 0)
        });
    }

    let mut acks = vec![ack(1)];
    if v5 {
        acks.push(Ack {
            reason: reason::NO_MATCHING_SUBSCRIBERS,
            ..ack(2)
        });
        acks.push(Ack {
            properties: vec![user("k", "v")],
            ..ack(3)
        });
        acks.push(Ack {
            reason: reason::NOT_AUTHORIZED,
            properties: vec![Property::ReasonString("no".into())],
            ..ack(4)
        });
    }

    let mut sub_opts = options(QoS::ExactlyOnce);
    if v5 {
        sub_opts = SubOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: 2,
        };
    }

    let mut packets = vec![
        Packet::Connect(Box::new(connect(version))),
        Packet::Connect(Box::new(full)),
        Packet::ConnAck(ConnAck {
            // 3.1 has no session present flag.
            session_present: version > Version::V31,
            code: 0,
            properties: props(version, vec![Property::MaximumQoS(1)]),
        }),
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: if v5 {
                reason::NOT_AUTHORIZED
            } else {
                reason::V3_NOT_AUTHORIZED
            },
            properties: vec![],
        }),
        Packet::Subscribe(subscribe(&[
            ("a/+", options(QoS::AtMostOnce)),
            ("b/#", sub_opts),
        ])),
        Packet::Subscribe(Subscribe {
            properties: props(version, vec![Property::SubscriptionIdentifier(268_435_455)]),
            ..subscribe(&[("#", options(QoS::AtLeastOnce))])
        }),
        Packet::SubAck(SubAck {
            packet_id: 7,
            codes: vec![0, 1, 2, 0x80],
            properties: props(version, vec![user("a", "b")]),
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 8,
            filters: vec!["a/+".into(), "b/#".into()],
            properties: props(version, vec![user("a", "b")]),
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: 8,
            codes: if v5 {
                vec![0, reason::NO_SUBSCRIPTION_EXISTED]
            } else {
                vec![]
            },
            properties: vec![],
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(reason_only(0, vec![])),
    ];
    packets.extend(publishes.into_iter().map(Packet::Publish));
    for a in acks {
        packets.push(Packet::PubAck(a.clone()));
        packets.push(Packet::PubRec(a.clone()));
        packets.push(Packet::PubRel(a.clone()));
        packets.push(Packet::PubComp(a));
    }
    if v5 {
        packets.extend([
            Packet::Disconnect(reason_only(reason::DISCONNECT_WITH_WILL, vec![])),
            Packet::Disconnect(reason_only(0, vec![Property::SessionExpiryInterval(0)])),
            Packet::Auth(reason_only(0, vec![])),
            Packet::Auth(reason_only(
                0x18,
                vec![
                    Property::AuthenticationMethod("SCRAM-SHA-1".into()),
                    Property::AuthenticationData(vec![1, 2, 3]),
                ],
            )),
        ]);
    }
    packets
}
