//! MQTT over WebSockets (RFC 6455; MQTT 3.1.1 section 6): the HTTP
//! upgrade, then binary frames whose unmasked payloads, end to end, are the
//! MQTT byte stream, however the client cuts it into frames. Pure: bytes
//! in, bytes out, no socket.
//!
//! Inbound frames are unwrapped in place in the loop's read buffer (the
//! MQTT bytes are never more than the bytes read), so a connection keeps
//! only a frame header in progress. Outbound, the broker's packets go into
//! the output buffer as for TCP, and whatever piled up since the last
//! write leaves as one binary frame ([`WebSocket::seal`]): MQTT allows
//! several packets, or part of one, in a frame.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

/// RFC 6455 4.2.2: hashed with the client's key to prove the upgrade.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Close codes (RFC 6455 7.4.1).
const NORMAL: u16 = 1000;
const PROTOCOL_ERROR: u16 = 1002;
const UNSUPPORTED_DATA: u16 = 1003;

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Reading the HTTP upgrade request.
    Handshake,
    Open,
    /// A close frame or an HTTP refusal went out: nothing more is sent,
    /// and input is dropped.
    Closed,
}

/// What one read came to.
#[derive(Debug, Default, PartialEq)]
pub struct Unwrapped {
    /// MQTT bytes, now at the start of the read buffer.
    pub mqtt: usize,
    /// The connection ends, and why (a refused handshake, a close or
    /// protocol error); the answer is queued to go out.
    pub end: Option<&'static str>,
}

pub struct WebSocket {
    state: State,
    /// While `Handshake`: the request so far. While `Open`: the payload so
    /// far of a control frame (at most 125 bytes). Empty otherwise.
    partial: Vec<u8>,
    /// Output bytes already framed; the MQTT bytes after them are not yet.
    sealed: usize,
    frame: Frame,
    /// A binary message cut into fragments is open: continuation frames
    /// belong to it, and no other data frame may start.
    in_message: bool,
    /// `websockets_headers_size`: the largest request read.
    max_request: u16,
}

/// The frame being read.
#[derive(Default)]
struct Frame {
    /// Header bytes while the header is incomplete: 2, up to 8 of length
    /// and the 4 of the mask.
    head: [u8; 14],
    head_len: u8,
    /// The header is complete: payload bytes follow.
    in_payload: bool,
    opcode: u8,
    /// Payload bytes still to come.
    remaining: u64,
    mask: [u8; 4],
    /// Payload bytes read so far, modulo 4: where in the mask to go on.
    mask_at: u8,
}

impl WebSocket {
    /// A connection on a `protocol websockets` listener, before its upgrade
    /// request; `max_request` is `websockets_headers_size`.
    pub fn new(max_request: u16) -> WebSocket {
        WebSocket {
            state: State::Handshake,
            partial: Vec::new(),
            sealed: 0,
            frame: Frame::default(),
            in_message: false,
            max_request,
        }
    }

    /// `buf[..n]` as read from the socket; see [`super::transport::Transport::read`].
    pub fn read(&mut self, buf: &mut [u8], n: usize, out: &mut Vec<u8>) -> Unwrapped {
        match self.state {
            State::Handshake => self.handshake(buf, n, out),
            State::Open => self.frames(buf, 0, n, out),
            State::Closed => Unwrapped::default(),
        }
    }

    /// Frames the MQTT bytes added to `out` since the last call, in one
    /// binary frame. Once closed (or before the upgrade) they are dropped:
    /// nothing may follow a close frame.
    pub fn seal(&mut self, out: &mut Vec<u8>) {
        if self.state != State::Open {
            out.truncate(self.sealed);
            return;
        }
        let len = out.len() - self.sealed;
        if len > 0 {
            let (head, head_len) = header(BINARY, len);
            out.splice(self.sealed..self.sealed, head[..head_len].iter().copied());
            self.sealed = out.len();
        }
    }

    /// The first `n` bytes of `out` were written and removed.
    pub fn drained(&mut self, n: usize) {
        self.sealed -= n;
    }

    /// A layer below (TLS) wrapped `out[..len]`, frames and all.
    #[cfg(feature = "tls")]
    pub fn sealed_up_to(&mut self, len: usize) {
        self.sealed = len;
    }

