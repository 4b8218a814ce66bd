//! A tiny, independent MQTT 3.1 / 3.1.1 / 5.0 byte builder and parser for the
//! raw-socket tests, written from the specifications. It deliberately does not
//! use roost's own codec so that the tests do not share bugs with the code
//! under test. It is permissive on purpose: builders can produce invalid
//! packets (wrong flags, bad lengths, duplicate properties...).
#![allow(dead_code)] // each test crate uses its own subset

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Upper bound for anything a test waits on (same as the harness).
pub const WAIT: Duration = Duration::from_secs(10);

// Packet types (fixed header high nibble).
pub const CONNECT: u8 = 1;
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBSCRIBE: u8 = 8;
pub const SUBACK: u8 = 9;
pub const UNSUBSCRIBE: u8 = 10;
pub const UNSUBACK: u8 = 11;
pub const PINGREQ: u8 = 12;
pub const PINGRESP: u8 = 13;
pub const DISCONNECT: u8 = 14;
pub const AUTH: u8 = 15;

// v5 property identifiers.
pub const P_PAYLOAD_FORMAT: u8 = 0x01;
pub const P_MESSAGE_EXPIRY: u8 = 0x02;
pub const P_CONTENT_TYPE: u8 = 0x03;
pub const P_RESPONSE_TOPIC: u8 = 0x08;
pub const P_CORRELATION_DATA: u8 = 0x09;
pub const P_SUBSCRIPTION_ID: u8 = 0x0B;
pub const P_SESSION_EXPIRY: u8 = 0x11;
pub const P_ASSIGNED_CLIENT_ID: u8 = 0x12;
pub const P_SERVER_KEEP_ALIVE: u8 = 0x13;
pub const P_AUTH_METHOD: u8 = 0x15;
pub const P_AUTH_DATA: u8 = 0x16;
pub const P_REQUEST_PROBLEM_INFO: u8 = 0x17;
pub const P_WILL_DELAY: u8 = 0x18;
pub const P_REQUEST_RESPONSE_INFO: u8 = 0x19;
pub const P_RESPONSE_INFO: u8 = 0x1A;
pub const P_SERVER_REFERENCE: u8 = 0x1C;
pub const P_REASON_STRING: u8 = 0x1F;
pub const P_RECEIVE_MAXIMUM: u8 = 0x21;
pub const P_TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub const P_TOPIC_ALIAS: u8 = 0x23;
pub const P_MAXIMUM_QOS: u8 = 0x24;
pub const P_RETAIN_AVAILABLE: u8 = 0x25;
pub const P_USER_PROPERTY: u8 = 0x26;
pub const P_MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub const P_WILDCARD_SUB_AVAILABLE: u8 = 0x28;
pub const P_SUB_ID_AVAILABLE: u8 = 0x29;
pub const P_SHARED_SUB_AVAILABLE: u8 = 0x2A;

// ---------------------------------------------------------------- encoding

/// Variable Byte Integer (MQTT 1.5.5 / 2.2.3).
pub fn varint(mut n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// UTF-8 string / binary data: two-byte big-endian length then the bytes.
pub fn lp(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A whole packet: first byte, remaining length, body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len() as u32));
    out.extend_from_slice(body);
    out
}

/// An encoded v5 property list builder (without its length prefix).
#[derive(Clone, Default, Debug)]
pub struct Props(pub Vec<u8>);

impl Props {
    pub fn new() -> Props {
        Props(Vec::new())
    }
    pub fn byte(mut self, id: u8, v: u8) -> Props {
        self.0.push(id);
        self.0.push(v);
        self
    }
    pub fn u16(mut self, id: u8, v: u16) -> Props {
        self.0.push(id);
        self.0.extend(v.to_be_bytes());
        self
    }
    pub fn u32(mut self, id: u8, v: u32) -> Props {
        self.0.push(id);
        self.0.extend(v.to_be_bytes());
        self
    }
    pub fn varint(mut self, id: u8, v: u32) -> Props {
        self.0.push(id);
        self.0.extend(varint(v));
        self
    }
    pub fn str(mut self, id: u8, v: &str) -> Props {
        self.0.push(id);
        self.0.extend(lp(v.as_bytes()));
        self
    }
    pub fn bin(mut self, id: u8, v: &[u8]) -> Props {
        self.0.push(id);
        self.0.extend(lp(v));
        self
    }
    pub fn pair(mut self, id: u8, k: &str, v: &str) -> Props {
        self.0.push(id);
        self.0.extend(lp(k.as_bytes()));
        self.0.extend(lp(v.as_bytes()));
        self
    }
    /// Length-prefixed encoding as it appears in a packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = varint(self.0.len() as u32);
        out.extend_from_slice(&self.0);
        out
    }
}

