use super::packet::*;
use super::properties::{self, Ctx};
use super::reader::{Reader, varint};

/// Decodes one packet from the front of `buf`.
///
/// `version` is the connection's protocol level (use `Version::V311` before
/// CONNECT has been seen; CONNECT itself carries its own level). `max_size`
/// is the largest whole packet (fixed header included) accepted.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole packet,
/// `Ok(Some((packet, consumed)))` otherwise. The fixed header is checked as
/// soon as it is complete, so an oversized or badly flagged packet fails
/// before its body arrives.
pub fn decode(
    buf: &[u8],
    version: Version,
    max_size: usize,
) -> Result<Option<(Packet, usize)>, DecodeError> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let Some((remaining, len_bytes)) = varint(rest)? else {
        return Ok(None);
    };
    check_flags(first, version)?;
    let size = 1 + len_bytes + remaining as usize;
    if size > max_size {
        return Err(DecodeError::TooLarge {
            size,
            max: max_size,
        });
    }
    let Some(body) = buf.get(1 + len_bytes..size) else {
        return Ok(None);
    };
    let mut r = Reader::new(body);
    let packet = body_of(first, &mut r, version)?;
    r.finish()?;
    Ok(Some((packet, size)))
}

/// Fixed header flags: PUBLISH's are checked with its body; PUBREL,
/// SUBSCRIBE and UNSUBSCRIBE need 0b0010, the rest 0 [MQTT-2.2.2-2] (5.0),
/// [MQTT-2.2.2-1] (3.1.1). MQTT 3.1 reserved none of them (its clients may
/// set DUP on a resent SUBSCRIBE), so they are ignored there. AUTH (15)
/// only exists in 5.0; before that 15 is a reserved type.
fn check_flags(first: u8, version: Version) -> Result<(), DecodeError> {
    let required = match first >> 4 {
        3 => return Ok(()),
        15 if version < Version::V5 => {
            return Err(DecodeError::Malformed(
                "packet type 15 is reserved before MQTT 5",
            ));
        }
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    if version > Version::V31 && first & 0x0F != required {
        return Err(DecodeError::Malformed("reserved fixed header flags"));
    }
    Ok(())
}

fn body_of(first: u8, r: &mut Reader, version: Version) -> Result<Packet, DecodeError> {
    Ok(match first >> 4 {
        1 => Packet::Connect(Box::new(connect(r)?)),
        2 => Packet::ConnAck(connack(r, version)?),
        3 => Packet::Publish(publish(first, r, version)?),
        4 => Packet::PubAck(ack(r, version)?),
        5 => Packet::PubRec(ack(r, version)?),
        6 => Packet::PubRel(ack(r, version)?),
        7 => Packet::PubComp(ack(r, version)?),
        8 => Packet::Subscribe(subscribe(r, version)?),
        9 => Packet::SubAck(SubAck {
            packet_id: r.packet_id()?,
            properties: properties::read(r, version, Ctx::Ack)?,
            codes: r.rest().to_vec(),
        }),
        10 => Packet::Unsubscribe(unsubscribe(r, version)?),
        11 => Packet::UnsubAck(UnsubAck {
            packet_id: r.packet_id()?,
            properties: properties::read(r, version, Ctx::Ack)?,
            // 3.x UNSUBACK has no payload; `finish` rejects one.
            codes: match version {
                Version::V5 => r.rest().to_vec(),
                _ => Vec::new(),
            },
        }),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Packet::Disconnect(reason_only(r, version, Ctx::Disconnect)?),
        15 => Packet::Auth(reason_only(r, version, Ctx::Auth)?),
        _ => return Err(DecodeError::Malformed("packet type 0 is reserved")),
    })
}

fn connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    // A wrong name for a known level is reported like an unknown level: 5.0
    // allows CONNACK 0x84 for it [MQTT-3.1.2-1], and 3.1.1 lets the server
    // refuse it, so the client gets a CONNACK it understands either way.
    let name = r.binary()?;
    let level = r.u8()?;
    // mosquitto's bridges add 0x80 to a 3.x level.
    let bridge = matches!(level, 0x83 | 0x84);
    let version = match (if bridge { level & 0x7F } else { level }, name) {
        (3, b"MQIsdp") => Version::V31,
        (4, b"MQTT") => Version::V311,
        (5, b"MQTT") => Version::V5,
        _ => return Err(DecodeError::UnsupportedVersion(level)),
    };
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::Malformed("CONNECT reserved flag set")); // [MQTT-3.1.2-3]
    }
    let has_will = flags & 0x04 != 0;
    let will_retain = flags & 0x20 != 0;
    // [MQTT-3.1.2-14] (3.1.1), [MQTT-3.1.2-12] (5.0)
    let will_qos = QoS::from_u8((flags >> 3) & 0x03).ok_or(DecodeError::Malformed("will QoS 3"))?;
    if !has_will && (will_qos != QoS::AtMostOnce || will_retain) {
        // [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15] (3.1.1 numbering)
        return Err(DecodeError::Malformed("will QoS or retain without will"));
    }
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if has_password && !has_username && version < Version::V5 {
        return Err(DecodeError::Malformed("password without user name")); // [MQTT-3.1.2-22]
    }
    let keep_alive = r.u16()?;
    let properties = properties::read(r, version, Ctx::Connect)?;
    let client_id = r.string()?;
    let will = if has_will {
        Some(Will {
            properties: properties::read(r, version, Ctx::Will)?,
            topic: topic_name(r, false)?.to_owned(),
            payload: r.binary()?.to_vec(),
            qos: will_qos,
            retain: will_retain,
        })
    } else {
        None
    };
    let username = has_username.then(|| r.string()).transpose()?;
    let password = has_password
        .then(|| r.binary().map(<[u8]>::to_vec))
        .transpose()?;
    Ok(Connect {
        version,
        clean_start: flags & 0x02 != 0,
        bridge,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn connack(r: &mut Reader, version: Version) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    // 3.1 has no session present flag: the whole byte is unused there.
    if version > Version::V31 && flags & 0xFE != 0 {
        return Err(DecodeError::Malformed("CONNACK reserved flags set")); // 3.2.2.1
    }
    Ok(ConnAck {
        session_present: version > Version::V31 && flags & 0x01 != 0,
        code: r.u8()?,
        properties: properties::read(r, version, Ctx::ConnAck)?,
    })
}

fn publish(first: u8, r: &mut Reader, version: Version) -> Result<Publish, DecodeError> {
    let dup = first & 0x08 != 0;
    let qos = QoS::from_u8((first >> 1) & 0x03).ok_or(DecodeError::Malformed("PUBLISH QoS 3"))?; // [MQTT-3.3.1-4]
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH")); // [MQTT-3.3.1-2]
    }
    let topic = topic_name(r, version == Version::V5)?;
    let packet_id = match qos {
        QoS::AtMostOnce => 0,
        _ => r.packet_id()?,
    };
    let properties = properties::read(r, version, Ctx::Publish)?;
    let has_alias = properties
        .iter()
        .any(|p| matches!(p, Property::TopicAlias(_)));
    if topic.is_empty() && !has_alias {
        return Err(DecodeError::Protocol(
            "empty topic name without a topic alias",
        )); // 3.3.2.3.4
    }
    Ok(Publish {
        dup,
        qos,
        retain: first & 0x01 != 0,
        topic: topic.to_owned(),
        packet_id,
        properties,
        payload: r.rest().to_vec(),
    })
}

