//! `persistence_mode journal`, the core's side: every change to the
//! durable state is also written down as a record, which `persist`
//! appends and fsyncs before the acks that promise it leave; at start-up
//! the records are replayed on top of the snapshot.
//!
//! A record names a kept session by a key (its slot), which a `Session`
//! record declares first with the client id: what a record costs on disk
//! and in memory does not grow with the client id's length. A session is
//! declared again after its settings change, after the journal starts over
//! and in a new process, so a key always means what the last declaration
//! before it says.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use super::retained::Cursor;
use super::session::{Awaiting, Outgoing, Session};
use super::snapshot::{Clock, from_stored, to_stored};
use super::subscribe::wants_retained;
use super::timer::Timer;
use super::topic::parse_shared;
use super::{Broker, Message, Slot, StoredMessage, StoredSub};

/// One change to the durable state: what happened since the last
/// snapshot, replayed on top of it at start-up in the order it happened.
#[derive(Debug, PartialEq)]
pub enum JournalRecord {
    /// Kept session `client_id` (made if new) is `key` in the records
    /// that follow, and connected with `login`; `expiry` is its Session
    /// Expiry Interval. No key and no login: what journals before keys
    /// said of a session in other records.
    Session {
        key: Option<u32>,
        client_id: String,
        login: Option<Login>,
        expiry: u32,
    },
    /// An accepted PUBLISH that was retained or queued for a kept session;
    /// for QoS 2 from a kept session, that session and the packet id whose
    /// PUBREL is then awaited.
    Message {
        msg: StoredMessage,
        publisher: Option<(Who, u16)>,
    },
    /// PUBREL received: the QoS 2 id is free again.
    Released {
        who: Who,
        packet_id: u16,
    },
    Subscribe {
        who: Who,
        sub: StoredSub,
    },
    Unsubscribe {
        who: Who,
        filter: String,
    },
    /// A kept session ended (expired, or discarded by a clean start).
    SessionEnd {
        who: Who,
    },
    /// A QoS 2 message `msg_id` went to a kept session's subscriber under
    /// `packet_id`. After a crash it goes again under that id, with DUP, so
    /// a subscriber that has it already answers PUBREC and does not take it
    /// twice ([MQTT-4.3.3-10]).
    Sent {
        who: Who,
        msg_id: u64,
        packet_id: u16,
    },
    /// A kept session's subscriber sent PUBREC for message `msg_id` under
    /// `packet_id`: PUBREL is due, the message is not sent again.
    Received {
        who: Who,
        msg_id: u64,
        packet_id: u16,
    },
    /// A kept session's subscriber finished message `msg_id` (PUBACK, or
    /// PUBCOMP): it is not sent again.
    Delivered {
        who: Who,
        msg_id: u64,
    },
    /// Message `msg_id` did not fit a kept session's queue (its client away
    /// or stuck): the replay, which restores queues whatever their bounds,
    /// takes it out again.
    Dropped {
        who: Who,
        msg_id: u64,
    },
}

/// Which session a record is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Who {
    /// As the last `Session` record with this key declared.
    Key(u32),
    /// By client id, in journals written before keys.
    Name(String),
}

/// What a session connected with, for access checks while it is away.
#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    pub username: Option<String>,
    /// The listener whose rules apply (`per_listener_settings`).
    pub listener: u8,
}

/// The journal while it is on.
pub(super) struct Journaling {
    records: Vec<JournalRecord>,
    clock: Clock,
}

impl Journaling {
    /// `msg` as a record stores it, its expiry in wall-clock time.
    pub fn stored(&self, msg: &Message) -> StoredMessage {
        to_stored(msg, self.clock)
    }
}

/// The sessions a replay knows by key so far.
#[derive(Default)]
pub struct ReplayKeys(HashMap<u32, usize>);

impl Broker {
    /// Turns journaling on: from now on every change to the durable state
    /// is also recorded, for [`Broker::take_journal`], and acks that
    /// promise it is stored wait for the loop's commit
    /// ([`super::Action::SendAfterCommit`]), as do QoS 2 PUBLISHes to kept
    /// sessions ([`super::Action::PublishAfterCommit`]). `now` and `wall`
    /// tie the clocks together for expiry times.
    pub fn enable_journal(&mut self, now: Instant, wall: SystemTime) {
        self.journal = Some(Journaling {
            records: Vec::new(),
            clock: Clock::new(now, wall),
        });
        self.journal_restarted();
    }

