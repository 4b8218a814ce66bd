//! Throughput, latency, subscription scaling and churn, roost vs mosquitto.
//!
//! Run with `cargo bench --bench throughput`. It starts roost (the release
//! build) and, when installed, mosquitto with equivalent limits (20 QoS 1
//! messages in flight and 1000 queued per client, TCP_NODELAY), each on a
//! loopback port, drives the same load against each (a fresh broker process
//! per measurement, roost then mosquitto), and prints one table per section
//! with roost, mosquitto and roost/mosquitto, then a table of targets.
//!
//! Clients are std threads with blocking sockets speaking hand-encoded MQTT
//! 3.1.1. Every PUBLISH carries 64 bytes: a sequence number, the send time
//! and padding.
//!
//! - **Throughput**: fan-in (4 publishers, 1 subscriber), fan-out (1
//!   publisher, 100 subscribers) and many-to-many (100 publishers on
//!   distinct topics `m2m/<i>/data`, 100 subscribers on `m2m/+/data`), each
//!   at QoS 0 and at QoS 1 (publishers keep at most 20 PUBLISH unacknowledged,
//!   subscribers subscribe at QoS 1 and answer PUBACK). Publishers send as
//!   fast as they can for `ROOST_BENCH_SECS`, but never more than 500
//!   messages per subscriber ahead of what was delivered, so that no queue
//!   limit drops messages. Reported: delivered messages per second, and
//!   delivered messages per second of broker CPU time (utime + stime from
//!   `/proc/PID/stat`), which a load generator sharing the cores does not
//!   distort. When the generator (this process) used more CPU than the
//!   broker, the row says `generator-bound`: the broker could go faster than
//!   measured.
//! - **Latency**: one publisher at a fixed 1,000 msg/s, one subscriber,
//!   QoS 0 and QoS 1; p50, p99 and p99.9 of send-to-receive time, after 100
//!   warm-up messages, pooled over 6 rounds per broker that alternate
//!   between roost and mosquitto. Measured twice: as the scheduler places
//!   broker and clients, and with all of them bound to one CPU ("one CPU"),
//!   where no wakeup crosses CPUs (on this VM such wakeups stall for up to
//!   4 ms every 512 ms; `benches/wakeup_stalls.py` shows it without MQTT).
//! - **Scaling**: broker CPU time per delivered message for one publisher
//!   and one subscriber on a topic that only that subscriber matches, while
//!   N-1 other subscriptions exist on 10 idle connections: exact
//!   `devices/<i>/state` (the target is `devices/target/state`) or wildcard
//!   `devices/<i>/+/set` (the target is `devices/target/+/set`, published to
//!   as `devices/target/cmd/set`), for N = 1, 1,000 and 10,000.
//! - **Churn**: cycles of connect, subscribe to an own topic, publish to it
//!   and read the message back, DISCONNECT, close, on 4 client threads; the
//!   broker's RSS when idle before, after the first 10% of the cycles, and
//!   after all of them (a leak shows as growth between the last two).
//!
//! Environment:
//! - `ROOST_BENCH_SECS`: seconds each throughput and scaling run publishes
//!   (default 2).
//! - `ROOST_BENCH_LATENCY_SECS`: seconds of 1,000 msg/s per broker, QoS and
//!   placement, over the 6 rounds (default 10: p99 rests on the 100
//!   slowest trips, p99.9 on 10; raise it for a steadier tail).
//! - `ROOST_BENCH_SUBS`: the largest subscription count of the scaling curve
//!   (default 10000; the curve is 1, SUBS/10 and SUBS).
//! - `ROOST_BENCH_CHURN`: churn cycles per broker (default 100000, about 30 s
//!   per broker on a 2-core machine).
//! - `ROOST_BENCH_SECTIONS`: comma-separated sections to run, from
//!   `throughput`, `latency`, `scaling` and `churn` (default all).
//! - `ROOST_BENCH_BROKERS`, `ROOST_BENCH_MOSQUITTO`: as for the memory bench
//!   (which brokers; where mosquitto is).
//!
//! With the defaults the whole run takes about 3 minutes. Every phase is
//! bounded: publishing stops after its time, deliveries are awaited at most
//! until no message has arrived for 2 s, every socket read and write times
//! out after 10 s, churn stops after 180 s per broker, and a watchdog ends the
//! run (killing the brokers) when it takes far longer than planned. Traffic
//! goes to 127.0.0.1 only, from 127.0.0.2..=127.0.0.9.

mod common;

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{
    Broker, Brokers, CpuMark, Mem, Pair, connect_client, exit_on_failures, install_guards,
    io_context, print_table, put_publish, raise_nofile, read_packet, row, settle, start_mosquitto,
    start_roost, subscribe,
};

