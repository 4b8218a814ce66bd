//! What a listener puts between a socket and the MQTT bytes: nothing for
//! plain TCP (`Connection::transport` None, whose path stays as it was), or
//! a stack of layers, each optional, in this order from the socket up: TLS
//! (`tls/`, feature `tls`), then WebSocket framing (`ws.rs`). The loop
//! calls only these methods; each layer's logic lives in its own module.
//!
//! Every layer has the same shape. Inbound, raw bytes go in and the bytes
//! they carry come out, with what the layer answers itself (a handshake, a
//! pong) added to the connection's output. Outbound, the broker encodes
//! MQTT into the output as for TCP; before a write, `seal` has each layer,
//! bottom-most last, wrap what was added since its last seal. Each layer
//! keeps how much of the front of the output it has sealed; below a layer
//! everything it sealed is input the next one wraps.

use std::io;

#[cfg(feature = "tls")]
use super::tls;
use super::ws::WebSocket;
use crate::config::{Listener, Protocol, Settings};

/// One connection's layers.
pub struct Transport {
    /// Boxed: a WebSocket connection without TLS pays only the pointer.
    #[cfg(feature = "tls")]
    tls: Option<Box<tls::Tls>>,
    ws: Option<WebSocket>,
}

/// What one read came to, once through the layers.
pub struct Inbound<'a> {
    /// The MQTT bytes the read carried.
    pub mqtt: &'a [u8],
    /// A layer ended the connection; its answer is queued to go out.
    pub end: Option<End>,
}

/// Why a layer ended a connection.
pub enum End {
    /// TLS failed: a refused handshake (a certificate not trusted, say)
    /// or a bad record. Worth an admin's notice.
    #[cfg(feature = "tls")]
    Tls(String),
    /// The WebSocket layer: a refused upgrade, a close, a protocol error.
    WebSocket(&'static str),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            #[cfg(feature = "tls")]
            End::Tls(why) => write!(f, "TLS: {why}"),
            End::WebSocket(why) => f.write_str(why),
        }
    }
}

impl Transport {
    /// The layers of a bridge's connection over TLS.
    #[cfg(feature = "tls")]
    pub fn client(tls: tls::Tls) -> Box<Transport> {
        Box::new(Transport {
            tls: Some(Box::new(tls)),
            ws: None,
        })
    }

    /// `buf` as read from the socket. The MQTT bytes it carries are
    /// unwrapped in place in `buf` when no TLS is involved, or decrypted into
    /// `scratch` (TLS may give back more than one read's bytes: a record
    /// begun in an earlier read).
    pub fn read<'a>(
        &mut self,
        buf: &'a mut [u8],
        scratch: &'a mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Inbound<'a> {
        let mut end = None;
        #[cfg(not(feature = "tls"))]
        let _ = scratch;
        #[cfg(feature = "tls")]
        let buf = match self.tls.as_deref_mut() {
            None => buf,
            Some(tls) => {
                if let Err(e) = tls.read(buf, scratch) {
                    end = Some(End::Tls(tls::explain(&e)));
                    scratch.clear();
                }
                &mut scratch[..]
            }
        };
        let mqtt = match &mut self.ws {
            Some(ws) if end.is_none() => {
                let n = buf.len();
                let unwrapped = ws.read(buf, n, out);
                end = unwrapped.end.map(End::WebSocket);
                &buf[..unwrapped.mqtt]
            }
            _ => buf,
        };
        // What TLS has to say (its handshake, an alert) is inside rustls
        // until sealed: into the output, so the loop sees it to send.
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            self.seal(out);
        }
        Inbound { mqtt, end }
    }

    /// Before a write: wraps what was added to `out` since the last call.
    pub fn seal(&mut self, out: &mut Vec<u8>) {
        if let Some(ws) = &mut self.ws {
            ws.seal(out);
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            tls.seal(out);
            // The frames are inside TLS records now.
            if let Some(ws) = &mut self.ws {
                ws.sealed_up_to(out.len());
            }
        }
    }

    /// The first `n` bytes of the sealed output were written and removed.
    pub fn drained(&mut self, n: usize) {
        if let Some(ws) = &mut self.ws {
            ws.drained(n);
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            tls.drained(n);
        }
    }

    /// The connection is closing: each layer's goodbye, top one first
    /// (a WebSocket close frame inside TLS, then TLS's close_notify).
    pub fn close(&mut self, out: &mut Vec<u8>) {
        if let Some(ws) = &mut self.ws {
            ws.close(out);
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            tls.close(out);
        }
    }

    /// Whether a TLS handshake is still under way.
    pub fn handshaking(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.handshaking();
        }
        false
    }

    /// `Some` when the client's user name is taken from its certificate
    /// (`use_identity_as_username`), see [`crate::broker::Origin`].
    pub fn identity(&self) -> Option<Option<String>> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.identity();
        }
        None
    }
}

/// A listener's kind: the layers its connections start with.
pub struct Kind {
    #[cfg(feature = "tls")]
    tls: Option<tls::Acceptor>,
    /// `protocol websockets`: `websockets_headers_size`.
    websockets: Option<u16>,
}

impl Kind {
    /// Reads the files the listener needs (certificates, keys).
    pub fn load(listener: &Listener, settings: &Settings) -> Result<Kind, String> {
        let websockets = match listener.protocol {
            Protocol::Mqtt => None,
            Protocol::WebSockets => Some(settings.websockets_headers_size),
        };
        Ok(Kind {
            #[cfg(feature = "tls")]
            tls: match &listener.tls {
                Some(tls) => Some(tls::Acceptor::load(tls)?),
                None => None,
            },
            websockets,
        })
    }

    /// The layers of a new connection; None for plain TCP.
    pub fn start(&self) -> io::Result<Option<Box<Transport>>> {
        let ws = self.websockets.map(WebSocket::new);
        #[cfg(feature = "tls")]
        let tls = match &self.tls {
            Some(acceptor) => Some(Box::new(
                acceptor
                    .start()
                    .map_err(|e| io::Error::other(format!("TLS: {e}")))?,
            )),
            None => None,
        };
        if !self.has_tls() && ws.is_none() {
            return Ok(None);
        }
        Ok(Some(Box::new(Transport {
            #[cfg(feature = "tls")]
            tls,
            ws,
        })))
    }

    fn has_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        // The config refuses TLS keys in a build without it.
        #[cfg(not(feature = "tls"))]
        false
    }

    /// What the listener's log line calls it: `TLS: ` before TLS ones,
    /// and the URL scheme of WebSocket ones.
    pub fn describe(&self) -> (&'static str, &'static str) {
        match (self.has_tls(), self.websockets.is_some()) {
            (false, false) => ("", ""),
            (false, true) => ("", "ws://"),
            (true, false) => ("TLS: ", ""),
            (true, true) => ("TLS: ", "wss://"),
        }
    }

    /// SIGHUP: reads the listener's files again, for new connections.
    pub fn reload(&mut self) {
        #[cfg(feature = "tls")]
        if let Some(acceptor) = &mut self.tls {
            acceptor.reload();
        }
    }
}
