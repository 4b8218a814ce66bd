//! Input the specs call malformed or a protocol error, one test per rule,
//! named for it and citing its normative statement (3.1.1 and 5.0 number
//! some differently; both are given where they differ).

use super::*;

const V3: [Version; 2] = [Version::V31, Version::V311];
const STRICT: [Version; 2] = [Version::V311, Version::V5];

#[track_caller]
fn assert_malformed(bytes: &[u8], version: Version) {
    let got = decode(bytes, version, usize::MAX);
    assert!(
        matches!(got, Err(DecodeError::Malformed(_))),
        "{version:?} {bytes:02x?}: {got:?}"
    );
}

#[track_caller]
fn assert_protocol(bytes: &[u8], version: Version) {
    let got = decode(bytes, version, usize::MAX);
    assert!(
        matches!(got, Err(DecodeError::Protocol(_))),
        "{version:?} {bytes:02x?}: {got:?}"
    );
}

/// `bytes` with `from` (which must occur once) replaced by `to` of the same length.
fn patched(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut hits = bytes
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from);
    let (at, _) = hits.next().expect("pattern present");
    assert!(hits.next().is_none(), "pattern {from:02x?} not unique");
    bytes[at..at + from.len()].copy_from_slice(to);
    bytes
}

/// A CONNECT for `version` whose flags byte is replaced by `flags`.
fn connect_with_flags(version: Version, flags: u8) -> Vec<u8> {
    let mut bytes = enc(&Packet::Connect(Box::new(connect(version))), version);
    let name_len = if version == Version::V31 { 6 } else { 4 };
    bytes[2 + 2 + name_len + 1] = flags;
    bytes
}

fn publish_bytes(topic: &str, version: Version) -> Vec<u8> {
    let p = Publish {
        topic: topic.into(),
        ..publish(QoS::AtLeastOnce, 1)
    };
    enc(&Packet::Publish(p), version)
}

#[test]
fn remaining_length_over_four_bytes_is_malformed() {
    // [MQTT-1.5.5-1] (5.0), 2.2.3 (3.1.1): rejected without waiting for more.
    assert_malformed(&[0x30, 0x80, 0x80, 0x80, 0x80], Version::V311);
    assert_malformed(&[0xC0, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], Version::V5);
}

#[test]
fn reserved_fixed_header_flags_are_malformed() {
    // [MQTT-2.2.2-1] (3.1.1), [MQTT-2.2.2-2] (5.0): checked from the header alone.
    let firsts = [
        0x11, 0x21, 0x41, 0x58, 0x60, 0x64, 0x6A, 0x71, 0x80, 0x83, 0x91, 0xA0, 0xA3, 0xB1, 0xC1,
        0xD2, 0xE4, 0xF8,
    ];
    for version in STRICT {
        for first in firsts {
            if first >> 4 == 15 && version < Version::V5 {
                continue;
            }
            assert_malformed(&[first, 0], version);
        }
    }
}

#[test]
fn packet_type_0_is_malformed() {
    for version in ALL_VERSIONS {
        assert_malformed(&[0x00, 0x00], version);
    }
}

#[test]
fn packet_type_15_is_malformed_before_v5() {
    // Reserved in 3.1.1 (2.2.1); AUTH in 5.0.
    for version in V3 {
        assert_malformed(&[0xF0, 0x00], version);
    }
    assert_eq!(
        dec(&[0xF0, 0x00], Version::V5),
        Ok(Packet::Auth(reason_only(0, vec![])))
    );
}

#[test]
fn publish_qos_3_is_malformed() {
    // [MQTT-3.3.1-4]
    for version in ALL_VERSIONS {
        let mut bytes = publish_bytes("t", version);
        bytes[0] = 0x36;
        assert_malformed(&bytes, version);
    }
}

#[test]
fn publish_qos_0_with_dup_is_malformed() {
    // [MQTT-3.3.1-2]
    for version in ALL_VERSIONS {
        let mut bytes = enc(&Packet::Publish(publish(QoS::AtMostOnce, 0)), version);
        bytes[0] = 0x38;
        assert_malformed(&bytes, version);
    }
}

