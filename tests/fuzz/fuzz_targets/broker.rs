//! The broker core fed arbitrary sequences of events on several connections
//! with clock jumps, driven as `src/net` drives it: bytes are cut into
//! packets by `protocol::decode`, undecodable bytes go to `decode_error`,
//! a closed connection hears nothing more, and `tick` runs after every
//! event as at the end of each loop iteration.
//!
//! Input: four configuration bytes (small windows, queues and limits, so
//! they are hit; whether a bridge forwards `t/#`, its remote's connection
//! taking the last slot), then events, each an opcode byte and its arguments (a
//! byte that is not there reads as 0). `Raw` carries bytes as they came off
//! a socket; the others build typical packets from a few bytes, so the
//! fuzzer reaches deep states fast, and go through the encoder and decoder
//! too. Seeds (tests/fuzz/corpus/broker) are sessions of real clients.
//!
//! Checks, besides "no panic":
//! - `Broker::check_invariants` after every event (bounded queues, windows
//!   and timer heap, unique packet ids, every deadline armed, ...);
//! - every QoS 1/2 PUBLISH the broker sends is in its session's in-flight
//!   list (whose ids `check_invariants` finds unique);
//! - nothing is sent to a connection after the broker closed it;
//! - everything sent decodes at the connection's protocol level, no
//!   PUBLISH exceeds the client's Maximum Packet Size, and no Reason
//!   String takes another packet over it;
//! - the work and memory one event costs are bounded by what it carries:
//!   at most `MAX_ACTIONS` actions, and a heap at most `HEAP_PER_EVENT`
//!   plus `HEAP_PER_BYTE` times its input bytes above where it started.
//!
//! The loop's pacing is driven as `src/net` does it: a held connection's
//! PUBLISHes wait in its input until it is resumed, and events say a
//! connection's output is full or has room again.
#![no_main]

use std::rc::Rc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use roost::broker::{
    Access, Action, Auth, Broker, Config, Credentials, Listener, Remote, RemoteFilters,
};
use roost::mem;
use roost::protocol::{
    self, Ack, Connect, Packet, Property, Publish, QoS, ReasonOnly, SubOptions, Subscribe,
    Unsubscribe, Version, Will,
};

#[global_allocator]
static HEAP: mem::Counting = mem::Counting;

const CONNS: usize = 6;
/// The most actions one event may cause: the windows and queues here are
/// a few messages, a retained walk goes out `max_outgoing` bytes at a time.
const MAX_ACTIONS: usize = 4096;
/// The most heap one event may take, plus this much per input byte.
const HEAP_PER_EVENT: usize = 1 << 20;
const HEAP_PER_BYTE: usize = 256;
/// The client id of the bridge's session.
const BRIDGE: &str = "local.bridge";
const CLIENT_IDS: [&str; 4] = ["a", "b", "c", ""];
const TOPICS: [&str; 6] = ["t", "t/a", "t/b", "$SYS/x", "locked/x", "t/a/b"];
const FILTERS: [&str; 12] = [
    "t",
    "t/+",
    "#",
    "t/#",
    "+/+",
    "$share/g/t/#",
    "$share/h/#",
    "t/a",
    "bad/#/x",
    "$share/g/+/+",
    "forbidden/#",
    "$SYS/#",
];

/// Bytes read front to back; past the end every byte is 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()]
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

/// What the event loop knows of one connection, and what its client saw.
#[derive(Default)]
struct Conn {
    open: bool,
    version: Option<Version>,
    /// The client's Maximum Packet Size, from its CONNECT.
    max_packet: Option<u32>,
    /// Bytes of a packet not yet complete, or not yet read: a held
    /// connection's PUBLISHes wait here.
    inbuf: Vec<u8>,
    /// The broker holds it (`Action::Hold`).
    held: bool,
    /// Packet ids of QoS 1/2 PUBLISHes and PUBRELs received, to answer.
    to_ack: Vec<(u16, QoS)>,
    to_complete: Vec<u16>,
}

impl Conn {
    fn version(&self) -> Version {
        self.version.unwrap_or(Version::V311)
    }
}

/// Access control with something to refuse: users "ok" and "admin" (any
/// password); nobody publishes to `locked/..`; only "admin" reads `t/b`.
#[derive(Debug)]
struct Rules;

