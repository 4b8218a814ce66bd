//! Throughput: a fan-in of QoS 1 messages to a kept session, so that every
//! message is stored, and where the broker's time went.

use std::fs;
use std::io::{BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::common::{
    Broker, CpuMark, connect_client, connect_session, io_context, print_columns, puback_for,
    put_publish, read_packet, stat_fields, subscribe,
};
use super::fsync::count_fsyncs;
use super::gateway::Watch;
use super::{DRAIN_QUIET, HEADS, POLL, RATIOS, Three, storage_written};

/// Publishers, QoS 1 messages each keeps in flight, payload bytes; how far
/// the publishers may be ahead of the subscriber (below
/// `max_queued_messages`, so that no queue limit drops a message); and the
/// `autosave_interval` of the runs (the example config's).
const FANIN_PUBLISHERS: usize = 4;
const FANIN_WINDOW: usize = 20;
const FANIN_PAYLOAD: usize = 64;
const FANIN_AHEAD: u64 = 500;
pub(super) const FANIN_AUTOSAVE: u64 = 300;

/// Counters shared by the fan-in's clients.
struct FanInCounts {
    sent: AtomicU64,
    delivered: AtomicU64,
    stop: AtomicBool,
}

impl FanInCounts {
    /// Messages sent that the subscriber has not had yet.
    fn ahead(&self) -> u64 {
        self.sent
            .load(Ordering::Relaxed)
            .saturating_sub(self.delivered.load(Ordering::Relaxed))
    }
}

/// What one fan-in run measured.
pub(super) struct FanIn {
    sent: u64,
    delivered: u64,
    wall: f64,
    broker_cpu: f64,
    /// Seconds the broker was ready to run but waited for a CPU.
    broker_run_queue: f64,
    /// The share of samples that found the broker waiting for the disk
    /// (state D, as in fsync).
    broker_disk: f64,
    generator_cpu: f64,
    /// Bytes written to storage meanwhile, and the fsyncs.
    written: u64,
    fsyncs: Option<u64>,
    /// Snapshots written meanwhile (journal mode: compactions).
    snapshots: u32,
    /// The broker's last log line about dropping messages, if any.
    dropping: Option<String>,
}

impl FanIn {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.wall
    }

    fn per_cpu(&self) -> Option<f64> {
        (self.broker_cpu > 0.0).then(|| self.delivered as f64 / self.broker_cpu)
    }

    fn per_message(&self, n: u64) -> f64 {
        n as f64 / self.delivered.max(1) as f64
    }

    /// Shares of the time the broker spent on a CPU, waiting for one,
    /// waiting for the disk, and waiting for its clients (the rest).
    fn shares(&self) -> [f64; 4] {
        let cpu = self.broker_cpu / self.wall;
        let run_queue = self.broker_run_queue / self.wall;
        let idle = (1.0 - cpu - run_queue - self.broker_disk).max(0.0);
        [cpu, run_queue, self.broker_disk, idle]
    }

    /// What held the broker back most: its own CPU work, waiting for a
    /// core (taken by the load generator or other processes), the disk,
    /// or its clients (then the load generator is the bottleneck).
    fn limit(&self) -> &'static str {
        let [cpu, run_queue, disk, idle] = self.shares();
        if cpu + run_queue < disk.max(idle) {
            if disk >= idle {
                "the disk"
            } else {
                "the load generator"
            }
        } else if run_queue > cpu {
            "a CPU core (shared)"
        } else {
            "its own CPU work"
        }
    }
}

/// The CPU times of the broker and of this process, and how long the
/// broker has waited for a CPU.
#[derive(Clone, Copy)]
struct Mark {
    cpu: CpuMark,
    run_queue: f64,
}

impl Mark {
    fn take(broker: &Broker) -> Result<Mark, String> {
        Ok(Mark {
            cpu: CpuMark::take(broker)?,
            run_queue: run_queue_secs(broker.pid())?,
        })
    }
}

/// Seconds `pid` has spent runnable but waiting for a CPU (the second
/// field of /proc/PID/schedstat): what other processes, the load
/// generator among them, took from it.
fn run_queue_secs(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/schedstat");
    let text = fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    text.split_whitespace()
        .nth(1)
        .and_then(|ns| ns.parse::<u64>().ok())
        .map(|ns| ns as f64 / 1e9)
        .ok_or_else(|| format!("{path}: no run queue time in {text:?}"))
}

/// Whether `pid` is waiting for the disk (state D, uninterruptible sleep,
/// where fsync waits).
fn in_disk_wait(pid: u32) -> Result<bool, String> {
    Ok(stat_fields(&pid.to_string())?
        .first()
        .is_some_and(|s| s == "D"))
}

