//! The home gateway's load (100 sensors, 5 dashboards, 2 of them
//! offline) and what it costs the storage in snapshot and journal mode.

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::common::{
    ANSWER_TIMEOUT, Broker, connect_client, connect_session, disconnect, io_context, print_columns,
    publish_packet, read_puback, receive_publish, subscribe,
};
use super::fsync::count_fsyncs;
use super::{
    DRAIN_QUIET, HEADS, MAX_INFLIGHT, MAX_QUEUED, POLL, RATIOS, ROOST_DB, Three, storage_written,
};

const SENSORS: usize = 100;
/// Each sensor publishes one reading this often.
const PERIOD: Duration = Duration::from_secs(10);
const DASHBOARDS: usize = 5;
/// The last `OFFLINE` dashboards subscribe, then go away.
const OFFLINE: usize = 2;
const FILTER: &str = "sensors/#";
/// Readings published before measuring: enough to fill an offline
/// session's queue and in-flight window.
const FILL: usize = MAX_QUEUED + MAX_INFLIGHT;
/// Saves timed from SIGUSR1.
pub(super) const TIMED_SAVES: usize = 5;
/// The `autosave_interval`s the hourly figures are given for.
const EXTRAPOLATE: [u64; 2] = [300, 1800];
/// How often the persistence file is looked at while a SIGUSR1 save is
/// timed.
const SIGNAL_POLL: Duration = Duration::from_micros(100);
/// roost compacts its journal once it is larger than this or than the last
/// snapshot (`COMPACT_AT` in src/persist/mod.rs).
const COMPACT_AT: u64 = 1024 * 1024;

pub(super) fn print_load() {
    println!(
        "load: {SENSORS} sensors, each a retained QoS 1 reading every {} s; {DASHBOARDS} \
         dashboards (clean session 0, {FILTER} at QoS 1), {OFFLINE} of them offline",
        PERIOD.as_secs()
    );
}

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
pub(super) struct Watch {
    path: PathBuf,
    seen: Option<(u64, i64, i64, u64)>,
}

impl Watch {
    pub(super) fn new(path: PathBuf) -> Watch {
        let seen = Watch::look(&path);
        Watch { path, seen }
    }

    fn look(path: &Path) -> Option<(u64, i64, i64, u64)> {
        fs::metadata(path)
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
    }