#[derive(Clone, Debug)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub props: Props,
}

impl Will {
    pub fn new(topic: &str, payload: &[u8]) -> Will {
        Will {
            topic: topic.into(),
            payload: payload.to_vec(),
            qos: 0,
            retain: false,
            props: Props::new(),
        }
    }
    pub fn qos(mut self, qos: u8) -> Will {
        self.qos = qos;
        self
    }
    pub fn retain(mut self, retain: bool) -> Will {
        self.retain = retain;
        self
    }
    pub fn props(mut self, props: Props) -> Will {
        self.props = props;
        self
    }
}

/// CONNECT builder.
#[derive(Clone, Debug)]
pub struct Connect {
    pub protocol_name: String,
    pub level: u8,
    pub client_id: String,
    pub clean: bool,
    pub keep_alive: u16,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub props: Props,
    /// OR-ed into the connect flags (to set reserved / inconsistent bits).
    pub extra_flags: u8,
}

impl Connect {
    pub fn new(level: u8, client_id: &str) -> Connect {
        Connect {
            protocol_name: if level == 3 {
                "MQIsdp".into()
            } else {
                "MQTT".into()
            },
            level,
            client_id: client_id.into(),
            clean: true,
            keep_alive: 0,
            will: None,
            username: None,
            password: None,
            props: Props::new(),
            extra_flags: 0,
        }
    }
    pub fn v3(client_id: &str) -> Connect {
        Connect::new(3, client_id)
    }
    pub fn v4(client_id: &str) -> Connect {
        Connect::new(4, client_id)
    }
    pub fn v5(client_id: &str) -> Connect {
        Connect::new(5, client_id)
    }
    pub fn clean(mut self, clean: bool) -> Connect {
        self.clean = clean;
        self
    }
    pub fn keep_alive(mut self, secs: u16) -> Connect {
        self.keep_alive = secs;
        self
    }
    pub fn will(mut self, will: Will) -> Connect {
        self.will = Some(will);
        self
    }
    pub fn props(mut self, props: Props) -> Connect {
        self.props = props;
        self
    }
    pub fn extra_flags(mut self, flags: u8) -> Connect {
        self.extra_flags = flags;
        self
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut body = lp(self.protocol_name.as_bytes());
        body.push(self.level);
        let mut flags = self.extra_flags;
        if self.clean {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        body.push(flags);
        body.extend(self.keep_alive.to_be_bytes());
        if self.level == 5 {
            body.extend(self.props.encode());
        }
        body.extend(lp(self.client_id.as_bytes()));
        if let Some(w) = &self.will {
            if self.level == 5 {
                body.extend(w.props.encode());
            }
            body.extend(lp(w.topic.as_bytes()));
            body.extend(lp(&w.payload));
        }
        if let Some(u) = &self.username {
            body.extend(lp(u.as_bytes()));
        }
        if let Some(p) = &self.password {
            body.extend(lp(p));
        }
        packet(CONNECT << 4, &body)
    }
}

/// PUBLISH builder (also used to describe received publishes).
#[derive(Clone, Debug, PartialEq)]
pub struct Publish {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    pub topic: Vec<u8>,
    pub pid: Option<u16>,
    /// Raw v5 property bytes (without length) for building; parsed list when received.
    pub props: Vec<Prop>,
    pub raw_props: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Publish {
    pub fn new(topic: &str, payload: &[u8]) -> Publish {
        Publish {
            dup: false,
            qos: 0,
            retain: false,
            topic: topic.as_bytes().to_vec(),
            pid: None,
            props: Vec::new(),
            raw_props: Vec::new(),
            payload: payload.to_vec(),
        }
    }
    pub fn qos(mut self, qos: u8, pid: u16) -> Publish {
        self.qos = qos;
        self.pid = if qos > 0 { Some(pid) } else { None };
        self
    }
    pub fn retain(mut self, retain: bool) -> Publish {
        self.retain = retain;
        self
    }
    pub fn dup(mut self, dup: bool) -> Publish {
        self.dup = dup;
        self
    }
    pub fn props(mut self, props: Props) -> Publish {
        self.raw_props = props.0;
        self
    }
    pub fn topic_str(&self) -> String {
        String::from_utf8_lossy(&self.topic).into_owned()
    }
    pub fn first_byte(&self) -> u8 {
        (PUBLISH << 4) | ((self.dup as u8) << 3) | (self.qos << 1) | self.retain as u8
    }
    pub fn encode(&self, v5: bool) -> Vec<u8> {
        let mut body = lp(&self.topic);
        if let Some(pid) = self.pid {
            body.extend(pid.to_be_bytes());
        }
        if v5 {
            body.extend(varint(self.raw_props.len() as u32));
            body.extend_from_slice(&self.raw_props);
        }
        body.extend_from_slice(&self.payload);
        packet(self.first_byte(), &body)
    }
    /// Subscription identifiers present (v5).
    pub fn sub_ids(&self) -> Vec<u32> {
        self.props
            .iter()
            .filter(|p| p.id == P_SUBSCRIPTION_ID)
            .filter_map(|p| match p.value {
                PropValue::Int(n) => Some(n),
                _ => None,
            })
            .collect()
    }
}

/// SUBSCRIBE: filters with their options byte (QoS in the low bits).
pub fn subscribe(pid: u16, filters: &[(&str, u8)], v5: bool, props: Props) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    if v5 {
        body.extend(props.encode());
    }
    for (f, opts) in filters {
        body.extend(lp(f.as_bytes()));
        body.push(*opts);
    }
    packet((SUBSCRIBE << 4) | 0x02, &body)
}

pub fn unsubscribe(pid: u16, filters: &[&str], v5: bool) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for f in filters {
        body.extend(lp(f.as_bytes()));
    }
    packet((UNSUBSCRIBE << 4) | 0x02, &body)
}

