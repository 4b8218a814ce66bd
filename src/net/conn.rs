//! One client socket and the bytes it has not finished: the tail of a
//! partial packet read, and what the socket would not yet take. Those live
//! in a box that a connection holds only while it has some (or is
//! closing), taken from and given back to a loop-wide pool: an idle
//! connection holds neither the bytes nor room for them. A connection of
//! a TLS or WebSocket listener also has a transport, which its bytes pass
//! through.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;
use std::time::Instant;

use super::stream::Stream;
use super::transport::{Inbound, Transport};
use crate::broker::Message;
use crate::protocol::Version;

pub struct Connection {
    pub stream: Stream,
    /// Protocol level, from CONNECT; decides how packets are read and written.
    pub version: Version,
    /// Why it is not read from now ([`pause`] bits); 0 when it is.
    pub paused: u8,
    /// Listed for a flush at the end of the loop iteration.
    pub dirty: bool,
    /// The broker was told its output is full, and waits to hear when
    /// there is room again.
    pub full: bool,
    pending: Option<Box<Pending>>,
    /// The layers between socket and MQTT bytes (TLS, WebSockets); None
    /// for plain TCP.
    transport: Option<Box<Transport>>,
}

/// Why a connection is not read from (bits of [`Connection::paused`]).
pub mod pause {
    /// Its unsent output is over `max_outgoing_bytes`: a client that does
    /// not read its answers is not read from either.
    pub const OUTPUT: u8 = 1;
    /// The broker holds it back: a subscriber its messages go to has a
    /// full queue. The packets already read are handed over up to the
    /// next PUBLISH.
    pub const HELD: u8 = 2;
}

/// What a connection with traffic (or closing) has on top of an idle one.
#[derive(Default)]
pub struct Pending {
    /// Leftover bytes of a packet not yet complete.
    inbuf: Vec<u8>,
    /// Encoded bytes not yet written to the socket.
    outbuf: Vec<u8>,
    /// Payloads of large messages, written from the shared message rather
    /// than copied into `outbuf` (see [`Connection::share_payload`]).
    shared: VecDeque<SharedPayload>,
    /// The broker is done with it: flush, then close by this deadline.
    closing: Option<Instant>,
}

/// A message's payload, to be written after the first `at` bytes of the
/// output buffer.
struct SharedPayload {
    at: usize,
    msg: Rc<Message>,
    /// How much of it is written already.
    written: usize,
}

impl SharedPayload {
    fn rest(&self) -> &[u8] {
        &self.msg.payload[self.written..]
    }
}

