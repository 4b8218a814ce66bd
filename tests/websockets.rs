//! MQTT over WebSockets (`protocol websockets`): a hand-written WebSocket
//! client (RFC 6455 frames built and parsed here, independent of roost's
//! code) for the framing and handshake edge cases; paho-mqtt with
//! `transport="websockets"`; and TCP and WebSocket clients seeing each
//! other's messages through one broker.

mod common;
#[path = "common/wire.rs"]
mod wire;

use common::{Proc, Roost, TIMEOUT, have, have_paho};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use wire::{Connect, Packet, Publish, Will};

const PAHO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paho/client.py");

/// A broker with an MQTT listener and a WebSocket listener, both on
/// loopback with free ports, plus `extra` config lines.
struct Both {
    roost: Roost,
    tcp: u16,
    ws: u16,
}

fn start(extra: &str) -> Both {
    let roost = Roost::with_config(&format!(
        "listener 0 127.0.0.1\nallow_anonymous true\nlistener 0 127.0.0.1\nallow_anonymous true\nprotocol websockets\n{extra}"
    ));
    let mut ws = None;
    assert!(
        common::wait_until(|| {
            ws = roost
                .log()
                .iter()
                .find_map(|l| l.split("listening on ws://127.0.0.1:").nth(1)?.parse().ok());
            ws.is_some()
        }),
        "no WebSocket listener: {:#?}",
        roost.log()
    );
    let tcp = roost.port;
    Both {
        roost,
        tcp,
        ws: ws.unwrap(),
    }
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An upgrade request offering `protocols` (no header when None).
fn request(protocols: Option<&str>) -> String {
    let offer = protocols.map_or(String::new(), |p| {
        format!("Sec-WebSocket-Protocol: {p}\r\n")
    });
    format!(
        "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    )
}

/// A raw WebSocket client: masked frames out, frames parsed in.
struct WsClient {
    stream: TcpStream,
    raw: Vec<u8>,
    /// Payload bytes of binary frames not yet parsed into packets.
    mqtt: Vec<u8>,
    /// Control frames (opcode, payload) read while waiting for packets.
    controls: Vec<(u8, Vec<u8>)>,
    closed: bool,
}

impl WsClient {
    /// Sends `request` and returns the client and the HTTP answer's head.
    fn open(port: u16, request: &str) -> (WsClient, String) {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut c = WsClient {
            stream,
            raw: Vec::new(),
            mqtt: Vec::new(),
            controls: Vec::new(),
            closed: false,
        };
        c.send_raw(request.as_bytes());
        let deadline = Instant::now() + TIMEOUT;
        let end = loop {
            if let Some(at) = c.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(
                c.fill(deadline),
                "no HTTP answer: {:?}",
                String::from_utf8_lossy(&c.raw)
            );
        };
        let head = String::from_utf8(c.raw.drain(..end).collect()).unwrap();
        (c, head)
    }

    /// A client upgraded with subprotocol `mqtt`.
    fn upgraded(port: u16) -> WsClient {
        let (c, head) = WsClient::open(port, &request(Some("mqtt")));
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        // RFC 6455's example key, hashed as section 1.3 shows.
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{head}"
        );
        assert!(head.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{head}");
        c
    }

    /// Upgraded, then CONNECT (v3.1.1) in one frame and CONNACK checked.
    fn connected(port: u16, connect: &Connect) -> WsClient {
        let mut c = WsClient::upgraded(port);
        c.send_frame(0x82, &connect.encode());
        let ack = c.expect_packet();
        assert_eq!(ack.kind(), wire::CONNACK);
        assert_eq!(ack.connack(false).code, 0);
        c
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        // A broker that has closed may refuse the write; reads tell.
        let _ = self.stream.write_all(bytes);
    }

    /// One frame with first byte `b0` (FIN, opcode), masked as a client must.
    fn send_frame(&mut self, b0: u8, payload: &[u8]) {
        self.send_raw(&client_frame(b0, payload, true));
    }

    /// Reads more bytes until `deadline`; false at EOF or the deadline.
    fn fill(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if self.closed || left.is_zero() {
            return false;
        }
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => self.raw.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => self.closed = true,
        }
        !self.closed
    }

    /// The next server frame (first byte, payload), or None at EOF.
    fn next_frame(&mut self, deadline: Instant) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((b0, payload, used)) = parse_server_frame(&self.raw) {
                self.raw.drain(..used);
                return Some((b0, payload));
            }
            if !self.fill(deadline) {
                assert!(self.closed, "no frame within {TIMEOUT:?}");
                return None;
            }
        }
    }

    /// The next MQTT packet from the binary frames; control frames are
    /// kept for `expect_control`.
    fn expect_packet(&mut self) -> Packet {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some((p, used)) = wire::parse_packet(&self.mqtt) {
                self.mqtt.drain(..used);
                return p;
            }
            match self.next_frame(deadline) {
                Some((b0, payload)) if b0 & 0x0F <= 2 => {
                    assert_eq!(b0 & 0x0F, 2, "roost sends binary frames only");
                    self.mqtt.extend_from_slice(&payload);
                }
                Some((b0, payload)) => self.controls.push((b0 & 0x0F, payload)),
                None => panic!(
                    "closed while waiting for a packet; controls {:?}",
                    self.controls
                ),
            }
        }
    }

    /// The next control frame with `opcode` (none of MQTT may come first).
    fn expect_control(&mut self, opcode: u8) -> Vec<u8> {
        if let Some(i) = self.controls.iter().position(|(op, _)| *op == opcode) {
            return self.controls.remove(i).1;
        }
        let deadline = Instant::now() + TIMEOUT;
        match self.next_frame(deadline) {
            Some((b0, payload)) if b0 & 0x0F == opcode => {
                assert_eq!(b0 & 0x80, 0x80, "control frames are never fragmented");
                payload
            }
            other => panic!("wanted opcode {opcode:#x}, got {other:?}"),
        }
    }

    /// Waits for the broker to close the TCP connection, with nothing more
    /// sent.
    fn expect_eof(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        while self.fill(deadline) {}
        assert!(self.closed, "not closed within {TIMEOUT:?}");
        assert!(
            self.raw.is_empty(),
            "bytes after the close: {:x?}",
            self.raw
        );
    }
}

