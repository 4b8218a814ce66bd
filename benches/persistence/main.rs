//! Persistence benchmark: what saving the state costs the storage (the SD
//! card of a gateway) and the throughput, for roost in snapshot mode, roost
//! in `persistence_mode journal`, and mosquitto (snapshot, its only mode).
//!
//! Run with `cargo bench --bench persistence`. Each broker runs with the
//! same settings: `persistence true`, `persistence_location DIR/`,
//! `max_queued_messages 1000`, `max_inflight_messages 20`, and
//! `autosave_interval` as said below; roost's journal run adds
//! `persistence_mode journal`. Two loads, each on a fresh broker process
//! per set-up:
//!
//! **A home gateway** (the snapshot runs with `autosave_interval` 2 s, so
//! that several saves happen in a short run; the journal run with 0, so
//! that only the journal's size makes it compact):
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
//! Measured per broker:
//!
//! - bytes written to storage: `write_bytes` less `cancelled_write_bytes`
//!   of `/proc/PID/io`, what the broker's writes dirtied in the page cache,
//!   in whole pages. The file system's journal and metadata come on top and
//!   are not counted. (`wchar` is not usable: it counts socket writes too.)
//! - snapshot mode, between two saves seen `ROOST_BENCH_SECS` or more apart
//!   (a save replaces the persistence file: its inode or mtime changes): the
//!   saves seen, the size of the file, bytes per save; then bytes per hour
//!   at `autosave_interval` 300 and 1800: bytes per save x saves per hour,
//!   since each save rewrites the whole state and this load keeps it the
//!   same size. And the time one save takes, from SIGUSR1 to the file
//!   replaced (5 saves, each right after an autosave so that none comes in
//!   between), and for roost also as it logs it (which includes its
//!   directory fsync);
//! - journal mode, over `ROOST_BENCH_SECS` of the steady load: the bytes
//!   written (measured, not extrapolated: the journal writes per message),
//!   the bytes the journal grew by, per reading, the compactions seen; then
//!   one compaction asked for with SIGUSR1 and what it writes. Per hour at
//!   `autosave_interval` 300 and 1800: the journal's own writes, plus the
//!   compactions its size makes at this rate and one per autosave, each
//!   costing what the measured one did;
//! - the `fsync` and `fdatasync` calls, counted with `perf stat` on their
//!   tracepoints when perf is installed and may trace (root, or
//!   `kernel.perf_event_paranoid` -1); "-" otherwise, with the reason on
//!   stderr;
//! - as checks: the messages each offline dashboard gets when it reconnects
//!   (what the broker holds for it), and that the online dashboards got
//!   every reading.
//!
//! **Throughput, a fan-in** (`autosave_interval` 300 for all, the example
//! config's): 4 publishers send 64-byte QoS 1 messages to `fanin/<i>`, 20
//! unacknowledged each at most, for `ROOST_BENCH_FANIN_SECS`, never more
//! than 500 ahead of the subscriber (so that no queue limit drops one); one
//! subscriber with a kept session (clean session 0) at QoS 1 reads and
//! acknowledges as fast as it can, so that every message is stored.
//! Measured from the first message sent to the last delivered: messages
//! delivered per second and per broker CPU second, the fsyncs, the bytes
//! written per message, the compactions; and where the broker's time went:
//! on a CPU (`/proc/PID/stat`), waiting for one (`/proc/PID/schedstat`),
//! waiting for the disk (its state D, sampled every millisecond) or for its
//! clients (the rest). When waiting for clients is the largest share, the
//! load generator (this process, sharing the cores) is the bottleneck.
//!
//! Environment:
//! - `ROOST_BENCH_SECS`: seconds of the gateway load measured (default 20).
//! - `ROOST_BENCH_AUTOSAVE`: `autosave_interval` of the snapshot runs under
//!   that load (default 2).
//! - `ROOST_BENCH_FANIN_SECS`: seconds each fan-in publishes (default 5).
//! - `ROOST_BENCH_PERSIST_DIR`: where the persistence directories are made
//!   (default `bench-persist` in the target directory). It must be on the
//!   storage to measure, not tmpfs (where nothing reaches a disk); on a
//!   gateway, point it at the SD card.
//! - `ROOST_BENCH_BROKERS`, `ROOST_BENCH_MOSQUITTO`: as for the memory bench
//!   (which brokers: `roost` runs both roost set-ups; where mosquitto is).
//!
//! Every wait is bounded (a save must come within `autosave_interval` + 11 s,
//! every socket read and perf's every answer within 10 s, a fan-in ends when
//! no message has come for 2 s) and a watchdog ends the run (killing the
//! brokers) when it takes far longer than planned. The persistence
//! directories are removed at the end (and, if a run was killed, at the start
//! of the next). Traffic goes to 127.0.0.1 only.