/// A Topic Name: no wildcards [MQTT-3.3.2-2], and at least one character
/// [MQTT-4.7.3-1] unless `may_be_empty` (a 5.0 PUBLISH, whose topic alias
/// the caller checks).
fn topic_name<'a>(r: &mut Reader<'a>, may_be_empty: bool) -> Result<&'a str, DecodeError> {
    let topic = r.str()?;
    if topic.contains(['+', '#']) {
        return Err(DecodeError::Malformed("wildcard in topic name"));
    }
    if topic.is_empty() && !may_be_empty {
        return Err(DecodeError::Protocol("empty topic name"));
    }
    Ok(topic)
}

fn ack(r: &mut Reader, version: Version) -> Result<Ack, DecodeError> {
    let packet_id = r.packet_id()?;
    let ReasonOnly { reason, properties } = reason_only(r, version, Ctx::Ack)?;
    Ok(Ack {
        packet_id,
        reason,
        properties,
    })
}

/// The 5.0 reason code and properties that end acks, DISCONNECT and AUTH.
/// Either may be left off when it is 0 / empty (e.g. 3.4.2.1, 3.14.2.1);
/// before 5.0 neither exists.
fn reason_only(r: &mut Reader, version: Version, ctx: Ctx) -> Result<ReasonOnly, DecodeError> {
    if version < Version::V5 || r.is_empty() {
        return Ok(ReasonOnly {
            reason: 0,
            properties: Vec::new(),
        });
    }
    let reason = r.u8()?;
    let properties = if r.is_empty() {
        Vec::new()
    } else {
        properties::read(r, version, ctx)?
    };
    Ok(ReasonOnly { reason, properties })
}

fn subscribe(r: &mut Reader, version: Version) -> Result<Subscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = properties::read(r, version, Ctx::Subscribe)?;
    let filters = r.list(|r| Ok((r.string()?, sub_options(r.u8()?, version)?)))?;
    if filters.is_empty() {
        return Err(DecodeError::Protocol("SUBSCRIBE without topic filters")); // [MQTT-3.8.3-3]
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

fn sub_options(byte: u8, version: Version) -> Result<SubOptions, DecodeError> {
    let qos = QoS::from_u8(byte & 0x03);
    if version < Version::V5 {
        // [MQTT-3-8.3-4]: upper six bits reserved, QoS 0..=2.
        return match (byte & 0xFC, qos) {
            (0, Some(qos)) => Ok(SubOptions {
                qos,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
            }),
            _ => Err(DecodeError::Malformed("invalid requested QoS byte")),
        };
    }
    if byte & 0xC0 != 0 {
        return Err(DecodeError::Malformed(
            "subscription options reserved bits set",
        )); // [MQTT-3.8.3-5]
    }
    let retain_handling = (byte >> 4) & 0x03;
    if retain_handling == 3 {
        return Err(DecodeError::Protocol("retain handling 3")); // 3.8.3.1
    }
    Ok(SubOptions {
        qos: qos.ok_or(DecodeError::Protocol("subscription QoS 3"))?, // 3.8.3.1
        no_local: byte & 0x04 != 0,
        retain_as_published: byte & 0x08 != 0,
        retain_handling,
    })
}

fn unsubscribe(r: &mut Reader, version: Version) -> Result<Unsubscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = properties::read(r, version, Ctx::Unsubscribe)?;
    let filters = r.list(Reader::string)?;
    if filters.is_empty() {
        return Err(DecodeError::Protocol("UNSUBSCRIBE without topic filters")); // [MQTT-3.10.3-2]
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}