/// PUBACK / PUBREC / PUBREL / PUBCOMP with only a packet id (reason 0 implied).
pub fn ack(kind: u8, pid: u16) -> Vec<u8> {
    let flags = if kind == PUBREL { 0x02 } else { 0 };
    packet((kind << 4) | flags, &pid.to_be_bytes())
}

pub fn pingreq() -> Vec<u8> {
    vec![PINGREQ << 4, 0]
}

pub fn disconnect() -> Vec<u8> {
    vec![DISCONNECT << 4, 0]
}

/// v5 DISCONNECT with a reason code.
pub fn disconnect_v5(reason: u8) -> Vec<u8> {
    packet(DISCONNECT << 4, &[reason, 0])
}

// ---------------------------------------------------------------- decoding

#[derive(Clone, Debug, PartialEq)]
pub enum PropValue {
    Int(u32),
    Str(String),
    Bin(Vec<u8>),
    Pair(String, String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Prop {
    pub id: u8,
    pub value: PropValue,
}

/// A decoding cursor over a packet body; panics (failing the test) on
/// truncated data, which is what we want for broker output.
pub struct Cursor<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, pos: 0 }
    }
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
    pub fn u8(&mut self) -> u8 {
        let b = self.buf[self.pos];
        self.pos += 1;
        b
    }
    pub fn u16(&mut self) -> u16 {
        let v = u16::from_be_bytes([self.buf[self.pos], self.buf[self.pos + 1]]);
        self.pos += 2;
        v
    }
    pub fn u32(&mut self) -> u32 {
        let v = u32::from_be_bytes(self.buf[self.pos..self.pos + 4].try_into().unwrap());
        self.pos += 4;
        v
    }
    pub fn varint(&mut self) -> u32 {
        let mut n = 0u32;
        let mut mult = 1u32;
        for _ in 0..4 {
            let b = self.u8();
            n += (b & 0x7F) as u32 * mult;
            if b & 0x80 == 0 {
                return n;
            }
            mult *= 128;
        }
        panic!("variable byte integer longer than 4 bytes in broker output");
    }
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        s
    }
    pub fn lp(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.bytes(n)
    }
    pub fn string(&mut self) -> String {
        String::from_utf8(self.lp().to_vec()).expect("broker sent invalid UTF-8")
    }
    pub fn props(&mut self) -> Vec<Prop> {
        let len = self.varint() as usize;
        let end = self.pos + len;
        let mut out = Vec::new();
        while self.pos < end {
            let id = self.u8();
            let value = match id {
                0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => {
                    PropValue::Int(self.u8() as u32)
                }
                0x13 | 0x21 | 0x22 | 0x23 => PropValue::Int(self.u16() as u32),
                0x02 | 0x11 | 0x18 | 0x27 => PropValue::Int(self.u32()),
                0x0B => PropValue::Int(self.varint()),
                0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => PropValue::Str(self.string()),
                0x09 | 0x16 => PropValue::Bin(self.lp().to_vec()),
                0x26 => {
                    let k = self.string();
                    let v = self.string();
                    PropValue::Pair(k, v)
                }
                other => panic!("unknown property id {other:#x} from broker"),
            };
            out.push(Prop { id, value });
        }
        assert_eq!(self.pos, end, "property length mismatch in broker output");
        out
    }
}

