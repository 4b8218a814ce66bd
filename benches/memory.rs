//! Memory benchmark: what an idle MQTT connection costs the broker.
//!
//! Run with `cargo bench --bench memory`. For each broker (roost, and
//! mosquitto when it is installed) it:
//!
//! 1. starts the broker on a loopback port and reads its idle `Rss` and
//!    `Private_Dirty` from `/proc/PID/smaps_rollup`;
//! 2. opens N connections (default 1000, `ROOST_BENCH_CONNS` overrides), each
//!    a v3.1.1 CONNECT (clean session, keep-alive 0, distinct client id) and
//!    one QoS 0 SUBSCRIBE to its own topic `bench/<i>/state`, and keeps them
//!    open and idle;
//! 3. reads the broker's memory again once it has settled and prints the
//!    growth per connection, side by side, with the ratio roost/mosquitto.
//!
//! Then, each on a fresh start of the broker, the growth of RSS:
//!
//! - per extra subscription: min(N, 1000) connections that each subscribe
//!   to 10 distinct exact topics in one SUBSCRIBE, against as many with 1
//!   (the first start above when N <= 1000, else another start):
//!   (RSS with 10 - RSS with 1) / (9 x connections);
//! - per queued message: a clean-session-0 client subscribes `q/t` at QoS 1
//!   and disconnects; a publisher sends it 10,000 QoS 1 messages of 64 bytes
//!   (20 unacknowledged at most; both brokers run with
//!   `max_queued_messages 10000`). The subscriber then reconnects and
//!   collects them; the growth is divided by the number it received;
//! - per retained message: 10,000 retained QoS 0 messages of 64 bytes to
//!   `r/<i>`, then a PINGREQ round trip.
//!
//! - per idle WebSocket connection (roost only): the first measurement
//!   again over a `protocol websockets` listener: each client upgrades
//!   (subprotocol `mqtt`) and sends the same CONNECT and SUBSCRIBE, one
//!   masked frame each.
//!
//! Only user-space memory of the broker process is counted; the kernel's
//! socket buffers are not (they are the same for both brokers).
//!
//! Environment:
//! - `ROOST_BENCH_CONNS`: number of idle connections (default 1000). The
//!   bench raises its own `RLIMIT_NOFILE` soft limit to the hard limit; the
//!   brokers inherit it.
//! - `ROOST_BENCH_BROKERS`: comma-separated list of brokers to measure, from
//!   `roost` and `mosquitto` (default both; mosquitto is skipped with a note
//!   when it is not installed).
//! - `ROOST_BENCH_MOSQUITTO`: path of the mosquitto binary (default
//!   `/usr/sbin/mosquitto`, then `mosquitto` on `PATH`).
//!
//! Every step is bounded: a broker that does not answer for 10 s fails its
//! measurement, and a watchdog ends the whole run (killing the brokers) if it
//! exceeds its overall time limit. Traffic goes to 127.0.0.1 only; client
//! sockets are spread over the source addresses 127.0.0.2..=127.0.0.9 so that
//! large N does not run out of ephemeral ports.

mod common;

