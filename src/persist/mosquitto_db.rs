//! mosquitto's persistence file (`mosquitto.db`) as written by mosquitto
//! 2.0 (format version 6) and 1.6 (version 5), read into plain chunks.
//! Nothing here writes it: roost only imports it (`import.rs`).
//!
//! The file: a 15-byte magic, a CRC that mosquitto leaves at 0, the
//! format version (big-endian), then chunks, each a big-endian type and
//! length and a body. A body starts with mosquitto's C struct for it,
//! written as it is in memory: its 16- and 32-bit fields are converted to
//! big-endian, but the 64-bit ones (message ids, expiry times) are in the
//! writing machine's byte order, read here as little-endian (x86 and ARM
//! Linux), and the struct is padded to its alignment. The strings and
//! payload the struct gives the lengths of follow it, so their place is
//! found from the chunk's end, whatever the padding.

use crate::protocol::{Ctx, DecodeError, Property, QoS, Reader, Version, read_properties};

/// The first 15 bytes of every mosquitto.db.
pub const MAGIC: [u8; 15] = *b"\x00\xb5\x00mosquitto db";

/// Whether `bytes` start like a mosquitto.db.
pub fn is_mosquitto_db(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

const CFG: u32 = 1;
const BASE_MSG: u32 = 2;
const CLIENT_MSG: u32 = 3;
const RETAIN: u32 = 4;
const SUB: u32 = 5;
const CLIENT: u32 = 6;

/// A message as mosquitto stores it once, however many refer to it.
#[derive(Debug, PartialEq)]
pub struct BaseMsg {
    pub store_id: u64,
    /// Wall-clock seconds; 0 for none.
    pub expiry_time: i64,
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Vec<Property>,
}

/// A kept session.
#[derive(Debug, PartialEq)]
pub struct Client {
    pub id: String,
    pub username: Option<String>,
    /// Wall-clock seconds the session ends at; 0 for not set.
    pub session_expiry_time: i64,
    /// Seconds; `u32::MAX` for never.
    pub session_expiry_interval: u32,
    pub last_mid: u16,
    /// The port of the listener it last came through (0 in version 5).
    pub listener_port: u16,
}

/// One message in a session's queues, in either direction.
#[derive(Debug, PartialEq)]
pub struct ClientMsg {
    pub client_id: String,
    pub store_id: u64,
    pub mid: u16,
    pub qos: QoS,
    /// mosquitto's `mosquitto_msg_state`.
    pub state: u8,
    pub retain: bool,
    /// True for a message to the client, false for one from it (a QoS 2
    /// message awaiting its PUBREL).
    pub outgoing: bool,
    /// 0 for none.
    pub subscription_id: u32,
}

#[derive(Debug, PartialEq)]
pub struct Sub {
    pub client_id: String,
    pub filter: String,
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub identifier: u32,
}

/// Every chunk of a file, in file order within each kind.
#[derive(Debug, Default, PartialEq)]
pub struct Chunks {
    pub version: u32,
    pub base_msgs: Vec<BaseMsg>,
    pub clients: Vec<Client>,
    pub client_msgs: Vec<ClientMsg>,
    /// Store ids of the retained messages.
    pub retained: Vec<u64>,
    pub subs: Vec<Sub>,
    /// The types of chunks this reader does not know, skipped as
    /// mosquitto skips them.
    pub unknown: Vec<u32>,
}

/// Reads a whole file, or says where and why it does not read.
pub fn parse(bytes: &[u8]) -> Result<Chunks, String> {
    if !is_mosquitto_db(bytes) {
        return Err("not a mosquitto.db (no mosquitto header)".into());
    }
    let Some(version) = bytes.get(19..23) else {
        return Err("cut short inside the header".into());
    };
    let version = u32::from_be_bytes(version.try_into().expect("4 bytes"));
    if version != 5 && version != 6 {
        return Err(format!(
            "format version {version}; roost reads versions 6 (mosquitto 2.0) and 5 (mosquitto 1.6)"
        ));
    }
    let mut chunks = Chunks {
        version,
        ..Chunks::default()
    };
    let mut at = 23;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 8) else {
            return Err(format!(
                "cut short: {} bytes at byte {at}, where a chunk header takes 8",
                bytes.len() - at
            ));
        };
        let kind = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
        let len = u32::from_be_bytes(header[4..].try_into().expect("4 bytes")) as usize;
        let body = bytes
            .get(at + 8..)
            .and_then(|rest| rest.get(..len))
            .ok_or_else(|| {
                format!(
                    "cut short: the chunk at byte {at} says {len} bytes, {} are left",
                    bytes.len() - at - 8
                )
            })?;
        chunks
            .read_chunk(kind, body)
            .map_err(|e| format!("the {} chunk at byte {at} is damaged: {e}", name(kind)))?;
        at += 8 + len;
    }
    Ok(chunks)
}

fn name(kind: u32) -> &'static str {
    match kind {
        CFG => "config",
        BASE_MSG => "message",
        CLIENT_MSG => "queued message",
        RETAIN => "retained message",
        SUB => "subscription",
        CLIENT => "session",
        _ => "unknown",
    }
}

const BAD: DecodeError = DecodeError::Malformed("invalid value");