pub fn find_prop(props: &[Prop], id: u8) -> Option<&PropValue> {
    props.iter().find(|p| p.id == id).map(|p| &p.value)
}

/// One packet as read off the wire.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    pub first: u8,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Connack {
    pub session_present: bool,
    pub code: u8,
    pub props: Vec<Prop>,
}

impl Packet {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }
    pub fn flags(&self) -> u8 {
        self.first & 0x0F
    }
    /// CONNACK; `v5` selects the layout (properties after the code).
    pub fn connack(&self, v5: bool) -> Connack {
        assert_eq!(self.kind(), CONNACK, "expected CONNACK, got {self:?}");
        let mut c = Cursor::new(&self.body);
        let ack_flags = c.u8();
        assert_eq!(ack_flags & 0xFE, 0, "CONNACK reserved ack flags set");
        let code = c.u8();
        let props = if v5 && !c.is_empty() {
            c.props()
        } else {
            Vec::new()
        };
        Connack {
            session_present: ack_flags & 1 == 1,
            code,
            props,
        }
    }
    pub fn publish(&self, v5: bool) -> Publish {
        assert_eq!(self.kind(), PUBLISH, "expected PUBLISH, got {self:?}");
        let qos = (self.first >> 1) & 3;
        let mut c = Cursor::new(&self.body);
        let topic = c.lp().to_vec();
        let pid = if qos > 0 { Some(c.u16()) } else { None };
        let props = if v5 { c.props() } else { Vec::new() };
        Publish {
            dup: self.first & 0x08 != 0,
            qos,
            retain: self.first & 1 != 0,
            topic,
            pid,
            props,
            raw_props: Vec::new(),
            payload: c.rest().to_vec(),
        }
    }
    /// Packet id of an ack-like packet (PUBACK..PUBCOMP, SUBACK, UNSUBACK).
    pub fn pid(&self) -> u16 {
        u16::from_be_bytes([self.body[0], self.body[1]])
    }
    /// Reason code of a PUBACK..PUBCOMP (0 when absent).
    pub fn ack_reason(&self) -> u8 {
        self.body.get(2).copied().unwrap_or(0)
    }
    /// SUBACK / UNSUBACK return codes.
    pub fn suback_codes(&self, v5: bool) -> Vec<u8> {
        let mut c = Cursor::new(&self.body);
        c.u16();
        if v5 {
            c.props();
        }
        c.rest().to_vec()
    }
    /// v5 DISCONNECT reason code (0 when absent).
    pub fn disconnect_reason(&self) -> u8 {
        assert_eq!(self.kind(), DISCONNECT, "expected DISCONNECT, got {self:?}");
        self.body.first().copied().unwrap_or(0)
    }
}

