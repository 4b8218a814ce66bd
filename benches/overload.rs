//! Overload: what a broker delivers, and what it loses, when publishers push
//! harder than it can deliver; roost vs mosquitto vs rumqttd.
//!
//! Run with `cargo bench --bench overload`. It starts roost (the release
//! build, its defaults: 20 QoS 1 messages in flight and 1000 queued per
//! client), mosquitto when installed (the same limits, as `benches/common`
//! configures it) and rumqttd when installed (a v4 listener and the generous
//! limits of rumqttd's example `rumqttd.toml`; see `common::rumqttd_config`),
//! each on a loopback port, a fresh process per measurement, and drives the
//! same loads against each, one broker after the other:
//!
//! 1. **QoS 1**, fan-in (4 publishers, 1 subscriber) and fan-out (1
//!    publisher, 100 subscribers): each publisher keeps up to 64 QoS 1
//!    PUBLISH unacknowledged and sends another as soon as a PUBACK frees a
//!    place; subscribers subscribe at QoS 1 and answer PUBACK to each
//!    message as they read it.
//! 2. **QoS 0**, the same two shapes: publishers write QoS 0 PUBLISH as fast
//!    as their sockets take them (no window, no flow control at all);
//!    subscribers read as fast as they can.
//! 3. **QoS 0 at a fixed rate** that every broker here sustains: the fan-in
//!    at `ROOST_BENCH_FIXED_RATE` messages per second in total, the baseline
//!    for "delivered per broker CPU second" under overload.
//! 4. **RSS during a long overload**: one QoS 1 publisher (window 64) and one
//!    QoS 0 publisher (no window) to 100 subscribers at QoS 1, for
//!    `ROOST_BENCH_OVERLOAD_SECS`; the broker's `VmRSS` (`/proc/PID/status`)
//!    is sampled every 100 ms and its peak reported, beside the same figures
//!    as the other loads. (Every load samples RSS the same way and reports
//!    its peak too.)
//!
//! Every PUBLISH carries 64 bytes: the publisher's index (4 bytes), a
//! sequence number (8 bytes) and padding. Publisher i publishes to `ovl/<i>`,
//! every subscriber subscribes to `ovl/+`. Clients are std threads with
//! non-blocking sockets and `poll`, speaking hand-encoded MQTT 3.1.1 with
//! keep-alive 600 s (rumqttd refuses keep-alive 0).
//!
//! Reported per load and broker, in a table with a column per broker and
//! the ratios roost/mosquitto and roost/rumqttd:
//!
//! - messages delivered per second while the publishers publish (every copy
//!   each subscriber reads counts), and per second of broker CPU time
//!   (utime + stime of `/proc/PID/stat`, all threads) over the same time;
//!   `generator-bound` when this process (the load generator) used more CPU
//!   than the broker;
//! - **losses**, counted by sequence numbers once the deliveries have
//!   drained (until nothing has arrived for 2 s, at most
//!   `ROOST_BENCH_DRAIN_MAX_SECS`): at QoS 1 the acknowledged messages (a
//!   PUBACK reached the publisher) that some subscriber never received, their
//!   share of the acknowledged ones, and the deliveries of acknowledged
//!   messages missing; at QoS 0 the messages sent (whole PUBLISH written to
//!   the socket) against those each subscriber received; duplicates; the
//!   connections the broker closed. A drain cut short by its bound is said:
//!   what was still coming then counts as lost;
//! - the peak RSS.
//!
//! Publishers' sockets have a small send buffer (`PUB_SNDBUF`, 64 KiB
//! asked for): at QoS 0 a broker that reads its publishers only as fast as
//! it delivers leaves what they wrote in the kernel, and with the
//! megabytes loopback buffers grow to, that backlog took mosquitto over
//! 30 s to deliver after 2 s of publishing. "Sent" counts it, so it must
//! be deliverable within the drain.
//!
//! Then a summary of the losses and a table of targets, each PASS or FAIL:
//! no acknowledged QoS 1 message lost; QoS 1 delivered per broker CPU second
//! at least rumqttd's and 3x mosquitto's; QoS 1 fan-out delivered per second
//! at least 0.8x rumqttd's; QoS 0 delivered per broker CPU second at least 2x
//! mosquitto's and, for the fan-in, no lower than at the fixed rate; peak RSS
//! during the long overload below `RSS_BOUND_MIB` (64 MiB) and below
//! mosquitto's, and the largest peak of any run below that bound too. The
//! bench prints figures, it is not a test: it exits 0 whatever the targets
//! say, 1 when a measurement failed (a broker did not start or answer), 3
//! when the watchdog ended it.
//!
//! Environment:
//! - `ROOST_BENCH_SECS`: seconds each load of sections 1 to 3 publishes
//!   (default 5).
//! - `ROOST_BENCH_OVERLOAD_SECS`: seconds of the long overload (default 30).
//! - `ROOST_BENCH_FIXED_RATE`: total messages per second of the fixed-rate
//!   fan-in (default 10000; mosquitto needs about 15% of a core for it here).
//! - `ROOST_BENCH_DRAIN_MAX_SECS`: the longest wait for deliveries after
//!   publishing stops (default 20).
//! - `ROOST_BENCH_SECTIONS`: comma-separated sections to run, from `qos1`,
//!   `qos0`, `fixed` and `rss` (default all).
//! - `ROOST_BENCH_BROKERS`: comma-separated brokers, from `roost`,
//!   `mosquitto` and `rumqttd` (default all three; one not installed is
//!   skipped with a note). `ROOST_BENCH_MOSQUITTO`, `ROOST_BENCH_RUMQTTD`:
//!   their binaries (default `/usr/sbin/mosquitto` and
//!   `~/.cargo/bin/rumqttd`, then `PATH`).
//!
//! With the defaults a run takes about 4 minutes on 2 cores (15 runs of 5 s
//! and 3 of 30 s, each with its drain and set-up; rumqttd's drains often
//! run to their 20 s bound). Every phase is bounded: publishing stops at
//! its time, the drain at its bound, every socket operation of the set-up
//! times out after 10 s and the load's sockets are polled with short
//! timeouts, and a watchdog ends the run (killing the brokers) when it
//! takes far longer than planned. Traffic goes to 127.0.0.1 only, from
//! 127.0.0.2..=127.0.0.9.

mod common;

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{
    Broker, Brokers, CpuMark, Line, connect_session_with, exit_on_failures, install_guards,
    print_columns, put_publish, raise_nofile, start_mosquitto, start_roost, start_rumqttd,
    status_kib, subscribe,
};

