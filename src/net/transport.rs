//! The byte filters a listener may put between a socket and the MQTT
//! bytes. A connection holds `Option<Box<Transport>>`: None for plain TCP,
//! whose path stays as it was; the filter's own logic lives in its module.

use super::ws::WebSocket;
use crate::config::{Protocol, Settings};

pub enum Transport {
    /// `protocol websockets`.
    WebSocket(WebSocket),
}

/// What one read came to, once through the filter.
#[derive(Debug, Default, PartialEq)]
pub struct Inbound {
    /// MQTT bytes, now at the start of the read buffer.
    pub mqtt: usize,
    /// The filter ended the connection, and why (a refused handshake, a
    /// close or protocol error); its answer is queued to go out.
    pub end: Option<&'static str>,
}

impl Transport {
    /// The filter for a new connection on a `protocol` listener.
    pub fn new(protocol: Protocol, settings: &Settings) -> Option<Box<Transport>> {
        match protocol {
            Protocol::Mqtt => None,
            Protocol::WebSockets => Some(Box::new(Transport::WebSocket(WebSocket::new(
                settings.websockets_headers_size,
            )))),
        }
    }

    /// `buf[..n]` as read from the socket. On return `buf` starts with the
    /// MQTT bytes it held (the whole of `buf` may be used); what the filter
    /// answers itself (a handshake, a pong) is added to `out`.
    pub fn read(&mut self, buf: &mut [u8], n: usize, out: &mut Vec<u8>) -> Inbound {
        match self {
            Transport::WebSocket(ws) => ws.read(buf, n, out),
        }
    }

    /// Before a write: wraps the MQTT bytes added to `out` since the last
    /// call.
    pub fn seal(&mut self, out: &mut Vec<u8>) {
        match self {
            Transport::WebSocket(ws) => ws.seal(out),
        }
    }

    /// The first `n` bytes of the sealed output were written and removed.
    pub fn drained(&mut self, n: usize) {
        match self {
            Transport::WebSocket(ws) => ws.drained(n),
        }
    }

    /// The connection is closing: the filter's goodbye, if it has one.
    pub fn close(&mut self, out: &mut Vec<u8>) {
        match self {
            Transport::WebSocket(ws) => ws.close(out),
        }
    }
}
