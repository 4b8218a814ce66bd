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
//!
//! `persistence_mode journal` loses nothing acknowledged: every change is
//! also appended to a journal (`journal.rs`), fsync'd once per loop
//! iteration before the acks leave, and the snapshot becomes the journal's
//! compaction.

mod format;
pub mod import;
mod journal;
mod mosquitto_db;
mod records;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::broker::{Broker, JournalRecord};
use journal::Journal;

/// Between tries to write the journal after a failure (disk full).
const RETRY: Duration = Duration::from_secs(1);
/// How long records that no ack waits for (QoS 1 deliveries) may stay
/// unwritten: they only spare a re-send after a crash, and giving each its
/// own fsync would double what a trickle of messages writes.
const LAZY: Duration = Duration::from_secs(1);
/// The journal is compacted into a new snapshot once it is larger than
/// this, or than the last snapshot if that is larger.
const COMPACT_AT: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// mosquitto's: the whole state every `autosave_interval`.
    Snapshot,
    /// Snapshot plus a write-ahead journal: acknowledged means stored.
    Journal,
}

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
    /// `persistence_mode` (roost).
    pub mode: Mode,
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
            mode: Mode::Snapshot,
        }
    }
}

impl Config {
    pub fn path(&self) -> PathBuf {
        self.location.join(&self.file)
    }

    fn journal_path(&self) -> PathBuf {
        self.location.join(format!("{}.journal", self.file))
    }

    /// Every file of roost's state, whether the mode uses it or not.
    pub fn files(&self) -> [PathBuf; 2] {
        [self.path(), self.journal_path()]
    }
}

/// The first time-based save from `now`: none when saves are counted in
/// changes, or only made on SIGUSR1 and at shutdown.
fn next_save(config: &Config, now: Instant) -> Option<Instant> {
    let timed = !config.autosave_on_changes && config.autosave_interval > 0;
    timed.then(|| now + Duration::from_secs(config.autosave_interval))
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
    /// The journal generation the snapshot on disk includes.
    generation: u64,
    /// Size of the last snapshot written or read.
    snapshot_bytes: u64,
    /// With `persistence_mode journal`, once loaded.
    journal: Option<Journal>,
    /// When to try the journal again after a failed commit.
    retry_at: Option<Instant>,
    /// When records written lazily must be on disk at the latest.
    flush_at: Option<Instant>,
}

impl Store {
    pub fn new(config: &Config, now: Instant) -> Store {
        Store {
            path: config.path(),
            next_save: next_save(config, now),
            config: config.clone(),
            saved_changes: 0,
            failing: false,
            generation: 0,
            snapshot_bytes: 0,
            journal: None,
            retry_at: None,
            flush_at: None,
        }
    }

    /// Reads the snapshot, and in journal mode replays the journal, into
    /// `broker`, then turns the broker's journaling on. Before the first
    /// snapshot, a mosquitto.db is imported (`import.rs`) to `fit`.
    pub fn load(
        &mut self,
        broker: &mut Broker,
        now: Instant,
        wall: SystemTime,
        fit: &import::Fit,
    ) -> Result<(), String> {
        let plan = import::plan(&self.config)?;
        if plan.file != self.config.file {
            let named = std::mem::replace(&mut self.config.file, plan.file);
            self.path = self.config.path();
            log::info!(
                "persistence: persistence_file {named} is mosquitto's; roost keeps its own \
                 state in {}",
                self.path.display()
            );
        }
        if let Some(source) = &plan.mosquitto {
            self.import_mosquitto(source, fit)?;
        }
        self.load_snapshot(broker, now, wall)?;
        if self.config.mode == Mode::Journal {
            let path = self.config.journal_path();
            let on_damage = self.config.on_damage;
            let (journal, replayed) =
                Journal::open(&path, self.generation, on_damage, broker, now, wall)?;
            if replayed > 0 {
                log::info!(
                    "persistence: replayed {replayed} journal records from {}",
                    path.display()
                );
            }
            self.journal = Some(journal);
            broker.enable_journal(now, wall);
        }
        Ok(())
    }

