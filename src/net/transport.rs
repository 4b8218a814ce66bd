//! What a listener puts between a socket and the MQTT bytes: nothing
//! (plain TCP, `Connection::transport` None) or a filter per connection,
//! one variant each. The loop calls only these methods; each filter's
//! logic lives in its own module.

// Without a filter compiled in (`--no-default-features`) the methods have
// nothing to do.
#![cfg_attr(
    not(feature = "tls"),
    allow(unused_variables, clippy::ptr_arg, dead_code)
)]

use std::io;

#[cfg(feature = "tls")]
use super::tls;
use crate::config;

/// One connection's filter.
pub enum Transport {
    #[cfg(feature = "tls")]
    Tls(tls::Tls),
}

// `match *self`: without any filter compiled in, the enum is empty and
// the match needs no arm.
impl Transport {
    /// Raw bytes from the socket in: the MQTT bytes they carry are
    /// appended to `mqtt`, what the filter answers to `out` (the
    /// connection's output). An error ends the connection.
    pub fn receive(&mut self, raw: &[u8], mqtt: &mut Vec<u8>, out: &mut Vec<u8>) -> io::Result<()> {
        match *self {
            #[cfg(feature = "tls")]
            Transport::Tls(ref mut t) => t
                .receive(raw, mqtt, out)
                .map_err(|e| io::Error::other(format!("TLS: {e}"))),
        }
    }

    /// Before the output goes to the socket: wraps what the broker
    /// encoded into it since the last time.
    pub fn seal(&mut self, out: &mut Vec<u8>) {
        match *self {
            #[cfg(feature = "tls")]
            Transport::Tls(ref mut t) => t.seal(out),
        }
    }

    /// `n` bytes from the front of the output were written.
    pub fn written(&mut self, n: usize) {
        match *self {
            #[cfg(feature = "tls")]
            Transport::Tls(ref mut t) => t.written(n),
        }
    }

    /// The connection is closing: wraps what is left and says goodbye.
    pub fn close(&mut self, out: &mut Vec<u8>) {
        match *self {
            #[cfg(feature = "tls")]
            Transport::Tls(ref mut t) => t.close(out),
        }
    }

    /// `Some` when the client's user name is taken from its certificate
    /// (`use_identity_as_username`), see [`crate::broker::Broker::packet_certified`].
    pub fn identity(&self) -> Option<Option<String>> {
        match *self {
            #[cfg(feature = "tls")]
            Transport::Tls(ref t) => t.identity(),
        }
    }
}

/// A listener's kind: what its connections start with.
pub enum Kind {
    Plain,
    #[cfg(feature = "tls")]
    Tls(tls::Acceptor),
}

impl Kind {
    /// Reads the files the listener needs (certificates, keys).
    pub fn load(listener: &config::Listener) -> Result<Kind, String> {
        match &listener.tls {
            None => Ok(Kind::Plain),
            #[cfg(feature = "tls")]
            Some(settings) => tls::Acceptor::load(settings).map(Kind::Tls),
            // The config refuses TLS keys in such a build.
            #[cfg(not(feature = "tls"))]
            Some(_) => Err("this roost was built without TLS (cargo feature `tls`)".into()),
        }
    }

    /// The filter for a new connection; None for plain TCP.
    pub fn start(&self) -> io::Result<Option<Box<Transport>>> {
        match self {
            Kind::Plain => Ok(None),
            #[cfg(feature = "tls")]
            Kind::Tls(acceptor) => match acceptor.start() {
                Ok(t) => Ok(Some(Box::new(Transport::Tls(t)))),
                Err(e) => Err(io::Error::other(format!("TLS: {e}"))),
            },
        }
    }

    /// SIGHUP: reads the listener's files again, for new connections.
    pub fn reload(&mut self) {
        match self {
            Kind::Plain => {}
            #[cfg(feature = "tls")]
            Kind::Tls(acceptor) => acceptor.reload(),
        }
    }
}
