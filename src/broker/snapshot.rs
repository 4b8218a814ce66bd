//! The broker's durable state as plain data: retained messages and the
//! sessions that outlive their connection (subscriptions, queued and
//! in-flight QoS 1/2 messages, packet ids, expiry). `persist` writes it to
//! disk and reads it back; the core only converts to and from it.
//!
//! Times are wall-clock seconds since the Unix epoch, so a message or
//! session keeps expiring while the broker is down.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::session::{Awaiting, Flow, Inflight, Outgoing, Session};
use super::sys::is_sys;
use super::timer::Timer;
use super::topic::{Sub, parse_shared};
use super::{Broker, Message, Slot};
use crate::protocol::{Properties, QoS, SubOptions};

#[derive(Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Every message referred to below, once however many refer to it.
    pub messages: Vec<StoredMessage>,
    /// Indices into `messages`.
    pub retained: Vec<u32>,
    pub sessions: Vec<StoredSession>,
}

#[derive(Debug, PartialEq)]
pub struct StoredMessage {
    pub id: u64,
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
    pub expires_at: Option<u64>,
}

#[derive(Debug, PartialEq)]
pub struct StoredSession {
    pub client_id: String,
    pub username: Option<String>,
    /// Whose rules apply: the listener it last came through
    /// (`per_listener_settings`).
    pub listener: u8,
    /// Session Expiry Interval in seconds; `u32::MAX` is forever.
    pub expiry: u32,
    /// When an offline session ends; None for one that was online (its
    /// expiry counts from the restart, when its connection went).
    pub expires_at: Option<u64>,
    pub last_packet_id: u16,
    pub subscriptions: Vec<StoredSub>,
    pub inflight: Vec<StoredInflight>,
    pub queue: Vec<StoredOutgoing>,
    /// Inbound QoS 2 ids PUBREC'd, awaiting PUBREL.
    pub awaiting_rel: Vec<u16>,
}

#[derive(Debug, PartialEq)]
pub struct StoredSub {
    pub filter: String,
    pub options: SubOptions,
    pub id: u32,
}

#[derive(Debug, PartialEq)]
pub struct StoredInflight {
    pub packet_id: u16,
    pub awaiting: Awaiting,
    pub out: StoredOutgoing,
}

#[derive(Debug, PartialEq)]
pub struct StoredOutgoing {
    /// Index into `Snapshot::messages`.
    pub msg: u32,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    pub share: Option<String>,
}

/// Converts between the loop's monotonic clock and wall-clock seconds.
#[derive(Clone, Copy)]
pub(super) struct Clock {
    now: Instant,
    wall: u64,
}

impl Clock {
    pub(super) fn new(now: Instant, wall: SystemTime) -> Clock {
        let wall = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        Clock {
            now,
            wall: wall.as_secs(),
        }
    }

    /// Rounded up, so nothing is kept past its time.
    fn to_wall(self, at: Instant) -> u64 {
        let left = at.saturating_duration_since(self.now);
        self.wall + left.as_secs() + u64::from(left.subsec_nanos() > 0)
    }

    /// None when `at` has passed.
    fn to_instant(self, at: u64) -> Option<Instant> {
        at.checked_sub(self.wall)
            .filter(|&left| left > 0)
            .map(|left| self.now + Duration::from_secs(left))
    }
}

pub(super) fn to_stored(msg: &Message, clock: Clock) -> StoredMessage {
    StoredMessage {
        id: msg.id,
        topic: msg.topic.clone(),
        payload: msg.payload.clone(),
        qos: msg.qos,
        retain: msg.retain,
        properties: msg.properties.clone(),
        expires_at: msg.expires.map(|at| clock.to_wall(at)),
    }
}