/// Bytes of every PUBLISH payload.
const PAYLOAD: usize = 64;
/// QoS 1 PUBLISH a publisher keeps unacknowledged at most.
const QOS1_WINDOW: usize = 64;
/// PUBLISH packets encoded for one `write`.
const WRITE_BATCH: usize = 32;
/// Keep-alive asked for in CONNECT: rumqttd refuses 0, and no run comes
/// near 1.5 times this.
const KEEP_ALIVE: u16 = 600;
/// The drain ends once nothing (no delivery, no PUBACK) has arrived for
/// this long.
const DRAIN_STALL: Duration = Duration::from_secs(2);
/// How often the broker's VmRSS is sampled.
const RSS_EVERY: Duration = Duration::from_millis(100);
/// The bound on roost's peak RSS during the long overload.
const RSS_BOUND_MIB: u64 = 64;
/// Subscribers of the fan-outs, publishers of the fan-ins.
const FANOUT_SUBS: usize = 100;
const FANIN_PUBS: usize = 4;
/// SO_SNDBUF of the publishers' sockets (the kernel doubles it): what a
/// publisher has written but the broker not yet read waits in the kernel,
/// and without a bound (autotuning lets a loopback socket buffer megabytes)
/// a broker that reads its publishers slowly builds a backlog there that
/// takes far longer to deliver than the run took to send.
const PUB_SNDBUF: usize = 64 * 1024;
/// The subscribers' filter; publisher i publishes to `ovl/<i>`.
const FILTER: &str = "ovl/+";
/// No message waits for this packet id.
const NO_SEQ: u64 = u64::MAX;

// ---------------------------------------------------------------------------
// Loads

/// What one run does. Every subscriber gets every message.
#[derive(Clone)]
struct Load {
    label: String,
    /// The QoS of each publisher's messages.
    pub_qos: Vec<u8>,
    pub_threads: usize,
    subscribers: usize,
    sub_threads: usize,
    /// QoS of every subscription.
    sub_qos: u8,
    /// Messages per second over all publishers; None: as fast as they go.
    rate: Option<u64>,
    duration: Duration,
}

impl Load {
    fn fan_in(label: &str, qos: u8, duration: Duration) -> Self {
        Load {
            label: label.to_string(),
            pub_qos: vec![qos; FANIN_PUBS],
            pub_threads: FANIN_PUBS,
            subscribers: 1,
            sub_threads: 1,
            sub_qos: qos,
            rate: None,
            duration,
        }
    }

    fn fan_out(label: &str, qos: u8, duration: Duration) -> Self {
        Load {
            label: label.to_string(),
            pub_qos: vec![qos],
            pub_threads: 1,
            subscribers: FANOUT_SUBS,
            sub_threads: 2,
            sub_qos: qos,
            rate: None,
            duration,
        }
    }
}

// ---------------------------------------------------------------------------
// Bit sets of sequence numbers

#[derive(Default)]
struct Bits {
    words: Vec<u64>,
}

impl Bits {
    /// Sets bit `i`; false if it was set already.
    fn set(&mut self, i: u64) -> bool {
        let w = (i / 64) as usize;
        if w >= self.words.len() {
            self.words.resize((w + 1).max(2 * self.words.len()), 0);
        }
        let mask = 1u64 << (i % 64);
        let was = self.words[w] & mask != 0;
        self.words[w] |= mask;
        !was
    }

    fn word(&self, w: usize) -> u64 {
        self.words.get(w).copied().unwrap_or(0)
    }

    /// Bits set below `n`.
    fn count_below(&self, n: u64) -> u64 {
        let full = (n / 64) as usize;
        let mut c: u64 = self
            .words
            .iter()
            .take(full)
            .map(|w| u64::from(w.count_ones()))
            .sum();
        if n % 64 != 0 {
            c += u64::from((self.word(full) & ((1u64 << (n % 64)) - 1)).count_ones());
        }
        c
    }

    fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

// ---------------------------------------------------------------------------
// Clients

/// Counters shared by the client threads of one run.
struct Shared {
    /// PUBLISH packets read by the subscribers.
    delivered: AtomicU64,
    /// PUBACKs read by the publishers.
    acked: AtomicU64,
    stop: AtomicBool,
}

/// Tells every client thread to stop, however the run ends.
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// Writes what it can of `out[*at..]` without blocking; the bytes written.
fn write_some(s: &mut TcpStream, out: &[u8], at: &mut usize) -> io::Result<usize> {
    match s.write(&out[*at..]) {
        Ok(n) => {
            *at += n;
            Ok(n)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// Reads what has arrived, without blocking: Ok(None) when nothing has.
fn read_some(s: &mut TcpStream, buf: &mut [u8]) -> Result<Option<usize>, String> {
    match s.read(buf) {
        Ok(0) => Err(String::from("the broker closed the connection")),
        Ok(n) => Ok(Some(n)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(format!("reading: {e}")),
    }
}

fn poll(fds: &mut [libc::pollfd], timeout: Duration) {
    // SAFETY: valid pollfd array and length.
    unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timeout.as_millis().max(1) as libc::c_int,
        )
    };
}

struct PubConn {
    id: String,
    index: u32,
    qos: u8,
    s: TcpStream,
    topic: String,
    /// Bytes of every PUBLISH it sends (all are the same size).
    packet_len: u64,
    out: Vec<u8>,
    out_at: usize,
    /// Bytes written to the socket.
    written: u64,
    /// Messages encoded so far; the next one's sequence number.
    next_seq: u64,
    /// QoS 1: the sequence number waiting for each packet id, or NO_SEQ.
    waiting: Vec<u64>,
    unacked: usize,
    acked: Bits,
    /// Bytes of a PUBACK read only in part.
    partial: Vec<u8>,
    /// PUBACKs for a packet id nothing waited for.
    unknown_acks: u64,
    /// Why the connection ended early, if it did.
    failed: Option<String>,
}

fn put_message(buf: &mut Vec<u8>, topic: &str, qos: u8, packet_id: u16, publisher: u32, seq: u64) {
    let mut payload = [b'.'; PAYLOAD];
    payload[..4].copy_from_slice(&publisher.to_be_bytes());
    payload[4..12].copy_from_slice(&seq.to_be_bytes());
    put_publish(buf, topic, qos, false, packet_id, &payload);
}

fn packet_id(seq: u64) -> u16 {
    (seq % 0xffff) as u16 + 1
}

impl PubConn {
    fn new(id: String, index: usize, qos: u8, s: TcpStream) -> Self {
        let topic = format!("ovl/{index}");
        let mut probe = Vec::new();
        put_message(&mut probe, &topic, qos, 1, 0, 0);
        PubConn {
            id,
            index: index as u32,
            qos,
            s,
            topic,
            packet_len: probe.len() as u64,
            out: Vec::with_capacity(WRITE_BATCH * probe.len()),
            out_at: 0,
            written: 0,
            next_seq: 0,
            waiting: if qos > 0 {
                vec![NO_SEQ; 0x10000]
            } else {
                Vec::new()
            },
            unacked: 0,
            acked: Bits::default(),
            partial: Vec::new(),
            unknown_acks: 0,
            failed: None,
        }
    }

    /// Whole PUBLISH packets written to the socket.
    fn sent(&self) -> u64 {
        self.written / self.packet_len
    }

    /// Encodes up to `n` more messages (fewer when the QoS 1 window is
    /// full) once the last batch is written.
    fn refill(&mut self, n: u64) {
        if self.out_at < self.out.len() {
            return;
        }
        self.out.clear();
        self.out_at = 0;
        let room = if self.qos > 0 {
            QOS1_WINDOW - self.unacked
        } else {
            WRITE_BATCH
        };
        for _ in 0..n.min(room as u64) {
            let seq = self.next_seq;
            let id = packet_id(seq);
            if self.qos > 0 {
                self.waiting[usize::from(id)] = seq;
                self.unacked += 1;
            }
            put_message(&mut self.out, &self.topic, self.qos, id, self.index, seq);
            self.next_seq += 1;
        }
    }

    /// Writes what it can of the batch; true if it wrote anything.
    fn write(&mut self) -> Result<bool, String> {
        if self.out_at == self.out.len() {
            return Ok(false);
        }
        let n = write_some(&mut self.s, &self.out, &mut self.out_at)
            .map_err(|e| format!("sending PUBLISH: {e}"))?;
        self.written += n as u64;
        Ok(n > 0)
    }

    /// Reads the PUBACKs that have arrived; true if any did.
    fn read_acks(&mut self, scratch: &mut [u8], shared: &Shared) -> Result<bool, String> {
        let mut any = false;
        while let Some(n) = read_some(&mut self.s, scratch)? {
            any = true;
            self.partial.extend_from_slice(&scratch[..n]);
            let mut acks = 0;
            let whole = self.partial.len() / 4 * 4;
            for ack in self.partial[..whole].chunks_exact(4) {
                if ack[..2] != [0x40, 0x02] {
                    return Err(format!("expected PUBACK, got {:02x?}", &ack[..2]));
                }
                let id = usize::from(u16::from_be_bytes([ack[2], ack[3]]));
                let seq = std::mem::replace(&mut self.waiting[id], NO_SEQ);
                if seq == NO_SEQ {
                    self.unknown_acks += 1;
                    continue;
                }
                self.acked.set(seq);
                self.unacked -= 1;
                acks += 1;
            }
            self.partial.drain(..whole);
            shared.acked.fetch_add(acks, Ordering::Relaxed);
        }
        Ok(any)
    }
}

/// Publishes until `deadline` (at `rate_each` messages per second per
/// connection, or as fast as the sockets take them), then reads PUBACKs
/// until told to stop.
fn publisher_thread(
    mut conns: Vec<PubConn>,
    rate_each: Option<f64>,
    shared: Arc<Shared>,
    start: Instant,
    deadline: Instant,
) -> Vec<PubConn> {
    let mut scratch = vec![0u8; 16 * 1024];
    let mut fds: Vec<libc::pollfd> = conns
        .iter()
        .map(|c| libc::pollfd {
            fd: c.s.as_raw_fd(),
            events: 0,
            revents: 0,
        })
        .collect();
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let sending = now < deadline;
        let due = rate_each.map(|r| ((now - start).as_secs_f64() * r) as u64);
        let mut progressed = false;
        for c in conns.iter_mut().filter(|c| c.failed.is_none()) {
            let step = (|| -> Result<bool, String> {
                let mut p = false;
                if c.qos > 0 {
                    p |= c.read_acks(&mut scratch, &shared)?;
                }
                if sending {
                    let n = match due {
                        Some(d) => d.saturating_sub(c.next_seq).min(WRITE_BATCH as u64),
                        None => WRITE_BATCH as u64,
                    };
                    c.refill(n);
                    p |= c.write()?;
                }
                Ok(p)
            })();
            match step {
                Ok(p) => progressed |= p,
                Err(e) => c.failed = Some(e),
            }
        }
        if progressed {
            continue;
        }
        for (c, fd) in conns.iter().zip(fds.iter_mut()) {
            fd.events = 0;
            fd.revents = 0;
            if c.failed.is_some() {
                continue;
            }
            if c.qos > 0 {
                fd.events |= libc::POLLIN;
            }
            if sending && c.out_at < c.out.len() {
                fd.events |= libc::POLLOUT;
            }
        }
        let wait = if sending && rate_each.is_some() {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(10)
        };
        poll(&mut fds, wait);
    }
    conns
}

struct SubConn {
    id: String,
    s: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_at: usize,
    /// The sequence numbers received from each publisher.
    seen: Vec<Bits>,
    dups: u64,
    /// PUBLISH packets that did not carry a known publisher's index.
    malformed: u64,
    failed: Option<String>,
}

/// One complete packet at the start of `buf`: (first byte, body start, end),
/// or None if `buf` holds only part of one.
fn split_packet(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, String> {
    let mut len = 0usize;
    for i in 1..buf.len().min(5) {
        len |= usize::from(buf[i] & 0x7f) << (7 * (i - 1));
        if buf[i] & 0x80 == 0 {
            let end = i + 1 + len;
            return Ok((end <= buf.len()).then_some((buf[0], i + 1, end)));
        }
    }
    if buf.len() >= 5 {
        return Err(String::from("remaining length longer than 4 bytes"));
    }
    Ok(None)
}

impl SubConn {
    /// Takes in what one read brought: counts the PUBLISH packets and
    /// queues a PUBACK for each QoS 1 one. Returns the PUBLISH count.
    fn take(&mut self, data: &[u8]) -> Result<u64, String> {
        self.inbuf.extend_from_slice(data);
        let mut at = 0;
        let mut count = 0;
        while let Some((first, body, end)) = split_packet(&self.inbuf[at..])? {
            let pkt = &self.inbuf[at + body..at + end];
            at += end;
            if first >> 4 != 3 {
                continue;
            }
            count += 1;
            if pkt.len() < 2 {
                self.malformed += 1;
                continue;
            }
            let mut p = 2 + usize::from(u16::from_be_bytes([pkt[0], pkt[1]]));
            if (first >> 1) & 3 > 0 {
                if pkt.len() < p + 2 {
                    self.malformed += 1;
                    continue;
                }
                self.out
                    .extend_from_slice(&[0x40, 0x02, pkt[p], pkt[p + 1]]);
                p += 2;
            }
            if pkt.len() < p + 12 {
                self.malformed += 1;
                continue;
            }
            let publisher = u32::from_be_bytes(pkt[p..p + 4].try_into().expect("4 bytes")) as usize;
            let seq = u64::from_be_bytes(pkt[p + 4..p + 12].try_into().expect("8 bytes"));
            match self.seen.get_mut(publisher) {
                Some(bits) => {
                    if !bits.set(seq) {
                        self.dups += 1;
                    }
                }
                None => self.malformed += 1,
            }
        }
        self.inbuf.drain(..at);
        Ok(count)
    }

    fn write(&mut self) -> Result<(), String> {
        if self.out_at < self.out.len() {
            write_some(&mut self.s, &self.out, &mut self.out_at)
                .map_err(|e| format!("sending PUBACK: {e}"))?;
            if self.out_at == self.out.len() {
                self.out.clear();
                self.out_at = 0;
            }
        }
        Ok(())
    }
}

/// Reads (and acknowledges) as fast as the broker delivers, until told to
/// stop.
fn subscriber_thread(mut conns: Vec<SubConn>, shared: Arc<Shared>) -> Vec<SubConn> {
    let mut scratch = vec![0u8; 64 * 1024];
    let mut fds: Vec<libc::pollfd> = conns
        .iter()
        .map(|c| libc::pollfd {
            fd: c.s.as_raw_fd(),
            events: 0,
            revents: 0,
        })
        .collect();
    while !shared.stop.load(Ordering::Relaxed) {
        for (c, fd) in conns.iter().zip(fds.iter_mut()) {
            fd.revents = 0;
            fd.events = if c.failed.is_some() {
                0
            } else if c.out_at < c.out.len() {
                libc::POLLIN | libc::POLLOUT
            } else {
                libc::POLLIN
            };
        }
        poll(&mut fds, Duration::from_millis(20));
        for (c, fd) in conns.iter_mut().zip(fds.iter()) {
            if fd.revents == 0 || c.failed.is_some() {
                continue;
            }
            let step = (|| -> Result<(), String> {
                if let Some(n) = read_some(&mut c.s, &mut scratch)? {
                    let count = c.take(&scratch[..n])?;
                    shared.delivered.fetch_add(count, Ordering::Relaxed);
                }
                c.write()
            })();
            if let Err(e) = step {
                c.failed = Some(e);
            }
        }
    }
    conns
}

fn set_sndbuf(s: &TcpStream, bytes: usize) -> io::Result<()> {
    let v = bytes as libc::c_int;
    // SAFETY: valid fd, pointer and length of a c_int.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Splits `items` into `parts` nearly equal groups.
fn split<T>(items: Vec<T>, parts: usize) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = (0..parts).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        groups[i % parts].push(item);
    }
    groups.retain(|g| !g.is_empty());
    groups
}

fn join<T>(h: JoinHandle<T>) -> Result<T, String> {
    h.join()
        .map_err(|_| String::from("a client thread panicked"))
}

// ---------------------------------------------------------------------------
// RSS sampling

struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<(u64, usize), String>>,
}

impl RssSampler {
    /// Samples `pid`'s VmRSS every `RSS_EVERY` until stopped.
    fn start(pid: u32) -> Result<RssSampler, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::Builder::new()
            .name(String::from("rss"))
            .spawn(move || {
                let (mut peak, mut samples) = (0, 0);
                loop {
                    peak = peak.max(status_kib(pid, "VmRSS")?);
                    samples += 1;
                    if flag.load(Ordering::Relaxed) {
                        return Ok((peak, samples));
                    }
                    thread::sleep(RSS_EVERY);
                }
            })
            .map_err(|e| format!("spawning the RSS sampler: {e}"))?;
        Ok(RssSampler { stop, handle })
    }

