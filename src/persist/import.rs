//! Moving from mosquitto without losing state: a mosquitto.db
//! (`mosquitto_db.rs`) turned into roost's snapshot and written by roost's
//! own writer, by `roost import-mosquitto-db` or at the first start with
//! persistence on. mosquitto's file is only ever read.
//!
//! What maps how: retained messages; sessions with their expiry, user name
//! and listener; subscriptions with QoS, No Local, Retain As Published and
//! subscription identifier (mosquitto does not store Retain Handling: 0);
//! queued QoS 1/2 messages in order. A message mosquitto had sent and not
//! seen acknowledged stays in flight under its packet id, as mosquitto
//! would resend it, so a QoS 2 message is not delivered twice. A QoS 2
//! message a client published whose PUBREL mosquitto had not received yet
//! is delivered to the imported sessions it matches (roost delivers at
//! PUBLISH; mosquitto would have at PUBREL), and its packet id kept so the
//! PUBREL is answered.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::mosquitto_db::{self, Chunks, is_mosquitto_db};
use super::{Config, format, write_atomically};
use crate::broker::topic::{matches, valid_filter};
use crate::broker::{
    Awaiting, Snapshot, StoredInflight, StoredMessage, StoredOutgoing, StoredSession, StoredSub,
};
use crate::config::Settings;
use crate::protocol::{QoS, SubOptions};

/// mosquitto's default `persistence_file`.
const MOSQUITTO_FILE: &str = "mosquitto.db";
/// roost's, and where it keeps its state when `persistence_file` names
/// mosquitto's file.
const ROOST_FILE: &str = "roost.db";

/// What a mosquitto.db holds, as roost's snapshot.
pub struct Import {
    pub snapshot: Snapshot,
    pub summary: Summary,
}

/// What was imported, and what was left out and why.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    pub retained: usize,
    pub sessions: usize,
    pub subscriptions: usize,
    /// QoS 1/2 messages for the sessions, in flight or queued.
    pub queued: usize,
    /// QoS 2 messages received from clients and awaiting their PUBREL.
    pub released: usize,
    /// How many were left out, by why.
    pub skipped: BTreeMap<String, usize>,
}

impl Summary {
    fn skip(&mut self, why: impl Into<String>) {
        *self.skipped.entry(why.into()).or_default() += 1;
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} retained, {} sessions, {} subscriptions, {} queued messages",
            self.retained, self.sessions, self.subscriptions, self.queued
        )?;
        if self.released > 0 {
            write!(
                f,
                "; {} incoming QoS 2 messages awaiting PUBREL, delivered now",
                self.released
            )?;
        }
        for (i, (why, n)) in self.skipped.iter().enumerate() {
            f.write_str(if i == 0 { "; skipped: " } else { ", " })?;
            write!(f, "{n} {why}")?;
        }
        Ok(())
    }
}

/// Reads a mosquitto.db; `now` decides what has expired.
pub fn read(bytes: &[u8], now: SystemTime, fit: &Fit) -> Result<Import, String> {
    let chunks = mosquitto_db::parse(bytes)?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    Ok(Convert::new(&chunks, now as i64, fit).run(&chunks))
}

/// Builds the snapshot: messages are added once, when first referred to.
struct Convert<'a> {
    now: i64,
    fit: &'a Fit,
    base: HashMap<u64, &'a mosquitto_db::BaseMsg>,
    /// Store id to index in `snap.messages`.
    index: HashMap<u64, u32>,
    /// Client id to index in `snap.sessions`; None for one left out.
    sessions: HashMap<&'a str, Option<usize>>,
    snap: Snapshot,
    summary: Summary,
}

