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