/// A client frame: `b0` as given, the payload masked (or not, to test the
/// broker's refusal).
fn client_frame(b0: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut f = vec![b0];
    match payload.len() {
        n if n < 126 => f.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if !masked {
        f.extend_from_slice(payload);
        return f;
    }
    let mask = [0xA5, 0x3C, 0x0F, 0x71];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// A frame from the server: (first byte, payload, bytes used). Server
/// frames must not be masked and must use the shortest length form.
fn parse_server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    assert_eq!(b1 & 0x80, 0, "server frames are not masked (RFC 6455 5.1)");
    let (len, at) = match b1 & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let shortest = match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    };
    assert_eq!(at, shortest, "length of {len} not in its shortest form");
    let payload = buf.get(at..at + len)?.to_vec();
    Some((b0, payload, at + len))
}

fn close_code(payload: &[u8]) -> u16 {
    u16::from_be_bytes(payload[..2].try_into().unwrap())
}

/// The broker still serves: a fresh TCP client connects.
fn still_serves(both: &Both) {
    wire::Client::v4(&format!("127.0.0.1:{}", both.tcp), "after");
}

#[test]
fn a_packet_split_across_frames_and_packets_sharing_a_frame() {
    let both = start("");
    let mut c = WsClient::upgraded(both.ws);
    // CONNECT cut into three binary frames, each a message of its own.
    let connect = Connect::v4("ws-split").encode();
    for part in [&connect[..1], &connect[1..5], &connect[5..]] {
        c.send_frame(0x82, part);
    }
    assert_eq!(c.expect_packet().connack(false).code, 0);
    // SUBSCRIBE, PUBLISH to itself and PINGREQ in one frame.
    let mut three = wire::subscribe(1, &[("ws/t", 1)], false, wire::Props::new());
    three.extend(Publish::new("ws/t", b"one frame").qos(1, 2).encode(false));
    three.extend(wire::pingreq());
    c.send_frame(0x82, &three);
    let mut kinds = Vec::new();
    let mut got = None;
    for _ in 0..4 {
        let p = c.expect_packet();
        if p.kind() == wire::PUBLISH {
            got = Some(p.publish(false));
        }
        kinds.push(p.kind());
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [wire::PUBLISH, wire::PUBACK, wire::SUBACK, wire::PINGRESP]
    );
    assert_eq!(got.unwrap().payload, b"one frame");
}