// This bench reads no memory figures and opens few sockets: the helpers for
// those go unused here.
#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;
mod fan_in;
mod fsync;
mod gateway;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    Broker, Brokers, Line, env_usize, exit_on_failures, install_guards, start_mosquitto_with,
    start_roost_with,
};
use fan_in::{FANIN_AUTOSAVE, fan_in, print_fan_in};
use gateway::{TIMED_SAVES, measure_journal, measure_saves, print_gateway};

/// Both brokers' limits per session (their defaults, set explicitly).
const MAX_QUEUED: usize = 1000;
const MAX_INFLIGHT: usize = 20;
/// How often a file or a counter is looked at.
const POLL: Duration = Duration::from_millis(1);
/// A reconnected offline dashboard has all its messages once none has come
/// for this long; a fan-in has ended once no message has come for this long.
const DRAIN_QUIET: Duration = Duration::from_secs(2);
/// roost's snapshot file, and its journal's beside it.
const ROOST_DB: &str = "roost.db";

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

/// The three set-ups measured side by side.
#[derive(Clone, Copy)]
enum Setup {
    /// roost's default, as mosquitto's: the whole state every
    /// `autosave_interval`.
    Snapshot,
    /// roost's `persistence_mode journal`.
    Journal,
    /// mosquitto, whose only mode is the snapshot.
    Mosquitto,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Snapshot => "roost snapshot",
            Setup::Journal => "roost journal",
            Setup::Mosquitto => "mosquitto",
        }
    }

    fn db_file(self) -> &'static str {
        match self {
            Setup::Snapshot | Setup::Journal => ROOST_DB,
            Setup::Mosquitto => "mosquitto.db",
        }
    }

    /// Runs `measure(broker, name, persistence directory)` on this
    /// set-up's broker, started with persistence in a directory of `root`
    /// named for the set-up and `suffix`, and the same settings for all
    /// (journal mode added for the journal). None when the broker is not
    /// measured.
    fn run<T>(
        self,
        brokers: &Brokers,
        root: &Path,
        suffix: &str,
        autosave: u64,
        measure: impl FnOnce(&mut Broker, &str, &Path) -> Result<T, String>,
    ) -> Option<Result<T, String>> {
        let mosquitto = match self {
            Setup::Mosquitto => Some(brokers.mosquitto.as_deref()?),
            _ if brokers.roost => None,
            _ => return None,
        };
        let dir = format!("{}{suffix}", self.name().replace(' ', "-"));
        Some(self.start(mosquitto, &root.join(dir), autosave, measure))
    }

    fn start<T>(
        self,
        mosquitto: Option<&Path>,
        dir: &Path,
        autosave: u64,
        measure: impl FnOnce(&mut Broker, &str, &Path) -> Result<T, String>,
    ) -> Result<T, String> {
        let dir = Scratch::new(dir.to_path_buf())?;
        let mut conf = vec![
            String::from("persistence true"),
            // mosquitto wants the trailing slash; roost takes either.
            format!("persistence_location {}/", dir.0.display()),
            format!("autosave_interval {autosave}"),
            format!("max_queued_messages {MAX_QUEUED}"),
            format!("max_inflight_messages {MAX_INFLIGHT}"),
        ];
        if let Setup::Journal = self {
            conf.push(String::from("persistence_mode journal"));
        }
        let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
        let mut broker = match mosquitto {
            Some(bin) => start_mosquitto_with(bin, &conf)?,
            None => start_roost_with(&conf)?,
        };
        let name = self.name();
        eprintln!("{name}: pid {}, port {}", broker.pid(), broker.port);
        let result = measure(&mut broker, name, &dir.0).map_err(|e| {
            let alive = broker.check_alive().err().unwrap_or_default();
            format!("{e}\n{alive}\n  last log lines:\n{}", broker.log_tail())
        });
        broker.stop();
        result
    }
}

/// A figure for each set-up (None where it was not measured or failed):
/// roost in snapshot mode, roost in journal mode, mosquitto.
struct Three<S, J> {
    snapshot: Option<S>,
    journal: Option<J>,
    mosquitto: Option<S>,
}

const HEADS: [&str; 3] = ["snapshot", "journal", "mosquitto"];
/// The ratios printed: journal/snapshot, snapshot/mosquitto,
/// journal/mosquitto.
const RATIOS: [(usize, usize); 3] = [(1, 0), (0, 2), (1, 2)];