#[test]
fn invalid_utf8_is_malformed() {
    // [MQTT-1.5.4-1]: ill-formed sequences and UTF-16 surrogates.
    for version in ALL_VERSIONS {
        for bad in [[0xC3, 0x28, b'x'], [0xED, 0xA0, 0x80], [0xFF, b'x', b'x']] {
            assert_malformed(
                &patched(publish_bytes("a/bcd", version), b"bcd", &bad),
                version,
            );
            let mut c = connect(version);
            c.client_id = "abc".into();
            let bytes = enc(&Packet::Connect(Box::new(c)), version);
            assert_malformed(&patched(bytes, b"abc", &bad), version);
            let s = Packet::Subscribe(subscribe(&[("abc", options(QoS::AtMostOnce))]));
            assert_malformed(&patched(enc(&s, version), b"abc", &bad), version);
        }
    }
    let bytes = enc(
        &Packet::PubAck(Ack {
            properties: vec![user("k", "abc")],
            ..ack(1)
        }),
        Version::V5,
    );
    assert_malformed(&patched(bytes, b"abc", &[0xC0, 0x80, b'x']), Version::V5);
}

#[test]
fn null_character_in_a_string_is_malformed() {
    // [MQTT-1.5.4-2]
    for version in ALL_VERSIONS {
        assert_malformed(&publish_bytes("a\0b", version), version);
        let mut c = connect(version);
        c.username = Some("al\0ce".into());
        assert_malformed(&enc(&Packet::Connect(Box::new(c)), version), version);
        let s = Packet::Subscribe(subscribe(&[("a/\0", options(QoS::AtMostOnce))]));
        assert_malformed(&enc(&s, version), version);
        let u = Packet::Unsubscribe(Unsubscribe {
            packet_id: 1,
            filters: vec!["\0".into()],
            properties: vec![],
        });
        assert_malformed(&enc(&u, version), version);
    }
    let d = Packet::Disconnect(reason_only(0, vec![Property::ReasonString("\0".into())]));
    assert_malformed(&enc(&d, Version::V5), Version::V5);
}

#[test]
fn wildcard_in_topic_name_is_malformed() {
    // [MQTT-3.3.2-2], and the will topic is a topic name too.
    for version in ALL_VERSIONS {
        for topic in ["a/+", "+", "#", "a/#", "a+b"] {
            assert_malformed(&publish_bytes(topic, version), version);
        }
        let mut c = connect(version);
        c.will = Some(Will {
            topic: "w/#".into(),
            payload: vec![],
            qos: QoS::AtMostOnce,
            retain: false,
            properties: vec![],
        });
        assert_malformed(&enc(&Packet::Connect(Box::new(c)), version), version);
    }
}

#[test]
fn empty_topic_name_is_a_protocol_error_in_v3() {
    // [MQTT-4.7.3-1]
    for version in V3 {
        assert_protocol(&publish_bytes("", version), version);
    }
}

#[test]
fn empty_topic_name_without_topic_alias_is_a_protocol_error_in_v5() {
    // 3.3.2.3.4 (Topic Alias): only an alias may stand in for the name.
    assert_protocol(&publish_bytes("", Version::V5), Version::V5);
}

#[test]
fn empty_will_topic_is_a_protocol_error() {
    // [MQTT-4.7.3-1]
    for version in ALL_VERSIONS {
        let mut c = connect(version);
        c.will = Some(Will {
            topic: String::new(),
            payload: vec![],
            qos: QoS::AtMostOnce,
            retain: false,
            properties: vec![],
        });
        assert_protocol(&enc(&Packet::Connect(Box::new(c)), version), version);
    }
}

#[test]
fn packet_identifier_0_is_a_protocol_error() {
    // [MQTT-2.2.1-3] (5.0), [MQTT-2.3.1-1] (3.1.1); acks echo it, so 0 is
    // never valid there either.
    for version in ALL_VERSIONS {
        let packets = [
            Packet::Publish(publish(QoS::AtLeastOnce, 0)),
            Packet::Publish(publish(QoS::ExactlyOnce, 0)),
            Packet::PubAck(ack(0)),
            Packet::PubRec(ack(0)),
            Packet::PubRel(ack(0)),
            Packet::PubComp(ack(0)),
            Packet::Subscribe(Subscribe {
                packet_id: 0,
                ..subscribe(&[("a", options(QoS::AtMostOnce))])
            }),
            Packet::SubAck(SubAck {
                packet_id: 0,
                codes: vec![0],
                properties: vec![],
            }),
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 0,
                filters: vec!["a".into()],
                properties: vec![],
            }),
            Packet::UnsubAck(UnsubAck {
                packet_id: 0,
                codes: vec![],
                properties: vec![],
            }),
        ];
        for packet in packets {
            assert_protocol(&enc(&packet, version), version);
        }
    }
}

