//! The write-ahead journal of `persistence_mode journal`: the records of
//! each loop iteration are appended and fsync'd together (group commit)
//! before the acks that depend on them leave. A header ties the file to the
//! snapshot generation it follows; a snapshot of a later generation
//! includes everything in it, so a crash between writing a snapshot and
//! starting a new journal cannot apply a record twice.
//!
//! File: `ROOST-WL`, a format version, the generation; then records, each
//! its body's length, a CRC-32 of the body, and the body (`format.rs`). A
//! record cut short at the end (a write a crash interrupted, never
//! acknowledged) ends the replay. A damaged record is something else: what
//! follows it was acknowledged, so start-up stops unless
//! `persistence_damaged start_empty` says to go on without it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::format::crc32;
use super::records::{decode_record, encode_record};
use super::{OnDamage, aside_name};
use crate::broker::{Broker, JournalRecord, ReplayKeys};

const MAGIC: &[u8; 8] = b"ROOST-WL";
const VERSION: u16 = 1;
const HEADER: u64 = 8 + 2 + 8;

pub struct Journal {
    path: PathBuf,
    file: File,
    generation: u64,
    /// Bytes of the file known to be on disk.
    committed: u64,
    /// Encoded records not yet on disk.
    pending: Vec<u8>,
}

impl Journal {
    /// Opens the journal at start-up. Records of `generation` (the
    /// snapshot's) are replayed into `broker`; a missing file, or one of an
    /// older generation (already in the snapshot), is replaced by an empty
    /// journal. Returns how many records were replayed.
    pub fn open(
        path: &Path,
        generation: u64,
        on_damage: OnDamage,
        broker: &mut Broker,
        now: Instant,
        wall: SystemTime,
    ) -> Result<(Journal, usize), String> {
        let err = |e: io::Error| format!("{}: {e}", path.display());
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(err(e)),
        };
        let same = bytes.len() >= HEADER as usize
            && &bytes[..8] == MAGIC
            && bytes[8..10] == VERSION.to_be_bytes()
            && bytes[10..18] == generation.to_be_bytes();
        if !same {
            if !MAGIC.starts_with(&bytes[..bytes.len().min(MAGIC.len())]) {
                return Err(format!(
                    "{}: not a roost journal; move it away to start",
                    path.display()
                ));
            }
            return Ok((Journal::create(path, generation).map_err(err)?, 0));
        }
        let mut at = HEADER as usize;
        let mut replayed = 0;
        let mut damage = None;
        let mut keys = ReplayKeys::default();
        while let Some((recs, next)) = next_record(&bytes, at) {
            match recs {
                Ok(recs) => {
                    for rec in recs {
                        broker.replay(rec, &mut keys, now, wall);
                    }
                }
                Err(why) => {
                    damage = Some((why, next));
                    break;
                }
            }
            replayed += 1;
            at = next;
        }
        if let Some((why, next)) = damage {
            let later = match whole_records(&bytes, next) {
                1 => "1 record".to_string(),
                n => format!("{n} records"),
            };
            let msg = format!(
                "{}: record {} at byte {at} is damaged ({why}); it and the {later} after it \
                 ({} bytes) were not replayed",
                path.display(),
                replayed + 1,
                bytes.len() - at
            );
            match on_damage {
                OnDamage::Refuse => {
                    return Err(format!(
                        "{msg}. Not starting, the journal left as it is: set \
                         `persistence_damaged start_empty` to start with what came before \
                         the record (a copy of the journal is kept)"
                    ));
                }
                OnDamage::StartEmpty => {
                    let copy = aside_name(path, wall);
                    fs::write(&copy, &bytes)
                        .map_err(|e| format!("{msg}; copying it to {}: {e}", copy.display()))?;
                    log::error!(
                        "{msg}; copied to {}; starting with what came before it",
                        copy.display()
                    );
                }
            }
        } else if at < bytes.len() {
            log::warn!(
                "{}: {} bytes after the last whole record dropped (a save cut short)",
                path.display(),
                bytes.len() - at
            );
        }
        let file = OpenOptions::new().write(true).open(path).map_err(err)?;
        // New records go right after the last good one.
        file.set_len(at as u64).map_err(err)?;
        file.sync_all().map_err(err)?;
        let journal = Journal {
            path: path.to_owned(),
            file,
            generation,
            committed: at as u64,
            pending: Vec::new(),
        };
        Ok((journal, replayed))
    }

    /// An empty journal of `generation`, put in place atomically.
    fn create(path: &Path, generation: u64) -> io::Result<Journal> {
        let mut header = Vec::with_capacity(HEADER as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_be_bytes());
        header.extend_from_slice(&generation.to_be_bytes());
        super::write_atomically(path, &header)?;
        let file = OpenOptions::new().write(true).open(path)?;
        Ok(Journal {
            path: path.to_owned(),
            file,
            generation,
            committed: HEADER,
            pending: Vec::new(),
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes on disk plus pending: how much a replay would read.
    pub fn len(&self) -> u64 {
        self.committed + self.pending.len() as u64
    }

    /// Whether records are waiting to be written.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn append(&mut self, records: &[JournalRecord]) {
        let mut body = Vec::new();
        for rec in records {
            body.clear();
            encode_record(rec, &mut body);
            self.pending
                .extend_from_slice(&(body.len() as u32).to_be_bytes());
            self.pending.extend_from_slice(&crc32(&body).to_be_bytes());
            self.pending.extend_from_slice(&body);
        }
    }

    /// Writes and fsyncs what is pending; returns the bytes written. On
    /// failure the file is cut back to what was on disk and everything
    /// stays pending for the next try: nothing half-written is ever
    /// counted as stored.
    pub fn commit(&mut self) -> io::Result<usize> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        let written = self
            .file
            .write_all_at(&self.pending, self.committed)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let _ = self.file.set_len(self.committed);
            return Err(e);
        }
        let n = self.pending.len();
        self.committed += n as u64;
        self.pending.clear();
        Ok(n)
    }

    /// Drops the records not yet written: a snapshot that includes them
    /// was.
    pub fn discard_pending(&mut self) {
        self.pending.clear();
    }

    /// Starts an empty journal of `generation`, after a snapshot that
    /// includes everything written to this one. What is pending (taken
    /// after that snapshot, while the new journal could not be made) stays
    /// pending in the new one.
    pub fn restart(&mut self, generation: u64) -> io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let result = Journal::create(&self.path, generation).map(|fresh| *self = fresh);
        self.pending = pending;
        result
    }
}