    /// The broker is done with the connection: a close frame, unless one
    /// went already (or the upgrade never happened).
    pub fn close(&mut self, out: &mut Vec<u8>) {
        if self.state == State::Open {
            self.send_close(NORMAL, out);
        }
    }

    fn handshake(&mut self, buf: &mut [u8], n: usize, out: &mut Vec<u8>) -> Unwrapped {
        let old = self.partial.len();
        let room = usize::from(self.max_request).saturating_sub(old);
        self.partial.extend_from_slice(&buf[..n.min(room)]);
        // The blank line may straddle two reads.
        let from = old.saturating_sub(3);
        let Some(at) = find(&self.partial[from..], b"\r\n\r\n") else {
            if self.partial.len() >= usize::from(self.max_request) {
                return self.refuse(&Refusal::TOO_LARGE, out);
            }
            return Unwrapped::default();
        };
        let end = from + at + 4;
        let request = std::mem::take(&mut self.partial);
        match upgrade(&request[..end]) {
            Ok(response) => {
                out.extend_from_slice(response.as_bytes());
                self.sealed = out.len();
                self.state = State::Open;
                // Frames sent right behind the request.
                self.frames(buf, end - old, n, out)
            }
            Err(refusal) => self.refuse(&refusal, out),
        }
    }

    fn refuse(&mut self, refusal: &Refusal, out: &mut Vec<u8>) -> Unwrapped {
        self.partial = Vec::new();
        out.truncate(self.sealed);
        out.extend_from_slice(refusal.response().as_bytes());
        self.sealed = out.len();
        self.state = State::Closed;
        Unwrapped {
            mqtt: 0,
            end: Some(refusal.reason),
        }
    }

    /// Unwraps the frames in `buf[from..n]`, moving their payloads' MQTT
    /// bytes to the start of `buf`.
    fn frames(&mut self, buf: &mut [u8], from: usize, n: usize, out: &mut Vec<u8>) -> Unwrapped {
        let mut r = from;
        let mut w = 0;
        while r < n && self.state == State::Open {
            let f = &mut self.frame;
            if !f.in_payload {
                let want = f.header_len();
                let take = (want - usize::from(f.head_len)).min(n - r);
                let at = usize::from(f.head_len);
                f.head[at..at + take].copy_from_slice(&buf[r..r + take]);
                f.head_len += take as u8;
                r += take;
                if f.head_len == 2 {
                    if let Err((code, why)) = check_start(f.head[0], f.head[1], self.in_message) {
                        return self.fail(code, why, w, out);
                    }
                }
                if usize::from(f.head_len) < f.header_len() {
                    continue;
                }
                if let Err(why) = f.start_payload() {
                    return self.fail(PROTOCOL_ERROR, why, w, out);
                }
                if matches!(f.opcode, BINARY | CONTINUATION) {
                    self.in_message = f.head[0] & 0x80 == 0;
                }
            } else {
                let take = usize::try_from(f.remaining).map_or(n - r, |left| left.min(n - r));
                let control = f.opcode >= CLOSE;
                for i in 0..take {
                    let byte = buf[r + i] ^ f.mask[(usize::from(f.mask_at) + i) % 4];
                    if control {
                        self.partial.push(byte);
                    } else {
                        buf[w + i] = byte;
                    }
                }
                if !control {
                    w += take;
                }
                r += take;
                f.remaining -= take as u64;
                f.mask_at = ((usize::from(f.mask_at) + take) % 4) as u8;
            }
            if self.frame.in_payload && self.frame.remaining == 0 {
                let opcode = self.frame.opcode;
                self.frame = Frame::default();
                if opcode >= CLOSE {
                    if let Some(why) = self.control(opcode, out) {
                        return Unwrapped {
                            mqtt: w,
                            end: Some(why),
                        };
                    }
                }
            }
        }
        Unwrapped { mqtt: w, end: None }
    }