use std::io::{self, IsTerminal, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use common::{
    Broker, Brokers, Mem, connect_client, connect_packet, connect_session, disconnect, env_usize,
    exit_on_failures, fmt_ratio, install_guards, io_context, open_from, ping, publish_packet,
    raise_nofile, read_puback, receive_publish, settle, start_mosquitto_with, start_roost_with,
    subscribe, subscribe_packet,
};

/// Default number of idle connections.
const DEFAULT_CONNS: usize = 1000;
/// At most this many connections for the extra-subscription figure.
const SUB_CONNS: usize = 1000;
/// Messages queued for the offline subscriber, and retained messages.
const QUEUED: usize = 10_000;
const RETAINED: usize = 10_000;
/// Bytes of every PUBLISH payload.
const PAYLOAD: usize = 64;
/// Unacknowledged QoS 1 messages the queue publisher allows itself.
const WINDOW: usize = 20;
/// Topic of the queued messages.
const QUEUE_TOPIC: &str = "q/t";
/// The subscriber has collected all its queued messages once the broker
/// sends nothing for this long.
const DRAIN_QUIET: Duration = Duration::from_secs(2);

/// Opens one idle, subscribed client: CONNECT/CONNACK, then one SUBSCRIBE
/// (and its SUBACK) with `filters` distinct exact topics, `bench/<i>/state`
/// first.
fn open_client(
    tag: &str,
    i: usize,
    dst: SocketAddrV4,
    filters: usize,
) -> Result<TcpStream, String> {
    let client_id = format!("rb-{tag}-{i}");
    let mut s = connect_client(&client_id, i, dst)?;
    let packet_id = (i % 0xffff + 1) as u16;
    let topics: Vec<String> = (0..filters)
        .map(|k| match k {
            0 => format!("bench/{i}/state"),
            k => format!("bench/{i}/state/{k}"),
        })
        .collect();
    subscribe(&mut s, &client_id, packet_id, &topics, 0)?;
    Ok(s)
}

/// `open_client` over WebSockets: the upgrade, then CONNECT and SUBSCRIBE
/// (one subscription) each in a masked binary frame, and their answers.
fn open_ws_client(tag: &str, i: usize, dst: SocketAddrV4, _: usize) -> Result<TcpStream, String> {
    let client_id = format!("rb-{tag}-ws-{i}");
    let mut s = open_from(i, dst, &client_id)?;
    let fail = |what: &str, e| io_context(&format!("{client_id}: {what}"), e);
    let request = format!(
        "GET /mqtt HTTP/1.1\r\nHost: {dst}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .map_err(|e| fail("sending the upgrade", e))?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0];
        s.read_exact(&mut b)
            .map_err(|e| fail("reading the upgrade's answer", e))?;
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101 ") {
        let head = String::from_utf8_lossy(&head);
        return Err(format!("{client_id}: upgrade refused: {head}"));
    }
    let topic = [format!("bench/{i}/state")];
    let packet_id = (i % 0xffff + 1) as u16;
    for (packet, answer) in [
        (
            connect_packet(&client_id, true),
            &[0x20, 0x02, 0x00, 0x00][..],
        ),
        (
            subscribe_packet(packet_id, &topic, 0),
            &[&[0x90, 0x03][..], &packet_id.to_be_bytes(), &[0x00]].concat()[..],
        ),
    ] {
        // Short packets: a 7-bit length, and a zero mask (XOR leaves the
        // payload as it is; the mask bit is what a server checks).
        let mut frame = vec![0x82, 0x80 | packet.len() as u8, 0, 0, 0, 0];
        frame.extend_from_slice(&packet);
        s.write_all(&frame)
            .map_err(|e| fail("sending a frame", e))?;
        let mut got = vec![0; 2 + answer.len()];
        s.read_exact(&mut got)
            .map_err(|e| fail("reading an answer", e))?;
        if got[..2] != [0x82, answer.len() as u8] || got[2..] != *answer {
            return Err(format!(
                "{client_id}: wanted {answer:02x?} in a frame, got {got:02x?}"
            ));
        }
    }
    Ok(s)
}

// ---------------------------------------------------------------------------
// One measurement

struct Measurement {
    idle: Mem,
    loaded: Mem,
    after_close: Mem,
    connect_time: Duration,
}

/// Opens one idle, subscribed client: `open_client` or `open_ws_client`.
type Open = fn(&str, usize, SocketAddrV4, usize) -> Result<TcpStream, String>;

fn measure(
    mut broker: Broker,
    conns: usize,
    filters: usize,
    open: Open,
) -> Result<Measurement, String> {
    let name = broker.name;
    let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, broker.port);
    eprintln!("{name}: pid {}, listening on {dst}; settling", broker.pid());
    let idle = settle(&mut broker)?;
    eprintln!("{name}: opening {conns} idle connections, {filters} subscription(s) each");
    let tag = &name[..1];
    let started = Instant::now();
    let mut clients = Vec::with_capacity(conns);
    let step = (conns / 10).max(1);
    let progress = io::stderr().is_terminal();
    for i in 0..conns {
        match open(tag, i, dst, filters) {
            Ok(s) => clients.push(s),
            Err(e) => {
                let alive = broker.check_alive().err().unwrap_or_default();
                return Err(format!(
                    "{name}: {e}\n{alive}\n  last log lines:\n{}",
                    broker.log_tail()
                ));
            }
        }
        if progress && (i + 1) % step == 0 {
            eprint!("\r{name}: {}/{conns} connected and subscribed", i + 1);
        }
    }
    let connect_time = started.elapsed();
    if progress {
        eprintln!();
    }
    eprintln!(
        "{name}: {conns} connected and subscribed in {:.2} s; settling",
        connect_time.as_secs_f64()
    );
    let loaded = settle(&mut broker)?;
    // Every client is still connected: a read must time out, not see EOF.
    if let Some(first) = clients.first() {
        let mut probe = first
            .try_clone()
            .map_err(|e| format!("{name}: try_clone: {e}"))?;
        probe
            .set_nonblocking(true)
            .map_err(|e| format!("{name}: set_nonblocking: {e}"))?;
        let mut b = [0u8; 1];
        match probe.read(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Ok(0) => return Err(format!("{name}: closed an idle connection")),
            other => return Err(format!("{name}: idle connection got {other:?}")),
        }
    }
    eprintln!("{name}: closing the connections");
    drop(clients);
    let after_close = settle(&mut broker)?;
    broker.stop();
    Ok(Measurement {
        idle,
        loaded,
        after_close,
        connect_time,
    })
}