/// A publisher: QoS 1 messages to `fanin/<i>`, `FANIN_WINDOW` of them
/// unacknowledged at most, until `deadline`; returns once all are
/// acknowledged.
fn fan_in_publisher(
    mut s: TcpStream,
    i: usize,
    deadline: Instant,
    counts: &FanInCounts,
) -> Result<(), String> {
    let who = format!("publisher {i}");
    let topic = format!("fanin/{i}");
    let payload = [b'x'; FANIN_PAYLOAD];
    let (mut buf, mut acks) = (Vec::new(), [0u8; 4096]);
    let (mut unacked, mut partial, mut id) = (0, 0, 0u16);
    loop {
        buf.clear();
        while unacked < FANIN_WINDOW && Instant::now() < deadline && counts.ahead() < FANIN_AHEAD {
            id = id % u16::MAX + 1;
            put_publish(&mut buf, &topic, 1, false, id, &payload);
            unacked += 1;
            counts.sent.fetch_add(1, Ordering::Relaxed);
        }
        if !buf.is_empty() {
            s.write_all(&buf)
                .map_err(|e| io_context(&format!("{who}: sending PUBLISH"), e))?;
        }
        if unacked == 0 {
            if Instant::now() >= deadline {
                return Ok(());
            }
            // Held back until the subscriber catches up.
            thread::sleep(Duration::from_micros(50));
            continue;
        }
        let n = s
            .read(&mut acks)
            .map_err(|e| io_context(&format!("{who}: waiting for PUBACK"), e))?;
        if n == 0 {
            return Err(format!("{who}: the broker closed the connection"));
        }
        // Only PUBACKs, 4 bytes each, come to a publisher.
        let bytes = partial + n;
        unacked = unacked.saturating_sub(bytes / 4);
        partial = bytes % 4;
    }
}