#[test]
fn a_fragmented_message_is_joined_and_a_ping_between_fragments_answered() {
    let both = start("");
    let mut c = WsClient::upgraded(both.ws);
    // A ping before anything else: the WebSocket answers, MQTT or not.
    c.send_frame(0x89, b"early");
    assert_eq!(c.expect_control(0xA), b"early");
    // CONNECT as binary (FIN 0), continuation, ping, continuation (FIN 1).
    let connect = Connect::v4("ws-fragments").encode();
    c.send_frame(0x02, &connect[..3]);
    c.send_frame(0x00, &connect[3..7]);
    c.send_frame(0x89, b"between");
    c.send_frame(0x80, &connect[7..]);
    assert_eq!(c.expect_packet().connack(false).code, 0);
    assert_eq!(c.expect_control(0xA), b"between");
    // A pong is taken silently; MQTT goes on.
    c.send_frame(0x8A, b"unasked");
    c.send_frame(0x82, &wire::pingreq());
    assert_eq!(c.expect_packet().kind(), wire::PINGRESP);
}

#[test]
fn large_messages_cross_in_frames_of_every_length_form() {
    let both = start("");
    let mut sub = WsClient::connected(both.ws, &Connect::v4("ws-big-sub"));
    // QoS 1: never dropped for a subscriber that has not read yet.
    sub.send_frame(
        0x82,
        &wire::subscribe(1, &[("big/#", 1)], false, wire::Props::new()),
    );
    assert_eq!(sub.expect_packet().kind(), wire::SUBACK);
    let mut publisher = WsClient::connected(both.ws, &Connect::v4("ws-big-pub"));
    for size in [100, 1000, 70_000, 300_000] {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let packet = Publish::new("big/x", &payload).qos(1, 1).encode(false);
        // In one frame (7-, 16- or 64-bit length), and in frames of 1000.
        publisher.send_frame(0x82, &packet);
        for chunk in packet.chunks(1000) {
            publisher.send_frame(0x82, chunk);
        }
        for _ in 0..2 {
            let got = sub.expect_packet().publish(false);
            sub.send_frame(0x82, &wire::ack(wire::PUBACK, got.pid.unwrap()));
            assert_eq!(got.payload.len(), size);
            assert!(got.payload == payload, "payload of {size} bytes changed");
        }
    }
}

#[test]
fn unmasked_and_text_frames_are_refused_with_a_close_frame() {
    let both = start("");
    for (frame, code) in [
        (
            client_frame(0x82, &Connect::v4("bare").encode(), false),
            1002,
        ),
        (client_frame(0x81, b"{\"hello\":1}", true), 1003),
        (client_frame(0x80, b"stray", true), 1002),
    ] {
        let mut c = WsClient::upgraded(both.ws);
        c.send_raw(&frame);
        assert_eq!(close_code(&c.expect_control(0x8)), code);
        c.expect_eof();
    }
    still_serves(&both);
}

/// A close from the client is answered with its code and the TCP
/// connection ends; without an MQTT DISCONNECT the will goes out.
#[test]
fn a_close_from_the_client_is_answered_and_its_will_published() {
    let both = start("");
    let tcp = format!("127.0.0.1:{}", both.tcp);
    let mut watcher = wire::Client::v4(&tcp, "watcher");
    watcher.send(&wire::subscribe(
        1,
        &[("will/#", 0)],
        false,
        wire::Props::new(),
    ));
    assert_eq!(watcher.expect().kind(), wire::SUBACK);
    let connect = Connect::v4("ws-will").will(Will::new("will/ws", b"gone"));
    let mut c = WsClient::connected(both.ws, &connect);
    c.send_frame(0x88, &[0x03, 0xE9, b'b', b'y', b'e']); // 1001 going away
    assert_eq!(c.expect_control(0x8), [0x03, 0xE9]);
    c.expect_eof();
    let will = watcher.expect().publish(false);
    assert_eq!(
        (will.topic_str(), &will.payload[..]),
        ("will/ws".into(), &b"gone"[..])
    );
}

