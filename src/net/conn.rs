//! One client socket and the bytes it has not finished: the tail of a
//! partial packet read, and what the socket would not yet take. Both are
//! empty (no allocation) while the connection is idle.

use std::io::{self, Write};
use std::time::Instant;

use mio::net::TcpStream;

use crate::protocol::Version;

pub struct Connection {
    pub stream: TcpStream,
    /// Protocol level, from CONNECT; decides how packets are read and written.
    pub version: Version,
    /// Leftover bytes of a packet not yet complete.
    pub inbuf: Vec<u8>,
    /// Encoded bytes not yet written to the socket.
    pub outbuf: Vec<u8>,
    /// Reading stopped because `outbuf` is over its bound: a client that
    /// does not read its answers is not read from either.
    pub read_paused: bool,
    /// Listed for a flush at the end of the loop iteration.
    pub dirty: bool,
    /// The broker is done with it: flush, then close by this deadline.
    pub closing: Option<Instant>,
    /// QoS 0 drops for this connection were logged.
    pub drop_logged: bool,
}

impl Connection {
    pub fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            version: Version::V311,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            read_paused: false,
            dirty: false,
            closing: None,
            drop_logged: false,
        }
    }

    /// Writes as much of `outbuf` as the socket takes, adding what it wrote
    /// to `sent`. Ok(true) when all of it went.
    pub fn flush(&mut self, sent: &mut u64) -> io::Result<bool> {
        let mut written = 0;
        let result = loop {
            if written == self.outbuf.len() {
                break Ok(true);
            }
            match self.stream.write(&self.outbuf[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.outbuf.drain(..written);
        *sent += written as u64;
        result
    }
}
