//! One client socket and the bytes it has not finished: the tail of a
//! partial packet read, and what the socket would not yet take. Those live
//! in a box that a connection holds only while it has some (or is
//! closing), taken from and given back to a loop-wide pool: an idle
//! connection holds neither the bytes nor room for them. A connection of
//! a TLS or WebSocket listener also has a transport, which its bytes pass
//! through.

use std::io::{self, Write};
use std::time::Instant;

use mio::net::TcpStream;

use super::transport::{Inbound, Transport};
use crate::protocol::Version;

pub struct Connection {
    pub stream: TcpStream,
    /// Protocol level, from CONNECT; decides how packets are read and written.
    pub version: Version,
    /// Reading stopped because the unsent output is over its bound: a
    /// client that does not read its answers is not read from either.
    pub read_paused: bool,
    /// Listed for a flush at the end of the loop iteration.
    pub dirty: bool,
    /// QoS 0 drops for this connection were logged.
    pub drop_logged: bool,
    pending: Option<Box<Pending>>,
    /// The layers between socket and MQTT bytes (TLS, WebSockets); None
    /// for plain TCP.
    transport: Option<Box<Transport>>,
}

/// What a connection with traffic (or closing) has on top of an idle one.
#[derive(Default)]
pub struct Pending {
    /// Leftover bytes of a packet not yet complete.
    inbuf: Vec<u8>,
    /// Encoded bytes not yet written to the socket.
    outbuf: Vec<u8>,
    /// The broker is done with it: flush, then close by this deadline.
    closing: Option<Instant>,
}

/// Boxes of connections that went idle, each with the room its output
/// buffer had, for the next connection with something to send.
#[derive(Default)]
#[allow(clippy::vec_box)] // The boxes are what is reused.
pub struct Spare(Vec<Box<Pending>>);

impl Spare {
    /// How many are kept, and the largest output buffer kept.
    const COUNT: usize = 64;
    const CAPACITY: usize = 64 * 1024;

    fn take(&mut self) -> Box<Pending> {
        self.0.pop().unwrap_or_default()
    }

    fn keep(&mut self, pending: Box<Pending>) {
        if self.0.len() < Self::COUNT && pending.outbuf.capacity() <= Self::CAPACITY {
            self.0.push(pending);
        }
    }
}

impl Connection {
    pub fn new(stream: TcpStream, transport: Option<Box<Transport>>) -> Connection {
        Connection {
            stream,
            version: Version::V311,
            read_paused: false,
            dirty: false,
            drop_logged: false,
            pending: None,
            transport,
        }
    }

    pub fn has_transport(&self) -> bool {
        self.transport.is_some()
    }