#[test]
fn subscribe_without_topic_filters_is_a_protocol_error() {
    // [MQTT-3.8.3-3]
    for version in ALL_VERSIONS {
        assert_protocol(&enc(&Packet::Subscribe(subscribe(&[])), version), version);
    }
}

#[test]
fn unsubscribe_without_topic_filters_is_a_protocol_error() {
    // [MQTT-3.10.3-2]
    for version in ALL_VERSIONS {
        let u = Unsubscribe {
            packet_id: 1,
            filters: vec![],
            properties: vec![],
        };
        assert_protocol(&enc(&Packet::Unsubscribe(u), version), version);
    }
}

/// A SUBSCRIBE for "a" whose options byte is `byte`.
fn subscribe_with_options(version: Version, byte: u8) -> Vec<u8> {
    let mut bytes = enc(
        &Packet::Subscribe(subscribe(&[("a", options(QoS::AtMostOnce))])),
        version,
    );
    *bytes.last_mut().expect("options byte") = byte;
    bytes
}

#[test]
fn v5_subscription_options_reserved_bits_are_malformed() {
    // [MQTT-3.8.3-5]
    for byte in [0x40, 0x80, 0xC1] {
        assert_malformed(&subscribe_with_options(Version::V5, byte), Version::V5);
    }
}

#[test]
fn v5_subscription_qos_3_is_a_protocol_error() {
    // 3.8.3.1: "It is a Protocol Error if the Maximum QoS field has the value 3"
    assert_protocol(&subscribe_with_options(Version::V5, 0x03), Version::V5);
}

#[test]
fn v5_retain_handling_3_is_a_protocol_error() {
    // 3.8.3.1: "It is a Protocol Error to send a Retain Handling value of 3"
    assert_protocol(&subscribe_with_options(Version::V5, 0x30), Version::V5);
}

#[test]
fn v3_requested_qos_reserved_bits_or_qos_3_are_malformed() {
    // [MQTT-3-8.3-4]
    for version in V3 {
        for byte in [0x03, 0x04, 0x08, 0x20, 0x80] {
            assert_malformed(&subscribe_with_options(version, byte), version);
        }
    }
}

#[test]
fn connect_protocol_name_not_matching_level_is_unsupported_version() {
    // [MQTT-3.1.2-1]: 5.0 allows CONNACK 0x84 for a wrong name, 3.1.1 lets
    // the server refuse it; reported like an unknown level.
    let mqtt_at_3 = patched(
        enc(
            &Packet::Connect(Box::new(connect(Version::V311))),
            Version::V311,
        ),
        &[b'T', 4],
        &[b'T', 3],
    );
    assert_eq!(
        dec(&mqtt_at_3, Version::V311),
        Err(DecodeError::UnsupportedVersion(3))
    );
    let mqisdp_at_4 = patched(
        enc(
            &Packet::Connect(Box::new(connect(Version::V31))),
            Version::V311,
        ),
        &[b'p', 3],
        &[b'p', 4],
    );
    assert_eq!(
        dec(&mqisdp_at_4, Version::V311),
        Err(DecodeError::UnsupportedVersion(4))
    );
    let mqtx = patched(
        enc(
            &Packet::Connect(Box::new(connect(Version::V5))),
            Version::V311,
        ),
        b"MQTT",
        b"MQTX",
    );
    assert_eq!(
        dec(&mqtx, Version::V311),
        Err(DecodeError::UnsupportedVersion(5))
    );
}

#[test]
fn connect_unknown_protocol_level_is_unsupported_version() {
    // [MQTT-3.1.2-2]; 0x83 and 0x84 are mosquitto bridges (vectors.rs).
    for level in [0, 2, 6, 0x82, 0x85] {
        let bytes = patched(
            enc(
                &Packet::Connect(Box::new(connect(Version::V311))),
                Version::V311,
            ),
            &[b'T', 4],
            &[b'T', level],
        );
        assert_eq!(
            dec(&bytes, Version::V311),
            Err(DecodeError::UnsupportedVersion(level))
        );
    }
}