/// Bytes of every PUBLISH payload.
const PAYLOAD: usize = 64;
/// QoS 1 PUBLISH packets a publisher may have unacknowledged.
const QOS1_WINDOW: usize = 20;
/// Messages the publishers may be ahead of the deliveries, per subscriber.
const FLOW_WINDOW: u64 = 500;
/// QoS 0 messages a publisher writes with one `write`.
const WRITE_BATCH: usize = 16;
/// Deliveries are awaited until none has arrived for this long.
const DRAIN_STALL: Duration = Duration::from_secs(2);
/// Latency messages sent first and not counted.
const WARMUP: u64 = 100;
/// Latency runs per broker and QoS, alternating roost and mosquitto, their
/// samples pooled: a stretch of a busy or stalling machine then falls on
/// both brokers rather than on whichever ran through it.
const LATENCY_ROUNDS: u64 = 6;
/// Rate of the latency runs, messages per second.
const LATENCY_RATE: u64 = 1000;
/// Churn client threads, and its time limit per broker.
const CHURN_THREADS: usize = 4;
const CHURN_LIMIT: Duration = Duration::from_secs(180);
/// Idle connections that hold the scaling runs' extra subscriptions, and
/// filters per SUBSCRIBE packet.
const IDLE_CONNS: usize = 10;
const FILTERS_PER_SUBSCRIBE: usize = 100;

/// Time origin of the timestamps in payloads.
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

// ---------------------------------------------------------------------------
// Packets

/// Appends a PUBLISH of `topic` whose payload is `seq`, the send time and
/// padding to `PAYLOAD` bytes.
fn put_sequenced(buf: &mut Vec<u8>, topic: &str, qos: u8, packet_id: u16, seq: u64) {
    let mut payload = [0u8; PAYLOAD];
    payload[..8].copy_from_slice(&seq.to_be_bytes());
    payload[8..16].copy_from_slice(&now_ns().to_be_bytes());
    put_publish(buf, topic, qos, false, packet_id, &payload);
}

