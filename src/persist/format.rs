//! The snapshot file: `ROOST-DB`, a format version, the journal generation
//! it includes, the body's length, the body, and a CRC-32 of everything
//! before it. A file cut short or changed in any byte fails to load with a
//! reason instead of loading half a state.
//!
//! The body holds the messages once each, then the retained topics and the
//! sessions referring to them by index. Fields use MQTT's encodings (two-byte
//! length strings, big-endian integers, v5 property lists). Journal records
//! (`records.rs`) reuse the same field layouts.

use crate::broker::{
    Awaiting, Snapshot, StoredInflight, StoredMessage, StoredOutgoing, StoredSession, StoredSub,
};
use crate::protocol::{
    Ctx, DecodeError, QoS, Reader, Sink, SubOptions, Version, read_properties, write_properties,
};

const MAGIC: &[u8; 8] = b"ROOST-DB";
/// Bumped whenever the body's layout changes; older files are refused
/// rather than misread.
const VERSION: u16 = 1;
const HEADER: usize = MAGIC.len() + 2 + 8 + 8;

/// Whether `bytes` start like a roost snapshot.
pub fn is_snapshot(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The file for `snap`, which includes the journal up to `generation`.
pub fn encode(snap: &Snapshot, generation: u64) -> Vec<u8> {
    let mut body = Vec::new();
    write_body(&mut body, snap);
    let mut out = Vec::with_capacity(HEADER + body.len() + 4);
    out.extend_from_slice(MAGIC);
    out.u16(VERSION);
    put_u64(&mut out, generation);
    put_u64(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out.u32(crc32(&out));
    out
}

/// The snapshot and its journal generation, or why the file does not
/// load, for the error that names it.
pub fn decode(bytes: &[u8]) -> Result<(Snapshot, u64), String> {
    if bytes.len() < HEADER + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a roost snapshot (bad header or too short)".into());
    }
    let version = u16::from_be_bytes([bytes[8], bytes[9]]);
    if version != VERSION {
        return Err(format!(
            "snapshot format {version}, this roost reads {VERSION}"
        ));
    }
    let generation = u64::from_be_bytes(bytes[10..18].try_into().expect("8 bytes"));
    let len = u64::from_be_bytes(bytes[18..HEADER].try_into().expect("8 bytes"));
    if len != (bytes.len() - HEADER - 4) as u64 {
        return Err(format!(
            "truncated or padded: the header says {len} body bytes, the file has {}",
            bytes.len() - HEADER - 4
        ));
    }
    let (data, sum) = bytes.split_at(bytes.len() - 4);
    if crc32(data) != u32::from_be_bytes(sum.try_into().expect("4 bytes")) {
        return Err("checksum mismatch: the file is damaged".into());
    }
    let mut r = Reader::new(&data[HEADER..]);
    let snap = read_body(&mut r).map_err(|e| format!("damaged record: {e}"))?;
    r.finish().map_err(|e| e.to_string())?;
    Ok((snap, generation))
}

fn write_body(w: &mut Vec<u8>, snap: &Snapshot) {
    w.u32(snap.messages.len() as u32);
    snap.messages.iter().for_each(|m| write_message(w, m));
    w.u32(snap.retained.len() as u32);
    snap.retained.iter().for_each(|&i| w.u32(i));
    w.u32(snap.sessions.len() as u32);
    for s in &snap.sessions {
        w.str(&s.client_id);
        put_opt_str(w, s.username.as_deref());
        w.u8(s.listener);
        w.u32(s.expiry);
        w.u8(u8::from(s.expires_at.is_some()));
        if let Some(at) = s.expires_at {
            put_u64(w, at);
        }
        w.u16(s.last_packet_id);
        w.u32(s.subscriptions.len() as u32);
        s.subscriptions.iter().for_each(|sub| write_sub(w, sub));
        w.u32(s.inflight.len() as u32);
        for f in &s.inflight {
            w.u16(f.packet_id);
            w.u8(f.awaiting as u8);
            write_outgoing(w, &f.out);
        }
        w.u32(s.queue.len() as u32);
        s.queue.iter().for_each(|o| write_outgoing(w, o));
        w.u32(s.awaiting_rel.len() as u32);
        s.awaiting_rel.iter().for_each(|&id| w.u16(id));
    }
}

pub(super) fn write_message(w: &mut Vec<u8>, m: &StoredMessage) {
    put_u64(w, m.id);
    let flags = m.qos as u8 | u8::from(m.retain) << 2 | u8::from(m.expires_at.is_some()) << 3;
    w.u8(flags);
    w.str(&m.topic);
    write_properties(w, Version::V5, &[&m.properties]);
    w.u32(m.payload.len() as u32);
    w.put(&m.payload);
    if let Some(at) = m.expires_at {
        put_u64(w, at);
    }
}

pub(super) fn write_sub(w: &mut Vec<u8>, sub: &StoredSub) {
    w.str(&sub.filter);
    let o = sub.options;
    w.put(&[
        o.qos as u8,
        u8::from(o.no_local),
        u8::from(o.retain_as_published),
        o.retain_handling,
    ]);
    w.u32(sub.id);
}

fn write_outgoing(w: &mut Vec<u8>, o: &StoredOutgoing) {
    w.u32(o.msg);
    w.u8(o.qos as u8);
    w.u8(u8::from(o.retain));
    w.u32(o.sub_ids.len() as u32);
    o.sub_ids.iter().for_each(|&id| w.u32(id));
    put_opt_str(w, o.share.as_deref());
}

pub(super) fn put_u64(w: &mut Vec<u8>, v: u64) {
    w.put(&v.to_be_bytes());
}

pub(super) fn put_opt_str(w: &mut Vec<u8>, s: Option<&str>) {
    w.u8(u8::from(s.is_some()));
    if let Some(s) = s {
        w.str(s);
    }
}

pub(super) const BAD: DecodeError = DecodeError::Malformed("invalid value");

fn read_body(r: &mut Reader) -> Result<Snapshot, DecodeError> {
    // Counts are not trusted for capacity: a damaged one must fail at the
    // end of the data, not allocate what it claims.
    let mut snap = Snapshot::default();
    for _ in 0..r.u32()? {
        snap.messages.push(read_message(r)?);
    }
    let messages = snap.messages.len() as u32;
    let index = |r: &mut Reader| match r.u32()? {
        i if i < messages => Ok(i),
        _ => Err(BAD),
    };
    for _ in 0..r.u32()? {
        snap.retained.push(index(r)?);
    }
    for _ in 0..r.u32()? {
        let client_id = r.string()?;
        let username = opt_string(r)?;
        let listener = r.u8()?;
        let expiry = r.u32()?;
        let expires_at = if r.u8()? != 0 { Some(u64(r)?) } else { None };
        let last_packet_id = r.u16()?;
        let mut subscriptions = Vec::new();
        for _ in 0..r.u32()? {
            subscriptions.push(read_sub(r)?);
        }
        let mut inflight = Vec::new();
        for _ in 0..r.u32()? {
            let packet_id = r.packet_id()?;
            let awaiting = match r.u8()? {
                0 => Awaiting::Ack,
                1 => Awaiting::Received,
                2 => Awaiting::Complete,
                _ => return Err(BAD),
            };
            let out = read_outgoing(r, &index)?;
            inflight.push(StoredInflight {
                packet_id,
                awaiting,
                out,
            });
        }
        let mut queue = Vec::new();
        for _ in 0..r.u32()? {
            queue.push(read_outgoing(r, &index)?);
        }
        let mut awaiting_rel = Vec::new();
        for _ in 0..r.u32()? {
            awaiting_rel.push(r.packet_id()?);
        }
        snap.sessions.push(StoredSession {
            client_id,
            username,
            listener,
            expiry,
            expires_at,
            last_packet_id,
            subscriptions,
            inflight,
            queue,
            awaiting_rel,
        });
    }
    Ok(snap)
}

pub(super) fn read_message(r: &mut Reader) -> Result<StoredMessage, DecodeError> {
    let id = u64(r)?;
    let flags = r.u8()?;
    let topic = r.string()?;
    let properties = read_properties(r, Version::V5, Ctx::Publish)?;
    let len = r.u32()? as usize;
    let payload = r.take(len)?.to_vec();
    let expires_at = if flags & 0x08 != 0 {
        Some(u64(r)?)
    } else {
        None
    };
    Ok(StoredMessage {
        id,
        topic,
        payload,
        qos: qos(flags & 0x03)?,
        retain: flags & 0x04 != 0,
        properties,
        expires_at,
    })
}

pub(super) fn read_sub(r: &mut Reader) -> Result<StoredSub, DecodeError> {
    let filter = r.string()?;
    let [q, no_local, rap, retain_handling] = r.take(4)?.try_into().map_err(|_| BAD)?;
    if retain_handling > 2 {
        return Err(BAD);
    }
    Ok(StoredSub {
        filter,
        options: SubOptions {
            qos: qos(q)?,
            no_local: no_local != 0,
            retain_as_published: rap != 0,
            retain_handling,
        },
        id: r.u32()?,
    })
}

fn read_outgoing(
    r: &mut Reader,
    index: &impl Fn(&mut Reader) -> Result<u32, DecodeError>,
) -> Result<StoredOutgoing, DecodeError> {
    let msg = index(r)?;
    let qos = qos(r.u8()?)?;
    let retain = r.u8()? != 0;
    let mut sub_ids = Vec::new();
    for _ in 0..r.u32()? {
        sub_ids.push(r.u32()?);
    }
    Ok(StoredOutgoing {
        msg,
        qos,
        retain,
        sub_ids,
        share: opt_string(r)?,
    })
}

fn qos(v: u8) -> Result<QoS, DecodeError> {
    QoS::from_u8(v).ok_or(BAD)
}

pub(super) fn u64(r: &mut Reader) -> Result<u64, DecodeError> {
    Ok(u64::from_be_bytes(r.take(8)?.try_into().map_err(|_| BAD)?))
}

pub(super) fn opt_string(r: &mut Reader) -> Result<Option<String>, DecodeError> {
    match r.u8()? {
        0 => Ok(None),
        _ => r.string().map(Some),
    }
}

/// CRC-32 (IEEE 802.3, as zlib's), table-driven.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !data.iter().fold(!0u32, |c, &b| {
        TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Property;

    fn sample() -> Snapshot {
        let out = |msg, qos| StoredOutgoing {
            msg,
            qos,
            retain: false,
            sub_ids: vec![7],
            share: None,
        };
        Snapshot {
            messages: vec![
                StoredMessage {
                    id: 12,
                    topic: "home/temp".into(),
                    payload: b"21.5".to_vec(),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    properties: vec![Property::ContentType("text/plain".into())],
                    expires_at: Some(1_900_000_000),
                },
                StoredMessage {
                    id: 13,
                    topic: "cmd/valve".into(),
                    payload: vec![0; 300],
                    qos: QoS::ExactlyOnce,
                    retain: false,
                    properties: Vec::new(),
                    expires_at: None,
                },
            ],
            retained: vec![0],
            sessions: vec![StoredSession {
                client_id: "dashboard".into(),
                username: Some("alice".into()),
                listener: 2,
                expiry: u32::MAX,
                expires_at: Some(1_800_000_000),
                last_packet_id: 41,
                subscriptions: vec![StoredSub {
                    filter: "$share/g/home/#".into(),
                    options: SubOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: false,
                        retain_as_published: true,
                        retain_handling: 2,
                    },
                    id: 7,
                }],
                inflight: vec![StoredInflight {
                    packet_id: 41,
                    awaiting: Awaiting::Complete,
                    out: out(1, QoS::ExactlyOnce),
                }],
                queue: vec![StoredOutgoing {
                    share: Some("$share/g/home/#".into()),
                    ..out(0, QoS::AtLeastOnce)
                }],
                awaiting_rel: vec![3, 9],
            }],
        }
    }

    #[test]
    fn round_trips() {
        let snap = sample();
        assert_eq!(decode(&encode(&snap, 7)).unwrap(), (snap, 7));
        let empty = Snapshot::default();
        assert_eq!(decode(&encode(&empty, 0)).unwrap(), (empty, 0));
    }

    #[test]
    fn crc_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    /// Cut at every offset, or any byte changed: an error, never a panic or
    /// a partial state.
    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let bytes = encode(&sample(), 3);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x20;
            assert!(decode(&damaged).is_err(), "byte {i} changed");
        }
    }

    #[test]
    fn a_newer_format_is_named() {
        let mut bytes = encode(&Snapshot::default(), 0);
        bytes[9] = 2;
        assert!(decode(&bytes).unwrap_err().contains("format 2"));
    }
}