/// Most pieces written by one `writev`.
const IOV_MAX: usize = 64;

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
    pub fn new(stream: Stream, transport: Option<Box<Transport>>) -> Connection {
        Connection {
            stream,
            version: Version::V311,
            paused: 0,
            dirty: false,
            full: false,
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

    /// Whether its TLS handshake is still under way: until it is done,
    /// what went out carried no MQTT.
    pub fn handshaking(&self) -> bool {
        self.transport.as_ref().is_some_and(|t| t.handshaking())
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
        self.pending.as_ref().map_or(0, |p| {
            p.outbuf.len() + p.shared.iter().map(|s| s.rest().len()).sum::<usize>()
        })
    }

    /// Whether a payload of `len` bytes is better written from the shared
    /// message than copied: a large one, on a plain TCP connection (a
    /// transport has to wrap every byte it sends).
    pub fn shares(&self, len: usize) -> bool {
        len >= SHARED_PAYLOAD && self.transport.is_none()
    }

    /// Has `msg`'s payload written after what the output holds now, from
    /// the message itself: a large message to many subscribers is held
    /// once, not once per subscriber.
    pub fn share_payload(&mut self, msg: &Rc<Message>, spare: &mut Spare) {
        let pending = self.pending(spare);
        pending.shared.push_back(SharedPayload {
            at: pending.outbuf.len(),
            msg: msg.clone(),
            written: 0,
        });
    }

    fn pending(&mut self, spare: &mut Spare) -> &mut Pending {
        self.pending.get_or_insert_with(|| spare.take())
    }

    /// The output buffer, to encode into.
    pub fn outbuf(&mut self, spare: &mut Spare) -> &mut Vec<u8> {
        &mut self.pending(spare).outbuf
    }

    /// The output buffer with room for `need` more bytes. It grows by
    /// doubling, but not past `ceiling` unless `need` takes it there: a
    /// buffer filled to `max_outgoing_bytes` and one message over it
    /// would otherwise hold twice that.
    pub fn outbuf_for(&mut self, need: usize, ceiling: usize, spare: &mut Spare) -> &mut Vec<u8> {
        let buf = self.outbuf(spare);
        if buf.capacity() - buf.len() < need {
            let want = (buf.capacity() * 2).min(ceiling).max(buf.len() + need);
            buf.reserve_exact(want - buf.len());
        }
        buf
    }

    /// The tail of a partial packet kept from earlier reads, taken out.
    pub fn take_inbuf(&mut self) -> Vec<u8> {
        self.pending
            .as_mut()
            .map(|p| std::mem::take(&mut p.inbuf))
            .unwrap_or_default()
    }

    /// Keeps `tail`, the start of a packet not yet complete, without the
    /// room a large packet before it took.
    pub fn keep_inbuf(&mut self, mut tail: Vec<u8>, spare: &mut Spare) {
        if tail.is_empty() {
            self.release(spare);
        } else {
            if tail.capacity() > Spare::CAPACITY && tail.capacity() > 2 * tail.len() {
                tail.shrink_to_fit();
            }
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
        if !pending.outbuf.is_empty() || !pending.shared.is_empty() {
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
            if written == pending.outbuf.len() && pending.shared.is_empty() {
                break Ok(true);
            }
            let n = if pending.shared.is_empty() {
                self.stream.write(&pending.outbuf[written..])
            } else {
                write_shared(&mut self.stream, &pending.outbuf, written, &pending.shared)
            };
            match n {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *sent += n as u64;
                    written += consume(n, written, &mut pending.shared);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        pending.outbuf.drain(..written);
        for shared in &mut pending.shared {
            shared.at -= written;
        }
        if let Some(transport) = &mut self.transport {
            transport.drained(written);
        }
        result
    }
}

/// Payloads from this size on are shared, not copied (see
/// [`Connection::shares`]).
const SHARED_PAYLOAD: usize = 16 * 1024;

/// One `writev` of the output from `out[from..]` on, with the shared
/// payloads in their places.
fn write_shared(
    stream: &mut Stream,
    out: &[u8],
    from: usize,
    shared: &VecDeque<SharedPayload>,
) -> io::Result<usize> {
    let mut pieces = Vec::with_capacity(IOV_MAX);
    let mut pos = from;
    for s in shared.iter().take(IOV_MAX / 2) {
        if s.at > pos {
            pieces.push(IoSlice::new(&out[pos..s.at]));
            pos = s.at;
        }
        pieces.push(IoSlice::new(s.rest()));
    }
    if pieces.len() < IOV_MAX && pos < out.len() {
        pieces.push(IoSlice::new(&out[pos..]));
    }
    stream.write_vectored(&pieces)
}

/// Accounts for `n` bytes written from output position `from` on: marks
/// the shared payloads written, dropping those done. Returns how many of
/// the bytes came from the output buffer.
fn consume(mut n: usize, from: usize, shared: &mut VecDeque<SharedPayload>) -> usize {
    let mut pos = from;
    while let Some(s) = shared.front_mut() {
        let before = (s.at - pos).min(n);
        pos += before;
        n -= before;
        if pos < s.at || n == 0 && !s.rest().is_empty() {
            return pos - from;
        }
        let take = s.rest().len().min(n);
        s.written += take;
        n -= take;
        if !s.rest().is_empty() {
            return pos - from;
        }
        shared.pop_front();
    }
    pos + n - from
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::net::TcpStream;
    use std::net::TcpListener;
    use std::time::Duration;

    fn connection() -> (Connection, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let stream = Stream::Tcp(TcpStream::from_std(server));
        (Connection::new(stream, None), client)
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn an_idle_connection_is_small() {
        use std::mem::{align_of, size_of};
        // The socket (a 4-byte fd in a release build; mio adds a selector
        // id in debug builds) with the tag saying TCP or Unix (8 bytes
        // in a release build: Unix sockets cost every connection 8),
        // four one-byte fields and two boxes (buffers, transport): 32
        // bytes.
        let tag = align_of::<TcpStream>();
        assert_eq!(size_of::<Stream>(), size_of::<TcpStream>() + tag);
        let expected = (size_of::<Stream>() + 4 + 8 + 8).next_multiple_of(8);
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
    fn the_output_buffer_grows_to_its_ceiling_not_past_it() {
        let (mut c, _client) = connection();
        let mut spare = Spare::default();
        let ceiling = 9216;
        while c.unsent() < 8192 {
            c.outbuf_for(80, ceiling, &mut spare)
                .extend_from_slice(&[0; 80]);
        }
        // Doubling would have taken it to 16 KiB.
        assert!(c.outbuf(&mut spare).capacity() <= ceiling);
        let big = c.outbuf_for(4000, ceiling, &mut spare);
        assert!(big.capacity() >= big.len() + 4000, "what is needed fits");
    }

    #[test]
    fn shared_payloads_go_out_in_their_places() {
        use crate::protocol::QoS;
        use std::io::Read;
        let (mut c, mut client) = connection();
        let mut spare = Spare::default();
        let msg = |byte: u8, len: usize| {
            Rc::new(Message::new(
                "t".into(),
                vec![byte; len],
                QoS::AtMostOnce,
                false,
                Vec::new(),
                Instant::now(),
            ))
        };
        // Large enough that the socket takes it in several writes.
        let (a, b) = (msg(b'a', 3 << 20), msg(b'b', 100_000));
        let mut want = Vec::new();
        for (head, m) in [(&b"<1>"[..], &a), (&b"<2>"[..], &b)] {
            c.outbuf(&mut spare).extend_from_slice(head);
            c.share_payload(m, &mut spare);
            want.extend_from_slice(head);
            want.extend_from_slice(&m.payload);
        }
        c.outbuf(&mut spare).extend_from_slice(b"<end>");
        want.extend_from_slice(b"<end>");
        assert_eq!(c.unsent(), want.len());
        let reader = std::thread::spawn(move || {
            let mut got = vec![0; want.len()];
            client.read_exact(&mut got).unwrap();
            assert!(got == want, "bytes out of place");
        });
        let mut sent = 0;
        while !c.flush(&mut sent).unwrap() {
            std::thread::sleep(Duration::from_millis(1));
        }
        reader.join().unwrap();
        assert_eq!(c.unsent(), 0);
        assert_eq!(
            Rc::strong_count(&a),
            1,
            "the payload is let go once written"
        );
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