    /// Peak VmRSS in KiB and the number of samples.
    fn finish(self) -> Result<(u64, usize), String> {
        self.stop.store(true, Ordering::Relaxed);
        join(self.handle)?
    }
}

// ---------------------------------------------------------------------------
// One run

/// Losses of the QoS 1 publishers' messages.
#[derive(Default)]
struct Qos1 {
    sent: u64,
    acked: u64,
    /// Acknowledged messages that some subscriber never received.
    lost: u64,
    /// Deliveries of acknowledged messages that never happened.
    missed: u64,
}

/// Losses of the QoS 0 publishers' messages.
#[derive(Default)]
struct Qos0 {
    sent: u64,
    /// Distinct messages received, over all subscribers.
    delivered: u64,
    /// Distinct messages received by the subscriber that got fewest and
    /// most.
    min_sub: u64,
    max_sub: u64,
}

/// What one run measured.
struct Run {
    subscribers: u64,
    secs: f64,
    /// PUBLISH packets the subscribers read while the publishers published.
    delivered: u64,
    broker_cpu: f64,
    generator_cpu: f64,
    rss_start_kib: u64,
    rss_peak_kib: u64,
    rss_samples: usize,
    hwm_kib: u64,
    drain_secs: f64,
    drain_cut: bool,
    qos1: Option<Qos1>,
    qos0: Option<Qos0>,
    dups: u64,
    anomalies: u64,
    /// Connections that ended early, with the first reason.
    closed: usize,
    first_close: Option<String>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.secs
    }

    fn per_cpu(&self) -> Option<f64> {
        (self.broker_cpu > 0.0).then(|| self.delivered as f64 / self.broker_cpu)
    }

    fn generator_bound(&self) -> bool {
        self.generator_cpu > self.broker_cpu
    }

    fn lost_q1_share(&self) -> Option<f64> {
        let q = self.qos1.as_ref()?;
        Some(if q.acked == 0 {
            0.0
        } else {
            100.0 * q.lost as f64 / q.acked as f64
        })
    }

    fn lost_q0(&self) -> Option<u64> {
        let q = self.qos0.as_ref()?;
        Some((q.sent * self.subscribers).saturating_sub(q.delivered))
    }

    fn lost_q0_share(&self) -> Option<f64> {
        let q = self.qos0.as_ref()?;
        let due = q.sent * self.subscribers;
        Some(if due == 0 {
            0.0
        } else {
            100.0 * self.lost_q0()? as f64 / due as f64
        })
    }
}