/// One complete packet at the start of `buf`: (first byte, body range end,
/// body start), or None if `buf` holds only part of one.
fn split_packet(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, String> {
    let mut len = 0usize;
    for i in 1..buf.len().min(5) {
        len |= usize::from(buf[i] & 0x7f) << (7 * (i - 1));
        if buf[i] & 0x80 == 0 {
            let end = i + 1 + len;
            return Ok((end <= buf.len()).then_some((buf[0], end, i + 1)));
        }
    }
    if buf.len() >= 5 {
        return Err(String::from("remaining length longer than 4 bytes"));
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// A load: publishers and subscribers on their own threads

/// What one run does. Every subscriber gets every message.
#[derive(Clone)]
struct Load {
    label: String,
    publishers: usize,
    pub_threads: usize,
    subscribers: usize,
    sub_threads: usize,
    qos: u8,
    /// Publisher i's topic, with `{i}` replaced by i.
    topic: &'static str,
    /// Every subscriber's filter.
    filter: &'static str,
    /// Messages per second over all publishers; None: as fast as the flow
    /// window allows.
    rate: Option<u64>,
    /// Messages each publisher sends at most.
    max_per_publisher: u64,
    duration: Duration,
    latency: bool,
    /// Broker and client threads bound to one CPU, the lowest this process
    /// may use, so that no wakeup crosses CPUs.
    one_cpu: Option<usize>,
    /// Extra subscriptions on idle connections.
    idle_filters: Vec<String>,
}

impl Load {
    /// One publisher and one subscriber at QoS 0, as fast as the flow
    /// window allows, for `duration`.
    fn new(topic: &'static str, filter: &'static str, duration: Duration) -> Self {
        Load {
            label: String::new(),
            publishers: 1,
            pub_threads: 1,
            subscribers: 1,
            sub_threads: 1,
            qos: 0,
            topic,
            filter,
            rate: None,
            max_per_publisher: u64::MAX,
            duration,
            latency: false,
            one_cpu: None,
            idle_filters: Vec::new(),
        }
    }
}

/// What one run measured.
struct Run {
    /// Deliveries due: every subscriber gets every message.
    expected: u64,
    delivered: u64,
    wall: f64,
    broker_cpu: f64,
    generator_cpu: f64,
    /// Send-to-receive times in ns (latency runs only), sorted.
    latencies: Vec<u64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.wall
    }

    fn per_cpu(&self) -> Option<f64> {
        (self.broker_cpu > 0.0).then(|| self.delivered as f64 / self.broker_cpu)
    }

    fn generator_bound(&self) -> bool {
        self.generator_cpu > self.broker_cpu
    }

    fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    /// `self` and `other` as one run, their samples pooled.
    fn merge(mut self, other: Run) -> Run {
        self.expected += other.expected;
        self.delivered += other.delivered;
        self.wall += other.wall;
        self.broker_cpu += other.broker_cpu;
        self.generator_cpu += other.generator_cpu;
        self.latencies.extend(other.latencies);
        self.latencies.sort_unstable();
        self
    }

    /// Nearest-rank percentile in microseconds.
    fn percentile_us(&self, p: f64) -> Option<f64> {
        let n = self.latencies.len();
        (n > 0).then(|| {
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            self.latencies[rank.clamp(1, n) - 1] as f64 / 1000.0
        })
    }
}

/// Counters shared by the client threads of one run.
struct Shared {
    sent: AtomicU64,
    delivered: AtomicU64,
    /// Messages delivered to each subscriber (each gets every message).
    per_sub: Vec<AtomicU64>,
    stop: AtomicBool,
}

impl Shared {
    /// Messages sent that the slowest subscriber has not had yet.
    fn ahead(&self) -> u64 {
        let slowest = self
            .per_sub
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        self.sent.load(Ordering::Relaxed).saturating_sub(slowest)
    }
}

/// Tells every client thread to stop, however the run ends.
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

struct PubConn {
    s: TcpStream,
    topic: String,
    next_id: u16,
    unacked: usize,
    /// Bytes of a PUBACK read only in part.
    partial: usize,
}

impl PubConn {
    /// Reads the PUBACKs that have arrived, without blocking.
    fn read_acks(&mut self, scratch: &mut [u8]) -> Result<(), String> {
        loop {
            // SAFETY: valid fd and buffer; MSG_DONTWAIT makes this one call
            // non-blocking without changing the socket.
            let n = unsafe {
                libc::recv(
                    self.s.as_raw_fd(),
                    scratch.as_mut_ptr().cast(),
                    scratch.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    return Ok(());
                }
                return Err(io_context("publisher: reading PUBACK", e));
            }
            if n == 0 {
                return Err(String::from("publisher: the broker closed the connection"));
            }
            // Only PUBACKs (4 bytes each) come to a publisher.
            let bytes = self.partial + n as usize;
            self.unacked = self.unacked.saturating_sub(bytes / 4);
            self.partial = bytes % 4;
        }
    }
}

fn publisher_thread(
    mut conns: Vec<PubConn>,
    load: Arc<Load>,
    shared: Arc<Shared>,
    deadline: Instant,
) -> Result<Vec<PubConn>, String> {
    let mut buf = Vec::with_capacity(WRITE_BATCH * (PAYLOAD + 64));
    let mut scratch = [0u8; 4096];
    let mut sent_here = vec![0u64; conns.len()];
    let interval = load
        .rate
        .map(|r| Duration::from_nanos(1_000_000_000 / r.max(1)));
    if let Some(cpu) = load.one_cpu {
        pin(0, cpu)?;
    }
    let start = Instant::now();
    let mut paced = 0u32;
    while !shared.stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if let Some(iv) = interval {
            let due = start + iv * paced;
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            paced += 1;
        }
        let mut all_done = true;
        let mut wrote = false;
        let mut held = false;
        for (c, done) in conns.iter_mut().zip(sent_here.iter_mut()) {
            let left = load.max_per_publisher - *done;
            if left == 0 {
                continue;
            }
            all_done = false;
            if interval.is_none() && shared.ahead() > FLOW_WINDOW {
                held = true;
                break;
            }
            if load.qos > 0 {
                c.read_acks(&mut scratch)?;
            }
            let batch = if interval.is_some() { 1 } else { WRITE_BATCH };
            let room = if load.qos > 0 {
                QOS1_WINDOW - c.unacked.min(QOS1_WINDOW)
            } else {
                batch
            };
            let n = room.min(batch).min(left as usize);
            if n == 0 {
                continue;
            }
            buf.clear();
            let seq = shared.sent.fetch_add(n as u64, Ordering::Relaxed);
            for k in 0..n {
                c.next_id = c.next_id.checked_add(1).unwrap_or(1);
                put_sequenced(&mut buf, &c.topic, load.qos, c.next_id, seq + k as u64);
            }
            c.s.write_all(&buf)
                .map_err(|e| io_context("publisher: sending PUBLISH", e))?;
            c.unacked += if load.qos > 0 { n } else { 0 };
            *done += n as u64;
            wrote = true;
        }
        if all_done {
            break;
        }
        if held {
            thread::sleep(Duration::from_micros(20));
        } else if !wrote {
            // Every window is full: wait for a PUBACK.
            let mut fds = readable(conns.iter().map(|c| &c.s));
            // SAFETY: valid pollfd array and length.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 5) };
        }
    }
    Ok(conns)
}

/// A `poll` set waiting for input on each of `streams`.
fn readable<'a>(streams: impl Iterator<Item = &'a TcpStream>) -> Vec<libc::pollfd> {
    streams
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect()
}

struct SubConn {
    s: TcpStream,
    /// Index in `Shared::per_sub`.
    index: usize,
    /// Bytes of a packet read only in part.
    pending: Vec<u8>,
}