    /// The journal starts over (after a snapshot): every session is
    /// declared again before its next record.
    pub fn journal_restarted(&mut self) {
        for (_, session) in &mut self.sessions {
            session.declared = false;
        }
    }

    /// The records since the last call, to append and fsync.
    pub fn take_journal(&mut self) -> Vec<JournalRecord> {
        self.journal
            .as_mut()
            .map(|j| std::mem::take(&mut j.records))
            .unwrap_or_default()
    }

    /// How many records are waiting to be taken; an ack given after they
    /// grew depends on them.
    pub(super) fn journal_len(&self) -> usize {
        self.journal.as_ref().map_or(0, |j| j.records.len())
    }

    pub(super) fn record(&mut self, make: impl FnOnce(&Journaling) -> JournalRecord) {
        self.record_at(self.journal_len(), make);
    }

    /// As [`Broker::record`], but placed before the records added since
    /// there were `at`, which a replay must apply after it.
    pub(super) fn record_at(&mut self, at: usize, make: impl FnOnce(&Journaling) -> JournalRecord) {
        if let Some(j) = &mut self.journal {
            let rec = make(j);
            j.records.insert(at, rec);
        }
    }

    /// Records what `make` says of session `s`, if it is kept and the
    /// journal is on, naming it by its key.
    pub(super) fn record_for(&mut self, s: usize, make: impl FnOnce(Who) -> JournalRecord) {
        if self.journal.is_some() && self.sessions[s].expiry != 0 {
            let who = self.session_key(s);
            self.record(|_| make(who));
        }
    }

    /// The key records name kept session `s` by, declared first if need
    /// be (with the journal on).
    pub(super) fn session_key(&mut self, s: usize) -> Who {
        let session = &self.sessions[s];
        let key = Slot::new(s).0;
        if !session.declared && self.journal.is_some() {
            let rec = JournalRecord::Session {
                key: Some(key),
                client_id: session.client_id.to_string(),
                login: Some(Login {
                    username: session.username.as_deref().map(String::from),
                    listener: session.auth,
                }),
                expiry: session.expiry,
            };
            self.record(|_| rec);
            self.sessions[s].declared = true;
        }
        Who::Key(key)
    }

    /// Applies one journal record at start-up, after the snapshot. A
    /// session's queue takes what the records put in it, whatever its
    /// bounds: what did not fit was recorded as dropped.
    pub fn replay(
        &mut self,
        rec: JournalRecord,
        keys: &mut ReplayKeys,
        now: Instant,
        wall: SystemTime,
    ) {
        let clock = Clock::new(now, wall);
        let mut out = Vec::new();
        self.replaying = true;
        match rec {
            JournalRecord::Session {
                key,
                client_id,
                login,
                expiry,
            } => {
                let s = self.kept_session(client_id, expiry, now);
                if let Some(login) = login {
                    self.sessions[s].username = login.username.map(Into::into);
                    self.sessions[s].auth = login.listener;
                }
                if let Some(key) = key {
                    keys.0.insert(key, s);
                }
            }
            JournalRecord::Message { msg, publisher } => {
                let from = publisher.and_then(|(who, packet_id)| {
                    let s = self.resolve(&who, keys)?;
                    self.sessions[s]
                        .flow_mut(&mut self.spare_flows)
                        .awaiting_rel
                        .push(packet_id);
                    Some(s)
                });
                self.next_serial = self.next_serial.max(msg.id);
                if let Some(msg) = from_stored(msg, clock) {
                    if msg.retain {
                        self.retain(&msg);
                    }
                    self.route(msg, from, now, &mut out);
                }
            }
            JournalRecord::Released { who, packet_id } => {
                if let Some(s) = self.resolve(&who, keys) {
                    let session = &mut self.sessions[s];
                    session
                        .flow_mut(&mut self.spare_flows)
                        .awaiting_rel
                        .retain(|&p| p != packet_id);
                    session.release_flow(&mut self.spare_flows);
                }
            }
            JournalRecord::Subscribe { who, sub } => {
                if let Some(s) = self.resolve(&who, keys) {
                    let (filter, options, sub_id) = (sub.filter.clone(), sub.options, sub.id);
                    let new = self.add_stored_sub(s, sub);
                    // The retained messages it was sent, queued again: the
                    // records of their acks follow.
                    if parse_shared(&filter).is_none() && wants_retained(options, new) {
                        let mut cursor = Cursor::new(filter.into(), u64::MAX, options.qos, sub_id);
                        while let Some(o) = cursor.next(&self.retained, now) {
                            self.deliver(s, o, None, now, &mut out);
                        }
                    }
                }
            }
            JournalRecord::Unsubscribe { who, filter } => {
                if let Some(s) = self.resolve(&who, keys) {
                    if self.remove_subscription(&filter, s) {
                        self.sessions[s].subscriptions.remove(&filter);
                    }
                }
            }
            JournalRecord::SessionEnd { who } => {
                if let Some(s) = self.resolve(&who, keys) {
                    if let Who::Key(key) = who {
                        keys.0.remove(&key);
                    }
                    self.end_session(s, now, &mut out);
                }
            }
            JournalRecord::Sent {
                who,
                msg_id,
                packet_id,
            } => self.replay_inflight(&who, keys, msg_id, packet_id, Awaiting::Received),
            JournalRecord::Received {
                who,
                msg_id,
                packet_id,
            } => self.replay_inflight(&who, keys, msg_id, packet_id, Awaiting::Complete),
            JournalRecord::Delivered { who, msg_id } | JournalRecord::Dropped { who, msg_id } => {
                self.take_outgoing(&who, keys, msg_id);
            }
        }
        self.replaying = false;
    }