    /// A whole control frame, its payload in `partial`: answers a ping,
    /// and a close, which ends the connection (`Some(why)`).
    fn control(&mut self, opcode: u8, out: &mut Vec<u8>) -> Option<&'static str> {
        let payload = std::mem::take(&mut self.partial);
        match (opcode, &payload[..]) {
            (PING, _) => {
                self.seal(out);
                push_frame(PONG, &payload, out);
                self.sealed = out.len();
                None
            }
            (CLOSE, [_]) => Some(self.fail_reason(PROTOCOL_ERROR, "close frame of one byte", out)),
            (CLOSE, _) => {
                // Answered with the code it came with, if any (RFC 6455 5.5.1).
                self.seal(out);
                push_frame(CLOSE, &payload[..payload.len().min(2)], out);
                self.sealed = out.len();
                self.state = State::Closed;
                Some("WebSocket closed by the client")
            }
            _ => None, // A pong: nothing to do.
        }
    }

    /// A protocol error: a close frame with `code`, and the end.
    fn fail(&mut self, code: u16, why: &'static str, mqtt: usize, out: &mut Vec<u8>) -> Unwrapped {
        Unwrapped {
            mqtt,
            end: Some(self.fail_reason(code, why, out)),
        }
    }

    fn fail_reason(&mut self, code: u16, why: &'static str, out: &mut Vec<u8>) -> &'static str {
        self.partial = Vec::new();
        self.send_close(code, out);
        why
    }

    fn send_close(&mut self, code: u16, out: &mut Vec<u8>) {
        self.seal(out);
        push_frame(CLOSE, &code.to_be_bytes(), out);
        self.sealed = out.len();
        self.state = State::Closed;
    }
}

impl Frame {
    /// The header's length as far as its first two bytes tell (a client's
    /// frames are masked: the mask's 4 bytes count).
    fn header_len(&self) -> usize {
        if self.head_len < 2 {
            return 2;
        }
        match self.head[1] & 0x7F {
            126 => 2 + 2 + 4,
            127 => 2 + 8 + 4,
            _ => 2 + 4,
        }
    }

    /// The whole header is in: its length and mask.
    fn start_payload(&mut self) -> Result<(), &'static str> {
        let h = &self.head;
        let (remaining, mask_from) = match h[1] & 0x7F {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => {
                let len = u64::from_be_bytes(h[2..10].try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err("frame length with its top bit set");
                }
                (len, 10)
            }
            len => (u64::from(len), 2),
        };
        self.opcode = h[0] & 0x0F;
        self.remaining = remaining;
        self.mask.copy_from_slice(&h[mask_from..mask_from + 4]);
        self.mask_at = 0;
        self.head_len = 0;
        self.in_payload = true;
        Ok(())
    }
}

/// The first two bytes of a frame from the client, checked before the
/// rest is waited for.
fn check_start(b0: u8, b1: u8, in_message: bool) -> Result<(), (u16, &'static str)> {
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    let fail = |why| Err((PROTOCOL_ERROR, why));
    if b0 & 0x70 != 0 {
        return fail("reserved frame bits set (no extension was agreed)");
    }
    if b1 & 0x80 == 0 {
        return fail("unmasked frame from the client (RFC 6455 5.1)");
    }
    match opcode {
        CONTINUATION if !in_message => fail("continuation frame outside a fragmented message"),
        BINARY if in_message => fail("new message inside a fragmented one"),
        CONTINUATION | BINARY => Ok(()),
        TEXT => Err((
            UNSUPPORTED_DATA,
            "text frame: MQTT travels in binary frames [MQTT-6.0.0-1]",
        )),
        CLOSE | PING | PONG if !fin => fail("fragmented control frame"),
        CLOSE | PING | PONG if b1 & 0x7F > 125 => fail("control frame longer than 125 bytes"),
        CLOSE | PING | PONG => Ok(()),
        _ => fail("unknown frame opcode"),
    }
}

/// A server frame's header (never masked): its bytes and length.
fn header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0; 10];
    h[0] = 0x80 | opcode;
    // The length in as few bytes as hold it (RFC 6455 5.2).
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if let Ok(len) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&len.to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

fn push_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    let (head, head_len) = header(opcode, payload.len());
    out.extend_from_slice(&head[..head_len]);
    out.extend_from_slice(payload);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Why an upgrade request is refused, as an HTTP answer.