impl Access for Rules {
    fn authenticate(&self, c: &Credentials) -> bool {
        matches!(c.username, Some("ok" | "admin"))
    }
    fn login(&self, user: &str) -> Option<u64> {
        matches!(user, "ok" | "admin").then_some(0)
    }
    fn may_publish(&self, _: &str, _: Option<&str>, topic: &str) -> bool {
        !topic.starts_with("locked/")
    }
    fn may_read(&self, _: &str, user: Option<&str>, topic: &str) -> bool {
        topic != "t/b" || user == Some("admin")
    }
}

struct Driver {
    broker: Broker,
    conns: Vec<Conn>,
    now: Instant,
    max_packet: usize,
    actions: Vec<Action>,
    /// Actions carried out in the current event.
    performed: usize,
    /// With a bridge, its remote's protocol level: a new connection in
    /// the last slot is the remote accepting the bridge.
    bridge: Option<Version>,
}

impl Driver {
    fn new(input: &mut Input) -> Driver {
        let limits = input.byte();
        let sizes = input.byte();
        let times = input.byte();
        let switches = input.byte();
        let config = Config {
            // The config file maps 0 (mosquitto's "no limit") to u16::MAX.
            max_inflight: [1, 2, 3, u16::MAX][usize::from(limits & 3)],
            max_queued: usize::from(limits >> 2 & 7),
            max_packet_size: [64, 300, 1 << 20][usize::from(sizes % 3)],
            max_keepalive: [0, 5, 60][usize::from(times % 3)],
            connect_timeout: Duration::from_secs(u64::from(times >> 2 & 3)),
            topic_alias_max: u16::from(sizes >> 2 & 3),
            outbound_topic_aliases: switches & 1 == 1,
            auth: vec![Auth {
                allow_anonymous: switches & 2 == 0,
                access: (switches & 4 == 4).then(|| Rc::new(Rules) as Rc<dyn Access>),
            }],
            // The listener's `max_qos`: mostly 2, sometimes 1 or 0.
            listeners: vec![Listener {
                auth: 0,
                max_qos: match switches >> 6 {
                    2 => QoS::AtLeastOnce,
                    3 => QoS::AtMostOnce,
                    _ => QoS::ExactlyOnce,
                },
            }],
            ..Config::default()
        };
        let max_packet = config.max_packet_size as usize;
        let mut broker = Broker::new(config);
        let now = Instant::now();
        if switches & 8 == 8 {
            // Journal mode: acks come as SendAfterCommit.
            broker.enable_journal(now, std::time::SystemTime::UNIX_EPOCH);
        }
        let mut actions = Vec::new();
        let bridge = (switches & 16 == 16).then(|| {
            let version = if switches & 32 == 32 { Version::V5 } else { Version::V311 };
            let forward = SubOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: 1,
            };
            // `local_cleansession` on the 64 bit.
            let keep = switches & 64 == 0;
            broker.add_bridge(BRIDGE, &[("t/#".into(), forward)], keep, now, &mut actions);
            version
        });
        Driver {
            max_packet,
            broker,
            conns: (0..CONNS).map(|_| Conn::default()).collect(),
            now,
            actions,
            performed: 0,
            bridge,
        }
    }

    /// One event, within its bounds; false when the input is used up.
    fn step(&mut self, input: &mut Input) -> bool {
        if input.0.is_empty() {
            return false;
        }
        let left = input.0.len();
        mem::reset_maximum();
        let heap = mem::heap_current();
        self.performed = 0;
        self.event(input);
        let bytes = left - input.0.len();
        assert!(
            self.performed <= MAX_ACTIONS,
            "{} actions for one event",
            self.performed
        );
        let grew = mem::heap_maximum() - heap;
        assert!(
            grew <= HEAP_PER_EVENT + HEAP_PER_BYTE * bytes,
            "{grew} heap bytes for an event of {bytes} bytes"
        );
        true
    }

    fn event(&mut self, input: &mut Input) {
        let op = input.byte();
        let id = usize::from(input.byte()) % CONNS;
        match op % 14 {
            0 => {
                // The peer closed and a new connection got the slot.
                if self.conns[id].open {
                    self.broker.closed(id, self.now, &mut self.actions);
                }
                self.conns[id] = Conn {
                    open: true,
                    ..Conn::default()
                };
                match self.bridge {
                    Some(version) if id == CONNS - 1 => {
                        self.conns[id].version = Some(version);
                        self.conns[id].max_packet = Some(200);
                        let remote = Remote {
                            version,
                            receive_max: 2,
                            max_packet: 200,
                        };
                        let filters = RemoteFilters {
                            subscribe: vec![("t/a".into(), options(input.byte()))],
                            unsubscribe: vec!["t/b".into()],
                        };
                        self.broker.bridge_connected(
                            id,
                            BRIDGE,
                            remote,
                            filters,
                            self.now,
                            &mut self.actions,
                        );
                    }
                    _ => self.broker.connected(id, 0, self.now),
                }
            }
            1 => {
                if std::mem::take(&mut self.conns[id].open) {
                    self.broker.closed(id, self.now, &mut self.actions);
                }
            }
            2 => {
                let unit = input.pick(&[1, 100, 1_000, 60_000, 3_600_000, 86_400_000]);
                self.now += Duration::from_millis(unit * u64::from(input.byte()));
            }
            3 => {
                let len = usize::from(input.byte()) << 8 | usize::from(input.byte());
                let bytes = input.take(len).to_vec();
                self.receive(id, &bytes);
            }
            // The connection's output fills up, or has room again.
            11 => {
                if self.conns[id].open {
                    self.broker.output_full(id);
                }
            }
            12 => {
                let room = usize::from(input.byte()) << 6;
                if self.conns[id].open {
                    self.broker.output_ready(id, room, self.now, &mut self.actions);
                }
            }
            // What the output can take while the next packets are handled.
            13 => {
                let room = usize::from(input.byte()) << 6;
                self.broker.output_room(id, room);
            }
            op => {
                let packet = self.build(op, id, input);
                let version = self.conns[id].version();
                let mut bytes = Vec::new();
                protocol::encode(&packet, version, &mut bytes);
                self.receive(id, &bytes);
            }
        }
        self.settle();
    }

    /// A typical packet from a few input bytes.
    fn build(&mut self, op: u8, id: usize, input: &mut Input) -> Packet {
        let conn = &mut self.conns[id];
        match op {
            4 => Packet::Connect(Box::new(connect(input))),
            5 => {
                let sub_id = input.byte();
                let filters = (0..1 + input.byte() % 3)
                    .map(|_| (input.pick(&FILTERS).to_owned(), options(input.byte())))
                    .collect();
                Packet::Subscribe(Subscribe {
                    packet_id: 1 + u16::from(input.byte() % 4),
                    filters,
                    properties: match sub_id % 3 {
                        0 => vec![Property::SubscriptionIdentifier(u32::from(sub_id))],
                        _ => Vec::new(),
                    },
                })
            }
            6 => Packet::Unsubscribe(Unsubscribe {
                packet_id: 1 + u16::from(input.byte() % 4),
                filters: vec![input.pick(&FILTERS).to_owned()],
                properties: Vec::new(),
            }),
            7 => Packet::Publish(publish(input)),
            8 => {
                let which = usize::from(input.byte());
                let reason = input.pick(&[0, 0, 0x10, 0x80, 0x92]);
                let ack = |packet_id| Ack {
                    packet_id,
                    reason,
                    properties: Vec::new(),
                };
                if which & 1 == 0 && !conn.to_complete.is_empty() {
                    let packet_id = conn.to_complete.remove(which / 2 % conn.to_complete.len());
                    Packet::PubComp(ack(packet_id))
                } else if !conn.to_ack.is_empty() {
                    let (packet_id, qos) = conn.to_ack.remove(which / 2 % conn.to_ack.len());
                    match qos {
                        QoS::ExactlyOnce => Packet::PubRec(ack(packet_id)),
                        _ => Packet::PubAck(ack(packet_id)),
                    }
                } else {
                    // An ack out of the blue, or a PUBREL for an inbound QoS 2.
                    let packet_id = 1 + u16::from(input.byte() % 8);
                    match which % 4 {
                        0 => Packet::PubAck(ack(packet_id)),
                        1 => Packet::PubRec(ack(packet_id)),
                        2 => Packet::PubRel(ack(packet_id)),
                        _ => Packet::PubComp(ack(packet_id)),
                    }
                }
            }
            9 => {
                let reason = input.pick(&[0, 0x04, 0x80]);
                let expiry = input.pick(&[None, Some(0), Some(5), Some(u32::MAX)]);
                Packet::Disconnect(ReasonOnly {
                    reason,
                    properties: expiry
                        .map(Property::SessionExpiryInterval)
                        .into_iter()
                        .collect(),
                })
            }
            _ => Packet::PingReq,
        }
    }

    /// Bytes from connection `id`, as `net::Server::received` takes them.
    fn receive(&mut self, id: usize, bytes: &[u8]) {
        if !self.conns[id].open {
            return;
        }
        self.conns[id].inbuf.extend_from_slice(bytes);
        loop {
            let conn = &mut self.conns[id];
            if !conn.open || conn.held && conn.inbuf.first().is_some_and(|b| b >> 4 == 3) {
                return;
            }
            match protocol::decode(&conn.inbuf, conn.version(), self.max_packet) {
                Ok(Some((packet, used))) => {
                    conn.inbuf.drain(..used);
                    if let Packet::Connect(c) = &packet {
                        conn.version = Some(c.version);
                        conn.max_packet = roost::property!(c.properties, MaximumPacketSize);
                    }
                    self.broker.packet(id, packet, self.now, &mut self.actions);
                    self.execute();
                }
                Ok(None) => return,
                Err(e) => {
                    self.broker
                        .decode_error(id, &e, self.now, &mut self.actions);
                    self.execute();
                    return;
                }
            }
        }
    }

    /// Runs the loop's end-of-iteration tick twice (the second sweeps what
    /// the first left stale), then checks the invariants.
    fn settle(&mut self) {
        self.execute();
        for _ in 0..2 {
            self.broker.tick(self.now, &mut self.actions);
            self.execute();
        }
        self.broker.check_invariants();
    }

    /// Carries out the broker's actions as the event loop would, checking
    /// each.
    fn execute(&mut self) {
        let mut sent_qos = Vec::new();
        let mut resumed = Vec::new();
        // Records would be appended to the journal file here.
        self.broker.take_journal();
        for action in std::mem::take(&mut self.actions) {
            self.performed += 1;
            let (id, bytes) = match action {
                Action::Close(id) => {
                    assert!(self.conns[id].open, "Close of connection {id}, not open");
                    self.conns[id].open = false;
                    continue;
                }
                Action::Hold(id) => {
                    self.conns[id].held = true;
                    continue;
                }
                Action::Resume(id) => {
                    self.conns[id].held = false;
                    resumed.push(id);
                    continue;
                }
                // The journal's commit is the loop's business: here it is
                // always done at once.
                Action::Send(id, packet) | Action::SendAfterCommit(id, packet) => {
                    let mut bytes = Vec::new();
                    protocol::encode(&packet, self.conns[id].version(), &mut bytes);
                    if self.conns[id].max_packet.is_some_and(|max| bytes.len() > max as usize) {
                        // The net layer closes rather than send it; but a
                        // Reason String must have gone first.
                        let mut bare = packet.clone();
                        bare.drop_diagnostics();
                        assert_eq!(bare, packet, "Reason String over the client's maximum");
                    }
                    (id, bytes)
                }
                Action::Publish(id, d) | Action::PublishAfterCommit(id, d) => {
                    let mut bytes = Vec::new();
                    protocol::encode_publish(&d.as_publish(), self.conns[id].version(), &mut bytes);
                    if let Some(max) = self.conns[id].max_packet {
                        assert!(
                            bytes.len() <= max as usize,
                            "PUBLISH over the client's maximum"
                        );
                    }
                    (id, bytes)
                }
            };
            let conn = &mut self.conns[id];
            assert!(conn.open, "packet for connection {id} after it was closed");
            let packet = match protocol::decode(&bytes, conn.version(), usize::MAX) {
                Ok(Some((packet, used))) if used == bytes.len() => packet,
                other => panic!("sent {bytes:02x?}, which decodes as {other:?}"),
            };
            match packet {
                Packet::Publish(Publish { qos, packet_id, .. }) if qos != QoS::AtMostOnce => {
                    conn.to_ack.push((packet_id, qos));
                    sent_qos.push((id, packet_id));
                }
                Packet::PubRel(ack) => conn.to_complete.push(ack.packet_id),
                _ => {}
            }
        }
        for (id, packet_id) in sent_qos {
            if self.conns[id].open {
                let tracked = self.broker.in_flight(id);
                assert!(
                    tracked.contains(&packet_id),
                    "packet id {packet_id} sent to connection {id} but not in flight: {tracked:?}"
                );
            }
        }
        // Read again: what waited first.
        for id in resumed {
            self.receive(id, &[]);
        }
    }
}