/// None when it expired meanwhile.
pub(super) fn from_stored(m: StoredMessage, clock: Clock) -> Option<Rc<Message>> {
    let expires = match m.expires_at {
        Some(at) => Some(clock.to_instant(at)?),
        None => None,
    };
    Some(Rc::new(Message {
        id: m.id,
        _stored: super::message::Stored::new(&m.payload),
        topic: m.topic,
        payload: m.payload,
        qos: m.qos,
        retain: m.retain,
        properties: m.properties,
        expires,
    }))
}

/// Collects messages, each once, numbering them by first appearance.
#[derive(Default)]
struct MessageTable {
    index: HashMap<*const Message, u32>,
    stored: Vec<StoredMessage>,
}

impl MessageTable {
    fn add(&mut self, msg: &Rc<Message>, clock: Clock) -> u32 {
        let next = self.stored.len() as u32;
        *self.index.entry(Rc::as_ptr(msg)).or_insert_with(|| {
            self.stored.push(to_stored(msg, clock));
            next
        })
    }

    fn outgoing(&mut self, o: &Outgoing, clock: Clock) -> StoredOutgoing {
        StoredOutgoing {
            msg: self.add(&o.msg, clock),
            qos: o.qos,
            retain: o.retain,
            sub_ids: o.sub_ids().to_vec(),
            share: o.share().map(|s| s.to_string()),
        }
    }
}

impl Broker {
    /// How many changes worth saving (retained messages, subscriptions,
    /// messages queued or acknowledged for persistent sessions) the broker
    /// has seen; `persist` saves when it moved.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The durable state now. Sessions that end with their connection
    /// (expiry 0) are left out, as are expired messages.
    pub fn snapshot(&self, now: Instant, wall: SystemTime) -> Snapshot {
        let clock = Clock::new(now, wall);
        let mut table = MessageTable::default();
        let retained = self
            .retained
            .values()
            .filter(|m| !m.expired(now) && !is_sys(&m.topic))
            .map(|m| table.add(m, clock))
            .collect();
        let offline_until = self.session_expiries();
        let mut sessions = Vec::new();
        for (s, session) in &self.sessions {
            if session.expiry == 0 {
                continue;
            }
            let flow = session.flow();
            let expires_at = match (session.conn, offline_until.get(&s)) {
                (None, Some(&at)) => Some(clock.to_wall(at)),
                _ => None,
            };
            sessions.push(StoredSession {
                client_id: session.client_id.to_string(),
                username: session.username.as_deref().map(String::from),
                listener: session.auth,
                expiry: session.expiry,
                expires_at,
                last_packet_id: session.last_packet_id,
                subscriptions: self.stored_subs(s, session),
                inflight: flow
                    .inflight
                    .iter()
                    .map(|f| StoredInflight {
                        packet_id: f.packet_id,
                        awaiting: f.awaiting,
                        out: table.outgoing(&f.out, clock),
                    })
                    .collect(),
                queue: self
                    .waiting(flow, now)
                    .filter(|o| o.qos != QoS::AtMostOnce)
                    .map(|o| table.outgoing(&o, clock))
                    .collect(),
                awaiting_rel: flow.awaiting_rel.clone(),
            });
        }
        Snapshot {
            messages: table.stored,
            retained,
            sessions,
        }
    }

    /// What waits to be sent in `flow`, in order: the retained messages
    /// still owed to new subscriptions, then the queue.
    fn waiting<'a>(&'a self, flow: &'a Flow, now: Instant) -> impl Iterator<Item = Outgoing> + 'a {
        let retained = flow.retained.iter().flat_map(move |cursor| {
            let mut cursor = cursor.clone();
            std::iter::from_fn(move || cursor.next(&self.retained, now))
        });
        retained.chain(flow.queue.iter().cloned())
    }

    /// When each offline session expires, from its live timer entry.
    fn session_expiries(&self) -> HashMap<usize, Instant> {
        self.timers
            .iter()
            .filter_map(|(when, timer)| match timer {
                Timer::SessionExpiry(s, generation)
                    if self
                        .sessions
                        .get(s.get())
                        .is_some_and(|s| s.generation == generation) =>
                {
                    Some((s.get(), when))
                }
                _ => None,
            })
            .collect()
    }

