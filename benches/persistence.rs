//! Persistence benchmark: what saving the state costs the storage (the SD
//! card of a gateway), roost vs mosquitto.
//!
//! Run with `cargo bench --bench persistence`. Each broker (roost, then
//! mosquitto when it is installed) runs with the same settings:
//! `persistence true`, `persistence_location DIR/`, `autosave_interval`
//! (default 2 s, so that several saves happen in a short run),
//! `max_queued_messages 1000` and `max_inflight_messages 20`, under a home
//! gateway's load:
//!
//! - 100 sensors (clean session), each publishing a small retained QoS 1
//!   reading to `sensors/<i>/state` every 10 s, spread evenly (one every
//!   100 ms), each waiting for its PUBACK;
//! - 5 dashboards with persistent sessions (clean session 0) subscribed to
//!   `sensors/#` at QoS 1, 2 of them offline so that messages queue for them.
//!
//! Before measuring, the sensors publish 1020 readings (queue plus in-flight
//! window) as fast as they are acknowledged: the offline dashboards' queues
//! fill, as the first minutes of this load would fill them, so every save
//! measured holds the state a gateway holds from then on.
//!
//! Measured per broker, between two saves seen `ROOST_BENCH_SECS` or more
//! apart (a save replaces the persistence file: its inode or mtime changes):
//!
//! - bytes written to storage: `write_bytes` less `cancelled_write_bytes`
//!   of `/proc/PID/io`, what the broker's writes dirtied in the page cache,
//!   in whole pages. The file system's journal and metadata come on top and
//!   are not counted. (`wchar` is not usable: it counts socket writes too.)
//! - the saves seen, the size of the file, bytes per save; then bytes per
//!   hour at `autosave_interval` 300 and 1800: bytes per save x saves per
//!   hour, since each save rewrites the whole state and this load keeps it
//!   the same size;
//! - the time one save takes, from SIGUSR1 to the file replaced (5 saves,
//!   each right after an autosave so that none comes in between), and for
//!   roost also as it logs it (which includes its directory fsync);
//! - as checks: the messages each offline dashboard gets when it reconnects
//!   (what the file holds for it), and that the online dashboards got every
//!   reading.
//!
//! Environment:
//! - `ROOST_BENCH_SECS`: seconds of saves measured (default 20).
//! - `ROOST_BENCH_AUTOSAVE`: `autosave_interval` in the run (default 2).
//! - `ROOST_BENCH_PERSIST_DIR`: where the persistence directories are made
//!   (default `bench-persist` in the target directory). It must be on the
//!   storage to measure, not tmpfs (where nothing reaches a disk); on a
//!   gateway, point it at the SD card.
//! - `ROOST_BENCH_BROKERS`, `ROOST_BENCH_MOSQUITTO`: as for the memory bench
//!   (which brokers; where mosquitto is).
//!
//! Every wait is bounded (a save must come within `autosave_interval` + 11 s,
//! every socket read within 10 s) and a watchdog ends the run (killing the
//! brokers) when it takes far longer than planned. The persistence
//! directories are removed at the end (and, if a run was killed, at the start
//! of the next). Traffic goes to 127.0.0.1 only.

// This bench reads no memory figures and opens few sockets: the helpers for
// those go unused here.
#[allow(dead_code)]
mod common;

use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{
    ANSWER_TIMEOUT, Broker, Brokers, Pair, connect_client, connect_session, disconnect, env_usize,
    install_guards, io_context, print_table, publish_packet, read_puback, receive_publish,
    start_mosquitto_with, start_roost_with, subscribe,
};