/// The broker's memory, settled, when `what` is about to happen; errors name
/// the broker and carry its last log lines.
fn settled(broker: &mut Broker, what: &str) -> Result<Mem, String> {
    eprintln!("{}: settling ({what})", broker.name);
    settle(broker)
}

/// Adds the broker's state and last log lines to an error.
fn with_log(broker: &mut Broker, e: String) -> String {
    let alive = broker.check_alive().err().unwrap_or_default();
    format!("{e}\n{alive}\n  last log lines:\n{}", broker.log_tail())
}

/// Memory growth per queued message, and how many messages the broker had
/// queued (delivered to the subscriber when it came back).
struct Queued {
    bytes_per_msg: f64,
    delivered: usize,
}

/// A persistent-session subscriber to `q/t` at QoS 1 goes offline; a
/// publisher sends `QUEUED` QoS 1 messages to `q/t` (at most `WINDOW`
/// unacknowledged). The growth of RSS over the messages queued, which the
/// subscriber then reconnects to collect (and acknowledge) to count them.
fn measure_queue(mut broker: Broker) -> Result<Queued, String> {
    let name = broker.name;
    let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, broker.port);
    let run = |broker: &mut Broker| -> Result<Queued, String> {
        let sub_id = "rb-queue-sub";
        let (mut sub, _) = connect_session(sub_id, 0, dst, false)?;
        subscribe(&mut sub, sub_id, 1, &[String::from(QUEUE_TOPIC)], 1)?;
        disconnect(sub, sub_id)?;
        // Let the broker see the DISCONNECT and close the connection.
        let before = settled(broker, "subscriber offline")?;
        eprintln!("{name}: publishing {QUEUED} QoS 1 messages to {QUEUE_TOPIC}");
        let pub_id = "rb-queue-pub";
        let mut p = connect_client(pub_id, 1, dst)?;
        let payload = [0x5a; PAYLOAD];
        let mut outstanding = 0;
        for i in 0..QUEUED {
            if outstanding == WINDOW {
                read_puback(&mut p, pub_id)?;
                outstanding -= 1;
            }
            let id = (i % 0xffff + 1) as u16;
            p.write_all(&publish_packet(QUEUE_TOPIC, 1, false, id, &payload))
                .map_err(|e| io_context(&format!("{pub_id}: sending PUBLISH"), e))?;
            outstanding += 1;
        }
        for _ in 0..outstanding {
            read_puback(&mut p, pub_id)?;
        }
        let after = settled(broker, "messages queued")?;
        disconnect(p, pub_id)?;
        // Collect them: the session is still there, so are the messages.
        let (mut sub, present) = connect_session(sub_id, 0, dst, false)?;
        if !present {
            return Err(format!("{sub_id}: reconnected without its session"));
        }
        sub.set_read_timeout(Some(DRAIN_QUIET))
            .map_err(|e| format!("{sub_id}: set_read_timeout: {e}"))?;
        let mut delivered = 0;
        while delivered < QUEUED && receive_publish(&mut sub, sub_id)? {
            delivered += 1;
        }
        disconnect(sub, sub_id)?;
        if delivered == 0 {
            return Err(format!("{sub_id}: no queued message delivered"));
        }
        Ok(Queued {
            bytes_per_msg: per_conn_bytes(before.rss_kib, after.rss_kib, delivered),
            delivered,
        })
    };
    eprintln!(
        "{name}: pid {}, listening on {dst}; queued messages",
        broker.pid()
    );
    let result = run(&mut broker).map_err(|e| with_log(&mut broker, e));
    broker.stop();
    result
}