impl<S, J> Three<S, J> {
    fn line(
        &self,
        label: impl Into<String>,
        prec: usize,
        saves: impl Fn(&S) -> Option<f64>,
        journal: impl Fn(&J) -> Option<f64>,
    ) -> Line {
        Line {
            label: label.into(),
            values: vec![
                self.snapshot.as_ref().and_then(&saves),
                self.journal.as_ref().and_then(journal),
                self.mosquitto.as_ref().and_then(&saves),
            ],
            prec,
            note: String::new(),
        }
    }

    /// The set-ups measured, each by name, seen through `saves` or
    /// `journal`.
    fn each<'a, U>(
        &'a self,
        saves: impl Fn(&'a S) -> &'a U,
        journal: impl Fn(&'a J) -> &'a U,
    ) -> Vec<(&'static str, &'a U)> {
        [
            (HEADS[0], self.snapshot.as_ref().map(&saves)),
            (HEADS[1], self.journal.as_ref().map(journal)),
            (HEADS[2], self.mosquitto.as_ref().map(&saves)),
        ]
        .into_iter()
        .filter_map(|(name, u)| Some((name, u?)))
        .collect()
    }
}

impl<T> Three<T, T> {
    fn all(&self, label: impl Into<String>, prec: usize, f: impl Fn(&T) -> Option<f64>) -> Line {
        self.line(label, prec, &f, &f)
    }
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

/// What a run measured; a failure is kept in `failures`.
fn keep<T>(
    failures: &mut Vec<String>,
    setup: Setup,
    result: Option<Result<T, String>>,
) -> Option<T> {
    result?
        .map_err(|e| failures.push(format!("{}: {e}", setup.name())))
        .ok()
}

fn main() {
    let secs = env_usize("ROOST_BENCH_SECS", 20) as u64;
    let autosave = env_usize("ROOST_BENCH_AUTOSAVE", 2) as u64;
    let fan_in_secs = env_usize("ROOST_BENCH_FANIN_SECS", 5) as u64;
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
    // Per snapshot broker: a save to wait for before, during and after the
    // window, the timed saves each after an autosave, start-up and the
    // drains; the journal's window is shorter. Per fan-in: its time, the
    // drain and start-up.
    let per_broker = secs + (TIMED_SAVES as u64 * 2 + 4) * (autosave + 1) + 60;
    let per_fan_in = fan_in_secs + 30;
    install_guards(
        "persistence",
        Duration::from_secs(60 + 3 * (per_broker + per_fan_in)),
    );

    brokers.print_header();
    println!("persistence directories: {} ({fs})", root.display());
    gateway::print_load();
    let wall = Instant::now();
    let mut failures = Vec::new();
    let saves = |setup: Setup| {
        setup.run(&brokers, &root, "", autosave, |b, name, dir| {
            measure_saves(b, name, &dir.join(setup.db_file()), autosave, secs)
        })
    };
    let gateway_runs = Three {
        snapshot: keep(&mut failures, Setup::Snapshot, saves(Setup::Snapshot)),
        // Autosave off: only the journal's size makes it compact.
        journal: keep(
            &mut failures,
            Setup::Journal,
            Setup::Journal.run(&brokers, &root, "", 0, |b, name, dir| {
                measure_journal(b, name, dir, secs)
            }),
        ),
        mosquitto: keep(&mut failures, Setup::Mosquitto, saves(Setup::Mosquitto)),
    };
    let fan_in_run = |setup: Setup| {
        setup.run(
            &brokers,
            &root,
            "-fan-in",
            FANIN_AUTOSAVE,
            |b, name, dir| fan_in(b, name, &dir.join(setup.db_file()), fan_in_secs),
        )
    };
    let fan_in_runs = Three {
        snapshot: keep(&mut failures, Setup::Snapshot, fan_in_run(Setup::Snapshot)),
        journal: keep(&mut failures, Setup::Journal, fan_in_run(Setup::Journal)),
        mosquitto: keep(
            &mut failures,
            Setup::Mosquitto,
            fan_in_run(Setup::Mosquitto),
        ),
    };
    // Only empty: a directory given in ROOST_BENCH_PERSIST_DIR may hold more.
    let _ = fs::remove_dir(&root);

    print_gateway(&gateway_runs, autosave, secs);
    print_fan_in(&fan_in_runs, fan_in_secs);
    println!("(bench took {:.1} s)", wall.elapsed().as_secs_f64());
    exit_on_failures(&failures);
}