const SENSORS: usize = 100;
/// Each sensor publishes one reading this often.
const PERIOD: Duration = Duration::from_secs(10);
const DASHBOARDS: usize = 5;
/// The last `OFFLINE` dashboards subscribe, then go away.
const OFFLINE: usize = 2;
const FILTER: &str = "sensors/#";
/// Both brokers' limits per session (their defaults, set explicitly).
const MAX_QUEUED: usize = 1000;
const MAX_INFLIGHT: usize = 20;
/// Readings published before measuring: enough to fill an offline
/// session's queue and in-flight window.
const FILL: usize = MAX_QUEUED + MAX_INFLIGHT;
/// Saves timed from SIGUSR1.
const TIMED_SAVES: usize = 5;
/// The `autosave_interval`s the hourly figures are given for.
const EXTRAPOLATE: [u64; 2] = [300, 1800];
/// How often the persistence file is looked at; closer while a SIGUSR1
/// save is timed.
const POLL: Duration = Duration::from_millis(1);
const SIGNAL_POLL: Duration = Duration::from_micros(100);
/// A reconnected offline dashboard has all its messages once none has come
/// for this long.
const DRAIN_QUIET: Duration = Duration::from_secs(2);

fn topic(sensor: usize) -> String {
    format!("sensors/{sensor:03}/state")
}

/// A plausible reading: temperature, humidity, battery, sequence number.
fn reading(sensor: usize, seq: u64) -> Vec<u8> {
    format!(
        r#"{{"temp":{:.1},"hum":{},"bat":{},"seq":{seq}}}"#,
        18.0 + (sensor % 70) as f64 / 10.0,
        40 + sensor % 30,
        100 - sensor % 20
    )
    .into_bytes()
}

fn dashboard_id(k: usize) -> String {
    format!("dashboard-{k}")
}

// ---------------------------------------------------------------------------
// The load

/// The sensors, publishing in turn, each reading acknowledged before the
/// next is sent.
struct Sensors {
    conns: Vec<TcpStream>,
    published: u64,
    /// When the steady load's next reading is due, once it has started.
    next: Option<Instant>,
}

impl Sensors {
    fn connect(dst: SocketAddrV4) -> Result<Sensors, String> {
        let conns = (0..SENSORS)
            .map(|i| connect_client(&format!("sensor-{i:03}"), i, dst))
            .collect::<Result<_, _>>()?;
        Ok(Sensors {
            conns,
            published: 0,
            next: None,
        })
    }

    /// One retained QoS 1 reading from the next sensor in turn.
    fn publish_next(&mut self) -> Result<(), String> {
        let n = self.published;
        let i = (n % SENSORS as u64) as usize;
        let who = format!("sensor-{i:03}");
        let packet = publish_packet(
            &topic(i),
            1,
            true,
            (n % 0xffff + 1) as u16,
            &reading(i, n / SENSORS as u64),
        );
        let s = &mut self.conns[i];
        s.write_all(&packet)
            .map_err(|e| io_context(&format!("{who}: sending PUBLISH"), e))?;
        read_puback(s, &who)?;
        self.published += 1;
        Ok(())
    }

    /// Publishes what is due at the steady rate (one sensor every
    /// PERIOD / SENSORS), starting the clock on the first call.
    fn keep_up(&mut self) -> Result<(), String> {
        let step = PERIOD / SENSORS as u32;
        let now = Instant::now();
        let mut next = self.next.unwrap_or(now);
        while next <= now {
            self.publish_next()?;
            next += step;
        }
        self.next = Some(next);
        Ok(())
    }
}

/// The online dashboards: a thread each reads and acknowledges what it is
/// sent and counts it.
struct Readers {
    conns: Vec<TcpStream>,
    received: Vec<Arc<AtomicU64>>,
    threads: Vec<JoinHandle<Result<(), String>>>,
    stopping: Arc<AtomicBool>,
}

impl Readers {
    fn spawn(dashboards: Vec<(String, TcpStream)>) -> Result<Readers, String> {
        let stopping = Arc::new(AtomicBool::new(false));
        let mut readers = Readers {
            conns: Vec::new(),
            received: Vec::new(),
            threads: Vec::new(),
            stopping: Arc::clone(&stopping),
        };
        for (who, mut s) in dashboards {
            readers.conns.push(
                s.try_clone()
                    .map_err(|e| format!("{who}: try_clone: {e}"))?,
            );
            let received = Arc::new(AtomicU64::new(0));
            readers.received.push(Arc::clone(&received));
            let stopping = Arc::clone(&stopping);
            // The load never pauses for ANSWER_TIMEOUT, so a read that
            // times out means the broker stopped sending.
            let thread = thread::Builder::new()
                .name(who.clone())
                .spawn(move || {
                    loop {
                        match receive_publish(&mut s, &who) {
                            Ok(true) => {
                                received.fetch_add(1, Ordering::Relaxed);
                            }
                            _ if stopping.load(Ordering::Relaxed) => return Ok(()),
                            Ok(false) => {
                                return Err(format!(
                                    "{who}: no message for {} s",
                                    ANSWER_TIMEOUT.as_secs()
                                ));
                            }
                            Err(e) => return Err(e),
                        }
                    }
                })
                .map_err(|e| format!("spawning a reader: {e}"))?;
            readers.threads.push(thread);
        }
        Ok(readers)
    }