/// The growth of RSS per retained message: `RETAINED` retained QoS 0
/// messages to distinct topics `r/<i>`, then a PINGREQ round trip.
fn measure_retained(mut broker: Broker) -> Result<f64, String> {
    let name = broker.name;
    let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, broker.port);
    let run = |broker: &mut Broker| -> Result<f64, String> {
        let pub_id = "rb-retain-pub";
        let mut p = connect_client(pub_id, 0, dst)?;
        let before = settled(broker, "before retained messages")?;
        eprintln!("{name}: publishing {RETAINED} retained messages to r/<i>");
        let payload = [0x5a; PAYLOAD];
        for i in 0..RETAINED {
            p.write_all(&publish_packet(&format!("r/{i}"), 0, true, 0, &payload))
                .map_err(|e| io_context(&format!("{pub_id}: sending PUBLISH"), e))?;
        }
        ping(&mut p, pub_id)?;
        let after = settled(broker, "retained messages stored")?;
        disconnect(p, pub_id)?;
        Ok(per_conn_bytes(before.rss_kib, after.rss_kib, RETAINED))
    };
    eprintln!(
        "{name}: pid {}, listening on {dst}; retained messages",
        broker.pid()
    );
    let result = run(&mut broker).map_err(|e| with_log(&mut broker, e));
    broker.stop();
    result
}

/// Everything measured on one broker; `None` where a measurement failed.
#[derive(Default)]
struct Results {
    idle: Option<Measurement>,
    /// The same over WebSockets.
    ws_idle: Option<Measurement>,
    /// RSS with `sub_conns` connections of 1 and of 10 subscriptions each.
    subs_1: Option<Mem>,
    subs_10: Option<Mem>,
    queued: Option<Queued>,
    retained: Option<f64>,
}

impl Results {
    fn per_extra_sub(&self, sub_conns: usize) -> Option<f64> {
        let (one, ten) = (self.subs_1?, self.subs_10?);
        Some(per_conn_bytes(one.rss_kib, ten.rss_kib, 9 * sub_conns))
    }
}

/// `r`'s value, or `None` with the error added to `failures`.
fn keep<T>(failures: &mut Vec<String>, name: &str, what: &str, r: Result<T, String>) -> Option<T> {
    r.map_err(|e| failures.push(format!("{name} ({what}): {e}")))
        .ok()
}

/// Runs every measurement on fresh starts of one broker (`start` with the
/// given config lines); failures go to `failures`.
fn measure_all(
    name: &str,
    start: &dyn Fn(&[&str]) -> Result<Broker, String>,
    conns: usize,
    sub_conns: usize,
    failures: &mut Vec<String>,
) -> Results {
    let mut res = Results {
        idle: keep(
            failures,
            name,
            "idle connections",
            start(&[]).and_then(|b| measure(b, conns, 1, open_client)),
        ),
        ..Results::default()
    };
    res.subs_1 = if sub_conns == conns {
        res.idle.as_ref().map(|m| m.loaded)
    } else {
        keep(
            failures,
            name,
            "1 subscription",
            start(&[]).and_then(|b| measure(b, sub_conns, 1, open_client)),
        )
        .map(|m| m.loaded)
    };
    res.subs_10 = keep(
        failures,
        name,
        "10 subscriptions",
        start(&[]).and_then(|b| measure(b, sub_conns, 10, open_client)),
    )
    .map(|m| m.loaded);
    let queue_conf = format!("max_queued_messages {QUEUED}");
    res.queued = keep(
        failures,
        name,
        "queued messages",
        start(&[queue_conf.as_str()]).and_then(measure_queue),
    );
    res.retained = keep(
        failures,
        name,
        "retained messages",
        start(&[]).and_then(measure_retained),
    );
    res
}

// ---------------------------------------------------------------------------
// Reporting

fn per_conn_bytes(before_kib: u64, after_kib: u64, conns: usize) -> f64 {
    (after_kib as f64 - before_kib as f64) * 1024.0 / conns as f64
}