/// The subscriber: reads what comes as fast as it can and acknowledges
/// each batch it read with one write.
fn fan_in_subscriber(s: TcpStream, counts: &FanInCounts) -> Result<(), String> {
    let who = "subscriber";
    let mut out = s
        .try_clone()
        .map_err(|e| format!("{who}: try_clone: {e}"))?;
    let mut input = BufReader::with_capacity(64 * 1024, s);
    let mut acks = Vec::new();
    loop {
        if input.buffer().is_empty() && !acks.is_empty() {
            out.write_all(&acks)
                .map_err(|e| io_context(&format!("{who}: sending PUBACK"), e))?;
            acks.clear();
        }
        let (first, body) = match read_packet(&mut input) {
            Ok(packet) => packet,
            Err(_) if counts.stop.load(Ordering::Relaxed) => return Ok(()),
            Err(e) => return Err(io_context(&format!("{who}: waiting for PUBLISH"), e)),
        };
        if first & 0xf0 != 0x30 {
            continue;
        }
        let ack = puback_for(first, &body).ok_or(format!("{who}: a PUBLISH not at QoS 1"))?;
        acks.extend_from_slice(&ack);
        counts.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

fn spawn(
    what: &str,
    f: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<JoinHandle<Result<(), String>>, String> {
    thread::Builder::new()
        .name(what.to_string())
        .spawn(f)
        .map_err(|e| format!("spawning the {what}: {e}"))
}

fn joined(h: JoinHandle<Result<(), String>>) -> Result<(), String> {
    h.join()
        .unwrap_or_else(|_| Err(String::from("a client thread panicked")))
}

/// The fan-in on `broker` for `secs`: `FANIN_PUBLISHERS` publishers, one
/// subscriber with a kept session at QoS 1, so that every message is
/// stored. Measured from the first message sent to the last delivered.
pub(super) fn fan_in(
    broker: &mut Broker,
    name: &str,
    db: &Path,
    secs: u64,
) -> Result<FanIn, String> {
    let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, broker.port);
    let pid = broker.pid();
    let who = "fanin-subscriber";
    let (mut sub, _) = connect_session(who, 0, dst, false)?;
    subscribe(&mut sub, who, 1, &[String::from("fanin/#")], 1)?;
    let pubs = (0..FANIN_PUBLISHERS)
        .map(|i| connect_client(&format!("fanin-publisher-{i}"), i + 1, dst))
        .collect::<Result<Vec<_>, _>>()?;
    let closer = sub
        .try_clone()
        .map_err(|e| format!("{who}: try_clone: {e}"))?;
    let counts = Arc::new(FanInCounts {
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let c = Arc::clone(&counts);
    let subscriber = spawn("subscriber", move || fan_in_subscriber(sub, &c))?;
    let mut watch = Watch::new(db.to_path_buf());
    eprintln!("{name}: fan-in for {secs} s");
    let ((start, end, written, snapshots, disk, publishers), fsyncs) =
        count_fsyncs(pid, name, || {
            let before = storage_written(pid)?;
            let start = Mark::take(broker)?;
            let deadline = start.cpu.at + Duration::from_secs(secs);
            let publishers = pubs
                .into_iter()
                .enumerate()
                .map(|(i, s)| {
                    let c = Arc::clone(&counts);
                    spawn("publisher", move || fan_in_publisher(s, i, deadline, &c))
                })
                .collect::<Result<Vec<_>, _>>()?;
            // Until every message sent is delivered, or deliveries stop.
            let (mut end, mut last, mut moved, mut snapshots) = (start, 0, start.cpu.at, 0);
            let (mut samples, mut disk) = (0u32, 0u32);
            loop {
                snapshots += u32::from(watch.changed());
                samples += 1;
                disk += u32::from(in_disk_wait(pid)?);
                let got = counts.delivered.load(Ordering::Relaxed);
                if got != last {
                    (end, last, moved) = (Mark::take(broker)?, got, Instant::now());
                }
                let publishing = publishers.iter().any(|h| !h.is_finished());
                let done = !publishing && got >= counts.sent.load(Ordering::Relaxed);
                if done || moved.elapsed() >= DRAIN_QUIET || subscriber.is_finished() {
                    break;
                }
                broker.check_alive()?;
                thread::sleep(POLL);
            }
            let written = storage_written(pid)? - before;
            let disk = f64::from(disk) / f64::from(samples);
            Ok((start, end, written, snapshots, disk, publishers))
        })?;
    for h in publishers {
        joined(h)?;
    }
    counts.stop.store(true, Ordering::Relaxed);
    let _ = closer.shutdown(std::net::Shutdown::Both);
    joined(subscriber)?;
    Ok(FanIn {
        sent: counts.sent.load(Ordering::Relaxed),
        delivered: counts.delivered.load(Ordering::Relaxed),
        wall: (end.cpu.at - start.cpu.at).as_secs_f64().max(1e-9),
        broker_cpu: end.cpu.broker - start.cpu.broker,
        broker_run_queue: end.run_queue - start.run_queue,
        broker_disk: disk,
        generator_cpu: end.cpu.generator - start.cpu.generator,
        written,
        fsyncs,
        snapshots,
        dropping: broker
            .log_tail()
            .lines()
            .rfind(|l| l.contains("dropp"))
            .map(|l| l.trim().to_string()),
    })
}

pub(super) fn print_fan_in(r: &Three<FanIn, FanIn>, secs: u64) {
    let mut rate = r.all("delivered msg/s", 0, |f| Some(f.rate()));
    let limits: Vec<String> = r
        .each(|f| f, |f| f)
        .into_iter()
        .map(|(name, f)| format!("{name} {}", f.limit()))
        .collect();
    let hungry: Vec<&str> = r
        .each(|f| f, |f| f)
        .into_iter()
        .filter(|(_, f)| f.generator_cpu > f.broker_cpu)
        .map(|(name, _)| name)
        .collect();
    rate.note = format!("limited most by: {}", limits.join(", "));
    if !hungry.is_empty() {
        rate.note += &format!("; the generator used more CPU than {}", hungry.join(", "));
    }
    let mut delivered = r.all("messages delivered", 0, |f| Some(f.delivered as f64));
    let lost: Vec<String> = r
        .each(|f| f, |f| f)
        .into_iter()
        .filter(|(_, f)| f.delivered < f.sent)
        .map(|(name, f)| {
            let said = f.dropping.as_deref().unwrap_or("nothing about it");
            format!("{name} {} of {} (its log: {said})", f.delivered, f.sent)
        })
        .collect();
    if !lost.is_empty() {
        delivered.note = format!("not all delivered: {}", lost.join(", "));
    }
    let lines = [
        delivered,
        r.all("seconds", 2, |f| Some(f.wall)),
        rate,
        r.all("msg per broker CPU s", 0, FanIn::per_cpu),
        r.all("broker on a CPU %", 0, |f| Some(100.0 * f.shares()[0])),
        r.all("broker waiting for a CPU %", 0, |f| {
            Some(100.0 * f.shares()[1])
        }),
        r.all("broker waiting for the disk % (sampled)", 0, |f| {
            Some(100.0 * f.shares()[2])
        }),
        r.all("broker waiting for clients %", 0, |f| {
            Some(100.0 * f.shares()[3])
        }),
        r.all("load generator CPU busy % (of one core)", 0, |f| {
            Some(100.0 * f.generator_cpu / f.wall)
        }),
        r.all("fsync + fdatasync calls", 0, |f| f.fsyncs.map(|n| n as f64)),
        r.all("messages per fsync", 1, |f| {
            f.fsyncs
                .filter(|&n| n > 0)
                .map(|n| f.delivered as f64 / n as f64)
        }),
        r.all("written to storage (bytes)", 0, |f| Some(f.written as f64)),
        r.all("written per message (bytes)", 1, |f| {
            Some(f.per_message(f.written))
        }),
        r.all("snapshots written (journal: compactions)", 0, |f| {
            Some(f64::from(f.snapshots))
        }),
    ];
    print_columns(
        &format!("fan-in {FANIN_PUBLISHERS}->1, QoS 1, {FANIN_PAYLOAD} B, kept session ({secs} s)"),
        &HEADS,
        &RATIOS,
        &lines,
    );
    println!(
        "\n({FANIN_PUBLISHERS} publishers, {FANIN_WINDOW} messages in flight each, to one \
         subscriber with clean session 0 at QoS 1 that acknowledges as fast as it reads, so \
         every message is stored; autosave_interval {FANIN_AUTOSAVE} for all. The broker's time: \
         on a CPU from /proc/PID/stat utime+stime, waiting for one from /proc/PID/schedstat, \
         waiting for the disk from its state (D) sampled every millisecond, waiting for \
         clients the rest; when that is the largest share, the load generator is the \
         bottleneck. The generator is this process.)"
    );
}