    /// Waits until every online dashboard has received `n` messages.
    fn wait_for(&self, n: u64) -> Result<(), String> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let least = self
                .received
                .iter()
                .map(|r| r.load(Ordering::Relaxed))
                .min()
                .unwrap_or(n);
            if least >= n {
                return Ok(());
            }
            if Instant::now() >= deadline || self.threads.iter().any(|t| t.is_finished()) {
                return Err(format!(
                    "an online dashboard received {least} of the {n} readings published"
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(self) -> Result<(), String> {
        self.stopping.store(true, Ordering::Relaxed);
        for s in &self.conns {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        for t in self.threads {
            t.join().map_err(|_| String::from("a reader panicked"))??;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Watching the saves

/// The persistence file as last seen. A save writes a new file and renames
/// it over the old one, so each one changes the inode or the mtime.
struct Watch {
    path: PathBuf,
    seen: Option<(u64, i64, i64, u64)>,
}

impl Watch {
    fn new(path: PathBuf) -> Watch {
        let seen = Watch::look(&path);
        Watch { path, seen }
    }

    fn look(path: &Path) -> Option<(u64, i64, i64, u64)> {
        fs::metadata(path)
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
    }

    /// Keeps the sensors publishing until the file is replaced, looking
    /// every `poll`; returns when the change was seen.
    fn next_save(
        &mut self,
        sensors: &mut Sensors,
        timeout: Duration,
        poll: Duration,
    ) -> Result<Instant, String> {
        let deadline = Instant::now() + timeout;
        loop {
            sensors.keep_up()?;
            let now = Watch::look(&self.path);
            if now.is_some() && now != self.seen {
                self.seen = now;
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} was not saved within {} s",
                    self.path.display(),
                    timeout.as_secs()
                ));
            }
            thread::sleep(poll);
        }
    }
}

/// Bytes the process had written to storage: `write_bytes` less
/// `cancelled_write_bytes` (pages truncated before they were written out).
fn storage_written(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/io");
    let text = fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    let field = |name: &str| -> Result<u64, String> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("{path}: no {name}"))
    };
    Ok(field("write_bytes:")?.saturating_sub(field("cancelled_write_bytes:")?))
}

/// The times in roost's `persistence: saved ... in T ms` log lines.
fn logged_save_ms(log: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains("persistence: saved"))
        .filter_map(|l| {
            l.trim()
                .rsplit_once(" in ")?
                .1
                .strip_suffix(" ms")?
                .parse()
                .ok()
        })
        .collect()
}

// ---------------------------------------------------------------------------
// One broker

/// What one broker showed.
struct Figures {
    /// Saves seen after the first one of the window, and the time they took.
    saves: u32,
    window: Duration,
    /// Bytes written to storage over those saves.
    written: u64,
    file_size: u64,
    published: u64,
    /// Messages each offline dashboard received when it came back.
    queued: Vec<u64>,
    signal_ms: Vec<f64>,
    logged_ms: Vec<f64>,
}

impl Figures {
    fn per_save(&self) -> f64 {
        self.written as f64 / f64::from(self.saves)
    }