impl<'a> Convert<'a> {
    fn new(chunks: &'a Chunks, now: i64, fit: &'a Fit) -> Convert<'a> {
        let mut summary = Summary::default();
        for kind in &chunks.unknown {
            summary.skip(format!("chunks of unknown type {kind}"));
        }
        Convert {
            now,
            fit,
            base: chunks.base_msgs.iter().map(|m| (m.store_id, m)).collect(),
            index: HashMap::new(),
            sessions: HashMap::new(),
            snap: Snapshot::default(),
            summary,
        }
    }

    fn run(mut self, chunks: &'a Chunks) -> Import {
        for &id in &chunks.retained {
            match self.message(id) {
                Ok(i) => {
                    self.snap.retained.push(i);
                    self.summary.retained += 1;
                }
                Err(why) => self.summary.skip(format!("retained messages {why}")),
            }
        }
        for c in &chunks.clients {
            self.session(c);
        }
        for s in &chunks.subs {
            self.subscription(s);
        }
        let mut received = Vec::new();
        for m in &chunks.client_msgs {
            let Some(s) = self.owner(&m.client_id, "queued messages") else {
                continue;
            };
            let msg = match self.message(m.store_id) {
                Ok(i) => i,
                Err(why) => {
                    self.summary.skip(format!("queued messages {why}"));
                    continue;
                }
            };
            match (m.outgoing, m.qos) {
                (false, QoS::ExactlyOnce) => received.push((s, m.mid, msg)),
                (false, _) => self
                    .summary
                    .skip("incoming messages below QoS 2 (mosquitto keeps none)"),
                (true, QoS::AtMostOnce) => self
                    .summary
                    .skip("QoS 0 messages queued for offline clients (roost keeps none)"),
                (true, qos) => {
                    let out = StoredOutgoing {
                        msg,
                        qos,
                        retain: m.retain,
                        sub_ids: (m.subscription_id != 0)
                            .then_some(m.subscription_id)
                            .into_iter()
                            .collect(),
                        share: None,
                    };
                    self.queue(s, m.mid, m.state, out);
                }
            }
        }
        for (s, mid, msg) in received {
            self.deliver_received(s, mid, msg);
        }
        Import {
            snapshot: self.snap,
            summary: self.summary,
        }
    }

    /// The snapshot index of a stored message, or why there is none.
    fn message(&mut self, store_id: u64) -> Result<u32, &'static str> {
        if let Some(&i) = self.index.get(&store_id) {
            return Ok(i);
        }
        let m = self
            .base
            .get(&store_id)
            .ok_or("naming no stored message (a damaged file)")?;
        if m.expiry_time > 0 && m.expiry_time <= self.now {
            return Err("that had expired");
        }
        let i = self.snap.messages.len() as u32;
        self.snap.messages.push(StoredMessage {
            id: u64::from(i) + 1,
            topic: m.topic.clone(),
            payload: m.payload.clone(),
            qos: m.qos,
            retain: m.retain,
            properties: m.properties.clone(),
            expires_at: (m.expiry_time > 0).then_some(m.expiry_time as u64),
        });
        self.index.insert(store_id, i);
        Ok(i)
    }

    fn session(&mut self, c: &'a mosquitto_db::Client) {
        if self.sessions.contains_key(c.id.as_str()) {
            return self.summary.skip("sessions listed twice (a damaged file)");
        }
        let expires_at = match c.session_expiry_interval {
            u32::MAX => None,
            _ => (c.session_expiry_time > 0).then_some(c.session_expiry_time),
        };
        let kept = if c.session_expiry_interval == 0 {
            self.summary
                .skip("sessions that ended with their connection (session expiry 0)");
            None
        } else if expires_at.is_some_and(|at| at <= self.now) {
            self.summary.skip("sessions that had expired");
            None
        } else {
            self.snap.sessions.push(StoredSession {
                client_id: c.id.clone(),
                username: c.username.clone(),
                listener: self.fit.auth(c.listener_port),
                expiry: c.session_expiry_interval,
                expires_at: expires_at.map(|at| at as u64),
                last_packet_id: c.last_mid,
                subscriptions: Vec::new(),
                inflight: Vec::new(),
                queue: Vec::new(),
                awaiting_rel: Vec::new(),
            });
            self.summary.sessions += 1;
            Some(self.snap.sessions.len() - 1)
        };
        self.sessions.insert(&c.id, kept);
    }

    /// The imported session of `client_id`; None (counted as skipped
    /// `what`) when it was left out or is not in the file.
    fn owner(&mut self, client_id: &str, what: &str) -> Option<usize> {
        match self.sessions.get(client_id) {
            Some(Some(s)) => Some(*s),
            Some(None) => {
                self.summary.skip(format!("{what} of sessions left out"));
                None
            }
            None => {
                self.summary
                    .skip(format!("{what} of clients without a session in the file"));
                None
            }
        }
    }

    fn subscription(&mut self, sub: &mosquitto_db::Sub) {
        let Some(s) = self.owner(&sub.client_id, "subscriptions") else {
            return;
        };
        if !valid_filter(&sub.filter) {
            return self.summary.skip("subscriptions to invalid filters");
        }
        let stored = StoredSub {
            filter: sub.filter.clone(),
            options: SubOptions {
                qos: sub.qos,
                no_local: sub.no_local,
                retain_as_published: sub.retain_as_published,
                retain_handling: 0,
            },
            id: sub.identifier,
        };
        let subs = &mut self.snap.sessions[s].subscriptions;
        match subs.iter_mut().find(|s| s.filter == stored.filter) {
            Some(old) => *old = stored,
            None => {
                subs.push(stored);
                self.summary.subscriptions += 1;
            }
        }
    }

    /// A message to session `s`: in flight under its packet id if
    /// mosquitto had sent it (its `state`) and roost's window has room,
    /// queued otherwise.
    fn queue(&mut self, s: usize, mid: u16, state: u8, out: StoredOutgoing) {
        // mosquitto's `mosquitto_msg_state`: 3 wait_for_puback, 5
        // wait_for_pubrec, 6 resend_pubrel and 9 wait_for_pubcomp.
        let awaiting = match (state, out.qos) {
            (3, QoS::AtLeastOnce) => Some(Awaiting::Ack),
            (5, QoS::ExactlyOnce) => Some(Awaiting::Received),
            (6 | 9, QoS::ExactlyOnce) => Some(Awaiting::Complete),
            _ => None,
        };
        let session = &mut self.snap.sessions[s];
        let room = session.inflight.len() < usize::from(self.fit.max_inflight.max(1))
            && mid != 0
            && !session.inflight.iter().any(|f| f.packet_id == mid);
        match awaiting {
            Some(awaiting) if room => session.inflight.push(StoredInflight {
                packet_id: mid,
                awaiting,
                out,
            }),
            _ => session.queue.push(out),
        }
        self.summary.queued += 1;
    }

    /// A QoS 2 message session `s` published, PUBREC'd by mosquitto but
    /// not yet released: routed now to every imported session it matches,
    /// retained if flagged, its packet id awaiting the PUBREL.
    fn deliver_received(&mut self, s: usize, mid: u16, msg: u32) {
        let m = &self.snap.messages[msg as usize];
        for (i, session) in self.snap.sessions.iter_mut().enumerate() {
            let subs: Vec<&StoredSub> = session
                .subscriptions
                .iter()
                .filter(|sub| !(sub.options.no_local && i == s) && matches(&sub.filter, &m.topic))
                .collect();
            let Some(granted) = subs.iter().map(|sub| sub.options.qos).max() else {
                continue;
            };
            let qos = m.qos.min(granted);
            if qos == QoS::AtMostOnce {
                self.summary
                    .skip("QoS 0 messages queued for offline clients (roost keeps none)");
                continue;
            }
            let out = StoredOutgoing {
                msg,
                qos,
                retain: m.retain && subs.iter().any(|sub| sub.options.retain_as_published),
                sub_ids: subs
                    .iter()
                    .map(|sub| sub.id)
                    .filter(|&id| id != 0)
                    .collect(),
                share: None,
            };
            session.queue.push(out);
            self.summary.queued += 1;
        }
        if m.retain {
            let messages = &self.snap.messages;
            self.snap
                .retained
                .retain(|&r| messages[r as usize].topic != m.topic);
            // An empty retained message clears the topic's.
            if !m.payload.is_empty() {
                self.snap.retained.push(msg);
            }
        }
        let awaiting = &mut self.snap.sessions[s].awaiting_rel;
        if mid != 0 && !awaiting.contains(&mid) {
            awaiting.push(mid);
        }
        self.summary.released += 1;
    }
}