/// When the broker ends the connection (here after DISCONNECT), a close
/// frame 1000 is the last thing sent, after any MQTT packet.
#[test]
fn the_broker_closing_sends_close_1000() {
    let both = start("");
    let mut c = WsClient::connected(both.ws, &Connect::v4("ws-bye"));
    c.send_frame(0x82, &wire::disconnect());
    assert_eq!(close_code(&c.expect_control(0x8)), 1000);
    c.expect_eof();
    // A second CONNECT is a protocol error: closed the same way.
    let mut c = WsClient::connected(both.ws, &Connect::v4("ws-twice"));
    c.send_frame(0x82, &Connect::v4("ws-twice").encode());
    assert_eq!(close_code(&c.expect_control(0x8)), 1000);
    c.expect_eof();
}

#[test]
fn bad_handshakes_get_an_http_error_and_are_closed() {
    let both = start("websockets_headers_size 1024\n");
    let good = request(Some("mqtt"));
    let cases = [
        // A browser visiting the port.
        (
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            "400 Bad Request",
        ),
        (good.replace("GET", "POST"), "400 Bad Request"),
        (
            good.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
            "400 Bad Request",
        ),
        (
            good.replace("Version: 13", "Version: 12"),
            "426 Upgrade Required",
        ),
        (
            good.replace(
                "\r\n\r\n",
                &format!("\r\nCookie: {}\r\n\r\n", "c".repeat(1100)),
            ),
            "431 Request Header Fields Too Large",
        ),
    ];
    for (req, status) in cases {
        let (mut c, head) = WsClient::open(both.ws, &req);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{head}"
        );
        let body_len: usize = head
            .split("Content-Length: ")
            .nth(1)
            .and_then(|v| v.split("\r\n").next()?.parse().ok())
            .unwrap();
        let deadline = Instant::now() + TIMEOUT;
        while c.raw.len() < body_len && c.fill(deadline) {}
        c.raw.drain(..body_len);
        c.expect_eof();
    }
    still_serves(&both);
}

/// `mqtt` is chosen when offered (MQTT 3.1.1 section 6), `mqttv3.1` is
/// accepted for old clients; an offer without either, or no offer at all,
/// is refused (mosquitto closes such connections; a browser would fail a
/// 101 without the subprotocol it offered).
#[test]
fn subprotocols_mqtt_and_mqttv31_are_accepted_others_refused() {
    let both = start("");
    for (offer, answer) in [
        ("chat, mqtt", "mqtt"),
        ("mqttv3.1", "mqttv3.1"),
        ("mqttv3.1,mqtt", "mqtt"),
    ] {
        let (_, head) = WsClient::open(both.ws, &request(Some(offer)));
        assert!(head.starts_with("HTTP/1.1 101 "), "{offer}: {head}");
        assert!(
            head.contains(&format!("\r\nSec-WebSocket-Protocol: {answer}\r\n")),
            "{head}"
        );
    }
    for offer in [Some("chat"), Some("MQTT"), None] {
        let (mut c, head) = WsClient::open(both.ws, &request(offer));
        assert!(head.starts_with("HTTP/1.1 400 "), "{offer:?}: {head}");
        assert!(!head.contains("Sec-WebSocket-Protocol"), "{head}");
        c.raw.clear();
        let deadline = Instant::now() + TIMEOUT;
        while c.fill(deadline) {}
        assert!(c.closed);
    }
}