    /// Distinct messages in the state: the retained readings and what is
    /// queued for the offline dashboards (the same messages for both; the
    /// queues hold the oldest readings, the retained ones are the newest).
    fn messages_held(&self) -> u64 {
        SENSORS as u64 + self.queued.iter().copied().max().unwrap_or(0)
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// The dashboards subscribe; the first ones stay online, reading, the
/// others go away with their sessions kept.
fn dashboards(dst: SocketAddrV4) -> Result<Readers, String> {
    let mut online = Vec::new();
    for k in 0..DASHBOARDS {
        let who = dashboard_id(k);
        let (mut s, _) = connect_session(&who, k, dst, false)?;
        subscribe(&mut s, &who, 1, &[String::from(FILTER)], 1)?;
        if k < DASHBOARDS - OFFLINE {
            online.push((who, s));
        } else {
            disconnect(s, &who)?;
        }
    }
    Readers::spawn(online)
}

/// The offline dashboards come back: how many messages each receives.
fn collect_offline(dst: SocketAddrV4) -> Result<Vec<u64>, String> {
    (DASHBOARDS - OFFLINE..DASHBOARDS)
        .map(|k| {
            let who = dashboard_id(k);
            let (mut s, present) = connect_session(&who, k, dst, false)?;
            if !present {
                return Err(format!("{who}: came back without its session"));
            }
            s.set_read_timeout(Some(DRAIN_QUIET))
                .map_err(|e| format!("{who}: set_read_timeout: {e}"))?;
            let mut n = 0;
            while receive_publish(&mut s, &who)? {
                n += 1;
            }
            disconnect(s, &who)?;
            Ok(n)
        })
        .collect()
}

/// Milliseconds from SIGUSR1 to the file replaced, for `TIMED_SAVES` saves,
/// each asked for right after an autosave so that the next one is far off.
fn time_saves(
    pid: u32,
    watch: &mut Watch,
    sensors: &mut Sensors,
    save_timeout: Duration,
) -> Result<Vec<f64>, String> {
    let mut ms = Vec::new();
    for _ in 0..TIMED_SAVES {
        watch.next_save(sensors, save_timeout, POLL)?;
        // SAFETY: plain syscall on our own, not yet reaped, child.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGUSR1);
        }
        let sent = Instant::now();
        let done = watch.next_save(sensors, ANSWER_TIMEOUT, SIGNAL_POLL)?;
        ms.push((done - sent).as_secs_f64() * 1e3);
    }
    Ok(ms)
}

fn measure(broker: &mut Broker, db: PathBuf, autosave: u64, secs: u64) -> Result<Figures, String> {
    let name = broker.name;
    let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, broker.port);
    let pid = broker.pid();
    let readers = dashboards(dst)?;
    let mut sensors = Sensors::connect(dst)?;
    eprintln!("{name}: filling the offline dashboards' queues");
    for _ in 0..FILL {
        sensors.publish_next()?;
    }
    readers.wait_for(sensors.published)?;

    // mosquitto saves once more than `autosave_interval` whole seconds
    // have passed, so up to a second later than roost.
    let save_timeout = Duration::from_secs(autosave + 1) + ANSWER_TIMEOUT;
    let mut watch = Watch::new(db.clone());
    eprintln!("{name}: load running; measuring saves for {secs} s");
    let start = watch.next_save(&mut sensors, save_timeout, POLL)?;
    let written_before = storage_written(pid)?;
    let mut saves = 0;
    let (end, written_after) = loop {
        let at = watch.next_save(&mut sensors, save_timeout, POLL)?;
        let written = storage_written(pid)?;
        saves += 1;
        if at - start >= Duration::from_secs(secs) {
            break (at, written);
        }
    };
    let file_size = fs::metadata(&db)
        .map_err(|e| format!("{}: {e}", db.display()))?
        .len();
    if written_after == written_before {
        return Err(format!(
            "write_bytes of pid {pid} did not grow over {saves} saves of a {file_size}-byte \
             file: is {} on tmpfs?",
            db.display()
        ));
    }