fn subscriber_thread(
    mut conns: Vec<SubConn>,
    load: Arc<Load>,
    shared: Arc<Shared>,
) -> Result<(Vec<SubConn>, Vec<u64>), String> {
    if let Some(cpu) = load.one_cpu {
        pin(0, cpu)?;
    }
    let mut fds = readable(conns.iter().map(|c| &c.s));
    let mut rbuf = vec![0u8; 64 * 1024];
    let mut acks = Vec::new();
    let mut latencies = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        // SAFETY: valid pollfd array and length.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
        if ready <= 0 {
            continue;
        }
        for (c, pfd) in conns.iter_mut().zip(fds.iter_mut()) {
            if pfd.revents == 0 {
                continue;
            }
            pfd.revents = 0;
            let n =
                c.s.read(&mut rbuf)
                    .map_err(|e| io_context("subscriber: reading", e))?;
            if n == 0 {
                return Err(String::from("subscriber: the broker closed the connection"));
            }
            let arrived = now_ns();
            c.pending.extend_from_slice(&rbuf[..n]);
            let mut at = 0;
            let mut count = 0;
            acks.clear();
            while let Some((first, end, body)) = split_packet(&c.pending[at..])? {
                let pkt = &c.pending[at + body..at + end];
                at += end;
                if first >> 4 != 3 {
                    continue;
                }
                count += 1;
                let topic_len = usize::from(u16::from_be_bytes([pkt[0], pkt[1]]));
                let mut p = 2 + topic_len;
                if (first >> 1) & 3 > 0 {
                    acks.extend_from_slice(&[0x40, 0x02, pkt[p], pkt[p + 1]]);
                    p += 2;
                }
                if load.latency && pkt.len() >= p + 16 {
                    let seq = u64::from_be_bytes(pkt[p..p + 8].try_into().expect("8 bytes"));
                    let ts = u64::from_be_bytes(pkt[p + 8..p + 16].try_into().expect("8 bytes"));
                    if seq >= WARMUP {
                        latencies.push(arrived.saturating_sub(ts));
                    }
                }
            }
            c.pending.drain(..at);
            if !acks.is_empty() {
                c.s.write_all(&acks)
                    .map_err(|e| io_context("subscriber: sending PUBACK", e))?;
            }
            shared.per_sub[c.index].fetch_add(count, Ordering::Relaxed);
            shared.delivered.fetch_add(count, Ordering::Relaxed);
        }
    }
    Ok((conns, latencies))
}

/// Splits `items` into `parts` nearly equal groups.
fn split<T>(items: Vec<T>, parts: usize) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = (0..parts).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        groups[i % parts].push(item);
    }
    groups
}

fn join<T>(h: JoinHandle<Result<T, String>>) -> Result<T, String> {
    h.join()
        .unwrap_or_else(|_| Err(String::from("a client thread panicked")))
}

