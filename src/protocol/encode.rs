use super::packet::*;
use super::properties;
use super::writer::{Sink, len_of};

/// Appends `packet` encoded for `version` to `out`. CONNECT is written for
/// its own `version` field; AUTH always in the 5.0 form (it exists nowhere
/// else). Optional 5.0 fields are left off when the spec allows it, e.g. a
/// PUBACK with reason 0 and no properties is 2 bytes.
pub fn encode(packet: &Packet, version: Version, out: &mut Vec<u8>) {
    let first = match packet {
        Packet::Publish(p) => return encode_publish(&p.as_ref(), version, out),
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    };
    frame(out, first, |w| body(w, packet, version));
}

/// Appends a PUBLISH to `out`.
pub fn encode_publish(p: &PublishRef<'_>, version: Version, out: &mut Vec<u8>) {
    frame(out, publish_first_byte(p), |w| publish_body(w, p, version));
}

/// Appends a PUBLISH to `out` but for its payload, which the caller
/// sends right after these bytes.
pub fn encode_publish_head(p: &PublishRef<'_>, version: Version, out: &mut Vec<u8>) {
    let len = len_of(|w| publish_body(w, p, version));
    out.reserve(1 + 4 + len - p.payload.len());
    out.u8(publish_first_byte(p));
    out.varint(len);
    publish_head(out, p, version);
}

/// The whole encoded size of a PUBLISH (fixed header included), to honour a
/// client's Maximum Packet Size without encoding it first.
pub fn publish_len(p: &PublishRef<'_>, version: Version) -> usize {
    let body = len_of(|w| publish_body(w, p, version));
    1 + len_of(|w| w.varint(body)) + body
}

/// Writes the fixed header and the body `write` produces, reserving the
/// whole packet up front. `write` runs twice: to measure, then for real.
fn frame<F>(out: &mut Vec<u8>, first: u8, write: F)
where
    F: Fn(&mut dyn Sink),
{
    let len = len_of(|w| write(w));
    out.reserve(1 + 4 + len);
    out.u8(first);
    out.varint(len);
    write(out);
}

fn publish_first_byte(p: &PublishRef<'_>) -> u8 {
    0x30 | u8::from(p.dup) << 3 | (p.qos as u8) << 1 | u8::from(p.retain)
}

fn publish_body(w: &mut dyn Sink, p: &PublishRef<'_>, version: Version) {
    publish_head(w, p, version);
    w.put(p.payload);
}

/// A PUBLISH's variable header: all of its body but the payload.
fn publish_head(w: &mut dyn Sink, p: &PublishRef<'_>, version: Version) {
    w.str(p.topic);
    if p.qos != QoS::AtMostOnce {
        w.u16(p.packet_id);
    }
    properties::write(w, version, &[p.properties, p.extra]);
}

fn body(w: &mut dyn Sink, packet: &Packet, version: Version) {
    match packet {
        Packet::Connect(c) => connect(w, c),
        Packet::ConnAck(c) => {
            // 3.1 has no session present flag.
            w.u8(u8::from(c.session_present && version > Version::V31));
            w.u8(c.code);
            properties::write(w, version, &[&c.properties]);
        }
        Packet::Publish(p) => publish_body(w, &p.as_ref(), version),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            w.u16(a.packet_id);
            reason_only(w, version, a.reason, &a.properties);
        }
        Packet::Subscribe(s) => {
            w.u16(s.packet_id);
            properties::write(w, version, &[&s.properties]);
            for (filter, options) in &s.filters {
                w.str(filter);
                w.u8(sub_options(options, version));
            }
        }
        Packet::SubAck(s) => {
            w.u16(s.packet_id);
            properties::write(w, version, &[&s.properties]);
            w.put(&s.codes);
        }
        Packet::Unsubscribe(u) => {
            w.u16(u.packet_id);
            properties::write(w, version, &[&u.properties]);
            u.filters.iter().for_each(|f| w.str(f));
        }
        Packet::UnsubAck(u) => {
            w.u16(u.packet_id);
            properties::write(w, version, &[&u.properties]);
            if version == Version::V5 {
                w.put(&u.codes);
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => reason_only(w, version, d.reason, &d.properties),
        Packet::Auth(a) => reason_only(w, Version::V5, a.reason, &a.properties),
    }
}

/// The 5.0 reason code and properties, each left off when it and everything
/// after it is default; nothing before 5.0.
fn reason_only(w: &mut dyn Sink, version: Version, reason: u8, props: &[Property]) {
    if version < Version::V5 || (reason == reason::SUCCESS && props.is_empty()) {
        return;
    }
    w.u8(reason);
    if !props.is_empty() {
        properties::write(w, version, &[props]);
    }
}

fn sub_options(o: &SubOptions, version: Version) -> u8 {
    let qos = o.qos as u8;
    if version < Version::V5 {
        return qos;
    }
    qos | u8::from(o.no_local) << 2 | u8::from(o.retain_as_published) << 3 | o.retain_handling << 4
}

fn connect(w: &mut dyn Sink, c: &Connect) {
    let (name, level): (&str, u8) = match c.version {
        Version::V31 => ("MQIsdp", 3),
        Version::V311 => ("MQTT", 4),
        Version::V5 => ("MQTT", 5),
    };
    w.str(name);
    w.u8(level | u8::from(c.bridge && c.version < Version::V5) << 7);
    let will_flags = c.will.as_ref().map_or(0, |will| {
        0x04 | (will.qos as u8) << 3 | u8::from(will.retain) << 5
    });
    w.u8(u8::from(c.clean_start) << 1
        | will_flags
        | u8::from(c.password.is_some()) << 6
        | u8::from(c.username.is_some()) << 7);
    w.u16(c.keep_alive);
    properties::write(w, c.version, &[&c.properties]);
    w.str(&c.client_id);
    if let Some(will) = &c.will {
        properties::write(w, c.version, &[&will.properties]);
        w.str(&will.topic);
        w.binary(&will.payload);
    }
    if let Some(username) = &c.username {
        w.str(username);
    }
    if let Some(password) = &c.password {
        w.binary(password);
    }
}