    /// Whether the file was replaced since it was last looked at.
    pub(super) fn changed(&mut self) -> bool {
        let now = Watch::look(&self.path);
        let changed = now.is_some() && now != self.seen;
        if changed {
            self.seen = now;
        }
        changed
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
            if self.changed() {
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
// The home gateway's load on one broker

/// What every run of the load checks: the readings published, and the
/// messages each offline dashboard received when it came back.
struct Checks {
    published: u64,
    queued: Vec<u64>,
}

impl Checks {
    /// Distinct messages in the state: the retained readings and what is
    /// queued for the offline dashboards (the same messages for both; the
    /// queues hold the oldest readings, the retained ones are the newest).
    fn messages_held(&self) -> u64 {
        SENSORS as u64 + self.queued.iter().copied().max().unwrap_or(0)
    }
}

/// One broker under the home gateway's load.
pub(super) struct Gateway<T> {
    figures: T,
    checks: Checks,
}

/// Snapshot mode (roost's default, mosquitto's only one): the saves.
pub(super) struct Saves {
    /// Saves seen after the first one of the window, and the time they took.
    saves: u32,
    window: Duration,
    /// Bytes written to storage over those saves.
    written: u64,
    fsyncs: Option<u64>,
    file_size: u64,
    signal_ms: Vec<f64>,
    logged_ms: Vec<f64>,
}

impl Saves {
    fn per_save(&self) -> f64 {
        self.written as f64 / f64::from(self.saves)
    }

    fn per_hour(&self, interval: u64) -> f64 {
        self.per_save() * 3600.0 / interval as f64
    }
}

/// Journal mode: the journal over a window of steady load, and one
/// compaction.
pub(super) struct Journaled {
    window: Duration,
    /// Readings published in the window.
    readings: u64,
    /// Bytes written to storage in the window, and the compactions in it.
    written: u64,
    compactions: u32,
    fsyncs: Option<u64>,
    /// Bytes the journal file grew by in the window.
    grown: u64,
    /// The snapshot a compaction wrote, and the bytes it cost.
    file_size: u64,
    compaction_written: u64,
}

impl Journaled {
    /// Bytes written in the window by the journal alone: less the
    /// compactions seen in it.
    fn journal_written(&self) -> f64 {
        self.written
            .saturating_sub(u64::from(self.compactions) * self.compaction_written) as f64
    }

    /// Compactions an hour: the journal growing past roost's limit at this
    /// load, plus one every `autosave_interval` (0: none).
    fn compactions_per_hour(&self, autosave: u64) -> f64 {
        let limit = COMPACT_AT.max(self.file_size) as f64;
        let by_size = self.grown as f64 / limit * 3600.0 / self.window.as_secs_f64();
        let by_autosave = if autosave > 0 {
            3600.0 / autosave as f64
        } else {
            0.0
        };
        by_size + by_autosave
    }

    fn per_hour(&self, autosave: u64) -> f64 {
        self.journal_written() * 3600.0 / self.window.as_secs_f64()
            + self.compactions_per_hour(autosave) * self.compaction_written as f64
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

/// The home gateway's load on `broker`: the dashboards subscribe, the
/// offline ones' queues are filled, then `measure` runs while the sensors
/// keep up their rate; then the checks.
fn gateway<T>(
    broker: &Broker,
    name: &str,
    measure: impl FnOnce(&mut Sensors) -> Result<T, String>,
) -> Result<Gateway<T>, String> {
    let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, broker.port);
    let readers = dashboards(dst)?;
    let mut sensors = Sensors::connect(dst)?;
    eprintln!("{name}: filling the offline dashboards' queues");
    for _ in 0..FILL {
        sensors.publish_next()?;
    }
    readers.wait_for(sensors.published)?;
    let figures = measure(&mut sensors)?;
    let published = sensors.published;
    drop(sensors);
    readers.wait_for(published)?;
    readers.stop()?;
    let checks = Checks {
        published,
        queued: collect_offline(dst)?,
    };
    Ok(Gateway { figures, checks })
}

/// Sends SIGUSR1 (save now) to `pid`.
fn ask_save(pid: u32) {
    // SAFETY: plain syscall on our own, not yet reaped, child.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGUSR1);
    }
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
        ask_save(pid);
        let sent = Instant::now();
        let done = watch.next_save(sensors, ANSWER_TIMEOUT, SIGNAL_POLL)?;
        ms.push((done - sent).as_secs_f64() * 1e3);
    }
    Ok(ms)
}

/// Snapshot mode: the bytes written between two saves `secs` or more
/// apart, then the time of a save.
pub(super) fn measure_saves(
    broker: &Broker,
    name: &str,
    db: &Path,
    autosave: u64,
    secs: u64,
) -> Result<Gateway<Saves>, String> {
    let pid = broker.pid();
    let mut run = gateway(broker, name, |sensors| {
        // mosquitto saves once more than `autosave_interval` whole seconds
        // have passed, so up to a second later than roost.
        let save_timeout = Duration::from_secs(autosave + 1) + ANSWER_TIMEOUT;
        let mut watch = Watch::new(db.to_path_buf());
        eprintln!("{name}: load running; measuring saves for {secs} s");
        let start = watch.next_save(sensors, save_timeout, POLL)?;
        let ((saves, end, written), fsyncs) = count_fsyncs(pid, name, || {
            let before = storage_written(pid)?;
            let mut saves = 0;
            loop {
                let at = watch.next_save(sensors, save_timeout, POLL)?;
                saves += 1;
                if at - start >= Duration::from_secs(secs) {
                    return Ok((saves, at, storage_written(pid)? - before));
                }
            }
        })?;
        let file_size = file_size(db)?;
        if written == 0 {
            return Err(format!(
                "write_bytes of pid {pid} did not grow over {saves} saves of a {file_size}-byte \
                 file: is {} on tmpfs?",
                db.display()
            ));
        }
        eprintln!("{name}: timing {TIMED_SAVES} saves from SIGUSR1");
        Ok(Saves {
            saves,
            window: end - start,
            written,
            fsyncs,
            file_size,
            signal_ms: time_saves(pid, &mut watch, sensors, save_timeout)?,
            logged_ms: Vec::new(),
        })
    })?;
    // By now roost has logged the last save it made.
    run.figures.logged_ms = logged_save_ms(&broker.log_tail());
    Ok(run)
}

/// Journal mode: the bytes written over `secs` of steady load, the
/// journal's growth and the compactions in that time, then what one
/// compaction (asked for with SIGUSR1) writes.
pub(super) fn measure_journal(
    broker: &Broker,
    name: &str,
    dir: &Path,
    secs: u64,
) -> Result<Gateway<Journaled>, String> {
    let pid = broker.pid();
    let db = dir.join(ROOST_DB);
    let journal = dir.join(format!("{ROOST_DB}.journal"));
    gateway(broker, name, |sensors| {
        let mut snapshots = Watch::new(db.clone());
        eprintln!("{name}: load running; measuring the journal for {secs} s");
        let published = sensors.published;
        let ((window, written, compactions, grown), fsyncs) = count_fsyncs(pid, name, || {
            let before = storage_written(pid)?;
            let start = Instant::now();
            let (mut compactions, mut grown, mut len) = (0, 0, file_size(&journal)?);
            while start.elapsed() < Duration::from_secs(secs) {
                sensors.keep_up()?;
                compactions += u32::from(snapshots.changed());
                // A compaction starts the journal afresh: what it took in
                // since the last look (a millisecond's worth) is missed.
                let now = file_size(&journal)?;
                grown += now.saturating_sub(len);
                len = now;
                thread::sleep(POLL);
            }
            let written = storage_written(pid)? - before;
            Ok((start.elapsed(), written, compactions, grown))
        })?;
        let readings = sensors.published - published;
        if written == 0 {
            return Err(format!(
                "write_bytes of pid {pid} did not grow over {readings} readings journaled: \
                 is {} on tmpfs?",
                dir.display()
            ));
        }
        eprintln!("{name}: one compaction, from SIGUSR1");
        let (before, old) = (storage_written(pid)?, inode(&journal)?);
        ask_save(pid);
        snapshots.next_save(sensors, ANSWER_TIMEOUT, POLL)?;
        // The journal starts afresh, as a new file, once the snapshot is in.
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        while inode(&journal)? == old {
            if Instant::now() >= deadline {
                return Err(format!("{} was not started afresh", journal.display()));
            }
            sensors.keep_up()?;
            thread::sleep(POLL);
        }
        Ok(Journaled {
            window,
            readings,
            written,
            compactions,
            fsyncs,
            grown,
            file_size: file_size(&db)?,
            compaction_written: storage_written(pid)? - before,
        })
    })
}

fn file_size(path: &Path) -> Result<u64, String> {
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn inode(path: &Path) -> Result<u64, String> {
    fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub(super) type GatewayRuns = Three<Gateway<Saves>, Gateway<Journaled>>;

pub(super) fn print_gateway(r: &GatewayRuns, autosave: u64, secs: u64) {
    let msg = topic(0).len() + reading(0, 0).len();
    let readings_per_hour = 3600.0 * SENSORS as f64 / PERIOD.as_secs_f64();
    let check = |label: String, f: &dyn Fn(&Checks) -> Option<f64>| {
        r.line(label, 0, |g| f(&g.checks), |g| f(&g.checks))
    };
    let mut queued = check("queued for an offline dashboard (msgs)".into(), &|c| {
        c.queued.iter().copied().min().map(|n| n as f64)
    });
    let uneven: Vec<&str> = r
        .each(|g| &g.checks, |g| &g.checks)
        .into_iter()
        .filter(|(_, c)| c.queued.iter().min() != c.queued.iter().max())
        .map(|(name, _)| name)
        .collect();
    if !uneven.is_empty() {
        queued.note = format!("the two got different counts from {}", uneven.join(", "));
    }
    let s = |f: fn(&Saves) -> f64| move |g: &Gateway<Saves>| Some(f(&g.figures));
    let j = |f: fn(&Journaled) -> f64| move |g: &Gateway<Journaled>| Some(f(&g.figures));
    let none = |_: &Gateway<Journaled>| None;
    let mut lines = vec![
        check(
            format!("readings published ({FILL} first, then 10/s)"),
            &|c| Some(c.published as f64),
        ),
        queued,
        r.line(
            "seconds measured",
            1,
            s(|f| f.window.as_secs_f64()),
            j(|f| f.window.as_secs_f64()),
        ),
        r.line(
            "snapshots written then (journal: compactions)",
            0,
            s(|f| f64::from(f.saves)),
            j(|f| f64::from(f.compactions)),
        ),
        r.line(
            "seconds between saves",
            2,
            s(|f| f.window.as_secs_f64() / f64::from(f.saves)),
            none,
        ),
        r.line(
            "snapshot file (bytes)",
            0,
            s(|f| f.file_size as f64),
            j(|f| f.file_size as f64),
        ),
        r.line(
            format!("snapshot bytes per message held ({msg} B topic+payload)"),
            0,
            |g| Some(g.figures.file_size as f64 / g.checks.messages_held() as f64),
            |g| Some(g.figures.file_size as f64 / g.checks.messages_held() as f64),
        ),
        r.line(
            "written to storage then (bytes)",
            0,
            s(|f| f.written as f64),
            j(|f| f.written as f64),
        ),
        r.line(
            "fsync + fdatasync calls then",
            0,
            |g| g.figures.fsyncs.map(|n| n as f64),
            |g| g.figures.fsyncs.map(|n| n as f64),
        ),
        r.line(
            "written per save (journal: per compaction, bytes)",
            0,
            s(Saves::per_save),
            j(|f| f.compaction_written as f64),
        ),
        r.line(
            "written per save / file size",
            2,
            s(|f| f.per_save() / f.file_size as f64),
            j(|f| f.compaction_written as f64 / f.file_size as f64),
        ),
        r.line(
            "journal: bytes appended per reading",
            0,
            |_| None,
            j(|f| f.grown as f64 / f.readings as f64),
        ),
        r.line(
            "journal: written per reading (whole pages)",
            0,
            |_| None,
            j(|f| f.journal_written() / f.readings as f64),
        ),
        r.line(
            "journal: fsync + fdatasync calls per reading",
            2,
            |_| None,
            |g| {
                let f = &g.figures;
                f.fsyncs.map(|n| n as f64 / f.readings as f64)
            },
        ),
        r.line(
            "journal: written per hour, measured (KiB)",
            0,
            |_| None,
            j(|f| f.journal_written() * 3600.0 / f.window.as_secs_f64() / 1024.0),
        ),
        r.line(
            "journal: compactions per hour from its size",
            2,
            |_| None,
            j(|f| f.compactions_per_hour(0)),
        ),
        r.line(
            format!("one save, SIGUSR1 to file replaced (ms, median of {TIMED_SAVES})"),
            1,
            |g| median(&g.figures.signal_ms),
            none,
        ),
        r.line(
            "one save, SIGUSR1 to file replaced (ms, fastest)",
            1,
            |g| g.figures.signal_ms.iter().copied().reduce(f64::min),
            none,
        ),
        r.line(
            "one save, as roost logs it (ms, median)",
            0,
            |g| median(&g.figures.logged_ms),
            none,
        ),
    ];
    for interval in EXTRAPOLATE {
        lines.push(r.line(
            format!("written per hour, autosave_interval {interval} (KiB)"),
            0,
            |g| Some(g.figures.per_hour(interval) / 1024.0),
            |g| Some(g.figures.per_hour(interval) / 1024.0),
        ));
        lines.push(r.line(
            format!("written per reading, autosave_interval {interval} (bytes)"),
            0,
            |g| Some(g.figures.per_hour(interval) / readings_per_hour),
            |g| Some(g.figures.per_hour(interval) / readings_per_hour),
        ));
    }
    print_columns(
        &format!(
            "persistence, home gateway (snapshot: autosave_interval {autosave}, {secs} s of saves)"
        ),
        &HEADS,
        &RATIOS,
        &lines,
    );
    println!(
        "\n(written: write_bytes - cancelled_write_bytes of /proc/PID/io: the file data the \
         broker wrote, in whole pages; the file system's journal and metadata come on top. \
         wchar is not used: it counts socket writes too.\n\
         snapshot, mosquitto: written per hour = written per save x 3600 / autosave_interval: \
         each save rewrites the whole state, which this load keeps the same size once the \
         offline queues are full. mosquitto saves when more than autosave_interval whole \
         seconds have passed, so every interval + 1 s. roost's logged time includes its \
         directory fsync.\n\
         journal: run with autosave_interval 0, so that only its size makes it compact; \
         written per hour = the journal's writes measured over the window + compactions per \
         hour (from its size, and one per autosave_interval) x written per compaction. \
         fsyncs counted with perf stat; \"-\" without it.)"
    );
}