    fn stored_subs(&self, s: usize, session: &Session) -> Vec<StoredSub> {
        let lookup = |filter: &str| match parse_shared(filter) {
            Some(_) => self
                .group_ids
                .get(filter)
                .and_then(|&g| self.groups[g].members.iter().find(|m| m.session == s))
                .copied(),
            None => self.topics.get(filter, s),
        };
        session
            .subscriptions
            .iter()
            .filter_map(|filter| {
                let sub = lookup(filter)?;
                Some(StoredSub {
                    filter: filter.to_string(),
                    options: sub.options,
                    id: sub.id,
                })
            })
            .collect()
    }

    /// Loads a snapshot into a broker that has no sessions yet: every
    /// session starts offline, its expiry running.
    pub fn restore(&mut self, snap: Snapshot, now: Instant, wall: SystemTime) {
        let clock = Clock::new(now, wall);
        let messages: Vec<Option<Rc<Message>>> = snap
            .messages
            .into_iter()
            .map(|m| from_stored(m, clock))
            .collect();
        // New messages must not take the number of a restored one.
        let top = messages.iter().flatten().map(|m| m.id).max().unwrap_or(0);
        self.next_serial = self.next_serial.max(top);
        let get = |i: u32| messages.get(i as usize).cloned().flatten();
        for msg in snap.retained.into_iter().filter_map(get) {
            self.retained.set(&msg);
        }
        let outgoing = |o: StoredOutgoing| {
            let (sub_ids, share) = (o.sub_ids.into(), o.share.map(Into::into));
            Some(Outgoing::new(get(o.msg)?, o.qos, o.retain, sub_ids, share))
        };
        for stored in snap.sessions {
            let ends = match stored.expires_at {
                Some(at) => match clock.to_instant(at) {
                    Some(at) => Some(at),
                    None => continue,
                },
                None if stored.expiry == u32::MAX => None,
                None => Some(now + Duration::from_secs(u64::from(stored.expiry))),
            };
            let client_id: Rc<str> = stored.client_id.into();
            let s = self.sessions.insert(Session::new(client_id.clone()));
            self.by_client_id.insert(client_id, s);
            for sub in stored.subscriptions {
                self.add_stored_sub(s, sub);
            }
            let generation = self.serial();
            let session = &mut self.sessions[s];
            session.username = stored.username.map(Into::into);
            session.auth = stored.listener;
            session.expiry = stored.expiry;
            session.generation = generation;
            session.last_packet_id = stored.last_packet_id;
            let flow = session.flow_mut(&mut self.spare_flows);
            flow.awaiting_rel = stored.awaiting_rel;
            flow.inflight = stored
                .inflight
                .into_iter()
                .filter_map(|f| {
                    Some(Inflight {
                        packet_id: f.packet_id,
                        awaiting: f.awaiting,
                        out: outgoing(f.out)?,
                    })
                })
                .collect();
            for o in stored.queue.into_iter().filter_map(outgoing) {
                flow.enqueue(o, 0, 0);
            }
            session.release_flow(&mut self.spare_flows);
            if let Some(at) = ends {
                self.timers
                    .add(at, Timer::SessionExpiry(Slot::new(s), generation));
            }
        }
    }
}

impl Broker {
    /// Subscribes session `s` as a snapshot or journal says it was.
    /// Returns whether it was new (replaced none).
    pub(super) fn add_stored_sub(&mut self, s: usize, sub: StoredSub) -> bool {
        let filter: Rc<str> = sub.filter.into();
        let entry = Sub {
            session: s,
            options: sub.options,
            id: sub.id,
        };
        let added = match parse_shared(&filter) {
            Some(Ok((_, inner))) => self.join_group(&filter, inner, entry),
            Some(Err(())) => false,
            None => self.topics.subscribe(&filter, entry),
        };
        if added {
            self.sessions[s].subscriptions.insert(filter);
        }
        added
    }
}