#[derive(Debug, PartialEq)]
struct Refusal {
    status: &'static str,
    /// Said in the log and in the answer's body.
    reason: &'static str,
    /// Header lines to add, each ending in CRLF.
    headers: &'static str,
}

impl Refusal {
    const TOO_LARGE: Refusal = Refusal {
        status: "431 Request Header Fields Too Large",
        reason: "upgrade request larger than websockets_headers_size",
        headers: "",
    };

    fn bad(reason: &'static str) -> Refusal {
        Refusal {
            status: "400 Bad Request",
            reason,
            headers: "",
        }
    }

    fn response(&self) -> String {
        format!(
            "HTTP/1.1 {}\r\n{}Connection: close\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n{}\n",
            self.status,
            self.headers,
            self.reason.len() + 1,
            self.reason
        )
    }
}

/// The answer to an upgrade request (`request` ends with its blank line):
/// 101 with the `mqtt` subprotocol (or `mqttv3.1`, which old clients ask
/// for), or why not.
fn upgrade(request: &[u8]) -> Result<String, Refusal> {
    let text = std::str::from_utf8(request).map_err(|_| Refusal::bad("request is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    match request_line.split(' ').collect::<Vec<_>>()[..] {
        ["GET", _, "HTTP/1.1"] => {}
        _ => return Err(Refusal::bad("not an HTTP/1.1 GET request")),
    }
    let (mut host, mut upgrade, mut connection, mut key, mut version) =
        (false, false, false, None, None);
    let mut protocols = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Refusal::bad("malformed header line"));
        };
        let value = value.trim();
        let has_token = |token: &str| {
            value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        match name.to_ascii_lowercase().as_str() {
            "host" => host = true,
            "upgrade" => upgrade |= has_token("websocket"),
            "connection" => connection |= has_token("upgrade"),
            "sec-websocket-key" => key = Some(value),
            "sec-websocket-version" => version = Some(value),
            "sec-websocket-protocol" => protocols.extend(value.split(',').map(str::trim)),
            _ => {}
        }
    }
    if !upgrade || !connection {
        return Err(Refusal::bad(
            "this port speaks MQTT over WebSockets: an Upgrade: websocket request is expected",
        ));
    }
    if !host {
        return Err(Refusal::bad("no Host header"));
    }
    if version != Some("13") {
        return Err(Refusal {
            status: "426 Upgrade Required",
            reason: "WebSocket version 13 is spoken here",
            headers: "Sec-WebSocket-Version: 13\r\n",
        });
    }
    let key = key
        .filter(|k| BASE64.decode(k).is_ok_and(|raw| raw.len() == 16))
        .ok_or_else(|| Refusal::bad("missing or malformed Sec-WebSocket-Key"))?;
    // [MQTT-6.0.0-3]/[MQTT-6.0.0-4]: the client offers `mqtt`, the server
    // selects it. Browsers fail a connection answered without a
    // subprotocol they offered, so one without `mqtt` is refused here.
    let protocol = ["mqtt", "mqttv3.1"]
        .into_iter()
        .find(|p| protocols.contains(p))
        .ok_or_else(|| {
            Refusal::bad("no mqtt subprotocol offered (Sec-WebSocket-Protocol: mqtt)")
        })?;
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n",
        accept(key)
    ))
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
fn accept(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = "GET /mqtt HTTP/1.1\r\nHost: gateway:8080\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqttv3.1, mqtt\r\n\r\n";

    /// A client frame, masked with `mask`.
    fn frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let (head, n) = header(0, payload.len());
        let mut f = vec![b0, head[1] | 0x80];
        f.extend_from_slice(&head[2..n]);
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// Feeds `input` in reads cut at `cuts`; returns the MQTT bytes, the
    /// output and how it ended.
    fn feed(
        ws: &mut WebSocket,
        input: &[u8],
        cuts: &[usize],
    ) -> (Vec<u8>, Vec<u8>, Option<&'static str>) {
        let (mut mqtt, mut out) = (Vec::new(), Vec::new());
        let mut at = 0;
        for &cut in cuts.iter().chain([input.len()].iter()) {
            let mut buf = input[at..cut].to_vec();
            let n = buf.len();
            let inbound = ws.read(&mut buf, n, &mut out);
            mqtt.extend_from_slice(&buf[..inbound.mqtt]);
            at = cut;
            if inbound.end.is_some() {
                return (mqtt, out, inbound.end);
            }
        }
        (mqtt, out, None)
    }

    fn open() -> WebSocket {
        let mut ws = WebSocket::new(4096);
        let (_, out, end) = feed(&mut ws, REQUEST.as_bytes(), &[]);
        assert!(
            out.starts_with(b"HTTP/1.1 101 "),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(end, None);
        ws.drained(out.len()); // The answer went out.
        ws
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn an_idle_websocket_is_small() {
        // Beside a TCP connection's, in its transport box: the frame being
        // read (32), an empty buffer (24), the framed output count (8), and
        // four small fields.
        assert_eq!(std::mem::size_of::<WebSocket>(), 72);
    }

    #[test]
    fn the_upgrade_answers_rfc_6455s_example_and_selects_mqtt() {
        let mut ws = WebSocket::new(4096);
        // Cut anywhere, the blank line included.
        let cuts: Vec<usize> = (1..REQUEST.len()).collect();
        let (mqtt, out, end) = feed(&mut ws, REQUEST.as_bytes(), &cuts);
        assert!(mqtt.is_empty() && end.is_none());
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{out}"
        );
        assert!(
            out.contains("\r\nSec-WebSocket-Protocol: mqtt\r\n"),
            "{out}"
        );
        assert!(out.ends_with("\r\n\r\n"));
        assert!(ws.partial.capacity() == 0, "the request is not kept");
        let old = REQUEST.replace("mqttv3.1, mqtt", "mqttv3.1");
        assert!(
            upgrade(old.as_bytes())
                .unwrap()
                .contains("Protocol: mqttv3.1\r\n")
        );
    }

    #[test]
    fn bad_upgrades_are_refused_with_an_http_error() {
        let refused = |request: String| upgrade(request.as_bytes()).unwrap_err().status;
        let bad = "400 Bad Request";
        assert_eq!(
            refused(REQUEST.replace("Sec-WebSocket-Protocol: mqttv3.1, mqtt\r\n", "")),
            bad
        );
        assert_eq!(refused(REQUEST.replace("mqttv3.1, mqtt", "chat")), bad);
        assert_eq!(refused(REQUEST.replace("GET", "POST")), bad);
        assert_eq!(refused(REQUEST.replace("Upgrade: websocket\r\n", "")), bad);
        assert_eq!(
            refused(REQUEST.replace("keep-alive, Upgrade", "keep-alive")),
            bad
        );
        assert_eq!(refused(REQUEST.replace("Host: gateway:8080\r\n", "")), bad);
        assert_eq!(
            refused(REQUEST.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=")),
            bad
        );
        assert_eq!(
            refused(REQUEST.replace("Version: 13", "Version: 8")),
            "426 Upgrade Required"
        );
        // Too large: refused once the bound is reached, without the blank line.
        let mut ws = WebSocket::new(64);
        let (_, out, end) = feed(&mut ws, REQUEST.as_bytes(), &[10]);
        assert!(
            out.starts_with(b"HTTP/1.1 431 "),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert!(end.is_some());
        let mut ws = WebSocket::new(4096);
        let (_, out, end) = feed(&mut ws, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &[]);
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(
            out.ends_with("an Upgrade: websocket request is expected\n"),
            "{out}"
        );
        assert!(end.unwrap().contains("Upgrade"));
    }

    #[test]
    fn payloads_are_joined_across_frames_fragments_and_reads() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut input = REQUEST.as_bytes().to_vec();
        // Two MQTT packets cut over: a whole frame, a fragmented message
        // with a ping between its fragments, and an empty frame.
        input.extend(frame(0x82, b"\x10\x03ab", mask));
        input.extend(frame(0x02, b"c\xc0", [1, 2, 3, 4]));
        input.extend(frame(0x89, b"hi", [9, 9, 9, 9]));
        input.extend(frame(0x80, b"\x00", [0xff, 0, 0xff, 0]));
        input.extend(frame(0x82, b"", mask));
        let long = vec![0x5a; 300];
        input.extend(frame(0x82, &long, mask));
        for cut in 1..input.len() {
            let mut ws = WebSocket::new(4096);
            let (mqtt, out, end) = feed(&mut ws, &input, &[cut]);
            assert_eq!(end, None, "cut at {cut}");
            let mut want = b"\x10\x03abc\xc0\x00".to_vec();
            want.extend_from_slice(&long);
            assert_eq!(mqtt, want, "cut at {cut}");
            assert!(out.ends_with(b"\x8a\x02hi"), "pong, cut at {cut}");
        }
    }

    #[test]
    fn output_is_framed_at_each_write_with_the_shortest_length() {
        for (len, head) in [(0, 0), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut ws = open();
            let mut out = vec![7; len];
            ws.seal(&mut out);
            assert_eq!(out.len(), len + head, "{len}");
            if len > 0 {
                assert_eq!(out[0], 0x82);
            }
            // Written in part: the rest stays framed; more is a new frame.
            ws.drained(1.min(out.len()));
            out.drain(..1.min(out.len()));
            out.push(9);
            ws.seal(&mut out);
            assert_eq!(&out[out.len() - 3..], b"\x82\x01\x09");
        }
    }

    #[test]
    fn close_frames_are_answered_and_sent_once() {
        let mut ws = open();
        let mut out = b"\x20\x02\x00\x00".to_vec(); // A CONNACK not yet framed.
        let mut buf = frame(0x88, b"\x03\xe8bye", [5, 6, 7, 8]);
        let n = buf.len();
        let inbound = ws.read(&mut buf, n, &mut out);
        assert!(inbound.end.is_some());
        assert_eq!(out, b"\x82\x04\x20\x02\x00\x00\x88\x02\x03\xe8");
        ws.close(&mut out);
        out.extend_from_slice(b"late");
        ws.seal(&mut out);
        assert_eq!(out.len(), 10, "nothing after the close frame");
        // The broker closing first says 1000.
        let mut ws = open();
        let mut out = Vec::new();
        ws.close(&mut out);
        assert_eq!(out, b"\x88\x02\x03\xe8");
        // Before the upgrade there is no WebSocket to close.
        let mut ws = WebSocket::new(4096);
        let mut out = Vec::new();
        ws.close(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn protocol_errors_close_with_1002_and_text_with_1003() {
        let mask = [1, 2, 3, 4];
        let cases: &[(&[u8], u16)] = &[
            (b"\x82\x02ab", PROTOCOL_ERROR),                 // unmasked
            (&frame(0x81, b"text", mask), UNSUPPORTED_DATA), // text frame
            (&frame(0xc2, b"x", mask), PROTOCOL_ERROR),      // RSV1
            (&frame(0x80, b"x", mask), PROTOCOL_ERROR),      // stray continuation
            (&frame(0x83, b"x", mask), PROTOCOL_ERROR),      // unknown opcode
            (&frame(0x09, b"x", mask), PROTOCOL_ERROR),      // fragmented ping
            (&frame(0x89, &[0; 126], mask), PROTOCOL_ERROR), // long ping
            (&frame(0x88, b"\x03", mask), PROTOCOL_ERROR),   // 1-byte close
            (
                &[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
                PROTOCOL_ERROR,
            ), // 2^63
        ];
        for (input, code) in cases {
            let mut ws = open();
            let (_, out, end) = feed(&mut ws, input, &[]);
            assert!(end.is_some(), "{input:x?}");
            assert_eq!(
                out,
                [&[0x88, 2][..], &code.to_be_bytes()].concat(),
                "{input:x?}"
            );
        }
        // A binary frame inside a fragmented message.
        let mut ws = open();
        let input = [frame(0x02, b"a", mask), frame(0x82, b"b", mask)].concat();
        let (mqtt, out, end) = feed(&mut ws, &input, &[]);
        assert_eq!(mqtt, b"a", "what came before the error is delivered");
        assert!(end.is_some());
        assert_eq!(out, b"\x88\x02\x03\xea");
    }
}
