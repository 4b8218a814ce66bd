//! Byte strings written by hand from the specs' examples and real clients,
//! so the encoder is checked against more than itself.

use super::*;

#[test]
fn connect_311_as_mosquitto_pub_sends_it() {
    // mosquitto_pub -V mqttv311 -i test: clean session, keep alive 60.
    let bytes = [
        0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x04, b't',
        b'e', b's', b't',
    ];
    let packet = Packet::Connect(Box::new(Connect {
        version: Version::V311,
        clean_start: true,
        bridge: false,
        keep_alive: 60,
        client_id: "test".into(),
        will: None,
        username: None,
        password: None,
        properties: vec![],
    }));
    assert_eq!(dec(&bytes, Version::V311), Ok(packet.clone()));
    assert_eq!(enc(&packet, Version::V311), bytes);
}

#[test]
fn connect_from_a_mosquitto_bridge_with_try_private() {
    // Level 0x84: 3.1.1 with mosquitto's bridge bit.
    let bytes = [
        0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x84, 0x00, 0x00, 0x3C, 0x00, 0x01, b'b',
    ];
    let Ok(Some((Packet::Connect(c), _))) = decode(&bytes, Version::V311, usize::MAX) else {
        panic!("does not decode");
    };
    assert!(c.bridge && c.version == Version::V311);
    assert_eq!(enc(&Packet::Connect(c), Version::V311), bytes);
    // 5.0 has No Local instead: 0x85 is an unknown level.
    let mut v5 = bytes;
    v5[8] = 0x85;
    assert_eq!(
        decode(&v5, Version::V311, usize::MAX),
        Err(DecodeError::UnsupportedVersion(0x85))
    );
}

#[test]
fn connect_31_as_mosquitto_pub_sends_it() {
    // mosquitto_pub -V mqttv31 -i test
    let bytes = [
        0x10, 0x12, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3C, 0x00,
        0x04, b't', b'e', b's', b't',
    ];
    let packet = Packet::Connect(Box::new(Connect {
        client_id: "test".into(),
        ..connect(Version::V31)
    }));
    assert_eq!(dec(&bytes, Version::V311), Ok(packet.clone()));
    assert_eq!(enc(&packet, Version::V31), bytes);
}

