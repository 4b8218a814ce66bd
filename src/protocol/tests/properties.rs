//! Every 5.0 property in every place a property list can sit: it round trips
//! where spec table 2-4 allows it and is malformed elsewhere (2.2.2.2).

use super::*;

const PLACES: [&str; 14] = [
    "CONNECT",
    "will",
    "CONNACK",
    "PUBLISH",
    "PUBACK",
    "PUBREC",
    "PUBREL",
    "PUBCOMP",
    "SUBSCRIBE",
    "SUBACK",
    "UNSUBSCRIBE",
    "UNSUBACK",
    "DISCONNECT",
    "AUTH",
];

const ACKS: &[&str] = &[
    "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBACK", "UNSUBACK",
];

/// One of each property, with where the spec allows it, written out again
/// here from table 2-4 rather than taken from the codec.
fn one_of_each() -> Vec<(Property, Vec<&'static str>)> {
    use Property::*;
    let message = vec!["PUBLISH", "will"];
    let connack = vec!["CONNACK"];
    let connect_connack = vec!["CONNECT", "CONNACK"];
    let auth = vec!["CONNECT", "CONNACK", "AUTH"];
    let mut reason_string = vec!["CONNACK", "DISCONNECT", "AUTH"];
    reason_string.extend(ACKS);
    vec![
        (PayloadFormatIndicator(1), message.clone()),
        (MessageExpiryInterval(u32::MAX), message.clone()),
        (ContentType("application/json".into()), message.clone()),
        (ResponseTopic("reply/here".into()), message.clone()),
        (CorrelationData(vec![0, 0xFF]), message),
        (SubscriptionIdentifier(128), vec!["PUBLISH", "SUBSCRIBE"]),
        (
            SessionExpiryInterval(7),
            vec!["CONNECT", "CONNACK", "DISCONNECT"],
        ),
        (AssignedClientIdentifier("auto-1".into()), connack.clone()),
        (ServerKeepAlive(30), connack.clone()),
        (AuthenticationMethod("PLAIN".into()), auth.clone()),
        (AuthenticationData(vec![1]), auth),
        (RequestProblemInformation(0), vec!["CONNECT"]),
        (WillDelayInterval(60), vec!["will"]),
        (RequestResponseInformation(1), vec!["CONNECT"]),
        (ResponseInformation("resp/".into()), connack.clone()),
        (
            ServerReference("other:1883".into()),
            vec!["CONNACK", "DISCONNECT"],
        ),
        (ReasonString("because".into()), reason_string),
        (ReceiveMaximum(20), connect_connack.clone()),
        (TopicAliasMaximum(10), connect_connack.clone()),
        (TopicAlias(2), vec!["PUBLISH"]),
        (MaximumQoS(0), connack.clone()),
        (RetainAvailable(1), connack.clone()),
        (UserProperty("ключ".into(), "värde".into()), PLACES.to_vec()),
        (MaximumPacketSize(1 << 20), connect_connack),
        (WildcardSubscriptionAvailable(0), connack.clone()),
        (SubscriptionIdentifierAvailable(1), connack.clone()),
        (SharedSubscriptionAvailable(0), connack),
    ]
}

/// A v5 packet with `properties` in `place`.
fn carrier(place: &str, properties: Properties) -> Packet {
    let acked = Ack {
        properties: properties.clone(),
        ..ack(5)
    };
    match place {
        "CONNECT" => Packet::Connect(Box::new(Connect {
            properties,
            ..connect(Version::V5)
        })),
        "will" => Packet::Connect(Box::new(Connect {
            will: Some(Will {
                topic: "w".into(),
                payload: vec![],
                qos: QoS::AtMostOnce,
                retain: false,
                properties,
            }),
            ..connect(Version::V5)
        })),
        "CONNACK" => Packet::ConnAck(ConnAck {
            session_present: false,
            code: 0,
            properties,
        }),
        "PUBLISH" => Packet::Publish(Publish {
            properties,
            ..publish(QoS::AtLeastOnce, 5)
        }),
        "PUBACK" => Packet::PubAck(acked),
        "PUBREC" => Packet::PubRec(acked),
        "PUBREL" => Packet::PubRel(acked),
        "PUBCOMP" => Packet::PubComp(acked),
        "SUBSCRIBE" => Packet::Subscribe(Subscribe {
            properties,
            ..subscribe(&[("a", options(QoS::AtMostOnce))])
        }),
        "SUBACK" => Packet::SubAck(SubAck {
            packet_id: 5,
            codes: vec![0],
            properties,
        }),
        "UNSUBSCRIBE" => Packet::Unsubscribe(Unsubscribe {
            packet_id: 5,
            filters: vec!["a".into()],
            properties,
        }),
        "UNSUBACK" => Packet::UnsubAck(UnsubAck {
            packet_id: 5,
            codes: vec![0],
            properties,
        }),
        "DISCONNECT" => Packet::Disconnect(reason_only(0, properties)),
        "AUTH" => Packet::Auth(reason_only(0, properties)),
        _ => unreachable!("{place}"),
    }
}

#[test]
fn table_lists_all_27_properties() {
    assert_eq!(one_of_each().len(), 27);
}