fn connect(input: &mut Input) -> Connect {
    let version = input.pick(&[Version::V31, Version::V311, Version::V5, Version::V5]);
    let flags = input.byte();
    let v5 = version == Version::V5;
    let mut properties = Vec::new();
    if v5 {
        let expiry = input.pick(&[None, Some(0), Some(2), Some(3600), Some(u32::MAX)]);
        properties.extend(expiry.map(Property::SessionExpiryInterval));
        let receive = input.pick(&[None, Some(1), Some(2), Some(u16::MAX)]);
        properties.extend(receive.map(Property::ReceiveMaximum));
        let max = input.pick(&[None, Some(24), Some(60), Some(1000)]);
        properties.extend(max.map(Property::MaximumPacketSize));
        let aliases = input.pick(&[None, Some(0), Some(2)]);
        properties.extend(aliases.map(Property::TopicAliasMaximum));
    }
    let will = (flags & 4 == 4).then(|| Will {
        topic: input.pick(&TOPICS).to_owned(),
        payload: b"gone".to_vec(),
        qos: input.pick(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]),
        retain: flags & 8 == 8,
        properties: match (v5, input.byte() % 3) {
            (true, 1) => vec![Property::WillDelayInterval(1)],
            (true, 2) => vec![Property::WillDelayInterval(100)],
            _ => Vec::new(),
        },
    });
    let keep_alive = input.pick(&[0, 1, 10, 100, u16::MAX]);
    let client_id = input.pick(&CLIENT_IDS).to_owned();
    let username = input.pick(&[None, Some("ok"), Some("admin"), Some("nobody")]);
    // 3.x has no password without a user name (Raw events try that).
    let password = flags & 16 == 16 && (v5 || username.is_some());
    Connect {
        version,
        clean_start: flags & 1 == 1,
        bridge: flags & 32 == 32,
        keep_alive,
        client_id,
        will,
        username: username.map(Into::into),
        password: password.then(|| b"pw".to_vec()),
        properties,
    }
}