    eprintln!("{name}: timing {TIMED_SAVES} saves from SIGUSR1");
    let signal_ms = time_saves(pid, &mut watch, &mut sensors, save_timeout)?;
    let published = sensors.published;
    drop(sensors);
    readers.wait_for(published)?;
    readers.stop()?;
    Ok(Figures {
        saves,
        window: end - start,
        written: written_after - written_before,
        file_size,
        published,
        queued: collect_offline(dst)?,
        signal_ms,
        logged_ms: logged_save_ms(&broker.log_tail()),
    })
}

/// A directory made empty for one broker and removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new(dir: PathBuf) -> Result<Scratch, String> {
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(format!("removing {}: {e}", dir.display()));
            }
            _ => {}
        }
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Starts a broker with persistence in `root`/`name` and measures it.
fn run(
    name: &str,
    root: &Path,
    db_file: &str,
    start: &dyn Fn(&[&str]) -> Result<Broker, String>,
    autosave: u64,
    secs: u64,
) -> Result<Figures, String> {
    let dir = Scratch::new(root.join(name))?;
    let conf = [
        String::from("persistence true"),
        // mosquitto wants the trailing slash; roost takes either.
        format!("persistence_location {}/", dir.0.display()),
        format!("autosave_interval {autosave}"),
        format!("max_queued_messages {MAX_QUEUED}"),
        format!("max_inflight_messages {MAX_INFLIGHT}"),
    ];
    let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
    let mut broker = start(&conf)?;
    eprintln!("{name}: pid {}, port {}", broker.pid(), broker.port);
    let result = measure(&mut broker, dir.0.join(db_file), autosave, secs).map_err(|e| {
        let alive = broker.check_alive().err().unwrap_or_default();
        format!("{e}\n{alive}\n  last log lines:\n{}", broker.log_tail())
    });
    broker.stop();
    result
}

// ---------------------------------------------------------------------------
// Where the files go

/// `ROOST_BENCH_PERSIST_DIR`, or `bench-persist` in the target directory
/// (beside `release/`, on the build's disk: /tmp may be tmpfs), made and
/// made absolute.
fn persist_root() -> Result<PathBuf, String> {
    let dir = match std::env::var_os("ROOST_BENCH_PERSIST_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_BIN_EXE_roost"))
            .ancestors()
            .nth(2)
            .ok_or("no target directory above the roost binary")?
            .join("bench-persist"),
    };
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    fs::canonicalize(&dir).map_err(|e| format!("{}: {e}", dir.display()))
}