fn print_table(conns: usize, sub_conns: usize, roost: &Results, mosq: &Results) {
    type Get = Box<dyn Fn(&Results) -> Option<f64>>;
    let idle = |f: fn(&Measurement, usize) -> f64| -> Get {
        Box::new(move |r: &Results| r.idle.as_ref().map(|m| f(m, conns)))
    };
    let rows: Vec<(String, Get, usize)> = vec![
        (
            "idle RSS at start (KiB)".into(),
            idle(|m, _| m.idle.rss_kib as f64),
            0,
        ),
        (
            "idle Private_Dirty at start (KiB)".into(),
            idle(|m, _| m.idle.private_dirty_kib as f64),
            0,
        ),
        (
            "RSS with all connections (KiB)".into(),
            idle(|m, _| m.loaded.rss_kib as f64),
            0,
        ),
        (
            "bytes per idle connection (RSS)".into(),
            idle(|m, n| per_conn_bytes(m.idle.rss_kib, m.loaded.rss_kib, n)),
            0,
        ),
        (
            "bytes per idle connection (Private_Dirty)".into(),
            idle(|m, n| per_conn_bytes(m.idle.private_dirty_kib, m.loaded.private_dirty_kib, n)),
            0,
        ),
        (
            "RSS after all disconnected (KiB)".into(),
            idle(|m, _| m.after_close.rss_kib as f64),
            0,
        ),
        (
            "Private_Dirty after all disconnected (KiB)".into(),
            idle(|m, _| m.after_close.private_dirty_kib as f64),
            0,
        ),
        (
            "time to connect + subscribe all (s)".into(),
            idle(|m, _| m.connect_time.as_secs_f64()),
            2,
        ),
        (
            "bytes per idle WebSocket connection (RSS)".into(),
            Box::new(move |r: &Results| {
                let m = r.ws_idle.as_ref()?;
                Some(per_conn_bytes(m.idle.rss_kib, m.loaded.rss_kib, conns))
            }),
            0,
        ),
        (
            format!("bytes per extra subscription (RSS, {sub_conns} conns x 10)"),
            Box::new(move |r: &Results| r.per_extra_sub(sub_conns)),
            0,
        ),
        (
            format!("bytes per queued QoS 1 message (RSS, {PAYLOAD} B)"),
            Box::new(|r: &Results| r.queued.as_ref().map(|q| q.bytes_per_msg)),
            0,
        ),
        (
            format!("queued messages delivered (of {QUEUED} sent)"),
            Box::new(|r: &Results| r.queued.as_ref().map(|q| q.delivered as f64)),
            0,
        ),
        (
            format!("bytes per retained message (RSS, {PAYLOAD} B)"),
            Box::new(|r: &Results| r.retained),
            0,
        ),
    ];
    let head = format!("memory (N={conns} idle connections, 1 subscription each)");
    let w = rows
        .iter()
        .map(|r| r.0.len())
        .max()
        .unwrap_or(0)
        .max(head.len())
        + 2;
    println!(
        "{head:<w$}{:>12}{:>12}{:>18}",
        "roost", "mosquitto", "roost/mosquitto"
    );
    for (label, get, prec) in rows {
        let r = get(roost);
        let m = get(mosq);
        let cell = |v: Option<f64>| v.map_or_else(|| String::from("-"), |v| format!("{v:.prec$}"));
        println!(
            "{label:<w$}{:>12}{:>12}{:>18}",
            cell(r),
            cell(m),
            fmt_ratio(r, m)
        );
    }
}

// ---------------------------------------------------------------------------

fn main() {
    let conns = env_usize("ROOST_BENCH_CONNS", DEFAULT_CONNS);
    let brokers = Brokers::from_env();

    let nofile = match raise_nofile() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cannot raise the open-file limit: {e}");
            std::process::exit(2);
        }
    };
    // Our N client sockets plus a few; each broker inherits the same limit.
    if (conns as u64) + 64 > nofile {
        eprintln!(
            "N={conns} needs about {} file descriptors, but RLIMIT_NOFILE is {nofile}; \
             lower ROOST_BENCH_CONNS",
            conns + 64
        );
        std::process::exit(2);
    }

    // Whole-run watchdog: generous, but bounded.
    install_guards("memory", Duration::from_secs(240 + (conns as u64) / 50));

    brokers.print_header();
    println!("RLIMIT_NOFILE: {nofile}");

    let wall = Instant::now();
    let sub_conns = conns.min(SUB_CONNS);
    let mut failures = Vec::new();
    let roost = if brokers.roost {
        let mut res = measure_all("roost", &start_roost_with, conns, sub_conns, &mut failures);
        // roost only: Debian's mosquitto 2.0.11 does not open its
        // websockets listener here ("Unable to start any listening sockets").
        res.ws_idle = keep(
            &mut failures,
            "roost",
            "idle WebSocket connections",
            start_roost_with(&["protocol websockets"])
                .and_then(|b| measure(b, conns, 1, open_ws_client)),
        );
        res
    } else {
        Results::default()
    };
    let mosq = match &brokers.mosquitto {
        Some(bin) => measure_all(
            "mosquitto",
            &|conf: &[&str]| start_mosquitto_with(bin, conf),
            conns,
            sub_conns,
            &mut failures,
        ),
        None => Results::default(),
    };

    println!();
    print_table(conns, sub_conns, &roost, &mosq);
    println!(
        "(user-space memory of the broker process from /proc/PID/smaps_rollup; \
         kernel socket buffers not counted; bench took {:.1} s)",
        wall.elapsed().as_secs_f64()
    );
    exit_on_failures(&failures);
}