/// Tries to split one packet off the front of `buf`. Returns the packet and
/// the number of bytes used, or None when more bytes are needed.
pub fn parse_packet(buf: &[u8]) -> Option<(Packet, usize)> {
    if buf.is_empty() {
        return None;
    }
    let mut len = 0usize;
    let mut mult = 1usize;
    let mut i = 1;
    loop {
        let b = *buf.get(i)?;
        len += (b & 0x7F) as usize * mult;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        mult *= 128;
        assert!(i <= 4, "broker sent a remaining length longer than 4 bytes");
    }
    if buf.len() < i + len {
        return None;
    }
    Some((
        Packet {
            first: buf[0],
            body: buf[i..i + len].to_vec(),
        },
        i + len,
    ))
}

// ---------------------------------------------------------------- client

#[derive(Debug)]
pub enum Recv {
    Packet(Packet),
    /// The broker closed the connection (EOF or reset).
    Closed,
    /// Nothing complete arrived within the time given.
    Timeout,
}

/// A raw TCP connection speaking MQTT through the builders above.
pub struct Client {
    pub stream: TcpStream,
    pub v5: bool,
    buf: Vec<u8>,
    /// Packets read while waiting for something else (e.g. a PUBLISH that
    /// arrived before an expected PUBREL); returned first by `recv`.
    pending: VecDeque<Packet>,
    closed: bool,
}

impl Client {
    /// Opens a TCP connection (no MQTT yet).
    pub fn open(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("tcp connect");
        stream.set_nodelay(true).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        Client {
            stream,
            v5: false,
            buf: Vec::new(),
            pending: VecDeque::new(),
            closed: false,
        }
    }

    /// Opens a connection, sends `connect`, and requires CONNACK success.
    pub fn connect(addr: &str, connect: &Connect) -> (Client, Connack) {
        let mut c = Client::open(addr);
        c.v5 = connect.level == 5;
        c.send(&connect.encode());
        let p = c.expect();
        let ack = p.connack(c.v5);
        assert_eq!(ack.code, 0, "CONNACK refused for {connect:?}: {ack:?}");
        (c, ack)
    }

    /// Shorthand: clean v3.1.1 (level 4) session.
    pub fn v4(addr: &str, id: &str) -> Client {
        Client::connect(addr, &Connect::v4(id)).0
    }

    /// Shorthand: clean v5 session.
    pub fn v5(addr: &str, id: &str) -> Client {
        Client::connect(addr, &Connect::v5(id)).0
    }

    /// Writes bytes; a write error (broker already closed) is ignored here
    /// and shows up as `Recv::Closed` on the next read.
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Writes bytes, reporting errors.
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one packet, waiting at most `within`.
    pub fn recv(&mut self, within: Duration) -> Recv {
        if let Some(p) = self.pending.pop_front() {
            return Recv::Packet(p);
        }
        let deadline = Instant::now() + within;
        loop {
            if let Some((p, used)) = parse_packet(&self.buf) {
                self.buf.drain(..used);
                return Recv::Packet(p);
            }
            if self.closed {
                return Recv::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Recv::Timeout;
            }
            let left = (deadline - now).max(Duration::from_millis(1));
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
    }

    /// The next packet; fails the test on timeout or close.
    pub fn expect(&mut self) -> Packet {
        match self.recv(WAIT) {
            Recv::Packet(p) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// The next packet, which must be of `kind`.
    pub fn expect_kind(&mut self, kind: u8) -> Packet {
        let p = self.expect();
        assert_eq!(p.kind(), kind, "expected packet type {kind}, got {p:?}");
        p
    }

    /// The next packet of `kind`; packets of other kinds that arrive first
    /// are kept and returned by later reads, in order.
    pub fn expect_skipping(&mut self, kind: u8) -> Packet {
        let mut skipped = Vec::new();
        let found = loop {
            let p = match self.recv(WAIT) {
                Recv::Packet(p) => p,
                other => panic!("expected packet type {kind}, got {other:?} after {skipped:?}"),
            };
            if p.kind() == kind {
                break p;
            }
            skipped.push(p);
        };
        for p in skipped.into_iter().rev() {
            self.pending.push_front(p);
        }
        found
    }

    pub fn expect_publish(&mut self) -> Publish {
        let p = self.expect();
        p.publish(self.v5)
    }

    /// Asserts that no packet arrives and the connection stays open for `dur`.
    pub fn expect_silence(&mut self, dur: Duration) {
        match self.recv(dur) {
            Recv::Timeout => {}
            other => panic!("expected nothing for {dur:?}, got {other:?}"),
        }
    }

    /// Waits (at most `within`) for the broker to close the connection and
    /// returns every packet received before the close. Fails on timeout.
    pub fn expect_closed_within(&mut self, within: Duration) -> Vec<Packet> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Recv::Packet(p) => got.push(p),
                Recv::Closed => return got,
                Recv::Timeout => {
                    panic!("connection not closed within {within:?}; received {got:?}")
                }
            }
        }
    }