    /// Writes what mosquitto's file at `source` holds as roost's first
    /// snapshot, leaving `source` as it is. One that does not read (or
    /// that roost may not read) stops start-up as a damaged snapshot does,
    /// but stays where it is.
    fn import_mosquitto(&self, source: &Path, fit: &import::Fit) -> Result<(), String> {
        if let Some(existing) = import::roost_state(&self.config) {
            if source.exists() {
                log::info!(
                    "persistence: {} is not imported: roost's {} exists",
                    source.display(),
                    existing.display()
                );
            }
            return Ok(());
        }
        let imported = match fs::read(source) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => Err(format!(
                "{}: {e} (`roost import-mosquitto-db`, run by a user who may read it, \
                 imports it as well)",
                source.display()
            )),
            Ok(bytes) if !mosquitto_db::is_mosquitto_db(&bytes) => {
                log::warn!(
                    "persistence: {}: not a mosquitto.db (no mosquitto header); not imported",
                    source.display()
                );
                return Ok(());
            }
            Ok(bytes) => import::import_file(source, &bytes, &self.path, fit),
        };
        match imported {
            Ok(summary) => {
                log::info!(
                    "persistence: imported mosquitto's {} (left as it is) into {}: {summary}",
                    source.display(),
                    self.path.display()
                );
                Ok(())
            }
            Err(why) => match self.config.on_damage {
                OnDamage::Refuse => Err(format!(
                    "{why}. Not imported, and left as it is. Not starting: move it \
                     away, or set `persistence_damaged start_empty` to start without it"
                )),
                OnDamage::StartEmpty => {
                    log::error!("{why}; not imported, left as it is, starting without it");
                    Ok(())
                }
            },
        }
    }

    /// Reads the snapshot into `broker`. A missing file is a first start.
    /// A file that does not load is moved aside (never deleted) and, unless
    /// the config says to start empty, start-up stops with an error naming
    /// both files; it keeps stopping while the moved file is there, so a
    /// restart loop cannot quietly start empty either.
    fn load_snapshot(
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
            Ok((snap, generation)) => {
                self.generation = generation;
                self.snapshot_bytes = bytes.len() as u64;
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

    /// A reload: `autosave_interval` and `autosave_on_changes` as `config`
    /// has them, counted from now when they changed.
    pub fn set_autosave(&mut self, config: &Config, now: Instant) {
        let old = &self.config;
        if (old.autosave_interval, old.autosave_on_changes)
            == (config.autosave_interval, config.autosave_on_changes)
        {
            return;
        }
        self.config.autosave_interval = config.autosave_interval;
        self.config.autosave_on_changes = config.autosave_on_changes;
        self.next_save = next_save(&self.config, now);
    }

    /// When the loop must next call [`Store::autosave`] or
    /// [`Store::commit`] without being woken.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.next_save, self.retry_at, self.flush_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Journal mode: appends the broker's new records and makes them
    /// durable (one fsync for all of them), or compacts the journal into a
    /// new snapshot once it is large. True when everything the broker
    /// acknowledged is on disk, so held acks may go; on failure the broker
    /// refuses QoS 1/2 messages until a retry succeeds.
    pub fn commit(&mut self, broker: &mut Broker, now: Instant) -> bool {
        let Some(journal) = &mut self.journal else {
            return true;
        };
        let records = broker.take_journal();
        journal.append(&records);
        if self.retry_at.is_some_and(|at| at > now) {
            return false;
        }
        // Only QoS 1 deliveries (or nothing) this time: nothing waits on
        // them, so they ride with the next commit something does wait on.
        // Not after a failed write: the acks held since wait on its records.
        let lazy = self.retry_at.is_none()
            && records
                .iter()
                .all(|r| matches!(r, JournalRecord::Delivered { .. }));
        if lazy && journal.has_pending() {
            let at = *self.flush_at.get_or_insert(now + LAZY);
            if at > now {
                return true;
            }
        }
        self.flush_at = None;
        let done = if journal.len() > COMPACT_AT.max(self.snapshot_bytes) {
            self.save(broker, now)
        } else {
            self.write_journal()
        };
        if done {
            if self.retry_at.take().is_some() {
                log::info!("persistence: the journal can be written again");
                broker.set_storage_available(true);
            }
        } else {
            self.retry_at = Some(now + RETRY);
            broker.set_storage_available(false);
        }
        done
    }

    fn write_journal(&mut self) -> bool {
        let Some(journal) = &mut self.journal else {
            return true;
        };
        // A snapshot moved to a new generation while the journal could not
        // follow: records must not go to the old one, which a replay skips.
        let result = if journal.generation() == self.generation {
            Ok(())
        } else {
            journal.restart(self.generation)
        };
        let result = result.and_then(|()| journal.commit().map(drop));
        match result {
            Ok(()) => true,
            Err(e) => {
                if self.retry_at.is_none() {
                    log::error!(
                        "persistence: cannot write the journal: {e}; refusing QoS 1/2 \
                         messages until it can"
                    );
                }
                false
            }
        }
    }

    /// Saves if the autosave policy says it is time and something changed.
    pub fn autosave(&mut self, broker: &mut Broker, now: Instant) {
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

    /// Saves now (SIGUSR1, shutdown, autosave, compaction). A failure
    /// (disk full, read-only card) is logged and retried at the next save;
    /// the broker keeps serving from memory. In journal mode the snapshot
    /// includes everything journaled, so the journal starts afresh.
    pub fn save(&mut self, broker: &mut Broker, now: Instant) -> bool {
        let started = Instant::now();
        // Records not yet taken are in this snapshot: they must not also go
        // to the next journal, or a replay would apply them twice. Kept
        // pending in this one in case the snapshot cannot be written.
        let records = broker.take_journal();
        if let Some(journal) = &mut self.journal {
            journal.append(&records);
        }
        let snap = broker.snapshot(now, SystemTime::now());
        let generation = self.generation + u64::from(self.journal.is_some());
        let bytes = format::encode(&snap, generation);
        match write_atomically(&self.path, &bytes) {
            Ok(()) => {
                self.generation = generation;
                self.snapshot_bytes = bytes.len() as u64;
                self.saved_changes = broker.changes();
                self.failing = false;
                // What the journal held is in the snapshot; what comes next
                // goes to a new journal, which must learn the session keys.
                if let Some(journal) = &mut self.journal {
                    journal.discard_pending();
                    broker.journal_restarted();
                }
                log::info!(
                    "persistence: saved {} sessions and {} retained messages ({} bytes) to {} in {} ms",
                    snap.sessions.len(),
                    snap.retained.len(),
                    bytes.len(),
                    self.path.display(),
                    started.elapsed().as_millis()
                );
                self.write_journal()
            }
            Err(e) => {
                if !self.failing {
                    log::error!(
                        "persistence: cannot save to {}: {e}; keeping state in memory, will retry",
                        self.path.display()
                    );
                    self.failing = true;
                }
                false
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
pub(super) fn aside_name(path: &Path, wall: SystemTime) -> PathBuf {
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