/// The record framed at `at`, and where the next one starts; None at the
/// end or for a record cut short.
type Framed = (Result<Vec<JournalRecord>, String>, usize);

/// How many whole records with a good checksum follow from `at` on.
fn whole_records(bytes: &[u8], mut at: usize) -> usize {
    let mut n = 0;
    while let Some((Ok(_), next)) = next_record(bytes, at) {
        n += 1;
        at = next;
    }
    n
}

fn next_record(bytes: &[u8], at: usize) -> Option<Framed> {
    let head = bytes.get(at..at + 8)?;
    let len = u32::from_be_bytes(head[..4].try_into().ok()?) as usize;
    let sum = u32::from_be_bytes(head[4..].try_into().ok()?);
    let body = bytes.get(at + 8..(at + 8).checked_add(len)?)?;
    let rec = if crc32(body) == sum {
        decode_record(body)
    } else {
        Err("checksum mismatch".into())
    };
    Some((rec, at + 8 + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Config, StoredMessage, StoredSub, Who};
    use crate::protocol::{QoS, SubOptions};

    fn records() -> Vec<JournalRecord> {
        let sub = StoredSub {
            filter: "t/#".into(),
            options: SubOptions {
                qos: QoS::AtLeastOnce,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
            },
            id: 0,
        };
        let msg = |i: u8| JournalRecord::Message {
            msg: StoredMessage {
                id: u64::from(i),
                topic: "t/x".into(),
                payload: vec![i; 10],
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Vec::new(),
                expires_at: None,
            },
            publisher: None,
        };
        vec![
            JournalRecord::Session {
                key: Some(0),
                client_id: "sub".into(),
                login: None,
                expiry: u32::MAX,
            },
            JournalRecord::Subscribe {
                who: Who::Key(0),
                sub,
            },
            msg(1),
            msg(2),
        ]
    }

    /// Records replayed, and messages queued for "sub", in a broker that
    /// replayed `path`.
    fn replayed(
        path: &Path,
        generation: u64,
        on_damage: OnDamage,
    ) -> Result<(usize, usize), String> {
        let mut broker = Broker::new(Config::default());
        let (_, n) = Journal::open(
            path,
            generation,
            on_damage,
            &mut broker,
            Instant::now(),
            SystemTime::now(),
        )?;
        let snap = broker.snapshot(Instant::now(), SystemTime::now());
        Ok((n, snap.sessions.first().map_or(0, |s| s.queue.len())))
    }

    #[test]
    fn replays_what_was_committed_and_stops_at_a_torn_tail() {
        let dir = std::env::temp_dir().join(format!("roost-journal-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j");
        let mut j = Journal::create(&path, 4).unwrap();
        j.append(&records());
        j.commit().unwrap();
        let whole = fs::read(&path).unwrap();
        assert_eq!(replayed(&path, 4, OnDamage::Refuse), Ok((4, 2)));
        // Another generation's journal is already in the snapshot.
        fs::write(&path, &whole).unwrap();
        assert_eq!(replayed(&path, 5, OnDamage::Refuse), Ok((0, 0)));
        // Cut anywhere (a write a crash interrupted): never a panic, never
        // taken for damage, only whole records replayed, and the file is
        // left ending at the last of them.
        for cut in 0..whole.len() {
            fs::write(&path, &whole[..cut]).unwrap();
            let (n, _) = replayed(&path, 4, OnDamage::Refuse).unwrap();
            assert!(n <= 4, "cut {cut}");
            let len = fs::metadata(&path).unwrap().len() as usize;
            assert!(len <= cut.max(HEADER as usize), "cut {cut}: {len}");
        }
        // A flipped byte in the third record (the first message): start-up
        // stops, saying so, the file untouched; or, told to, it goes on
        // without it and what follows, and keeps a copy.
        let mut damaged = whole.clone();
        damaged[record_body(&whole, 3)] ^= 1;
        fs::write(&path, &damaged).unwrap();
        let e = replayed(&path, 4, OnDamage::Refuse).unwrap_err();
        assert!(
            e.contains("record 3 ") && e.contains("the 1 record after it"),
            "{e}"
        );
        assert_eq!(fs::read(&path).unwrap(), damaged);
        assert_eq!(replayed(&path, 4, OnDamage::StartEmpty), Ok((2, 0)));
        let copies = fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("j.damaged-")
            })
            .count();
        assert_eq!(copies, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Where the body of record `n` (from 1) of journal file `bytes` starts.
    fn record_body(bytes: &[u8], n: usize) -> usize {
        let mut at = HEADER as usize;
        for _ in 1..n {
            at += 8 + u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        }
        at + 8
    }
}