    /// The session a record names; None for one it does not know (gone
    /// already).
    fn resolve(&self, who: &Who, keys: &ReplayKeys) -> Option<usize> {
        match who {
            Who::Key(key) => keys.0.get(key).copied(),
            Who::Name(client_id) => self.by_client_id.get(client_id.as_str()).copied(),
        }
    }

    /// Puts message `msg_id` of `who`'s session in flight under
    /// `packet_id`, at the step the journal says it reached.
    fn replay_inflight(
        &mut self,
        who: &Who,
        keys: &ReplayKeys,
        msg_id: u64,
        packet_id: u16,
        awaiting: Awaiting,
    ) {
        if let Some((s, o)) = self.take_outgoing(who, keys, msg_id) {
            self.sessions[s].put_in_flight(&mut self.spare_flows, packet_id, awaiting, o);
        }
    }

    /// Removes message `msg_id` from the in-flight list or queue of `who`'s
    /// session; returns the session and the message.
    fn take_outgoing(
        &mut self,
        who: &Who,
        keys: &ReplayKeys,
        msg_id: u64,
    ) -> Option<(usize, Outgoing)> {
        let s = self.resolve(who, keys)?;
        let session = &mut self.sessions[s];
        let flow = session.flow_mut(&mut self.spare_flows);
        let found = match flow.inflight.iter().position(|f| f.out.msg.id == msg_id) {
            Some(i) => flow.inflight.remove(i).map(|f| f.out),
            None => flow
                .queue
                .iter()
                .position(|o| o.msg.id == msg_id)
                .and_then(|i| flow.remove_queued(i)),
        };
        session.release_flow(&mut self.spare_flows);
        found.map(|o| (s, o))
    }

    /// The offline session of `client_id` during a replay, made if new; its
    /// expiry runs from the restart, as for one that was online.
    fn kept_session(&mut self, client_id: String, expiry: u32, now: Instant) -> usize {
        if let Some(&s) = self.by_client_id.get(client_id.as_str()) {
            self.sessions[s].expiry = expiry;
            return s;
        }
        let client_id: Rc<str> = client_id.into();
        let s = self.sessions.insert(Session::new(client_id.clone()));
        self.by_client_id.insert(client_id, s);
        let generation = self.serial();
        let session = &mut self.sessions[s];
        session.generation = generation;
        session.expiry = expiry;
        if expiry != u32::MAX {
            let at = now + Duration::from_secs(u64::from(expiry));
            self.timers
                .add(at, Timer::SessionExpiry(Slot::new(s), generation));
        }
        s
    }
}