/// What of roost's settings shapes an import.
#[derive(Debug, Clone)]
pub struct Fit {
    /// The rules (`Listener::auth`) of the listener on each port.
    pub ports: Vec<(u16, u8)>,
    /// `max_inflight_messages`: what mosquitto had in flight past it is
    /// queued to be sent again.
    pub max_inflight: u16,
}

impl Fit {
    pub fn new(settings: &Settings) -> Fit {
        let ports = settings
            .listen_on()
            .iter()
            .map(|l| (l.address.port(), l.auth))
            .collect();
        Fit {
            ports,
            max_inflight: settings.broker.max_inflight,
        }
    }

    fn auth(&self, port: u16) -> u8 {
        self.ports
            .iter()
            .find(|(p, _)| *p == port)
            .map_or(0, |&(_, auth)| auth)
    }
}

impl Default for Fit {
    fn default() -> Fit {
        Fit::new(&Settings::default())
    }
}

/// Where roost keeps its state, and the mosquitto.db to import while that
/// does not exist.
pub(super) struct Plan {
    /// roost's file name in `persistence_location`.
    pub file: String,
    pub mosquitto: Option<PathBuf>,
}

/// `persistence_file` may name mosquitto's file (a mosquitto.conf kept as
/// it is): roost then keeps its own state in `roost.db` beside it, reads
/// mosquitto's once and never writes it. So does `persistence_file
/// mosquitto.db` once that file is gone. Otherwise the file is roost's,
/// and a mosquitto.db in the same directory is the one to import.
pub(super) fn plan(config: &Config) -> Result<Plan, String> {
    let named = config.path();
    let mosquitto = match head(&named) {
        Ok(head) => {
            is_mosquitto_db(&head) || (config.file == MOSQUITTO_FILE && !format::is_snapshot(&head))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => config.file == MOSQUITTO_FILE,
        // Reading it again at load time names the error.
        Err(_) => false,
    };
    if !mosquitto {
        let default = config.location.join(MOSQUITTO_FILE);
        return Ok(Plan {
            file: config.file.clone(),
            mosquitto: (default != named).then_some(default),
        });
    }
    if config.file == ROOST_FILE {
        return Err(format!(
            "{}: this is a mosquitto.db, under the name roost keeps its own state in; \
             roost does not write over it. Rename it to mosquitto.db (roost imports it \
             from there and leaves it as it is)",
            named.display()
        ));
    }
    Ok(Plan {
        file: ROOST_FILE.into(),
        mosquitto: Some(named),
    })
}

/// The first bytes of the file at `path`, enough to tell whose it is.
fn head(path: &Path) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(mosquitto_db::MAGIC.len());
    File::open(path)?
        .take(mosquitto_db::MAGIC.len() as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// roost's state where `config` puts it (its snapshot or its journal),
/// if there is any.
pub(super) fn roost_state(config: &Config) -> Option<PathBuf> {
    [config.path(), config.journal_path()]
        .into_iter()
        .find(|p| p.exists())
}

/// Imports `source` into roost's file at `target`, which must not exist.
pub(super) fn import_file(
    source: &Path,
    bytes: &[u8],
    target: &Path,
    fit: &Fit,
) -> Result<Summary, String> {
    let import = read(bytes, SystemTime::now(), fit)
        .map_err(|why| format!("{}: {why}", source.display()))?;
    write_atomically(target, &format::encode(&import.snapshot, 0))
        .map_err(|e| format!("{}: {e}", target.display()))?;
    Ok(import.summary)
}

pub const USAGE: &str = "\
Usage: roost import-mosquitto-db [-c CONFIG] FILE

Reads FILE, a mosquitto.db written by mosquitto 2.0 or 1.6, and writes
what it holds (retained messages, kept sessions, their subscriptions and
queued messages) as roost's persistence file. FILE is only read. Run it
while roost is stopped; it refuses to replace state roost already has.

Options:
  -c, --config CONFIG   write where CONFIG's persistence_location and
                        persistence_file say (without: roost.db in the
                        working directory)
  -h, --help            show this help

Manual: man roost, section MOVING FROM MOSQUITTO; docs/mosquitto.md.";

/// `roost import-mosquitto-db`: what to print on success.
pub fn run(args: &[String]) -> Result<String, String> {
    let (config, source) = match args {
        [flag, config, source] if flag == "-c" || flag == "--config" => {
            (Some(Path::new(config)), source)
        }
        [source] if !source.starts_with('-') => (None, source),
        _ => return Err(format!("bad arguments\n\n{USAGE}")),
    };
    let source = Path::new(source);
    let settings = match config {
        Some(path) => crate::config::load(path)?,
        None => Settings::default(),
    };
    let mut persistence = settings.persistence.clone();
    persistence.file = plan(&persistence)?.file;
    let target = persistence.path();
    if let Some(existing) = roost_state(&persistence) {
        return Err(format!(
            "{} exists: importing would replace roost's state. Stop roost and move it \
             away first",
            existing.display()
        ));
    }
    let bytes = std::fs::read(source).map_err(|e| format!("{}: {e}", source.display()))?;
    if !is_mosquitto_db(&bytes) {
        return Err(format!(
            "{}: not a mosquitto.db (no mosquitto header)",
            source.display()
        ));
    }
    let summary = import_file(source, &bytes, &target, &Fit::new(&settings))?;
    let mut done = format!(
        "imported {} into {}: {summary}",
        source.display(),
        target.display()
    );
    if !persistence.enabled {
        done.push_str("\nnote: persistence is off in this config; roost reads the file with `persistence true`");
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::broker::{Broker, Config as BrokerConfig};

    /// Written by mosquitto 2.0.11 (tests/mosquitto_db.rs says how).
    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/mosquitto-2.0.11.db");
    const TRUNCATED: &[u8] = include_bytes!("../../tests/fixtures/mosquitto-2.0.11-truncated.db");

    /// When the fixture was written: keeper5's session ends an hour later.
    fn written() -> SystemTime {
        let chunks = mosquitto_db::parse(FIXTURE).unwrap();
        let keeper5 = chunks.clients.iter().find(|c| c.id == "keeper5").unwrap();
        UNIX_EPOCH + Duration::from_secs(keeper5.session_expiry_time as u64 - 3600)
    }

    fn import(bytes: &[u8], now: SystemTime, fit: &Fit) -> Result<Import, String> {
        // Whatever it holds, the broker takes it as one of its own
        // snapshots.
        let mut broker = Broker::new(BrokerConfig {
            max_inflight: fit.max_inflight,
            ..BrokerConfig::default()
        });
        broker.restore(read(bytes, now, fit)?.snapshot, Instant::now(), now);
        broker.check_invariants();
        read(bytes, now, fit)
    }

    fn topics(snap: &Snapshot, out: &[StoredOutgoing]) -> Vec<(String, QoS)> {
        out.iter()
            .map(|o| (snap.messages[o.msg as usize].topic.clone(), o.qos))
            .collect()
    }

    #[test]
    fn the_fixture_imports_as_mosquitto_left_it() {
        let import = import(FIXTURE, written(), &Fit::default()).unwrap();
        assert_eq!(
            import.summary.to_string(),
            "3 retained, 4 sessions, 5 subscriptions, 10 queued messages; \
             1 incoming QoS 2 messages awaiting PUBREL, delivered now"
        );
        let snap = &import.snapshot;
        let session = |id: &str| snap.sessions.iter().find(|s| s.client_id == id).unwrap();
        let (one, two) = (QoS::AtLeastOnce, QoS::ExactlyOnce);

        let keeper = session("keeper");
        assert_eq!((keeper.expiry, keeper.expires_at), (u32::MAX, None));
        assert_eq!(keeper.subscriptions.len(), 3);
        assert!(keeper.inflight.is_empty());
        let want = [
            ("q/1", one),
            ("q/2", two),
            ("q/1", one),
            ("q/2", two),
            ("q/2", two),
        ];
        assert_eq!(
            topics(snap, &keeper.queue),
            want.map(|(t, q)| (t.into(), q))
        );
        let pending = &snap.messages[keeper.queue[4].msg as usize];
        assert_eq!(pending.payload, b"pending");

        let keeper5 = session("keeper5");
        let written = written().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(
            (keeper5.expiry, keeper5.expires_at),
            (3600, Some(written + 3600))
        );
        let sub = &keeper5.subscriptions[0];
        assert_eq!((sub.filter.as_str(), sub.id), ("v5/+", 42));
        assert!(sub.options.no_local && sub.options.retain_as_published);
        assert_eq!(keeper5.inflight.len(), 1);
        assert_eq!(keeper5.inflight[0].awaiting, Awaiting::Ack);
        assert_eq!(keeper5.queue[0].sub_ids, [42]);

        let flight = session("flight");
        let awaiting: Vec<Awaiting> = flight.inflight.iter().map(|f| f.awaiting).collect();
        assert_eq!(
            awaiting,
            [Awaiting::Ack, Awaiting::Received, Awaiting::Complete]
        );
        assert!(flight.queue.is_empty());

        assert_eq!(session("pub2").awaiting_rel, [7]);
    }

    #[test]
    fn what_expired_since_is_left_out_and_said() {
        let later = written() + Duration::from_secs(7200);
        let summary = import(FIXTURE, later, &Fit::default()).unwrap().summary;
        assert_eq!(summary.sessions, 3);
        let skipped: Vec<(&str, usize)> = summary
            .skipped
            .iter()
            .map(|(why, n)| (why.as_str(), *n))
            .collect();
        assert_eq!(
            skipped,
            [
                ("queued messages of sessions left out", 2),
                ("sessions that had expired", 1),
                ("subscriptions of sessions left out", 1),
            ]
        );
    }

    #[test]
    fn past_roost_s_window_what_was_in_flight_is_queued() {
        let fit = Fit {
            ports: Vec::new(),
            max_inflight: 1,
        };
        let snap = import(FIXTURE, written(), &fit).unwrap().snapshot;
        let flight = snap
            .sessions
            .iter()
            .find(|s| s.client_id == "flight")
            .unwrap();
        assert_eq!(flight.inflight.len(), 1);
        assert_eq!(flight.queue.len(), 2);
    }

    #[test]
    fn sessions_take_the_rules_of_the_listener_on_their_port() {
        let chunks = mosquitto_db::parse(FIXTURE).unwrap();
        let fit = Fit {
            ports: vec![(1, 1), (chunks.clients[0].listener_port, 2)],
            max_inflight: 20,
        };
        let snap = import(FIXTURE, written(), &fit).unwrap().snapshot;
        assert!(snap.sessions.iter().all(|s| s.listener == 2));
    }

    #[test]
    fn a_file_cut_short_says_where() {
        assert_eq!(
            read(TRUNCATED, written(), &Fit::default()).err().unwrap(),
            "cut short: the chunk at byte 867 says 302 bytes, 125 are left"
        );
        let mut old = FIXTURE.to_vec();
        old[22] = 4;
        let err = read(&old, written(), &Fit::default()).err().unwrap();
        assert!(err.starts_with("format version 4;"), "{err}");
    }

    /// Every cut and many changed bytes: an error or a state the broker
    /// takes, never a panic.
    #[test]
    fn damage_anywhere_is_an_error_or_a_state_not_a_panic() {
        for len in 0..FIXTURE.len() {
            let _ = import(&FIXTURE[..len], written(), &Fit::default());
        }
        for i in 0..FIXTURE.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bytes = FIXTURE.to_vec();
                bytes[i] ^= flip;
                let _ = import(&bytes, written(), &Fit::default());
            }
        }
    }
}
