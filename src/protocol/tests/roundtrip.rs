//! Encode then decode gives back the same packet, and the encoder picks the
//! shortest form the spec allows.

use super::*;

#[test]
fn every_sample_round_trips_at_every_version() {
    for version in ALL_VERSIONS {
        for packet in samples(version) {
            round_trip(&packet, version);
        }
    }
}

#[test]
fn samples_cover_all_fifteen_packet_types() {
    let mut seen = [false; 16];
    for packet in samples(Version::V5) {
        let first = enc(&packet, Version::V5)[0];
        seen[usize::from(first >> 4)] = true;
    }
    assert_eq!(seen[1..], [true; 15]);
}

#[test]
fn password_without_user_name_is_allowed_in_v5() {
    let mut c = connect(Version::V5);
    c.password = Some(b"token".to_vec());
    round_trip(&Packet::Connect(Box::new(c)), Version::V5);
}

#[test]
fn connect_is_decoded_at_its_own_level_whatever_the_connection_says() {
    for version in ALL_VERSIONS {
        let packet = Packet::Connect(Box::new(connect(version)));
        let bytes = enc(&packet, Version::V311);
        for assumed in ALL_VERSIONS {
            assert_eq!(dec(&bytes, assumed), Ok(packet.clone()));
        }
    }
}

#[test]
fn v5_acks_use_the_short_forms() {
    let v5 = Version::V5;
    assert_eq!(enc(&Packet::PubAck(ack(1)), v5), [0x40, 2, 0, 1]);
    let rejected = Ack {
        reason: 0x87,
        ..ack(1)
    };
    assert_eq!(
        enc(&Packet::PubRec(rejected.clone()), v5),
        [0x50, 3, 0, 1, 0x87]
    );
    // The long forms of the same packets decode to the same values.
    assert_eq!(dec(&[0x40, 4, 0, 1, 0, 0], v5), Ok(Packet::PubAck(ack(1))));
    assert_eq!(
        dec(&[0x50, 4, 0, 1, 0x87, 0], v5),
        Ok(Packet::PubRec(rejected))
    );
}

#[test]
fn v5_disconnect_and_auth_use_the_short_forms() {
    let v5 = Version::V5;
    let normal = reason_only(0, vec![]);
    assert_eq!(enc(&Packet::Disconnect(normal.clone()), v5), [0xE0, 0]);
    assert_eq!(enc(&Packet::Auth(normal.clone()), v5), [0xF0, 0]);
    let with_will = reason_only(reason::DISCONNECT_WITH_WILL, vec![]);
    assert_eq!(
        enc(&Packet::Disconnect(with_will.clone()), v5),
        [0xE0, 1, 4]
    );
    assert_eq!(dec(&[0xE0, 2, 4, 0], v5), Ok(Packet::Disconnect(with_will)));
    assert_eq!(dec(&[0xF0, 1, 0], v5), Ok(Packet::Auth(normal)));
}

#[test]
fn v3_encoding_leaves_out_v5_only_fields() {
    let a = Ack {
        reason: 0x80,
        properties: vec![user("k", "v")],
        ..ack(9)
    };
    assert_eq!(enc(&Packet::PubAck(a), Version::V311), [0x40, 2, 0, 9]);
    let d = reason_only(0x8B, vec![]);
    assert_eq!(enc(&Packet::Disconnect(d), Version::V311), [0xE0, 0]);
    let u = UnsubAck {
        packet_id: 9,
        codes: vec![0],
        properties: vec![],
    };
    assert_eq!(enc(&Packet::UnsubAck(u), Version::V311), [0xB0, 2, 0, 9]);
}

#[test]
fn v31_ignores_fixed_header_flags_it_never_reserved() {
    // A 3.1 client may resend SUBSCRIBE with DUP set (0x8A).
    let packet = Packet::Subscribe(subscribe(&[("a", options(QoS::AtLeastOnce))]));
    let mut bytes = enc(&packet, Version::V31);
    bytes[0] = 0x8A;
    assert_eq!(dec(&bytes, Version::V31), Ok(packet));
}

#[test]
fn publish_extra_properties_follow_the_message_ones() {
    let message = [Property::ContentType("text/plain".into())];
    let extra = [
        Property::SubscriptionIdentifier(1),
        Property::SubscriptionIdentifier(70_000),
        Property::MessageExpiryInterval(5),
    ];
    let p = PublishRef {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "t",
        packet_id: 4,
        properties: &message,
        extra: &extra,
        payload: b"x",
    };
    let mut bytes = Vec::new();
    encode_publish(&p, Version::V5, &mut bytes);
    assert_eq!(publish_len(&p, Version::V5), bytes.len());
    let expected = Publish {
        properties: message.iter().chain(&extra).cloned().collect(),
        topic: "t".into(),
        payload: b"x".to_vec(),
        ..publish(QoS::AtLeastOnce, 4)
    };
    assert_eq!(dec(&bytes, Version::V5), Ok(Packet::Publish(expected)));
}

#[test]
fn publish_len_is_exact_across_remaining_length_sizes() {
    for size in [0, 100, 127, 128, 16_383, 16_384, 70_000] {
        for version in ALL_VERSIONS {
            let base = Publish {
                payload: vec![7; size],
                ..publish(QoS::AtLeastOnce, 1)
            };
            let p = base.as_ref();
            let mut bytes = Vec::new();
            encode_publish(&p, version, &mut bytes);
            assert_eq!(publish_len(&p, version), bytes.len());
        }
    }
}

#[test]
fn decode_takes_one_packet_and_leaves_the_rest() {
    let mut bytes = enc(&Packet::PingReq, Version::V311);
    let publish = Packet::Publish(publish(QoS::AtLeastOnce, 3));
    bytes.extend(enc(&publish, Version::V311));
    assert_eq!(
        decode(&bytes, Version::V311, 1000),
        Ok(Some((Packet::PingReq, 2)))
    );
    assert_eq!(
        decode(&bytes[2..], Version::V311, 1000),
        Ok(Some((publish, bytes.len() - 2)))
    );
}

#[test]
fn a_publish_head_and_its_payload_are_the_whole_publish() {
    for version in ALL_VERSIONS {
        for packet in samples(version) {
            let Packet::Publish(p) = &packet else {
                continue;
            };
            let p = p.as_ref();
            let mut split = Vec::new();
            crate::protocol::encode_publish_head(&p, version, &mut split);
            split.extend_from_slice(p.payload);
            assert_eq!(split, enc(&packet, version));
        }
    }
}