/// Binds thread `tid` (0: the calling one) to CPU `cpu`. A broker's pid is
/// its main thread's id, and both brokers run on that one thread.
fn pin(tid: u32, cpu: usize) -> Result<(), String> {
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET stays within
    // it for any cpu below CPU_SETSIZE; sched_setaffinity reads `set` only.
    let done = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid as libc::pid_t, size_of::<libc::cpu_set_t>(), &set)
    };
    if done != 0 {
        return Err(io_context(
            &format!("binding thread {tid} to CPU {cpu}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The lowest CPU this thread may run on.
fn lowest_cpu() -> Result<usize, String> {
    // SAFETY: an all-zero cpu_set_t is a valid set for the kernel to fill;
    // CPU_ISSET reads within it for any cpu below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io_context("sched_getaffinity", io::Error::last_os_error()));
        }
        (0..libc::CPU_SETSIZE as usize)
            .find(|&cpu| libc::CPU_ISSET(cpu, &set))
            .ok_or_else(|| String::from("sched_getaffinity: no CPU allowed"))
    }
}

/// Opens the connections of `load`, runs it, and measures.
fn run_load(broker: &mut Broker, load: &Arc<Load>) -> Result<Run, String> {
    if let Some(cpu) = load.one_cpu {
        pin(broker.pid(), cpu)?;
    }
    let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, broker.port);
    let tag = &broker.name[..1];
    let mut idle = Vec::new();
    let per_conn = load.idle_filters.len().div_ceil(IDLE_CONNS).max(1);
    for (k, filters) in load.idle_filters.chunks(per_conn).enumerate() {
        let id = format!("i{tag}{k}");
        let mut s = connect_client(&id, k, dst)?;
        for (n, chunk) in filters.chunks(FILTERS_PER_SUBSCRIBE).enumerate() {
            subscribe(&mut s, &id, n as u16 + 1, chunk, 0)?;
        }
        idle.push(s);
    }
    let mut subs = Vec::with_capacity(load.subscribers);
    for j in 0..load.subscribers {
        let id = format!("s{tag}{j}");
        let mut s = connect_client(&id, j, dst)?;
        subscribe(&mut s, &id, 1, &[load.filter.to_string()], load.qos)?;
        subs.push(SubConn {
            s,
            index: j,
            pending: Vec::new(),
        });
    }
    let mut pubs = Vec::with_capacity(load.publishers);
    for i in 0..load.publishers {
        let id = format!("p{tag}{i}");
        pubs.push(PubConn {
            s: connect_client(&id, i + 1, dst)?,
            topic: load.topic.replace("{i}", &i.to_string()),
            next_id: 0,
            unacked: 0,
            partial: 0,
        });
    }

    let shared = Arc::new(Shared {
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        per_sub: (0..load.subscribers).map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
    });
    let stop = StopOnDrop(Arc::clone(&shared));
    let spawn_err = |e: io::Error| format!("spawning a client thread: {e}");
    let mut sub_handles = Vec::new();
    for group in split(subs, load.sub_threads) {
        let (l, sh) = (Arc::clone(load), Arc::clone(&shared));
        sub_handles.push(
            thread::Builder::new()
                .name(String::from("subscriber"))
                .spawn(move || subscriber_thread(group, l, sh))
                .map_err(spawn_err)?,
        );
    }
    let start = CpuMark::take(broker)?;
    let deadline = start.at + load.duration;
    let mut pub_handles = Vec::new();
    for group in split(pubs, load.pub_threads) {
        let (l, sh) = (Arc::clone(load), Arc::clone(&shared));
        pub_handles.push(
            thread::Builder::new()
                .name(String::from("publisher"))
                .spawn(move || publisher_thread(group, l, sh, deadline))
                .map_err(spawn_err)?,
        );
    }
    let mut keep = Vec::new();
    for h in pub_handles {
        keep.push(join(h)?);
    }
    // Wait for every delivery, or until they stop coming.
    let sent = shared.sent.load(Ordering::Relaxed);
    let expected = sent * load.subscribers as u64;
    let mut last = (shared.delivered.load(Ordering::Relaxed), Instant::now());
    let mut end = CpuMark::take(broker)?;
    loop {
        let got = shared.delivered.load(Ordering::Relaxed);
        if got != last.0 {
            last = (got, Instant::now());
            end = CpuMark::take(broker)?;
        }
        if got >= expected || last.1.elapsed() >= DRAIN_STALL {
            break;
        }
        if sub_handles.iter().any(|h| h.is_finished()) {
            break;
        }
        broker.check_alive()?;
        thread::sleep(Duration::from_millis(1));
    }
    drop(stop);
    let mut latencies = Vec::new();
    for h in sub_handles {
        latencies.extend(join(h)?.1);
    }
    latencies.sort_unstable();
    drop(keep);
    drop(idle);
    Ok(Run {
        expected,
        delivered: shared.delivered.load(Ordering::Relaxed).min(expected),
        wall: (end.at - start.at).as_secs_f64().max(1e-9),
        broker_cpu: end.broker - start.broker,
        generator_cpu: end.generator - start.generator,
        latencies,
    })
}

// ---------------------------------------------------------------------------
// Churn

struct Churn {
    cycles: u64,
    secs: f64,
    before: Mem,
    warm: Mem,
    after: Mem,
    /// Set when the time limit cut the run short.
    cut_short: bool,
}

/// One cycle: connect, subscribe, publish, read it back, DISCONNECT, close.
fn churn_cycle(dst: SocketAddrV4, tag: &str, t: usize, i: u64) -> Result<(), String> {
    let id = format!("c{tag}{t}-{i}");
    let mut s = connect_client(&id, i as usize, dst)?;
    let topic = format!("churn/{t}/{i}");
    subscribe(&mut s, &id, 1, std::slice::from_ref(&topic), 0)?;
    let mut buf = Vec::with_capacity(PAYLOAD + 32);
    put_sequenced(&mut buf, &topic, 0, 0, i);
    s.write_all(&buf)
        .map_err(|e| io_context(&format!("{id}: sending PUBLISH"), e))?;
    let (first, _) =
        read_packet(&mut s).map_err(|e| io_context(&format!("{id}: waiting for PUBLISH"), e))?;
    if first >> 4 != 3 {
        return Err(format!("{id}: expected its PUBLISH back, got {first:02x}"));
    }
    s.write_all(&[0xe0, 0x00])
        .map_err(|e| io_context(&format!("{id}: sending DISCONNECT"), e))?;
    // The broker closes first: wait for it.
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => Ok(()),
        Ok(_) => Err(format!("{id}: data after DISCONNECT")),
        Err(e) => Err(io_context(&format!("{id}: waiting for close"), e)),
    }
}

/// Runs `cycles` cycles on `CHURN_THREADS` threads, numbered from `first`;
/// returns how many were done before `deadline`.
fn churn_leg(
    dst: SocketAddrV4,
    tag: &'static str,
    first: u64,
    cycles: u64,
    deadline: Instant,
) -> Result<u64, String> {
    let mut handles = Vec::new();
    for t in 0..CHURN_THREADS {
        let spawned = thread::Builder::new()
            .name(String::from("churn"))
            .spawn(move || -> Result<u64, String> {
                let mut done = 0;
                let mut i = first + t as u64;
                while i < first + cycles && Instant::now() < deadline {
                    churn_cycle(dst, tag, t, i)?;
                    done += 1;
                    i += CHURN_THREADS as u64;
                }
                Ok(done)
            })
            .map_err(|e| format!("spawning a churn thread: {e}"))?;
        handles.push(spawned);
    }
    let mut done = 0;
    for h in handles {
        done += join(h)?;
    }
    Ok(done)
}

fn churn(broker: &mut Broker, cycles: u64) -> Result<Churn, String> {
    let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, broker.port);
    let tag = &broker.name[..1];
    let before = settle(broker)?;
    let started = Instant::now();
    let deadline = started + CHURN_LIMIT;
    let first_leg = (cycles / 10).max(1);
    let mut done = churn_leg(dst, tag, 0, first_leg, deadline)?;
    let paused = Instant::now();
    let warm = settle(broker)?;
    let resumed = Instant::now();
    done += churn_leg(dst, tag, first_leg, cycles - first_leg, deadline)?;
    let secs = (Instant::now() - resumed + (paused - started)).as_secs_f64();
    let after = settle(broker)?;
    Ok(Churn {
        cycles: done,
        secs,
        before,
        warm,
        after,
        cut_short: done < cycles,
    })
}