    /// Passes `buf`, as read, through the transport (see
    /// [`Transport::read`]); its answers go to the output. Only for a
    /// connection that has one ([`Connection::has_transport`]).
    pub fn filter_input<'a>(
        &mut self,
        buf: &'a mut [u8],
        scratch: &'a mut Vec<u8>,
        spare: &mut Spare,
    ) -> Inbound<'a> {
        let transport = self
            .transport
            .as_mut()
            .expect("called for connections with a transport");
        let pending = self.pending.get_or_insert_with(|| spare.take());
        let inbound = transport.read(buf, scratch, &mut pending.outbuf);
        if inbound.mqtt.is_empty() {
            // Nothing for `received` to keep or give back: only a frame
            // header or TLS record in progress, or nothing at all.
            self.release(spare);
        }
        inbound
    }

    /// See [`Transport::identity`].
    pub fn identity(&self) -> Option<Option<String>> {
        self.transport.as_ref().and_then(|t| t.identity())
    }

    /// When a closing connection is dropped; None while it is open.
    pub fn closing(&self) -> Option<Instant> {
        self.pending.as_ref().and_then(|p| p.closing)
    }

    /// Bytes encoded and not yet written.
    pub fn unsent(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.outbuf.len())
    }

    fn pending(&mut self, spare: &mut Spare) -> &mut Pending {
        self.pending.get_or_insert_with(|| spare.take())
    }

    /// The output buffer, to encode into.
    pub fn outbuf(&mut self, spare: &mut Spare) -> &mut Vec<u8> {
        &mut self.pending(spare).outbuf
    }

    /// The tail of a partial packet kept from earlier reads, taken out.
    pub fn take_inbuf(&mut self) -> Vec<u8> {
        self.pending
            .as_mut()
            .map(|p| std::mem::take(&mut p.inbuf))
            .unwrap_or_default()
    }

    /// Keeps `tail`, the start of a packet not yet complete.
    pub fn keep_inbuf(&mut self, tail: Vec<u8>, spare: &mut Spare) {
        if tail.is_empty() {
            self.release(spare);
        } else {
            self.pending(spare).inbuf = tail;
        }
    }

    /// Starts closing: input is dropped from now on; what is unsent may
    /// go until `deadline`.
    pub fn close_by(&mut self, deadline: Instant, spare: &mut Spare) {
        let pending = self.pending.get_or_insert_with(|| spare.take());
        pending.closing = Some(deadline);
        pending.inbuf = Vec::new();
        if let Some(transport) = &mut self.transport {
            transport.close(&mut pending.outbuf);
        }
    }

    /// Once nothing is left to send: gives the box back to `spare` when
    /// nothing is left at all, else frees the output buffer's room.
    pub fn release(&mut self, spare: &mut Spare) {
        let Some(pending) = &mut self.pending else {
            return;
        };
        if !pending.outbuf.is_empty() {
            return;
        }
        if pending.inbuf.is_empty() && pending.closing.is_none() {
            spare.keep(self.pending.take().expect("checked above"));
        } else {
            pending.outbuf = Vec::new();
        }
    }

    /// Writes as much of the output as the socket takes, adding what it
    /// wrote to `sent`. Ok(true) when all of it went.
    pub fn flush(&mut self, sent: &mut u64) -> io::Result<bool> {
        let Some(pending) = &mut self.pending else {
            return Ok(true);
        };
        if let Some(transport) = &mut self.transport {
            transport.seal(&mut pending.outbuf);
        }
        let mut written = 0;
        let result = loop {
            if written == pending.outbuf.len() {
                break Ok(true);
            }
            match self.stream.write(&pending.outbuf[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        pending.outbuf.drain(..written);
        if let Some(transport) = &mut self.transport {
            transport.drained(written);
        }
        *sent += written as u64;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    fn connection() -> (Connection, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (Connection::new(TcpStream::from_std(server), None), client)
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn an_idle_connection_is_small() {
        use std::mem::size_of;
        // The socket (4 bytes in a release build; mio adds a selector id
        // in debug builds), four one-byte fields and two boxes (buffers,
        // transport): 24 bytes.
        let expected = (size_of::<TcpStream>() + 4 + 8 + 8).next_multiple_of(8);
        assert_eq!(size_of::<Connection>(), expected);
    }

    #[test]
    fn the_box_is_held_while_there_are_bytes_and_reused() {
        let (mut c, _client) = connection();
        let mut spare = Spare::default();
        c.outbuf(&mut spare).extend_from_slice(b"abc");
        c.keep_inbuf(b"x".to_vec(), &mut spare);
        assert!(c.flush(&mut 0).unwrap());
        c.release(&mut spare);
        assert!(c.pending.is_some(), "a partial packet is still kept");
        assert_eq!(c.take_inbuf(), b"x");
        c.keep_inbuf(Vec::new(), &mut spare);
        assert!(c.pending.is_none(), "nothing left: given back");
        assert_eq!(spare.0.len(), 1);
        c.outbuf(&mut spare);
        assert!(spare.0.is_empty(), "taken again");
        let later = Instant::now() + Duration::from_secs(2);
        c.close_by(later, &mut spare);
        c.release(&mut spare);
        assert_eq!(c.closing(), Some(later), "kept while closing");
    }

    #[test]
    fn the_pool_is_bounded() {
        let mut spare = Spare::default();
        let mut big = Box::<Pending>::default();
        big.outbuf.reserve(Spare::CAPACITY + 1);
        spare.keep(big);
        assert!(spare.0.is_empty(), "too large to keep");
        for _ in 0..100 {
            spare.keep(Box::default());
        }
        assert_eq!(spare.0.len(), Spare::COUNT);
    }
}