impl Chunks {
    fn read_chunk(&mut self, kind: u32, body: &[u8]) -> Result<(), DecodeError> {
        let mut r = Reader::new(body);
        match kind {
            CFG => {
                let _last_db_id = r.take(8)?;
                let _shutdown = r.u8()?;
                // mosquitto refuses a file of another id size too.
                if r.u8()? != 8 {
                    return Err(DecodeError::Malformed("message ids are not 8 bytes"));
                }
            }
            BASE_MSG => self.base_msgs.push(base_msg(r)?),
            CLIENT_MSG => self.client_msgs.push(client_msg(r)?),
            RETAIN => self.retained.push(u64_le(&mut r)?),
            SUB => self.subs.push(sub(body)?),
            CLIENT => self.clients.push(client(body, self.version)?),
            _ => self.unknown.push(kind),
        }
        Ok(())
    }
}

fn base_msg(mut r: Reader) -> Result<BaseMsg, DecodeError> {
    let store_id = u64_le(&mut r)?;
    let expiry_time = u64_le(&mut r)? as i64;
    let payload_len = r.u32()? as usize;
    let _source_mid = r.u16()?;
    let source_id_len = r.u16()?;
    let source_username_len = r.u16()?;
    let topic_len = r.u16()?;
    let _source_port = r.u16()?;
    let qos = qos(r.u8()?)?;
    let retain = r.u8()? != 0;
    r.take(usize::from(source_id_len) + usize::from(source_username_len))?;
    let topic = string(&mut r, topic_len)?;
    let payload = r.take(payload_len)?.to_vec();
    Ok(BaseMsg {
        store_id,
        expiry_time,
        topic,
        payload,
        qos,
        retain,
        properties: properties(r)?,
    })
}

fn client_msg(mut r: Reader) -> Result<ClientMsg, DecodeError> {
    let store_id = u64_le(&mut r)?;
    let mid = r.u16()?;
    let id_len = r.u16()?;
    let qos = qos(r.u8()?)?;
    let state = r.u8()?;
    let retain_dup = r.u8()?;
    let outgoing = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(BAD),
    };
    let client_id = string(&mut r, id_len)?;
    let subscription_id = properties(r)?
        .into_iter()
        .find_map(|p| match p {
            Property::SubscriptionIdentifier(id) => Some(id),
            _ => None,
        })
        .unwrap_or(0);
    Ok(ClientMsg {
        client_id,
        store_id,
        mid,
        qos,
        state,
        retain: retain_dup >> 4 != 0,
        outgoing,
        subscription_id,
    })
}

fn sub(body: &[u8]) -> Result<Sub, DecodeError> {
    let mut r = Reader::new(body);
    let identifier = r.u32()?;
    let id_len = r.u16()?;
    let topic_len = r.u16()?;
    let qos = qos(r.u8()?)?;
    let options = r.u8()?;
    let mut r = Reader::new(tail(
        body,
        10,
        usize::from(id_len) + usize::from(topic_len),
    )?);
    Ok(Sub {
        client_id: string(&mut r, id_len)?,
        filter: string(&mut r, topic_len)?,
        qos,
        no_local: options & 0x04 != 0,
        retain_as_published: options & 0x08 != 0,
        identifier,
    })
}

fn client(body: &[u8], version: u32) -> Result<Client, DecodeError> {
    let mut r = Reader::new(body);
    let session_expiry_time = u64_le(&mut r)? as i64;
    let session_expiry_interval = r.u32()?;
    let last_mid = r.u16()?;
    let id_len = r.u16()?;
    // Version 6 added the listener's port and the user name.
    let (listener_port, username_len) = if version >= 6 {
        (r.u16()?, r.u16()?)
    } else {
        (0, 0)
    };
    let fixed = if version >= 6 { 20 } else { 16 };
    let strings = usize::from(id_len) + usize::from(username_len);
    let mut r = Reader::new(tail(body, fixed, strings)?);
    let id = string(&mut r, id_len)?;
    let username = match username_len {
        0 => None,
        n => Some(string(&mut r, n)?),
    };
    Ok(Client {
        id,
        username,
        session_expiry_time,
        session_expiry_interval,
        last_mid,
        listener_port,
    })
}

/// The last `strings` bytes of a chunk whose struct takes at least
/// `fixed` bytes before them (more with padding).
fn tail(body: &[u8], fixed: usize, strings: usize) -> Result<&[u8], DecodeError> {
    match body.len().checked_sub(strings) {
        Some(start) if start >= fixed => Ok(&body[start..]),
        _ => Err(DecodeError::Malformed(
            "field runs past the end of the chunk",
        )),
    }
}

/// A property list (its length first), or none when the chunk ends.
fn properties(mut r: Reader) -> Result<Vec<Property>, DecodeError> {
    if r.is_empty() {
        return Ok(Vec::new());
    }
    let props = read_properties(&mut r, Version::V5, Ctx::Publish)?;
    r.finish()?;
    Ok(props)
}

fn string(r: &mut Reader, len: u16) -> Result<String, DecodeError> {
    let bytes = r.take(usize::from(len))?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| DecodeError::Malformed("string is not valid UTF-8"))
}

fn u64_le(r: &mut Reader) -> Result<u64, DecodeError> {
    Ok(u64::from_le_bytes(r.take(8)?.try_into().map_err(|_| BAD)?))
}

fn qos(v: u8) -> Result<QoS, DecodeError> {
    QoS::from_u8(v).ok_or(DecodeError::Malformed("QoS above 2"))
}