/// The type of the file system `dir` is on (`ext4`, `tmpfs`, ...): that of
/// the longest mount point holding it in /proc/self/mountinfo (the last
/// such line, when mounts are stacked).
fn fs_type(dir: &Path) -> Result<String, String> {
    let info = "/proc/self/mountinfo";
    let text = fs::read_to_string(info).map_err(|e| format!("reading {info}: {e}"))?;
    text.lines()
        .filter_map(|l| {
            let (mount, fstype) = l.split_once(" - ")?;
            let point = mount.split(' ').nth(4)?.replace("\\040", " ");
            let fstype = fstype.split(' ').next()?;
            dir.starts_with(&point)
                .then(|| (point.len(), fstype.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, t)| t)
        .ok_or_else(|| format!("{}: no mount point in {info}", dir.display()))
}

// ---------------------------------------------------------------------------

fn print_report(p: &Pair<Figures>, autosave: u64, secs: u64) {
    let msg = topic(0).len() + reading(0, 0).len();
    let mut queued = p.row("queued for an offline dashboard (msgs)", 0, |f| {
        f.queued.iter().copied().min().map(|n| n as f64)
    });
    let uneven: Vec<&str> = [("roost", &p.roost), ("mosquitto", &p.mosq)]
        .into_iter()
        .filter_map(|(name, f)| {
            let q = &f.as_ref()?.queued;
            (q.iter().min() != q.iter().max()).then_some(name)
        })
        .collect();
    if !uneven.is_empty() {
        queued.note = format!("the two got different counts from {}", uneven.join(", "));
    }
    let mut rows = vec![
        p.row(
            format!("readings published ({FILL} first, then 10/s)"),
            0,
            |f| Some(f.published as f64),
        ),
        queued,
        p.row("saves seen", 0, |f| Some(f64::from(f.saves))),
        p.row("seconds between saves", 2, |f| {
            Some(f.window.as_secs_f64() / f64::from(f.saves))
        }),
        p.row("persistence file (bytes)", 0, |f| Some(f.file_size as f64)),
        p.row(
            format!("file bytes per message held ({msg} B topic+payload)"),
            0,
            |f| Some(f.file_size as f64 / f.messages_held() as f64),
        ),
        p.row("written to storage over the saves (bytes)", 0, |f| {
            Some(f.written as f64)
        }),
        p.row("written per save (bytes)", 0, |f| Some(f.per_save())),
        p.row("written per save / file size", 2, |f| {
            Some(f.per_save() / f.file_size as f64)
        }),
        p.row(
            format!("one save, SIGUSR1 to file replaced (ms, median of {TIMED_SAVES})"),
            1,
            |f| median(&f.signal_ms),
        ),
        p.row("one save, SIGUSR1 to file replaced (ms, fastest)", 1, |f| {
            f.signal_ms.iter().copied().reduce(f64::min)
        }),
        p.row("one save, as roost logs it (ms, median)", 0, |f| {
            median(&f.logged_ms)
        }),
    ];
    for interval in EXTRAPOLATE {
        rows.push(p.row(
            format!("written per hour, autosave_interval {interval} (KiB)"),
            0,
            |f| Some(f.per_save() * 3600.0 / interval as f64 / 1024.0),
        ));
    }
    print_table(
        &format!("persistence (autosave_interval {autosave}, {secs} s of saves)"),
        &rows,
    );
    println!(
        "\n(written: write_bytes - cancelled_write_bytes of /proc/PID/io: the file data the \
         broker wrote, in whole pages; the file system's journal and metadata come on top. \
         wchar is not used: it counts socket writes too.\n\
         written per hour = written per save x 3600 / autosave_interval: each save rewrites \
         the whole state, which this load keeps the same size once the offline queues are \
         full.\n\
         mosquitto saves when more than autosave_interval whole seconds have passed, so every \
         interval + 1 s. roost's logged time includes its directory fsync.)"
    );
}

fn main() {
    let secs = env_usize("ROOST_BENCH_SECS", 20) as u64;
    let autosave = env_usize("ROOST_BENCH_AUTOSAVE", 2) as u64;
    let brokers = Brokers::from_env();
    let root = match persist_root() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("persistence directory: {e}");
            std::process::exit(2);
        }
    };
    let fs = fs_type(&root).unwrap_or_else(|e| {
        eprintln!("note: {e}");
        String::from("unknown file system")
    });
    if fs == "tmpfs" || fs == "ramfs" {
        eprintln!(
            "{} is on {fs}, whose writes never reach a disk; set ROOST_BENCH_PERSIST_DIR to a \
             directory on the storage to measure",
            root.display()
        );
        std::process::exit(2);
    }
    // Per broker: a save to wait for before, during and after the window,
    // the timed saves each after an autosave, start-up and the drains.
    let per_broker = secs + (TIMED_SAVES as u64 * 2 + 4) * (autosave + 1) + 60;
    install_guards("persistence", Duration::from_secs(60 + 2 * per_broker));

    brokers.print_header();
    println!("persistence directories: {} ({fs})", root.display());
    println!(
        "load: {SENSORS} sensors, each a retained QoS 1 reading every {} s; {DASHBOARDS} \
         dashboards (clean session 0, {FILTER} at QoS 1), {OFFLINE} of them offline",
        PERIOD.as_secs()
    );
    let wall = Instant::now();
    let mut failures = Vec::new();
    let mut one = |name: &str, db_file: &str, start: &dyn Fn(&[&str]) -> Result<Broker, String>| {
        run(name, &root, db_file, start, autosave, secs)
            .map_err(|e| failures.push(format!("{name}: {e}")))
            .ok()
    };
    let roost = if brokers.roost {
        one("roost", "roost.db", &start_roost_with)
    } else {
        None
    };
    let mosq = match &brokers.mosquitto {
        Some(bin) => one("mosquitto", "mosquitto.db", &|conf: &[&str]| {
            start_mosquitto_with(bin, conf)
        }),
        None => None,
    };
    // Only empty: a directory given in ROOST_BENCH_PERSIST_DIR may hold more.
    let _ = fs::remove_dir(&root);

    print_report(&Pair { roost, mosq }, autosave, secs);
    println!("(bench took {:.1} s)", wall.elapsed().as_secs_f64());
    if !failures.is_empty() {
        eprintln!();
        for f in &failures {
            eprintln!("FAILED {f}");
        }
        std::process::exit(1);
    }
}