#[test]
fn connect_5_from_the_spec_example() {
    // 5.0 figure 3-6 variable header (flags 0xCE: user name, password, will
    // QoS 1, will, clean start; keep alive 10; Session Expiry Interval 10),
    // followed by a payload of one-letter fields.
    let bytes = [
        0x10, 0x20, // fixed header
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0xCE, 0x00, 0x0A, // variable header
        0x05, 0x11, 0x00, 0x00, 0x00, 0x0A, // properties
        0x00, 0x01, b'c', // client identifier
        0x00, // will properties
        0x00, 0x01, b'w', 0x00, 0x01, b'x', // will topic and payload
        0x00, 0x01, b'u', 0x00, 0x01, b'p', // user name and password
    ];
    let packet = Packet::Connect(Box::new(Connect {
        version: Version::V5,
        clean_start: true,
        bridge: false,
        keep_alive: 10,
        client_id: "c".into(),
        will: Some(Will {
            topic: "w".into(),
            payload: b"x".to_vec(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: vec![],
        }),
        username: Some("u".into()),
        password: Some(b"p".to_vec()),
        properties: vec![Property::SessionExpiryInterval(10)],
    }));
    assert_eq!(dec(&bytes, Version::V311), Ok(packet.clone()));
    assert_eq!(enc(&packet, Version::V5), bytes);
}

#[test]
fn publish_from_the_311_spec_example() {
    // 3.1.1 figure 3.11: topic "a/b", packet identifier 10; payload "hi".
    let bytes = [
        0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'h', b'i',
    ];
    let packet = Packet::Publish(Publish {
        topic: "a/b".into(),
        payload: b"hi".to_vec(),
        ..publish(QoS::AtLeastOnce, 10)
    });
    assert_eq!(dec(&bytes, Version::V311), Ok(packet.clone()));
    assert_eq!(enc(&packet, Version::V311), bytes);
}

#[test]
fn subscribe_and_suback_from_the_311_spec_examples() {
    // 3.1.1 figures 3.23 and 3.26.
    let subscribe_bytes = [
        0x82, 0x0E, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x01, 0x00, 0x03, b'c', b'/', b'd',
        0x02,
    ];
    let sub = Packet::Subscribe(Subscribe {
        packet_id: 10,
        ..subscribe(&[
            ("a/b", options(QoS::AtLeastOnce)),
            ("c/d", options(QoS::ExactlyOnce)),
        ])
    });
    assert_eq!(dec(&subscribe_bytes, Version::V311), Ok(sub.clone()));
    assert_eq!(enc(&sub, Version::V311), subscribe_bytes);

    let suback_bytes = [0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x02, 0x80];
    let suback = Packet::SubAck(SubAck {
        packet_id: 10,
        codes: vec![0, 1, 2, 0x80],
        properties: vec![],
    });
    assert_eq!(dec(&suback_bytes, Version::V311), Ok(suback.clone()));
    assert_eq!(enc(&suback, Version::V311), suback_bytes);
}

#[test]
fn fixed_length_packets() {
    let connack = |session_present, code| {
        Packet::ConnAck(ConnAck {
            session_present,
            code,
            properties: vec![],
        })
    };
    let cases: [(Packet, Version, &[u8]); 8] = [
        (Packet::PingReq, Version::V311, &[0xC0, 0x00]),
        (Packet::PingResp, Version::V5, &[0xD0, 0x00]),
        (
            Packet::Disconnect(reason_only(0, vec![])),
            Version::V311,
            &[0xE0, 0x00],
        ),
        (connack(true, 0), Version::V311, &[0x20, 0x02, 0x01, 0x00]),
        (
            connack(false, 0x05),
            Version::V31,
            &[0x20, 0x02, 0x00, 0x05],
        ),
        // 5.0 CONNACK always carries a property length.
        (
            connack(false, 0x84),
            Version::V5,
            &[0x20, 0x03, 0x00, 0x84, 0x00],
        ),
        (
            Packet::PubRel(ack(0x1234)),
            Version::V311,
            &[0x62, 0x02, 0x12, 0x34],
        ),
        (
            Packet::PubComp(ack(1)),
            Version::V5,
            &[0x70, 0x02, 0x00, 0x01],
        ),
    ];
    for (packet, version, bytes) in cases {
        assert_eq!(enc(&packet, version), bytes, "{packet:?}");
        assert_eq!(dec(bytes, version), Ok(packet));
    }
}

#[test]
fn remaining_length_boundaries_from_the_spec_table() {
    // 3.1.1 table 2.4 / 5.0 1.5.5: the edges of 1, 2, 3 and 4 byte lengths.
    let cases: [(usize, &[u8]); 8] = [
        (0, &[0x00]),
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xFF, 0xFF, 0x7F]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
        (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
    ];
    for (len, encoded) in cases {
        // Measured rather than built, so the largest needs no 256 MB buffer.
        let mut header = Vec::new();
        writer::Sink::varint(&mut header, len);
        assert_eq!(header, encoded);
        let mut bytes = vec![0x30];
        bytes.extend_from_slice(encoded);
        let got = decode(&bytes, Version::V311, 0);
        assert_eq!(
            got,
            Err(DecodeError::TooLarge {
                size: 1 + encoded.len() + len,
                max: 0
            })
        );
    }
    // And through the encoder, for the sizes a test can afford.
    for len in [127, 128, 16_383, 16_384] {
        let p = Publish {
            topic: "t".into(),
            payload: vec![0; len - 3],
            ..publish(QoS::AtMostOnce, 0)
        };
        let bytes = enc(&Packet::Publish(p), Version::V311);
        let header_len = bytes.len() - len;
        assert_eq!(
            bytes[1..header_len],
            cases.iter().find(|c| c.0 == len).unwrap().1[..]
        );
    }
}