fn options(byte: u8) -> SubOptions {
    SubOptions {
        qos: [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][usize::from(byte % 3)],
        no_local: byte & 4 == 4,
        retain_as_published: byte & 8 == 8,
        retain_handling: (byte >> 4) % 3,
    }
}

fn publish(input: &mut Input) -> Publish {
    let flags = input.byte();
    let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][usize::from(flags % 3)];
    let mut properties = Vec::new();
    let mut topic = input.pick(&TOPICS).to_owned();
    if flags & 8 == 8 {
        properties.push(Property::MessageExpiryInterval(u32::from(input.byte() % 4)));
    }
    if flags & 16 == 16 {
        // A Topic Alias, set (with the topic) or used (without).
        properties.push(Property::TopicAlias(u16::from(input.byte() % 4)));
        if flags & 32 == 32 {
            topic.clear();
        }
    }
    if flags & 64 == 64 {
        properties.push(Property::PayloadFormatIndicator(1));
    }
    let len = usize::from(input.byte() % 64);
    let payload = input.take(len).to_vec();
    Publish {
        dup: qos != QoS::AtMostOnce && flags & 128 == 128,
        qos,
        retain: flags & 4 == 4,
        topic,
        packet_id: match qos {
            QoS::AtMostOnce => 0,
            _ => 1 + u16::from(input.byte() % 8),
        },
        properties,
        payload,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut driver = Driver::new(&mut input);
    while driver.step(&mut input) {}
});