    pub fn expect_closed(&mut self) -> Vec<Packet> {
        self.expect_closed_within(WAIT)
    }

    /// Closed with no packet at all before the close.
    pub fn expect_closed_silently(&mut self) {
        let got = self.expect_closed();
        assert!(
            got.is_empty(),
            "expected a close without packets, got {got:?}"
        );
    }

    /// v5: expects a DISCONNECT with `reason`, then the close.
    pub fn expect_disconnect(&mut self, reason: u8) {
        let got = self.expect_closed();
        assert_eq!(
            got.len(),
            1,
            "expected exactly one DISCONNECT then close, got {got:?}"
        );
        assert_eq!(
            got[0].disconnect_reason(),
            reason,
            "wrong DISCONNECT reason: {got:?}"
        );
    }

    /// Subscribes and returns the SUBACK return codes.
    pub fn subscribe(&mut self, pid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        self.subscribe_props(pid, filters, Props::new())
    }

    pub fn subscribe_props(&mut self, pid: u16, filters: &[(&str, u8)], props: Props) -> Vec<u8> {
        let v5 = self.v5;
        self.send(&subscribe(pid, filters, v5, props));
        let p = self.expect_kind(SUBACK);
        assert_eq!(p.pid(), pid, "SUBACK packet id");
        p.suback_codes(v5)
    }

    /// Publishes and completes the QoS flow from the sender's side.
    pub fn publish(&mut self, p: &Publish) {
        let v5 = self.v5;
        self.send(&p.encode(v5));
        match p.qos {
            0 => {}
            1 => {
                let a = self.expect_skipping(PUBACK);
                assert_eq!(a.pid(), p.pid.unwrap());
            }
            2 => {
                let a = self.expect_skipping(PUBREC);
                assert_eq!(a.pid(), p.pid.unwrap());
                self.send(&ack(PUBREL, a.pid()));
                let c = self.expect_skipping(PUBCOMP);
                assert_eq!(c.pid(), p.pid.unwrap());
            }
            _ => panic!("bad qos"),
        }
    }

    /// QoS 0 publish shorthand.
    pub fn pub0(&mut self, topic: &str, payload: &[u8]) {
        self.publish(&Publish::new(topic, payload));
    }

    /// Receives a PUBLISH and completes its QoS flow as the receiver.
    pub fn recv_publish_ack(&mut self) -> Publish {
        let p = self.expect_publish();
        self.ack_publish(&p);
        p
    }

    /// Acknowledges a received PUBLISH (QoS 2: PUBREC, wait PUBREL, PUBCOMP).
    pub fn ack_publish(&mut self, p: &Publish) {
        match p.qos {
            1 => self.send(&ack(PUBACK, p.pid.unwrap())),
            2 => {
                self.send(&ack(PUBREC, p.pid.unwrap()));
                let rel = self.expect_skipping(PUBREL);
                assert_eq!(rel.first & 0x0F, 0x02, "PUBREL flags");
                self.send(&ack(PUBCOMP, rel.pid()));
            }
            _ => {}
        }
    }

    /// PINGREQ -> PINGRESP round trip: proves the broker has processed
    /// everything this client sent before.
    pub fn ping(&mut self) {
        self.send(&pingreq());
        self.expect_skipping(PINGRESP);
    }

    /// Sends DISCONNECT and waits for the broker to close the connection
    /// (so its effects are certainly processed).
    pub fn disconnect(mut self) {
        self.send(&disconnect());
        let got = self.expect_closed();
        assert!(got.is_empty(), "packets after DISCONNECT: {got:?}");
    }

    /// Half-closes our side without DISCONNECT (an "abnormal" close for the
    /// broker), then waits until the broker closes its side too.
    pub fn drop_abruptly(mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let _ = self.expect_closed();
    }
}

/// Deterministic xorshift64* generator for garbage input.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}