// ---------------------------------------------------------------------------
// Running both brokers

/// Runs `f` against a fresh roost and a fresh mosquitto, one after the
/// other; failures are recorded and leave that side empty.
fn both<T>(
    brokers: &Brokers,
    what: &str,
    failures: &mut Vec<String>,
    f: impl Fn(&mut Broker) -> Result<T, String>,
) -> Pair<T> {
    let mut one = |name: &str, start: &dyn Fn() -> Result<Broker, String>| {
        let result = start().and_then(|mut b| {
            eprintln!("{what}: {name} (pid {}, port {})", b.pid(), b.port);
            let r = f(&mut b).map_err(|e| {
                let alive = b.check_alive().err().unwrap_or_default();
                format!("{e}\n{alive}\n  last log lines:\n{}", b.log_tail())
            });
            b.stop();
            r
        });
        result
            .map_err(|e| failures.push(format!("{what}, {name}: {e}")))
            .ok()
    };
    let roost = if brokers.roost {
        one("roost", &start_roost)
    } else {
        None
    };
    let mosq = match &brokers.mosquitto {
        Some(bin) => one("mosquitto", &|| start_mosquitto(bin)),
        None => None,
    };
    Pair { roost, mosq }
}

/// `load` run `LATENCY_ROUNDS` times on each broker, alternating, the runs
/// of each pooled; a failed round (recorded) voids that broker's pool.
fn latency_rounds(brokers: &Brokers, load: &Arc<Load>, failures: &mut Vec<String>) -> Pair<Run> {
    let mut pooled = Pair {
        roost: None,
        mosq: None,
    };
    for round in 0..LATENCY_ROUNDS {
        let p = both(brokers, &load.label, failures, |b| run_load(b, load));
        let pool = |a: Option<Run>, b: Option<Run>| match (a, b) {
            (Some(a), Some(b)) => Some(a.merge(b)),
            (None, b) if round == 0 => b,
            _ => None,
        };
        pooled = Pair {
            roost: pool(pooled.roost, p.roost),
            mosq: pool(pooled.mosq, p.mosq),
        };
    }
    pooled
}

/// Notes for a row: lost messages, and (when `cpu_bound` matters)
/// generator-bound brokers.
fn run_note(p: &Pair<Run>, cpu_bound: bool) -> String {
    let mut note = String::new();
    for (name, run) in [("roost", &p.roost), ("mosquitto", &p.mosq)] {
        let Some(run) = run else { continue };
        if cpu_bound && run.generator_bound() {
            let _ = write!(
                note,
                "{}generator-bound for {name} (generator {:.2} s CPU, broker {:.2} s)",
                if note.is_empty() { "" } else { "; " },
                run.generator_cpu,
                run.broker_cpu
            );
        }
        let lost = run.lost();
        if lost > 0 {
            let _ = write!(
                note,
                "{}{name} lost {lost} of {}",
                if note.is_empty() { "" } else { "; " },
                run.expected
            );
        }
    }
    note
}

// ---------------------------------------------------------------------------
// Targets

struct Target {
    what: String,
    /// The figure compared, and the bound it must meet.
    value: Option<f64>,
    bound: f64,
    /// true: value >= bound is met; false: value <= bound.
    at_least: bool,
    detail: String,
}

