//! Snapshot persistence, as mosquitto's `persistence true`: the broker's
//! durable state ([`crate::broker::Snapshot`]) is written whole to one file
//! every `autosave_interval` seconds (or after that many changes), on
//! SIGUSR1 and at shutdown, and read back at start-up.
//!
//! A save never leaves a half-written file behind: it goes to a temporary
//! file, is fsync'd, renamed over the old one, and the directory fsync'd, so
//! after a power cut the file is the last complete save. What arrived after
//! that save is lost; `autosave_interval` trades that window against SD card
//! wear (README, "Persistence").

mod format;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::broker::Broker;

/// What to do when the snapshot file does not load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDamage {
    /// Move it aside and refuse to start (the default): state is not
    /// thrown away without someone deciding so.
    Refuse,
    /// Move it aside and start with empty state.
    StartEmpty,
}

/// The persistence keys of the config file.
#[derive(Debug, Clone)]
pub struct Config {
    pub enabled: bool,
    /// `persistence_location`: the directory; the working directory when
    /// unset, as mosquitto.
    pub location: PathBuf,
    /// `persistence_file`.
    pub file: String,
    /// `autosave_interval`: seconds between saves, or with
    /// `autosave_on_changes` the number of changes; 0 saves only on
    /// SIGUSR1 and at shutdown.
    pub autosave_interval: u64,
    pub autosave_on_changes: bool,
    /// `persistence_damaged` (roost).
    pub on_damage: OnDamage,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: false,
            location: PathBuf::new(),
            file: "roost.db".into(),
            autosave_interval: 1800,
            autosave_on_changes: false,
            on_damage: OnDamage::Refuse,
        }
    }
}

impl Config {
    pub fn path(&self) -> PathBuf {
        self.location.join(&self.file)
    }
}

pub struct Store {
    config: Config,
    path: PathBuf,
    /// `Broker::changes` at the last save.
    saved_changes: u64,
    /// The next time-based save.
    next_save: Option<Instant>,
    /// A failing save is logged once until one succeeds.
    failing: bool,
    /// Bytes written by saves since start, for the log and the benchmark.
    pub bytes_written: u64,
}

impl Store {
    pub fn new(config: &Config, now: Instant) -> Store {
        let timed = !config.autosave_on_changes && config.autosave_interval > 0;
        Store {
            path: config.path(),
            next_save: timed.then(|| now + Duration::from_secs(config.autosave_interval)),
            config: config.clone(),
            saved_changes: 0,
            failing: false,
            bytes_written: 0,
        }
    }

    /// Reads the snapshot into `broker`. A missing file is a first start.
    /// A file that does not load is moved aside (never deleted) and, unless
    /// the config says to start empty, start-up stops with an error naming
    /// both files; it keeps stopping while the moved file is there, so a
    /// restart loop cannot quietly start empty either.
    pub fn load(
        &mut self,
        broker: &mut Broker,
        now: Instant,
        wall: SystemTime,
    ) -> Result<(), String> {
        let path = &self.path;
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir = directory(path);
                if let Err(e) = fs::read_dir(dir) {
                    return Err(format!("persistence_location {}: {e}", dir.display()));
                }
                return match (self.config.on_damage, damaged_files(path).first()) {
                    (OnDamage::Refuse, Some(aside)) => Err(format!(
                        "{}: no snapshot, but a damaged one was moved aside to {}; \
                         remove or rename it to start with empty state, or set \
                         `persistence_damaged start_empty`",
                        path.display(),
                        aside.display()
                    )),
                    _ => {
                        log::info!("persistence: no {} yet, starting empty", path.display());
                        Ok(())
                    }
                };
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        match format::decode(&bytes) {
            Ok(snap) => {
                log::info!(
                    "persistence: loaded {} sessions and {} retained messages from {}",
                    snap.sessions.len(),
                    snap.retained.len(),
                    path.display()
                );
                broker.restore(snap, now, wall);
                self.saved_changes = broker.changes();
                Ok(())
            }
            Err(why) => {
                let aside = aside_name(path, wall);
                fs::rename(path, &aside).map_err(|e| {
                    format!(
                        "{}: {why}; moving it aside to {} failed: {e}",
                        path.display(),
                        aside.display()
                    )
                })?;
                let msg = format!(
                    "{}: {why}; moved aside to {}",
                    path.display(),
                    aside.display()
                );
                match self.config.on_damage {
                    OnDamage::Refuse => Err(format!(
                        "{msg}. Not starting: set `persistence_damaged start_empty` \
                         to start with empty state"
                    )),
                    OnDamage::StartEmpty => {
                        log::error!("{msg}; starting with empty state");
                        Ok(())
                    }
                }
            }
        }
    }

    /// When the loop must next call [`Store::autosave`] without being woken.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_save
    }

    /// Saves if the autosave policy says it is time and something changed.
    pub fn autosave(&mut self, broker: &Broker, now: Instant) {
        let changed = broker.changes() - self.saved_changes;
        let due = if self.config.autosave_on_changes {
            self.config.autosave_interval > 0 && changed >= self.config.autosave_interval
        } else {
            self.next_save.is_some_and(|at| at <= now)
        };
        if !due {
            return;
        }
        if let Some(at) = &mut self.next_save {
            *at = now + Duration::from_secs(self.config.autosave_interval);
        }
        if changed > 0 {
            self.save(broker, now);
        }
    }

    /// Saves now (SIGUSR1, shutdown). A failure (disk full, read-only
    /// card) is logged and retried at the next save; the broker keeps
    /// serving from memory.
    pub fn save(&mut self, broker: &Broker, now: Instant) {
        let started = Instant::now();
        let snap = broker.snapshot(now, SystemTime::now());
        let bytes = format::encode(&snap);
        match write_atomically(&self.path, &bytes) {
            Ok(()) => {
                self.saved_changes = broker.changes();
                self.bytes_written += bytes.len() as u64;
                self.failing = false;
                log::info!(
                    "persistence: saved {} sessions and {} retained messages ({} bytes) to {} in {} ms",
                    snap.sessions.len(),
                    snap.retained.len(),
                    bytes.len(),
                    self.path.display(),
                    started.elapsed().as_millis()
                );
            }
            Err(e) => {
                if !self.failing {
                    log::error!(
                        "persistence: cannot save to {}: {e}; keeping state in memory, will retry",
                        self.path.display()
                    );
                    self.failing = true;
                }
            }
        }
    }
}

/// Writes `bytes` to `path` so that a crash at any point leaves either the
/// old file or the new one, complete.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is only durable once the directory is.
    File::open(directory(path))?.sync_all()
}

/// The directory `path` is in ("." for a bare file name).
fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `roost.db.damaged-<unix seconds>`, beside the file.
fn aside_name(path: &Path, wall: SystemTime) -> PathBuf {
    let secs = wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".damaged-{secs}"));
    PathBuf::from(name)
}

/// Files a failed load moved aside from `path`.
fn damaged_files(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name() else {
        return Vec::new();
    };
    let prefix = format!("{}.damaged-", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(directory(path)) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}