/// `connect_timeout` covers the handshake: a client that never finishes
/// its upgrade request is closed like one that never sends CONNECT.
#[test]
fn a_stalled_handshake_is_closed_by_connect_timeout() {
    let both = start("connect_timeout 1\n");
    let started = Instant::now();
    let request = request(Some("mqtt"));
    let half = &request[..40];
    let mut stream = TcpStream::connect(("127.0.0.1", both.ws)).unwrap();
    stream.write_all(half.as_bytes()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(rest.is_empty(), "nothing is answered: {rest:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < TIMEOUT,
        "closed after {waited:?}"
    );
}

fn paho(args: &[&str]) -> Proc {
    let mut cmd = Command::new("python3");
    cmd.arg("-u").arg(PAHO).args(args);
    Proc::spawn(cmd)
}

fn paho_ok(both: &Both, args: &[&str]) -> String {
    let mut p = paho(args);
    let status = p.wait_exit();
    let output = p.output();
    assert!(
        status.success(),
        "paho {args:?}: {status} {output:#?}\nroost: {:#?}",
        both.roost.log()
    );
    output
        .into_iter()
        .find(|l| l.starts_with("PAHO OK"))
        .unwrap()
}

#[test]
fn paho_over_websockets_publishes_and_subscribes() {
    skip_without!(have_paho(), "python3 paho-mqtt");
    let both = start("");
    let ws = format!("ws:{}", both.ws);
    let ok = paho_ok(&both, &["roundtrip", &ws, "311"]);
    assert!(ok.starts_with("PAHO OK v311"), "{ok}");
    let ok = paho_ok(&both, &["roundtrip", &ws, "5"]);
    assert!(ok.contains("max_packet=None"), "{ok}");
}

/// One broker core: what a WebSocket client publishes a TCP
/// mosquitto_sub receives, and what mosquitto_pub sends over TCP a
/// WebSocket subscriber receives.
#[test]
fn tcp_and_websocket_clients_see_each_others_messages() {
    skip_without!(have_paho(), "python3 paho-mqtt");
    skip_without!(have("mosquitto_sub"), "mosquitto-clients");
    let both = start("");
    let tcp = both.tcp.to_string();
    let ws = format!("ws:{}", both.ws);
    let mosquitto_sub = {
        // Line-buffered, so each line is seen as it comes.
        let mut cmd = Command::new("stdbuf");
        cmd.args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", &tcp]);
        cmd.args(["-t", "from/ws", "-C", "1", "-v", "-d"]);
        Proc::spawn(cmd)
    };
    mosquitto_sub.wait_line("SUBACK", |l| l.contains("received SUBACK"));
    let mut publisher = paho(&["pub", &ws, "from/ws", "hello from a WebSocket"]);
    assert!(publisher.wait_exit().success(), "{:#?}", publisher.output());
    mosquitto_sub.wait_line("the message", |l| l == "from/ws hello from a WebSocket");

    let subscriber = paho(&["sub", &ws, "from/tcp"]);
    subscriber.wait_line("SUBSCRIBED", |l| l == "SUBSCRIBED");
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &tcp,
            "-t",
            "from/tcp",
            "-m",
            "hello over TCP",
            "-q",
            "1",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    subscriber.wait_line("the message", |l| l == "GOT from/tcp hello over TCP 1 0");
}

const BROWSER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");

/// What the browser test needs: Debian's chromium, node, and the npm
/// packages `.ci/run` installs into tests/browser/node_modules.
fn have_browser() -> bool {
    let modules = std::path::Path::new(BROWSER).join("node_modules");
    have("chromium")
        && have("node")
        && modules.join("mqtt/dist/mqtt.min.js").is_file()
        && modules.join("playwright-core").is_dir()
}

/// A dashboard in a real browser: headless Chromium runs MQTT.js's browser
/// bundle over WebSockets, and a paho-mqtt client over TCP sees its message
/// and answers it.
#[test]
fn a_browser_and_a_tcp_client_see_each_others_messages() {
    skip_without!(have_paho(), "python3 paho-mqtt");
    skip_without!(
        have_browser(),
        "chromium, node or tests/browser/node_modules (npm ci --prefix tests/browser)"
    );
    let both = start("");
    let tcp = both.tcp.to_string();
    let from_browser = paho(&["sub", &tcp, "browser/out"]);
    from_browser.wait_line("SUBSCRIBED", |l| l == "SUBSCRIBED");
    let mut browser = {
        let mut cmd = Command::new("node");
        cmd.arg(format!("{BROWSER}/run.mjs"))
            .arg(both.ws.to_string());
        Proc::spawn(cmd)
    };
    browser.wait_line("the page's SUBSCRIBED", |l| l == "PAGE SUBSCRIBED");
    from_browser.wait_line("the browser's message", |l| {
        l == "GOT browser/out hello from chromium 1 0"
    });
    let mut to_browser = paho(&["pub", &tcp, "browser/in", "hello from TCP"]);
    assert!(
        to_browser.wait_exit().success(),
        "{:#?}",
        to_browser.output()
    );
    browser.wait_line("the message in the page", |l| {
        l == "PAGE GOT browser/in hello from TCP"
    });
    // It closes Chromium and exits.
    assert!(browser.wait_exit().success(), "{:#?}", browser.output());
}