fn print_targets(targets: &[Target]) {
    let w = targets.iter().map(|t| t.what.len()).max().unwrap_or(0) + 2;
    println!();
    println!(
        "{:<w$}{:>10}{:>10}  {:<7}  figures",
        "targets", "value", "needed", "result"
    );
    for t in targets {
        let (value, verdict) = match t.value {
            Some(v) if v.is_finite() => {
                let met = if t.at_least {
                    v >= t.bound
                } else {
                    v <= t.bound
                };
                (format!("{v:.2}"), if met { "met" } else { "MISSED" })
            }
            _ => (String::from("-"), "n/a"),
        };
        let needed = format!("{}{:.2}", if t.at_least { ">=" } else { "<=" }, t.bound);
        println!(
            "{:<w$}{value:>10}{needed:>10}  {verdict:<7}  {}",
            t.what, t.detail
        );
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn figures(r: Option<f64>, m: Option<f64>, unit: &str) -> String {
    let f = |v: Option<f64>| v.map_or_else(|| String::from("-"), |v| format!("{v:.0}"));
    format!("roost {} vs mosquitto {} {unit}", f(r), f(m))
}

// ---------------------------------------------------------------------------

fn main() {
    let secs = common::env_usize("ROOST_BENCH_SECS", 2) as u64;
    let latency_secs = common::env_usize("ROOST_BENCH_LATENCY_SECS", 10) as u64;
    let max_subs = common::env_usize("ROOST_BENCH_SUBS", 10_000);
    let churn_cycles = common::env_usize("ROOST_BENCH_CHURN", 100_000) as u64;
    let sections = std::env::var("ROOST_BENCH_SECTIONS")
        .unwrap_or_else(|_| String::from("throughput,latency,scaling,churn"));
    let section = |s: &str| sections.split(',').any(|x| x.trim() == s);
    let brokers = Brokers::from_env();

    let nofile = match raise_nofile() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cannot raise the open-file limit: {e}");
            std::process::exit(2);
        }
    };
    // A bound far above the planned time of every section together.
    let planned = 12 * (secs + 2) * 2 + 8 * (latency_secs + 2 * LATENCY_ROUNDS) + 12 * (secs + 4);
    let churn_limit = if section("churn") {
        2 * CHURN_LIMIT.as_secs() + 60
    } else {
        0
    };
    install_guards(
        "throughput",
        Duration::from_secs(120 + 2 * planned + churn_limit),
    );
    now_ns();

    brokers.print_header();
    println!("RLIMIT_NOFILE: {nofile}");
    let wall = Instant::now();
    let mut failures = Vec::new();
    let mut targets = Vec::new();

    if section("throughput") {
        let dur = Duration::from_secs(secs);
        let mut rows = Vec::new();
        let shapes = [
            Load {
                label: String::from("fan-in 4->1"),
                publishers: 4,
                pub_threads: 4,
                ..Load::new("fanin/t", "fanin/t", dur)
            },
            Load {
                label: String::from("fan-out 1->100"),
                subscribers: 100,
                sub_threads: 2,
                ..Load::new("fanout/t", "fanout/t", dur)
            },
            Load {
                label: String::from("many-to-many 100->100"),
                publishers: 100,
                pub_threads: 4,
                subscribers: 100,
                sub_threads: 2,
                ..Load::new("m2m/{i}/data", "m2m/+/data", dur)
            },
        ];
        for shape in shapes {
            let name = shape.label.clone();
            for qos in [0u8, 1] {
                let label = format!("{name} QoS {qos}");
                let load = Arc::new(Load {
                    label: label.clone(),
                    qos,
                    ..shape.clone()
                });
                let p = both(&brokers, &load.label, &mut failures, |b| run_load(b, &load));
                rows.push(p.row(format!("{label}: delivered msg/s"), 0, |r| Some(r.rate())));
                let mut cpu_row = p.row(format!("{label}: msg per broker CPU s"), 0, Run::per_cpu);
                cpu_row.note = run_note(&p, true);
                rows.push(cpu_row);
                rows.push(p.row(format!("{label}: broker CPU busy %"), 0, |r| {
                    Some(100.0 * r.broker_cpu / r.wall)
                }));
                let (r, m) = p.get(Run::per_cpu);
                if name != "many-to-many 100->100" {
                    let bound = if qos == 0 { 2.0 } else { 1.5 };
                    targets.push(Target {
                        what: format!("{label}: msg per broker CPU s, roost/mosquitto"),
                        value: ratio(r, m),
                        bound,
                        at_least: true,
                        detail: figures(r, m, "msg/CPU s"),
                    });
                }
            }
        }
        print_table(
            &format!("throughput ({PAYLOAD} B, {secs} s each, QoS 1 window {QOS1_WINDOW})"),
            &rows,
        );
    }

    if section("latency") {
        let mut rows = Vec::new();
        let per_round = (latency_secs * LATENCY_RATE).div_ceil(LATENCY_ROUNDS);
        let mut placements = vec![("", None)];
        match lowest_cpu() {
            Ok(cpu) => placements.push(("one CPU, ", Some(cpu))),
            Err(e) => failures.push(e),
        }
        for (placement, one_cpu) in placements {
            for qos in [0u8, 1] {
                let load = Arc::new(Load {
                    label: format!("latency {placement}QoS {qos}"),
                    qos,
                    rate: Some(LATENCY_RATE),
                    max_per_publisher: per_round + WARMUP,
                    latency: true,
                    one_cpu,
                    ..Load::new(
                        "latency/t",
                        "latency/t",
                        Duration::from_secs(latency_secs) / LATENCY_ROUNDS as u32
                            + Duration::from_secs(5),
                    )
                });
                let p = latency_rounds(&brokers, &load, &mut failures);
                for (name, pct) in [("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9)] {
                    let mut r = p.row(format!("{placement}QoS {qos} {name} (us)"), 0, |r| {
                        r.percentile_us(pct)
                    });
                    if name == "p50" {
                        r.note = run_note(&p, false);
                    }
                    rows.push(r);
                }
                rows.push(p.row(format!("{placement}QoS {qos} samples"), 0, |r| {
                    Some(r.latencies.len() as f64)
                }));
                let (r, m) = p.get(|r| r.percentile_us(99.0));
                targets.push(Target {
                    what: format!(
                        "latency {placement}QoS {qos} p99 at {LATENCY_RATE} msg/s, roost/mosquitto"
                    ),
                    value: ratio(r, m),
                    bound: 1.0,
                    at_least: false,
                    detail: figures(r, m, "us"),
                });
            }
        }
        print_table(
            &format!(
                "latency at {LATENCY_RATE} msg/s, {latency_secs} s per broker in \
                 {LATENCY_ROUNDS} alternating rounds, 1 publisher -> 1 subscriber"
            ),
            &rows,
        );
    }

    if section("scaling") {
        let mut rows = Vec::new();
        let dur = Duration::from_secs(secs);
        let points = [1, max_subs / 10, max_subs];
        for wildcard in [false, true] {
            let kind = if wildcard { "wildcard" } else { "exact" };
            let mut base: (Option<f64>, Option<f64>) = (None, None);
            for n in points {
                let idle_filters = (0..n.saturating_sub(1))
                    .map(|i| {
                        if wildcard {
                            format!("devices/{i}/+/set")
                        } else {
                            format!("devices/{i}/state")
                        }
                    })
                    .collect();
                let (topic, filter) = if wildcard {
                    ("devices/target/cmd/set", "devices/target/+/set")
                } else {
                    ("devices/target/state", "devices/target/state")
                };
                let load = Arc::new(Load {
                    label: format!("scaling, {n} {kind} subscriptions"),
                    idle_filters,
                    ..Load::new(topic, filter, dur)
                });
                let p = both(&brokers, &load.label, &mut failures, |b| run_load(b, &load));
                let cost = |r: &Run| r.per_cpu().map(|m| 1e6 / m);
                let mut cost_row = p.row(format!("{n} {kind}: broker CPU us per message"), 3, cost);
                cost_row.note = run_note(&p, true);
                let now = p.get(cost);
                if n == 1 {
                    base = now;
                }
                rows.push(cost_row);
                rows.push(row(
                    format!("{n} {kind}: cost / cost with 1 subscription"),
                    ratio(now.0, base.0),
                    ratio(now.1, base.1),
                    2,
                ));
                if (!wildcard && n == max_subs) || (wildcard && n == max_subs / 10) {
                    targets.push(Target {
                        what: format!("roost publish cost, {n} {kind} / 1 subscription"),
                        value: ratio(now.0, base.0),
                        bound: 2.0,
                        at_least: false,
                        detail: format!(
                            "{} vs {} us per message",
                            now.0
                                .map_or_else(|| String::from("-"), |v| format!("{v:.3}")),
                            base.0
                                .map_or_else(|| String::from("-"), |v| format!("{v:.3}"))
                        ),
                    });
                }
            }
        }
        print_table(
            &format!("publish cost as subscriptions grow (1 -> 1, QoS 0, {secs} s each)"),
            &rows,
        );
    }

    if section("churn") {
        let p = both(&brokers, "churn", &mut failures, |b| churn(b, churn_cycles));
        let mut rows = vec![
            p.row("cycles done", 0, |c: &Churn| Some(c.cycles as f64)),
            p.row("time (s)", 1, |c| Some(c.secs)),
            p.row("cycles per second", 0, |c| Some(c.cycles as f64 / c.secs)),
            p.row("RSS before (KiB)", 0, |c| Some(c.before.rss_kib as f64)),
            p.row("RSS after 10% of the cycles (KiB)", 0, |c| {
                Some(c.warm.rss_kib as f64)
            }),
            p.row("RSS after (KiB)", 0, |c| Some(c.after.rss_kib as f64)),
            p.row("RSS after / before", 3, |c| {
                Some(c.after.rss_kib as f64 / c.before.rss_kib as f64)
            }),
            p.row("RSS after / after 10%", 3, |c| {
                Some(c.after.rss_kib as f64 / c.warm.rss_kib as f64)
            }),
            p.row("Private_Dirty before (KiB)", 0, |c| {
                Some(c.before.private_dirty_kib as f64)
            }),
            p.row("Private_Dirty after (KiB)", 0, |c| {
                Some(c.after.private_dirty_kib as f64)
            }),
        ];
        if let Some(c) = p.roost.as_ref().or(p.mosq.as_ref()) {
            if c.cut_short {
                rows[0].note = format!(
                    "stopped at the {} s limit before {churn_cycles}",
                    CHURN_LIMIT.as_secs()
                );
            }
        }
        let (r, _) = p.get(|c| Some(c.after.rss_kib as f64 / c.before.rss_kib as f64));
        let kib = |m: fn(&Churn) -> Mem| {
            p.roost
                .as_ref()
                .map_or_else(|| String::from("-"), |c| m(c).rss_kib.to_string())
        };
        targets.push(Target {
            what: format!("roost RSS after {churn_cycles} churn cycles / before"),
            value: r,
            bound: 1.1,
            at_least: false,
            detail: format!(
                "{} KiB after vs {} KiB before",
                kib(|c| c.after),
                kib(|c| c.before)
            ),
        });
        print_table(
            &format!(
                "churn: {churn_cycles} x connect/subscribe/publish/disconnect, {CHURN_THREADS} threads"
            ),
            &rows,
        );
    }

    print_targets(&targets);
    println!(
        "\n(broker CPU from /proc/PID/stat utime+stime; generator = this process; \
         bench took {:.1} s)",
        wall.elapsed().as_secs_f64()
    );
    exit_on_failures(&failures);
}