/// Opens the connections of `load`, runs it, drains, and counts.
fn run_load(broker: &mut Broker, load: &Load, drain_max: Duration) -> Result<Run, String> {
    let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, broker.port);
    let npubs = load.pub_qos.len();
    let mut subs = Vec::with_capacity(load.subscribers);
    for j in 0..load.subscribers {
        let id = format!("ovl-s{j}");
        let (mut s, _) = connect_session_with(&id, j, dst, true, KEEP_ALIVE)?;
        subscribe(&mut s, &id, 1, &[FILTER.to_string()], load.sub_qos)?;
        s.set_nonblocking(true)
            .map_err(|e| format!("{id}: set_nonblocking: {e}"))?;
        subs.push(SubConn {
            id,
            s,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_at: 0,
            seen: (0..npubs).map(|_| Bits::default()).collect(),
            dups: 0,
            malformed: 0,
            failed: None,
        });
    }
    let mut pubs = Vec::with_capacity(npubs);
    for (i, &qos) in load.pub_qos.iter().enumerate() {
        let id = format!("ovl-p{i}");
        let (s, _) = connect_session_with(&id, i + 1, dst, true, KEEP_ALIVE)?;
        set_sndbuf(&s, PUB_SNDBUF).map_err(|e| format!("{id}: SO_SNDBUF: {e}"))?;
        s.set_nonblocking(true)
            .map_err(|e| format!("{id}: set_nonblocking: {e}"))?;
        pubs.push(PubConn::new(id, i, qos, s));
    }

    let pid = broker.pid();
    let rss_start_kib = status_kib(pid, "VmRSS")?;
    let sampler = RssSampler::start(pid)?;
    let shared = Arc::new(Shared {
        delivered: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let stop = StopOnDrop(Arc::clone(&shared));
    let spawn_err = |e: io::Error| format!("spawning a client thread: {e}");
    let mut sub_handles = Vec::new();
    for group in split(subs, load.sub_threads) {
        let sh = Arc::clone(&shared);
        sub_handles.push(
            thread::Builder::new()
                .name(String::from("subscriber"))
                .spawn(move || subscriber_thread(group, sh))
                .map_err(spawn_err)?,
        );
    }
    let rate_each = load.rate.map(|r| r as f64 / npubs as f64);
    let start = CpuMark::take(broker)?;
    let deadline = start.at + load.duration;
    let mut pub_handles = Vec::new();
    for group in split(pubs, load.pub_threads) {
        let sh = Arc::clone(&shared);
        let at = start.at;
        pub_handles.push(
            thread::Builder::new()
                .name(String::from("publisher"))
                .spawn(move || publisher_thread(group, rate_each, sh, at, deadline))
                .map_err(spawn_err)?,
        );
    }
    // Publishing.
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        broker.check_alive()?;
        thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
    let end = CpuMark::take(broker)?;
    let delivered = shared.delivered.load(Ordering::Relaxed);
    // Draining: until nothing arrives for DRAIN_STALL, at most drain_max.
    let progress =
        || shared.delivered.load(Ordering::Relaxed) + shared.acked.load(Ordering::Relaxed);
    let mut last = (progress(), Instant::now());
    let drain_cut = loop {
        let now = Instant::now();
        let p = progress();
        if p != last.0 {
            last = (p, now);
        }
        if now - last.1 >= DRAIN_STALL {
            break false;
        }
        if now - end.at >= drain_max {
            break true;
        }
        broker.check_alive()?;
        thread::sleep(Duration::from_millis(10));
    };
    let drain_secs = (last.1 - end.at).as_secs_f64();
    drop(stop);
    let mut pubs = Vec::new();
    for h in pub_handles {
        pubs.extend(join(h)?);
    }
    let mut subs = Vec::new();
    for h in sub_handles {
        subs.extend(join(h)?);
    }
    let (rss_peak_kib, rss_samples) = sampler.finish()?;
    let hwm_kib = status_kib(pid, "VmHWM")?;
    pubs.sort_by_key(|p| p.index);

    // Count.
    let mut qos1: Option<Qos1> = None;
    let mut qos0: Option<Qos0> = None;
    for p in &pubs {
        let i = p.index as usize;
        if p.qos > 0 {
            let q = qos1.get_or_insert_with(Qos1::default);
            q.sent += p.sent();
            q.acked += p.acked.count();
            for w in 0..p.acked.words.len() {
                let acked = p.acked.word(w);
                if acked == 0 {
                    continue;
                }
                let mut everyone = !0u64;
                for s in &subs {
                    let seen = s.seen[i].word(w);
                    q.missed += u64::from((acked & !seen).count_ones());
                    everyone &= seen;
                }
                q.lost += u64::from((acked & !everyone).count_ones());
            }
        } else {
            qos0.get_or_insert_with(Qos0::default).sent += p.sent();
        }
    }
    if let Some(q) = qos0.as_mut() {
        let mut per_sub = Vec::with_capacity(subs.len());
        for s in &subs {
            let got: u64 = pubs
                .iter()
                .filter(|p| p.qos == 0)
                .map(|p| s.seen[p.index as usize].count_below(p.sent()))
                .sum();
            per_sub.push(got);
        }
        q.delivered = per_sub.iter().sum();
        q.min_sub = per_sub.iter().copied().min().unwrap_or(0);
        q.max_sub = per_sub.iter().copied().max().unwrap_or(0);
    }
    let closed: Vec<String> = pubs
        .iter()
        .filter_map(|p| p.failed.as_ref().map(|e| format!("{}: {e}", p.id)))
        .chain(
            subs.iter()
                .filter_map(|s| s.failed.as_ref().map(|e| format!("{}: {e}", s.id))),
        )
        .collect();
    Ok(Run {
        subscribers: subs.len() as u64,
        secs: (end.at - start.at).as_secs_f64().max(1e-9),
        delivered,
        broker_cpu: end.broker - start.broker,
        generator_cpu: end.generator - start.generator,
        rss_start_kib,
        rss_peak_kib,
        rss_samples,
        hwm_kib,
        drain_secs,
        drain_cut,
        qos1,
        qos0,
        dups: subs.iter().map(|s| s.dups).sum(),
        anomalies: subs.iter().map(|s| s.malformed).sum::<u64>()
            + pubs.iter().map(|p| p.unknown_acks).sum::<u64>(),
        closed: closed.len(),
        first_close: closed.into_iter().next(),
    })
}

// ---------------------------------------------------------------------------
// Running every broker

const HEADS: [&str; 3] = ["roost", "mosquitto", "rumqttd"];
/// The ratios printed: roost/mosquitto, roost/rumqttd.
const RATIOS: [(usize, usize); 2] = [(0, 1), (0, 2)];

/// A measurement for each broker of `HEADS` (None where not measured or
/// failed).
struct Trio<T>([Option<T>; 3]);

impl<T> Trio<T> {
    fn get(&self, b: usize, f: impl Fn(&T) -> Option<f64>) -> Option<f64> {
        self.0[b].as_ref().and_then(f)
    }

    fn line(&self, label: impl Into<String>, prec: usize, f: impl Fn(&T) -> Option<f64>) -> Line {
        Line {
            label: label.into(),
            values: (0..3).map(|b| self.get(b, &f)).collect(),
            prec,
            note: String::new(),
        }
    }
}

/// Runs `load` against a fresh process of each broker wanted, one after
/// the other; failures are recorded and leave that column empty.
fn each_broker(
    brokers: &Brokers,
    load: &Load,
    drain_max: Duration,
    failures: &mut Vec<String>,
) -> Trio<Run> {
    let mut runs: [Option<Run>; 3] = [None, None, None];
    for (b, name) in HEADS.iter().enumerate() {
        let started = match b {
            0 if brokers.roost => start_roost(),
            1 => match &brokers.mosquitto {
                Some(bin) => start_mosquitto(bin),
                None => continue,
            },
            2 => match &brokers.rumqttd {
                Some(bin) => start_rumqttd(bin),
                None => continue,
            },
            _ => continue,
        };
        let result = started.and_then(|mut broker| {
            eprintln!(
                "{}: {name} (pid {}, port {})",
                load.label,
                broker.pid(),
                broker.port
            );
            let r = run_load(&mut broker, load, drain_max).map_err(|e| {
                let alive = broker.check_alive().err().unwrap_or_default();
                format!("{e}\n{alive}\n  last log lines:\n{}", broker.log_tail())
            });
            if let Ok(run) = &r {
                if let Some(why) = &run.first_close {
                    eprintln!(
                        "  {name}: {} connection(s) ended early, first {why}; broker log:\n{}",
                        run.closed,
                        broker.log_tail()
                    );
                }
            }
            broker.stop();
            r
        });
        match result {
            Ok(run) => runs[b] = Some(run),
            Err(e) => failures.push(format!("{}, {name}: {e}", load.label)),
        }
    }
    Trio(runs)
}

/// Names and figures of the brokers for which `f` says something, for a
/// note: "roost 92.1%, mosquitto 0.3%".
fn per_broker(t: &Trio<Run>, f: impl Fn(&Run) -> Option<String>) -> String {
    let mut s = String::new();
    for (b, name) in HEADS.iter().enumerate() {
        if let Some(v) = t.0[b].as_ref().and_then(&f) {
            let _ = write!(s, "{}{name} {v}", if s.is_empty() { "" } else { ", " });
        }
    }
    s
}

/// The table of one load.
fn print_load(load: &Load, t: &Trio<Run>) {
    let mut lines = vec![
        t.line("delivered msg/s (while publishing)", 0, |r| Some(r.rate())),
        t.line("delivered per broker CPU s", 0, Run::per_cpu),
        t.line("broker CPU busy %", 0, |r| {
            Some(100.0 * r.broker_cpu / r.secs)
        }),
        t.line("generator CPU busy %", 0, |r| {
            Some(100.0 * r.generator_cpu / r.secs)
        }),
    ];
    // At a fixed rate the broker is not pushed: who used more CPU says
    // nothing there.
    let bound = per_broker(t, |r| r.generator_bound().then(|| String::from("yes")));
    if !bound.is_empty() && load.rate.is_none() {
        lines[1].note = format!("generator-bound (generator used more CPU): {bound}");
    }
    if t.0.iter().flatten().any(|r| r.qos1.is_some()) {
        let q1 = |f: fn(&Qos1) -> u64| move |r: &Run| r.qos1.as_ref().map(|q| f(q) as f64);
        lines.push(t.line("QoS 1 PUBLISH sent", 0, q1(|q| q.sent)));
        lines.push(t.line("QoS 1 acknowledged (PUBACK)", 0, q1(|q| q.acked)));
        let mut lost = t.line("QoS 1 acknowledged, LOST", 0, q1(|q| q.lost));
        let shares = per_broker(t, |r| {
            r.qos1.as_ref().filter(|q| q.lost > 0).map(|q| {
                format!(
                    "{} ({:.1}%)",
                    q.lost,
                    100.0 * q.lost as f64 / q.acked as f64
                )
            })
        });
        if !shares.is_empty() {
            lost.note = format!("<<< LOST acknowledged messages: {shares}");
        }
        lines.push(lost);
        lines.push(t.line("QoS 1 acknowledged, LOST %", 2, Run::lost_q1_share));
        if load.subscribers > 1 {
            lines.push(t.line(
                "QoS 1 deliveries of acknowledged missing",
                0,
                q1(|q| q.missed),
            ));
        }
    }
    if t.0.iter().flatten().any(|r| r.qos0.is_some()) {
        lines.push(t.line("QoS 0 sent", 0, |r| r.qos0.as_ref().map(|q| q.sent as f64)));
        if load.subscribers > 1 {
            lines.push(t.line("QoS 0 deliveries due (sent x subscribers)", 0, |r| {
                r.qos0.as_ref().map(|q| (q.sent * r.subscribers) as f64)
            }));
        }
        lines.push(t.line("QoS 0 delivered (distinct)", 0, |r| {
            r.qos0.as_ref().map(|q| q.delivered as f64)
        }));
        let mut lost = t.line("QoS 0 LOST", 0, |r| r.lost_q0().map(|v| v as f64));
        let shares = per_broker(t, |r| {
            r.lost_q0()
                .filter(|&l| l > 0)
                .map(|l| format!("{l} ({:.1}%)", r.lost_q0_share().unwrap_or(0.0)))
        });
        if !shares.is_empty() {
            lost.note = format!("<<< LOST: {shares}");
        }
        lines.push(lost);
        lines.push(t.line("QoS 0 LOST %", 2, Run::lost_q0_share));
        if load.subscribers > 1 {
            lines.push(
                t.line("QoS 0 received % of sent, worst subscriber", 2, |r| {
                    let q = r.qos0.as_ref()?;
                    (q.sent > 0).then(|| 100.0 * q.min_sub as f64 / q.sent as f64)
                }),
            );
            lines.push(t.line("QoS 0 received % of sent, best subscriber", 2, |r| {
                let q = r.qos0.as_ref()?;
                (q.sent > 0).then(|| 100.0 * q.max_sub as f64 / q.sent as f64)
            }));
        }
    }
    if let Some(rate) = load.rate {
        let mut offered = t.line("offered msg/s (sent / s)", 0, |r| {
            let sent =
                r.qos0.as_ref().map_or(0, |q| q.sent) + r.qos1.as_ref().map_or(0, |q| q.sent);
            Some(sent as f64 / r.secs)
        });
        let short = per_broker(t, |r| {
            let lost = r.lost_q0().unwrap_or(0) + r.qos1.as_ref().map_or(0, |q| q.lost);
            let sent =
                r.qos0.as_ref().map_or(0, |q| q.sent) + r.qos1.as_ref().map_or(0, |q| q.sent);
            (lost > 0 || (sent as f64) < 0.95 * rate as f64 * r.secs)
                .then(|| String::from("NOT sustained"))
        });
        if !short.is_empty() {
            offered.note = short;
        }
        lines.push(offered);
    }
    let mut dups = t.line("duplicates received", 0, |r| Some(r.dups as f64));
    let anomalies = per_broker(t, |r| {
        (r.anomalies > 0).then(|| format!("{} unknown PUBACK ids / malformed", r.anomalies))
    });
    dups.note = anomalies;
    lines.push(dups);
    let mut closed = t.line("connections ended early", 0, |r| Some(r.closed as f64));
    closed.note = per_broker(t, |r| r.first_close.clone());
    lines.push(closed);
    lines.push(t.line("RSS before (KiB)", 0, |r| Some(r.rss_start_kib as f64)));
    let mut peak = t.line("peak VmRSS (KiB, sampled every 100 ms)", 0, |r| {
        Some(r.rss_peak_kib as f64)
    });
    peak.note = per_broker(t, |r| Some(format!("{} samples", r.rss_samples)));
    lines.push(peak);
    lines.push(t.line("VmHWM at the end (KiB)", 0, |r| Some(r.hwm_kib as f64)));
    let mut drain = t.line("drain after publishing (s)", 1, |r| Some(r.drain_secs));
    let cut = per_broker(t, |r| {
        r.drain_cut
            .then(|| String::from("CUT at the bound, still delivering: late counts as lost"))
    });
    drain.note = cut;
    lines.push(drain);
    let title = format!(
        "{} ({} s, {PAYLOAD} B{})",
        load.label,
        load.duration.as_secs(),
        load.rate
            .map_or_else(String::new, |r| format!(", {r} msg/s in total"))
    );
    print_columns(&title, &HEADS, &RATIOS, &lines);
}

// ---------------------------------------------------------------------------
// Targets

enum Need {
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
}

struct Target {
    what: String,
    value: Option<f64>,
    need: Need,
    prec: usize,
    detail: String,
}

fn print_targets(targets: &[Target]) {
    let w = targets.iter().map(|t| t.what.len()).max().unwrap_or(0) + 2;
    println!();
    println!(
        "{:<w$}{:>12}{:>12}  {:<6}  figures",
        "targets", "value", "needed", "result"
    );
    for t in targets {
        let (value, verdict) = match t.value {
            Some(v) if v.is_finite() => {
                let met = match t.need {
                    Need::AtLeast(b) => v >= b,
                    Need::AtMost(b) => v <= b,
                    Need::Below(b) => v < b,
                };
                (
                    format!("{v:.0$}", t.prec),
                    if met { "PASS" } else { "FAIL" },
                )
            }
            _ => (String::from("-"), "n/a"),
        };
        let needed = match t.need {
            Need::AtLeast(b) => format!(">= {b:.0$}", t.prec),
            Need::AtMost(b) => format!("<= {b:.0$}", t.prec),
            Need::Below(b) => format!("< {b:.0$}", t.prec),
        };
        println!(
            "{:<w$}{value:>12}{needed:>12}  {verdict:<6}  {}",
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

fn figures(t: &Trio<Run>, f: impl Fn(&Run) -> Option<f64>, unit: &str) -> String {
    let mut s = String::new();
    for (b, name) in HEADS.iter().enumerate() {
        let v = t
            .get(b, &f)
            .map_or_else(|| String::from("-"), |v| format!("{v:.0}"));
        let _ = write!(s, "{}{name} {v}", if s.is_empty() { "" } else { ", " });
    }
    format!("{s} {unit}")
}

/// Targets for a QoS 1 load: nothing acknowledged lost, delivered per
/// broker CPU second against rumqttd and mosquitto.
fn qos1_targets(name: &str, t: &Trio<Run>, targets: &mut Vec<Target>) {
    targets.push(Target {
        what: format!("{name}: roost acknowledged messages lost"),
        value: t.get(0, |r| r.qos1.as_ref().map(|q| q.lost as f64)),
        need: Need::AtMost(0.0),
        prec: 0,
        detail: match t.0[0].as_ref().and_then(|r| r.qos1.as_ref()) {
            Some(q) => format!("{} of {} acknowledged", q.lost, q.acked),
            None => String::new(),
        },
    });
    let cpu = |b| t.get(b, Run::per_cpu);
    targets.push(Target {
        what: format!("{name}: delivered per broker CPU s, roost/rumqttd"),
        value: ratio(cpu(0), cpu(2)),
        need: Need::AtLeast(1.0),
        prec: 2,
        detail: figures(t, Run::per_cpu, "msg/CPU s"),
    });
    targets.push(Target {
        what: format!("{name}: delivered per broker CPU s, roost/mosquitto"),
        value: ratio(cpu(0), cpu(1)),
        need: Need::AtLeast(3.0),
        prec: 2,
        detail: figures(t, Run::per_cpu, "msg/CPU s"),
    });
}

// ---------------------------------------------------------------------------

fn main() {
    let secs = common::env_usize("ROOST_BENCH_SECS", 5) as u64;
    let overload_secs = common::env_usize("ROOST_BENCH_OVERLOAD_SECS", 30) as u64;
    let fixed_rate = common::env_usize("ROOST_BENCH_FIXED_RATE", 10_000) as u64;
    let drain_max = Duration::from_secs(common::env_usize("ROOST_BENCH_DRAIN_MAX_SECS", 20) as u64);
    let sections = std::env::var("ROOST_BENCH_SECTIONS")
        .unwrap_or_else(|_| String::from("qos1,qos0,fixed,rss"));
    let section = |s: &str| sections.split(',').any(|x| x.trim() == s);
    let brokers = Brokers::from_env_with_rumqttd();

    let nofile = match raise_nofile() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cannot raise the open-file limit: {e}");
            std::process::exit(2);
        }
    };
    // The longest each run may take (set-up, publishing, drain), for 15 runs
    // of `secs` and 3 of `overload_secs`; the watchdog allows twice that.
    let slack = 15 + drain_max.as_secs();
    let planned = 15 * (secs + slack) + 3 * (overload_secs + slack);
    install_guards("overload", Duration::from_secs(120 + 2 * planned));

    brokers.print_header();
    println!("RLIMIT_NOFILE: {nofile}");
    println!(
        "loads: {PAYLOAD} B messages, publishers to ovl/<i>, subscribers to {FILTER}; QoS 1 \
         window {QOS1_WINDOW} per publisher; QoS 0 publishers unthrottled; drain until \
         nothing arrives for {} s, at most {} s",
        DRAIN_STALL.as_secs(),
        drain_max.as_secs()
    );
    let wall = Instant::now();
    let mut failures = Vec::new();
    let mut targets = Vec::new();
    let dur = Duration::from_secs(secs);
    // Loss rows of the summary, and each broker's largest peak RSS.
    let mut summary: Vec<Line> = Vec::new();
    let mut peaks: [Option<u64>; 3] = [None; 3];
    let mut summarize = |load: &Load, t: &Trio<Run>| {
        for (peak, run) in peaks.iter_mut().zip(&t.0) {
            if let Some(r) = run {
                *peak = Some(peak.unwrap_or(0).max(r.rss_peak_kib));
            }
        }
        let first = summary.len();
        if load.pub_qos.contains(&1) {
            summary.push(t.line(
                format!("{}: acknowledged QoS 1 lost %", load.label),
                2,
                Run::lost_q1_share,
            ));
        }
        if load.pub_qos.contains(&0) {
            summary.push(t.line(
                format!("{}: QoS 0 lost %", load.label),
                2,
                Run::lost_q0_share,
            ));
        }
        let cut = per_broker(t, |r| {
            r.drain_cut
                .then(|| String::from("drain cut, late counted as lost"))
        });
        for line in &mut summary[first..] {
            line.note.clone_from(&cut);
        }
    };

    if section("qos1") {
        let fan_in = Load::fan_in("QoS 1 fan-in 4->1", 1, dur);
        let t = each_broker(&brokers, &fan_in, drain_max, &mut failures);
        print_load(&fan_in, &t);
        summarize(&fan_in, &t);
        qos1_targets("QoS 1 fan-in", &t, &mut targets);

        let fan_out = Load::fan_out("QoS 1 fan-out 1->100", 1, dur);
        let t = each_broker(&brokers, &fan_out, drain_max, &mut failures);
        print_load(&fan_out, &t);
        summarize(&fan_out, &t);
        qos1_targets("QoS 1 fan-out", &t, &mut targets);
        let rate = |b| t.get(b, |r| Some(r.rate()));
        targets.push(Target {
            what: String::from("QoS 1 fan-out: delivered msg/s, roost/rumqttd"),
            value: ratio(rate(0), rate(2)),
            need: Need::AtLeast(0.8),
            prec: 2,
            detail: figures(&t, |r| Some(r.rate()), "msg/s"),
        });
    }

    let mut fan_in_q0: Option<Trio<Run>> = None;
    if section("qos0") {
        for (load, name) in [
            (Load::fan_in("QoS 0 fan-in 4->1", 0, dur), "QoS 0 fan-in"),
            (
                Load::fan_out("QoS 0 fan-out 1->100", 0, dur),
                "QoS 0 fan-out",
            ),
        ] {
            let t = each_broker(&brokers, &load, drain_max, &mut failures);
            print_load(&load, &t);
            summarize(&load, &t);
            let cpu = |b| t.get(b, Run::per_cpu);
            targets.push(Target {
                what: format!("{name}: delivered per broker CPU s, roost/mosquitto"),
                value: ratio(cpu(0), cpu(1)),
                need: Need::AtLeast(2.0),
                prec: 2,
                detail: figures(&t, Run::per_cpu, "msg/CPU s"),
            });
            if load.subscribers == 1 {
                fan_in_q0 = Some(t);
            }
        }
    }

    if section("fixed") {
        let load = Load {
            rate: Some(fixed_rate),
            ..Load::fan_in("QoS 0 fan-in 4->1 at a fixed rate", 0, dur)
        };
        let t = each_broker(&brokers, &load, drain_max, &mut failures);
        print_load(&load, &t);
        summarize(&load, &t);
        let fixed = t.get(0, Run::per_cpu);
        let over = fan_in_q0.as_ref().and_then(|o| o.get(0, Run::per_cpu));
        let f = |v: Option<f64>| v.map_or_else(|| String::from("-"), |v| format!("{v:.0}"));
        targets.push(Target {
            what: String::from("QoS 0 fan-in: roost per broker CPU s, overload / fixed rate"),
            value: ratio(over, fixed),
            need: Need::AtLeast(1.0),
            prec: 2,
            detail: format!(
                "{} under overload vs {} at {fixed_rate} msg/s",
                f(over),
                f(fixed)
            ),
        });
    }

    if section("rss") {
        let load = Load {
            label: format!("overload for RSS: QoS 1 + QoS 0 fan-out 2->{FANOUT_SUBS}"),
            pub_qos: vec![1, 0],
            pub_threads: 2,
            subscribers: FANOUT_SUBS,
            sub_threads: 2,
            sub_qos: 1,
            rate: None,
            duration: Duration::from_secs(overload_secs),
        };
        let t = each_broker(&brokers, &load, drain_max, &mut failures);
        print_load(&load, &t);
        summarize(&load, &t);
        targets.push(Target {
            what: format!("{}: roost acknowledged messages lost", "overload for RSS"),
            value: t.get(0, |r| r.qos1.as_ref().map(|q| q.lost as f64)),
            need: Need::AtMost(0.0),
            prec: 0,
            detail: match t.0[0].as_ref().and_then(|r| r.qos1.as_ref()) {
                Some(q) => format!("{} of {} acknowledged", q.lost, q.acked),
                None => String::new(),
            },
        });
        let peak = |b| t.get(b, |r| Some(r.rss_peak_kib as f64 / 1024.0));
        targets.push(Target {
            what: format!("peak RSS during the {overload_secs} s overload, roost (MiB)"),
            value: peak(0),
            need: Need::Below(RSS_BOUND_MIB as f64),
            prec: 1,
            detail: format!("bound RSS_BOUND_MIB = {RSS_BOUND_MIB} MiB"),
        });
        targets.push(Target {
            what: format!("peak RSS during the {overload_secs} s overload, roost/mosquitto"),
            value: ratio(peak(0), peak(1)),
            need: Need::Below(1.0),
            prec: 2,
            detail: figures(&t, |r| Some(r.rss_peak_kib as f64), "KiB"),
        });
    }

    let mib = |kib: Option<u64>| kib.map(|k| k as f64 / 1024.0);
    targets.push(Target {
        what: String::from("largest peak RSS of any run above, roost (MiB)"),
        value: mib(peaks[0]),
        need: Need::Below(RSS_BOUND_MIB as f64),
        prec: 1,
        detail: {
            let mut s = String::new();
            for (b, name) in HEADS.iter().enumerate() {
                let v = mib(peaks[b]).map_or_else(|| String::from("-"), |v| format!("{v:.1}"));
                let _ = write!(s, "{}{name} {v}", if s.is_empty() { "" } else { ", " });
            }
            format!("{s} MiB")
        },
    });
    print_columns(
        "LOSSES (after the drain; 0 is the only good figure)",
        &HEADS,
        &[],
        &summary,
    );
    print_targets(&targets);
    println!(
        "\n(delivered = PUBLISH packets read by all subscribers while publishing; broker CPU \
         from /proc/PID/stat utime+stime; generator = this process; bench took {:.1} s)",
        wall.elapsed().as_secs_f64()
    );
    exit_on_failures(&failures);
}