#[test]
fn each_property_round_trips_where_allowed_and_is_malformed_elsewhere() {
    for (prop, allowed) in one_of_each() {
        for place in PLACES {
            let packet = carrier(place, vec![prop.clone()]);
            if allowed.contains(&place) {
                round_trip(&packet, Version::V5);
            } else {
                let got = dec(&enc(&packet, Version::V5), Version::V5);
                assert!(
                    matches!(got, Err(DecodeError::Malformed(_))),
                    "{prop:?} in {place}: {got:?}"
                );
            }
        }
    }
}

#[test]
fn property_identifiers_and_types_match_the_spec() {
    // (property, identifier, encoded value) from spec 2.2.2.2.
    let cases: [(Property, &[u8]); 6] = [
        (Property::PayloadFormatIndicator(1), &[0x01, 1]),
        (
            Property::MessageExpiryInterval(0x0102_0304),
            &[0x02, 1, 2, 3, 4],
        ),
        (Property::SubscriptionIdentifier(128), &[0x0B, 0x80, 0x01]),
        (Property::TopicAlias(0x0A0B), &[0x23, 0x0A, 0x0B]),
        (Property::ContentType("a".into()), &[0x03, 0, 1, b'a']),
        (user("k", "v"), &[0x26, 0, 1, b'k', 0, 1, b'v']),
    ];
    for (prop, value) in cases {
        let bytes = enc(&carrier("PUBLISH", vec![prop.clone()]), Version::V5);
        // 0x32, RL, topic (2 + 9), packet id (2), property length, properties
        assert_eq!(bytes[15], value.len() as u8, "{prop:?}");
        assert_eq!(&bytes[16..16 + value.len()], value, "{prop:?}");
    }
}

#[test]
fn repeated_property_is_a_protocol_error() {
    for (prop, allowed) in one_of_each() {
        if matches!(prop, Property::UserProperty(..)) {
            continue;
        }
        for place in allowed {
            if place == "PUBLISH" && matches!(prop, Property::SubscriptionIdentifier(_)) {
                continue;
            }
            let packet = carrier(place, vec![prop.clone(), prop.clone()]);
            let got = dec(&enc(&packet, Version::V5), Version::V5);
            assert!(
                matches!(got, Err(DecodeError::Protocol(_))),
                "{prop:?} twice in {place}: {got:?}"
            );
        }
    }
}

#[test]
fn user_properties_repeat_in_order() {
    let packet = carrier(
        "PUBACK",
        vec![user("a", "1"), user("b", "2"), user("a", "3")],
    );
    round_trip(&packet, Version::V5);
}

#[test]
fn subscription_identifiers_repeat_only_in_publish() {
    // 3.3.2.3.8: a server's PUBLISH carries one per matching subscription.
    let ids = vec![
        Property::SubscriptionIdentifier(1),
        Property::SubscriptionIdentifier(2),
    ];
    round_trip(&carrier("PUBLISH", ids.clone()), Version::V5);
    let got = dec(&enc(&carrier("SUBSCRIBE", ids), Version::V5), Version::V5);
    assert!(matches!(got, Err(DecodeError::Protocol(_))));
}

#[test]
fn out_of_range_values_are_protocol_errors() {
    use Property::*;
    let cases = [
        ("PUBLISH", PayloadFormatIndicator(2)),
        ("CONNECT", RequestProblemInformation(2)),
        ("CONNECT", RequestResponseInformation(2)),
        ("CONNACK", MaximumQoS(2)),
        ("CONNACK", RetainAvailable(2)),
        ("CONNACK", WildcardSubscriptionAvailable(2)),
        ("CONNACK", SubscriptionIdentifierAvailable(2)),
        ("CONNACK", SharedSubscriptionAvailable(2)),
        ("CONNECT", ReceiveMaximum(0)),
        ("CONNECT", MaximumPacketSize(0)),
        ("SUBSCRIBE", SubscriptionIdentifier(0)),
        ("PUBLISH", SubscriptionIdentifier(0)),
    ];
    for (place, prop) in cases {
        let got = dec(
            &enc(&carrier(place, vec![prop.clone()]), Version::V5),
            Version::V5,
        );
        assert!(
            matches!(got, Err(DecodeError::Protocol(_))),
            "{prop:?} in {place}: {got:?}"
        );
    }
}

#[test]
fn unknown_property_identifier_is_malformed() {
    // PUBACK 1, reason 0, 2 bytes of properties: identifier 0x04 (unassigned).
    let got = dec(&[0x40, 6, 0, 1, 0, 2, 0x04, 0], Version::V5);
    assert!(matches!(got, Err(DecodeError::Malformed(_))), "{got:?}");
}

#[test]
fn property_length_past_the_packet_is_malformed() {
    let got = dec(&[0x40, 4, 0, 1, 0, 5], Version::V5);
    assert!(matches!(got, Err(DecodeError::Malformed(_))), "{got:?}");
}

#[test]
fn property_value_past_the_property_length_is_malformed() {
    // Property length 3 holds a Reason String whose length claims 5 bytes.
    let got = dec(&[0x40, 9, 0, 1, 0, 3, 0x1F, 0, 5, b'a', b'b'], Version::V5);
    assert!(matches!(got, Err(DecodeError::Malformed(_))), "{got:?}");
}

#[test]
fn subscription_identifier_longer_than_four_bytes_is_malformed() {
    // [MQTT-1.5.5-1]
    let got = dec(
        &[
            0x82, 13, 0, 1, 6, 0x0B, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 1, b'a', 0,
        ],
        Version::V5,
    );
    assert!(matches!(got, Err(DecodeError::Malformed(_))), "{got:?}");
}