#[test]
fn connect_reserved_flag_is_malformed() {
    // [MQTT-3.1.2-3]
    for version in ALL_VERSIONS {
        assert_malformed(&connect_with_flags(version, 0x03), version);
    }
}

#[test]
fn will_qos_without_will_flag_is_malformed() {
    // [MQTT-3.1.2-11], [MQTT-3.1.2-13] (3.1.1); [MQTT-3.1.2-11] (5.0)
    for version in ALL_VERSIONS {
        assert_malformed(&connect_with_flags(version, 0x02 | 0x08), version);
        assert_malformed(&connect_with_flags(version, 0x02 | 0x10), version);
    }
}

#[test]
fn will_retain_without_will_flag_is_malformed() {
    // [MQTT-3.1.2-15] (3.1.1), [MQTT-3.1.2-13] (5.0)
    for version in ALL_VERSIONS {
        assert_malformed(&connect_with_flags(version, 0x02 | 0x20), version);
    }
}

#[test]
fn will_qos_3_is_malformed() {
    // [MQTT-3.1.2-14] (3.1.1), [MQTT-3.1.2-12] (5.0)
    for version in ALL_VERSIONS {
        let mut c = connect(version);
        c.will = Some(Will {
            topic: "w".into(),
            payload: vec![],
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: vec![],
        });
        let bytes = enc(&Packet::Connect(Box::new(c)), version);
        let flags = 0x02 | 0x04 | 0x10;
        assert_malformed(&patched(bytes, &[flags], &[flags | 0x08]), version);
    }
}

#[test]
fn password_without_user_name_is_malformed_before_v5() {
    // [MQTT-3.1.2-22] (3.1.1); 5.0 allows it (3.1.2.9).
    for version in V3 {
        let mut c = connect(version);
        c.password = Some(b"secret".to_vec());
        assert_malformed(&enc(&Packet::Connect(Box::new(c)), version), version);
    }
}

#[test]
fn bytes_after_the_last_field_are_malformed() {
    for version in ALL_VERSIONS {
        assert_malformed(&[0xC0, 1, 0], version); // PINGREQ: 3.12.1
        assert_malformed(&[0xD0, 1, 0], version); // PINGRESP: 3.13.1
        let mut c = enc(&Packet::Connect(Box::new(connect(version))), version);
        c[1] += 1;
        c.push(0);
        assert_malformed(&c, version);
    }
    for version in V3 {
        assert_malformed(&[0xE0, 1, 0], version); // DISCONNECT
        assert_malformed(&[0x40, 3, 0, 1, 0], version); // PUBACK
        assert_malformed(&[0x62, 3, 0, 1, 0], version); // PUBREL
        assert_malformed(&[0x20, 3, 0, 0, 0], version); // CONNACK
        assert_malformed(&[0xB0, 3, 0, 1, 0], version); // UNSUBACK has no payload
    }
    assert_malformed(&[0x40, 5, 0, 1, 0, 0, 0xAA], Version::V5);
    assert_malformed(&[0xE0, 3, 0, 0, 0x11], Version::V5);
    assert_malformed(&[0x20, 4, 0, 0, 0, 0], Version::V5);
}

#[test]
fn fields_running_past_the_packet_are_malformed() {
    for version in ALL_VERSIONS {
        assert_malformed(&[0x40, 1, 0], version); // half a packet identifier
        assert_malformed(&[0x20, 1, 0], version); // CONNACK without its code
        assert_malformed(&[0x30, 3, 0, 5, b'a'], version); // topic length 5
        assert_malformed(&[0x10, 3, 0, 4, b'M'], version); // protocol name cut
        assert_malformed(&[0x82, 5, 0, 1, 0, 1, b'a'], version); // options missing
    }
}

#[test]
fn connack_reserved_flags_are_malformed() {
    // 3.2.2.1: bits 7-1 of the acknowledge flags are reserved.
    assert_malformed(&[0x20, 2, 0x02, 0], Version::V311);
    assert_malformed(&[0x20, 3, 0x80, 0, 0], Version::V5);
    // 3.1 reserved the whole byte without requiring zero.
    let got = dec(&[0x20, 2, 0x03, 0], Version::V31);
    let want = ConnAck {
        session_present: false,
        code: 0,
        properties: vec![],
    };
    assert_eq!(got, Ok(Packet::ConnAck(want)));
}
