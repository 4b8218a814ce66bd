//! The broker as a state machine, without IO: the event loop feeds it
//! connections, packets, closes and the time; it answers with [`Action`]s.
//! Every rule of the spec can so be tested with plain calls and a fake clock.
//!
//! Where a packet goes: [`Broker::packet`] dispatches on its type to
//! `connect.rs` (CONNECT, DISCONNECT), `publish.rs` (PUBLISH and its acks,
//! routing to subscribers, in-flight windows and queues) and `subscribe.rs`
//! (SUBSCRIBE, UNSUBSCRIBE, retained messages).

mod bridge;
mod connect;
mod filters;
#[cfg(any(test, fuzzing))]
mod invariants;
mod journal;
mod load;
mod message;
mod one_or_many;
mod publish;
mod retained;
mod session;
mod shared;
mod snapshot;
mod subscribe;
mod sys;
mod timer;
pub mod topic;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::protocol::{
    DecodeError, Packet, Properties, PublishRef, QoS, ReasonOnly, Version, Will, reason,
};
pub use bridge::{Remote, RemoteFilters};
pub use connect::Origin;
pub use journal::{JournalRecord, Login, ReplayKeys, Who};
pub use message::Message;
pub use session::Awaiting;
use session::{Role, Session, SpareFlows};
pub use snapshot::{
    Snapshot, StoredInflight, StoredMessage, StoredOutgoing, StoredSession, StoredSub,
};
pub use sys::Memory;
use timer::{Timer, Timers};
use topic::TopicTable;

/// How a client's connection ended, for the log line mosquitto writes.
#[derive(Debug, Clone, Copy)]
enum Gone {
    /// It said DISCONNECT.
    Disconnected,
    /// Its socket closed (or failed) without DISCONNECT.
    Closed,
    /// roost closed it, for this reason code when it has one.
    Dropped(Option<u8>),
}

/// What is refused while the heap is over `memory_limit`.
#[derive(Debug, Clone, Copy)]
enum Refused {
    Messages = 1,
    Subscriptions = 2,
}

/// A connection, as the event loop numbers them.
pub type ConnId = usize;

/// Packets this small are read whatever `memory_limit` says (see
/// [`Broker::max_inbound`]).
const SMALL_PACKET: usize = 64 * 1024;

/// How often expired retained messages are swept out of the store.
const RETAINED_SWEEP: Duration = Duration::from_secs(60);

/// The largest packet MQTT can frame (a 4-byte Remaining Length): the
/// default limit, as in mosquitto.
pub const MAX_PACKET_SIZE: u32 = 268_435_455;

/// A slab key (a connection id or a session slot) in 32 bits, for what is
/// stored once per connection or timer: keys stay far below 2^32, as
/// connections are bounded by the descriptor limit and sessions by memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot(u32);

impl Slot {
    fn new(key: usize) -> Slot {
        Slot(u32::try_from(key).expect("slab keys fit in 32 bits"))
    }

    fn get(self) -> usize {
        self.0 as usize
    }
}

/// What the broker asks the event loop to do.
#[derive(Debug)]
pub enum Action {
    Send(ConnId, Packet),
    /// A PUBLISH of a shared message: encoded straight from it.
    Publish(ConnId, Delivery),
    /// An ack that promises something is stored (`persistence_mode
    /// journal`): sent once the records taken with
    /// [`Broker::take_journal`] are on disk, never before.
    SendAfterCommit(ConnId, Packet),
    /// A QoS 2 PUBLISH to a kept session whose packet id is journaled:
    /// sent, like an ack, once that record is on disk.
    PublishAfterCommit(ConnId, Delivery),
    /// Send what is queued, then close the connection. The broker has
    /// already forgotten it; no `closed` call is expected.
    Close(ConnId),
    /// Stop reading the connection at its next PUBLISH: a subscriber its
    /// messages go to has a full queue.
    Hold(ConnId),
    /// Read the connection again.
    Resume(ConnId),
}

impl Action {
    /// The connection it is for.
    pub fn conn(&self) -> ConnId {
        match self {
            Action::Send(id, _)
            | Action::Publish(id, _)
            | Action::SendAfterCommit(id, _)
            | Action::PublishAfterCommit(id, _)
            | Action::Close(id)
            | Action::Hold(id)
            | Action::Resume(id) => *id,
        }
    }
}

#[derive(Debug)]
pub struct Delivery {
    pub msg: Rc<Message>,
    pub qos: QoS,
    pub retain: bool,
    pub dup: bool,
    pub packet_id: u16,
    /// Per-delivery v5 properties: subscription ids, remaining expiry,
    /// topic alias.
    pub extra: Properties,
    /// The topic is sent as its alias alone.
    pub omit_topic: bool,
}

impl Delivery {
    /// Whether this PUBLISH tells the client a new topic alias: it must then
    /// not be dropped, or later PUBLISHes naming only the alias break.
    pub fn defines_alias(&self) -> bool {
        !self.omit_topic && crate::property!(self.extra, TopicAlias).is_some()
    }

    /// Its encoded size.
    pub fn len(&self, version: Version) -> usize {
        crate::protocol::publish_len(&self.as_publish(), version)
    }

    /// The PUBLISH to encode.
    pub fn as_publish(&self) -> PublishRef<'_> {
        PublishRef {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: if self.omit_topic { "" } else { &self.msg.topic },
            packet_id: self.packet_id,
            properties: &self.msg.properties,
            extra: &self.extra,
            payload: &self.msg.payload,
        }
    }
}

/// Limits and switches of the broker core (the config file sets them).
#[derive(Debug, Clone)]
pub struct Config {
    /// QoS 1/2 messages in flight per client (mosquitto's
    /// `max_inflight_messages`); a v5 client's Receive Maximum may lower it.
    pub max_inflight: u16,
    /// Messages queued per session beyond the in-flight window; 0 for no
    /// limit (as mosquitto).
    pub max_queued: usize,
    /// Payload bytes queued per session; 0 for no limit. A u32, so the
    /// count fits in the session's padding.
    pub max_queued_bytes: u32,
    /// How long an online subscriber's full queue may hold its publishers
    /// (`slow_subscriber_timeout`); zero: never, it drops at its bound.
    pub slow_subscriber_timeout: Duration,
    /// Bytes of PUBLISH a queue is emptied into a connection's output at a
    /// time (`max_outgoing_bytes`): the rest waits for the loop to say the
    /// output has room again.
    pub max_outgoing: usize,
    /// Largest packet accepted, and advertised to v5 clients.
    pub max_packet_size: u32,
    /// Largest payload accepted (mosquitto's `message_size_limit`); 0 for
    /// no limit.
    pub message_size_limit: u32,
    /// What the client ids roost assigns start with (`auto_id_prefix`).
    pub auto_id_prefix: String,
    /// Whether clients connecting and going are logged
    /// (`connection_messages`).
    pub connection_messages: bool,
    /// Cap on client keep-alive in seconds; 0 for none.
    pub max_keepalive: u16,
    /// How long a connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// Inbound topic aliases a v5 client may use.
    pub topic_alias_max: u16,
    /// Whether roost assigns topic aliases to what it sends v5 clients
    /// (up to their Topic Alias Maximum).
    pub outbound_topic_aliases: bool,
    /// False: retained messages are refused (`retain_available`).
    pub retain_available: bool,
    /// The longest a session outlives its connection, in seconds
    /// (`persistent_client_expiration`); None: as long as the client asks.
    pub persistent_client_expiration: Option<u32>,
    /// The rules for clients, by the `auth` number of the listener their
    /// connection came through.
    pub auth: Vec<Auth>,
    /// The listeners, by the number [`Broker::connected`] is given.
    pub listeners: Vec<Listener>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_inflight: 20,
            max_queued: 1000,
            max_queued_bytes: 0,
            slow_subscriber_timeout: Duration::from_secs(10),
            max_outgoing: 8 * 1024,
            max_packet_size: MAX_PACKET_SIZE,
            message_size_limit: 0,
            auto_id_prefix: "auto-".into(),
            connection_messages: true,
            max_keepalive: 0,
            connect_timeout: Duration::from_secs(10),
            topic_alias_max: 10,
            outbound_topic_aliases: false,
            retain_available: true,
            persistent_client_expiration: None,
            auth: vec![Auth::default()],
            listeners: vec![Listener::default()],
        }
    }
}

/// [`Conn::listener`] of a bridge's connection: the rules of none. (There
/// are at most 255 listeners, `config::listeners`.)
const NO_LISTENER: u8 = u8::MAX;

/// What the broker knows of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// Index into [`Config::auth`]: the rules its clients meet.
    pub auth: u8,
    /// `max_qos`: the highest QoS its clients may publish with and are
    /// granted; v5 clients are told in CONNACK.
    pub max_qos: QoS,
}

impl Default for Listener {
    fn default() -> Self {
        Listener {
            auth: 0,
            max_qos: QoS::ExactlyOnce,
        }
    }
}

/// Who may connect through a listener and what they may do: one for
/// every listener, or one each with `per_listener_settings`.
#[derive(Debug, Clone)]
pub struct Auth {
    pub allow_anonymous: bool,
    /// Who may connect, publish and read; None lets everyone (subject to
    /// `allow_anonymous`) do everything. Shared, so the config can be
    /// cloned; replaced at run time by [`Broker::set_access`].
    pub access: Option<Rc<dyn Access>>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            allow_anonymous: true,
            access: None,
        }
    }
}

/// What a client presents in CONNECT, for the authentication hook.
pub struct Credentials<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
}

/// The access control the core consults: the password and ACL files plug
/// in here (`crate::auth`). Clients are named by client id and the user
/// name they connected with.
pub trait Access: std::fmt::Debug {
    /// Whether a client that gives a user name may connect (anonymous
    /// clients are let in or not by `allow_anonymous`).
    fn authenticate(&self, creds: &Credentials) -> bool;
    /// What `username` logs in with now, as a number that changes when it
    /// does (a new password); None once the user may not log in at all.
    /// A reload compares it before and after, and closes the connections
    /// of users whose login changed.
    fn login(&self, username: &str) -> Option<u64>;
    fn may_publish(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool;
    /// Checked for every message delivered, so lost rights take effect at
    /// once and no subscription, retained message or will leaks. (Every
    /// subscription is granted, as by mosquitto 2: what it may deliver is
    /// decided here.)
    fn may_read(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool;
}

/// Counters for `$SYS`. The core counts what it decides; the loop counts
/// what crosses the sockets.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// MQTT packets of any type read from clients (loop).
    pub packets_received: u64,
    /// MQTT packets of any type written for clients (loop).
    pub packets_sent: u64,
    /// Bytes read from and written to client sockets (loop).
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// PUBLISH packets from clients, and their payload bytes.
    pub publish_received: u64,
    pub publish_bytes_received: u64,
    /// PUBLISH packets written for clients, and their payload bytes (loop).
    pub publish_sent: u64,
    pub publish_bytes_sent: u64,
    /// Sockets accepted, those refused at once included (loop).
    pub sockets_accepted: u64,
    /// CONNECT packets, accepted or not.
    pub connects_received: u64,
    /// Sessions ended because their expiry interval ran out while their
    /// client was away.
    pub clients_expired: u64,
    /// Messages not delivered to a subscriber because a bound was hit
    /// (queue full, packet too large for it, expired, a client that does
    /// not read).
    pub publish_dropped: u64,
}

/// Per-connection state. Small on purpose: one exists per socket.
struct Conn {
    /// The serial of its live timer entry, new each time one is set:
    /// entries with another are stale, those of an earlier connection
    /// with the same (reused) id included.
    timer: u64,
    /// Set once CONNECT has been accepted.
    session: Option<Slot>,
    version: Version,
    /// Keep-alive in seconds, 0 when off.
    keep_alive: u16,
    /// When the connection is closed unless heard from.
    deadline: Option<Instant>,
    will: Option<Box<Will>>,
    /// v5 Maximum Packet Size the client accepts.
    max_packet: u32,
    /// v5 topic aliases, allocated only for a client that uses them.
    aliases: Option<Box<Aliases>>,
    /// Index into `Config::listeners`: the listener it came through. A
    /// u8 fills padding: `Conn` stays 56 bytes.
    listener: u8,
}

impl Conn {
    /// How long the connection may be silent: 1.5 x keep-alive
    /// ([MQTT-3.1.2-24]); None when keep-alive is off.
    fn idle_limit(&self) -> Option<Duration> {
        (self.keep_alive > 0).then(|| Duration::from_millis(u64::from(self.keep_alive) * 1500))
    }
}

#[derive(Default)]
struct Aliases {
    /// Alias to topic as the client set them; sized on first use.
    inbound: Vec<Option<String>>,
    /// When enabled and the client accepts them.
    outbound: Option<OutAliases>,
}

/// Topics roost has given an alias on one connection. Aliases are handed
/// out in order until the client's maximum; later topics go out in full.
struct OutAliases {
    max: u16,
    map: HashMap<String, u16>,
}

/// Connections by id. The loop's ids are dense slab keys, so a vector
/// indexed by them beats a hash map: no hashing, and no table slack that
/// every idle connection would pay for.
#[derive(Default)]
struct Conns {
    slots: Vec<Option<Conn>>,
    live: usize,
}

impl Conns {
    fn get(&self, id: ConnId) -> Option<&Conn> {
        self.slots.get(id).and_then(Option::as_ref)
    }

    fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.slots.get_mut(id).and_then(Option::as_mut)
    }

    fn insert(&mut self, id: ConnId, conn: Conn) {
        if id >= self.slots.len() {
            self.slots.resize_with(id + 1, || None);
        }
        if self.slots[id].replace(conn).is_none() {
            self.live += 1;
        }
    }

    fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let conn = self.slots.get_mut(id).and_then(Option::take);
        self.live -= usize::from(conn.is_some());
        // The room a burst of connections took goes back as they close.
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
        if self.slots.capacity() > 2 * self.slots.len() + 64 {
            self.slots.shrink_to(self.slots.len() * 2);
        }
        conn
    }

    fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, c)| c.as_ref().map(|c| (id, c)))
    }
}

pub struct Broker {
    config: Config,
    conns: Conns,
    sessions: Slab<Session>,
    spare_flows: SpareFlows,
    /// What one connection's output can take now (see
    /// [`Broker::output_room`]); used up by the next pump for it.
    room: Option<(ConnId, usize)>,
    by_client_id: HashMap<Rc<str>, usize>,
    topics: TopicTable,
    /// Shared subscriptions: filters map to groups (`Sub::session` holds
    /// the group slot), groups to members.
    shared: TopicTable,
    groups: Slab<shared::Group>,
    group_ids: HashMap<Rc<str>, usize>,
    retained: retained::Retained,
    /// When expired retained messages are next swept out (walks skip them
    /// meanwhile).
    next_sweep: Option<Instant>,
    /// Connections not read from because a subscriber's queue is full, by
    /// how many subscribers hold them.
    held: HashMap<ConnId, u32>,
    timers: Timers,
    /// Reused by routing, so a publish allocates no match list.
    scratch: Vec<topic::Sub>,
    next_serial: u64,
    /// Changes to durable state, for `persist` (see [`Broker::changes`]).
    changes: u64,
    /// The records of `persistence_mode journal`, when on.
    journal: Option<journal::Journaling>,
    /// A journal replay is on: queues take what it puts in them.
    replaying: bool,
    /// False while the journal cannot be written: QoS 1/2 messages are
    /// refused rather than acknowledged unstored.
    storage_ok: bool,
    pub stats: Stats,
    /// What `$SYS` last published.
    sys: sys::Published,
    /// Heap bytes past which new messages and subscriptions are refused
    /// (`memory_limit`); 0 for none.
    memory_limit: usize,
    /// What the heap holds now: `mem::heap_current`, or a test's.
    heap: fn() -> usize,
    /// What was refused for memory and logged since the heap was last
    /// under the limit ([`Refused`] bits).
    memory_logged: u8,
    /// The largest `max_inflight` in force since the start: a reload that
    /// lowers it leaves what was in flight (for the invariants).
    #[cfg(any(test, fuzzing))]
    inflight_bound: u16,
}

impl Broker {
    pub fn new(config: Config) -> Broker {
        Broker {
            #[cfg(any(test, fuzzing))]
            inflight_bound: config.max_inflight,
            config,
            conns: Conns::default(),
            sessions: Slab::new(),
            spare_flows: SpareFlows::default(),
            room: None,
            by_client_id: HashMap::new(),
            topics: TopicTable::default(),
            shared: TopicTable::default(),
            groups: Slab::new(),
            group_ids: HashMap::new(),
            retained: retained::Retained::default(),
            next_sweep: None,
            held: HashMap::new(),
            timers: Timers::default(),
            scratch: Vec::new(),
            next_serial: 0,
            changes: 0,
            journal: None,
            replaying: false,
            storage_ok: true,
            stats: Stats::default(),
            sys: sys::Published::default(),
            memory_limit: 0,
            heap: crate::mem::heap_current,
            memory_logged: 0,
        }
    }

    /// A reload: the limits and switches of `config` in place of those in
    /// force, for what comes from now on (its `auth` and `listeners` stay;
    /// [`Broker::set_access`] replaces the rules). An online client whose
    /// queue is past a lowered bound counts as full from now, as if it had
    /// just filled it; what an offline one holds stays.
    pub fn reconfigure(&mut self, config: &Config, now: Instant) {
        let auth = std::mem::take(&mut self.config.auth);
        let listeners = std::mem::take(&mut self.config.listeners);
        self.config = Config {
            auth,
            listeners,
            ..config.clone()
        };
        #[cfg(any(test, fuzzing))]
        {
            self.inflight_bound = self.inflight_bound.max(config.max_inflight);
        }
        let (max, max_bytes) = (config.max_queued, config.max_queued_bytes);
        let full: Vec<usize> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.conn.is_some() && s.flow().is_full(max, max_bytes))
            .map(|(s, _)| s)
            .collect();
        for s in full {
            self.mark_full(s, now);
        }
    }

    /// Replaces the rules of `Config::auth[auth]` (a reload: the password
    /// or ACL file changed, or `allow_anonymous`). As in mosquitto, a
    /// connected client the new rules would not let in is closed: a user
    /// gone from the password file or whose password changed, or an
    /// anonymous one no longer allowed. Others stay, and from now on every
    /// publish and delivery is checked against the new rules. User names
    /// are only kept while access control is on: clients connected before
    /// the first `Some` count as anonymous. Returns how many were closed.
    pub fn set_access(
        &mut self,
        auth: usize,
        rules: Auth,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> usize {
        let old = std::mem::replace(&mut self.config.auth[auth], rules);
        let new = &self.config.auth[auth];
        let revoked: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| usize::from(self.listener(c.listener).auth) == auth)
            .filter_map(|(id, c)| {
                let session = &self.sessions[c.session?.get()];
                // As `connect` decides, where a client let in while access
                // control was off counts as anonymous.
                let allowed = match (&old.access, &new.access, session.username.as_deref()) {
                    _ if session.certified => true,
                    (Some(old), Some(new), Some(user)) => {
                        new.login(user).is_some() && new.login(user) == old.login(user)
                    }
                    _ => new.allow_anonymous,
                };
                (!allowed && session.role != Role::Bridge).then_some(id)
            })
            .collect();
        for &id in &revoked {
            self.drop_conn(id, Some(reason::NOT_AUTHORIZED), now, out);
        }
        revoked.len()
    }

    /// Sets `memory_limit`: while the heap is over it, new messages and
    /// subscriptions are refused (and the loop takes no new connections);
    /// everything else goes on.
    /// Listener `index` ([`Conn::listener`]).
    fn listener(&self, index: u8) -> Listener {
        match index {
            NO_LISTENER => Listener::default(),
            i => self.config.listeners[usize::from(i)],
        }
    }

    pub fn set_memory_limit(&mut self, limit: usize) {
        self.memory_limit = limit;
    }

    /// Whether the heap is over `memory_limit`.
    pub fn over_memory_limit(&self) -> bool {
        self.memory_limit != 0 && (self.heap)() > self.memory_limit
    }

    /// The largest packet the loop may read into memory, `buffered` bytes
    /// of which it holds already: `max_packet_size`, or less where it would
    /// take the heap past `memory_limit`. Packets up to 64 KiB are always
    /// taken: the loop reads that much at a time anyway.
    pub fn max_inbound(&self, buffered: usize) -> usize {
        let max = self.config.max_packet_size as usize;
        if self.memory_limit == 0 {
            return max;
        }
        let room = self.memory_limit.saturating_sub((self.heap)());
        max.min(room.max(SMALL_PACKET) + buffered)
    }

    /// Logs, once until the heap is under the limit again, that `what` is
    /// refused for memory.
    fn log_memory_refusal(&mut self, what: Refused) {
        if self.memory_logged & what as u8 == 0 {
            self.memory_logged |= what as u8;
            let what = match what {
                Refused::Messages => "new messages",
                Refused::Subscriptions => "new subscriptions",
            };
            log::warn!("heap over memory_limit: refusing {what}");
        }
    }

    #[cfg(test)]
    fn set_heap_probe(&mut self, heap: fn() -> usize) {
        self.heap = heap;
    }

    /// Whether session `s`'s client passes `check`; true without access
    /// control.
    fn allowed(
        &self,
        s: usize,
        check: impl FnOnce(&dyn Access, &str, Option<&str>) -> bool,
    ) -> bool {
        let session = &self.sessions[s];
        // As in mosquitto, a bridge of the broker's own is trusted.
        if session.role == Role::Bridge {
            return true;
        }
        let Some(access) = &self.config.auth[usize::from(session.auth)].access else {
            return true;
        };
        check(&**access, &session.client_id, session.username.as_deref())
    }

    /// Whether session `s`'s client may publish to `topic`. `$SYS` topics
    /// are the broker's own: no client writes them, but for the state of
    /// another broker's bridge (`$SYS/broker/connection/+/state`), as in
    /// mosquitto.
    fn may_publish(&self, s: usize, topic: &str) -> bool {
        let own = sys::is_sys(topic) && !topic::matches("$SYS/broker/connection/+/state", topic);
        !own && self.allowed(s, |a, client, user| a.may_publish(client, user, topic))
    }

    fn may_read(&self, s: usize, topic: &str) -> bool {
        self.allowed(s, |a, client, user| a.may_read(client, user, topic))
    }

    /// Whether session `s`'s will may go out now: checked when it is
    /// published, not at CONNECT, as mosquitto 2 does, so rights lost in
    /// between (a reload) count.
    fn will_allowed(&self, s: usize, will: &Will) -> bool {
        let ok = self.may_publish(s, &will.topic);
        if !ok {
            log::info!(
                "client {}: will to {} not published, not authorised",
                self.sessions[s].client_id,
                will.topic
            );
        }
        ok
    }

    /// Whether the journal can be written (the loop says after each commit).
    pub fn set_storage_available(&mut self, ok: bool) {
        self.storage_ok = ok;
    }

    /// `packet` to `id`, held until the journal is committed when records
    /// were added since there were `before`.
    fn reply(&self, id: ConnId, packet: Packet, before: usize) -> Action {
        if self.journal_len() > before {
            Action::SendAfterCommit(id, packet)
        } else {
            Action::Send(id, packet)
        }
    }

    /// As [`Broker::reply`], for a PUBLISH.
    fn publish_after(&self, id: ConnId, d: Delivery, before: usize) -> Action {
        if self.journal_len() > before {
            Action::PublishAfterCommit(id, d)
        } else {
            Action::Publish(id, d)
        }
    }

    /// Connected clients (CONNECT accepted).
    pub fn clients(&self) -> usize {
        self.conns
            .iter()
            .filter(|(_, c)| c.session.is_some())
            .count()
    }

    /// The largest packet connection `id` takes: the v5 Maximum Packet
    /// Size it asked for (a 3.x bridge remote's configured limit), else
    /// no limit.
    pub fn max_packet(&self, id: ConnId) -> usize {
        self.conns
            .get(id)
            .map_or(usize::MAX, |c| c.max_packet as usize)
    }

    fn is_v5(&self, id: ConnId) -> bool {
        self.conn_version(id) == Version::V5
    }

    fn conn_version(&self, id: ConnId) -> Version {
        self.conns.get(id).map_or(Version::V311, |c| c.version)
    }

    /// A number never handed out before: connection serials and session
    /// generations, so a timer outliving its owner cannot match the next
    /// user of the same slot.
    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    /// A new network connection: it has `connect_timeout` to send CONNECT.
    /// `auth` indexes `Config::auth`: the rules of the listener it came
    /// through.
    /// A new connection, through listener `listener` (an index into
    /// [`Config::listeners`]).
    pub fn connected(&mut self, id: ConnId, listener: u8, now: Instant) {
        let deadline = now + self.config.connect_timeout;
        self.conns.insert(
            id,
            Conn {
                timer: 0,
                session: None,
                version: Version::V311,
                keep_alive: 0,
                deadline: Some(deadline),
                will: None,
                max_packet: u32::MAX,
                aliases: None,
                listener,
            },
        );
        self.arm(id, deadline);
    }

    /// Sets connection `id`'s timer entry for `at`; earlier ones go stale.
    fn arm(&mut self, id: ConnId, at: Instant) {
        let serial = self.serial();
        if let Some(conn) = self.conns.get_mut(id) {
            conn.timer = serial;
            self.timers.add(at, Timer::Conn(Slot::new(id), serial));
        }
    }

    /// The network connection is gone (peer closed, IO error). Unless the
    /// client said DISCONNECT first, its will is published.
    pub fn closed(&mut self, id: ConnId, now: Instant, out: &mut Vec<Action>) {
        self.detach(id, Gone::Closed, now, out);
    }

    /// The loop could not write all of connection `id`'s output: what is
    /// delivered to it from now on waits in its session's queue, as shared
    /// references, until [`Broker::output_ready`].
    pub fn output_full(&mut self, id: ConnId) {
        if let Some(s) = self.conns.get(id).and_then(|c| c.session) {
            let session = &mut self.sessions[s.get()];
            session.flow_mut(&mut self.spare_flows).congested = true;
        }
    }

    /// The encoded bytes connection `id`'s output can take now, before it
    /// holds `max_outgoing`: what the packets it sends next let out (queued
    /// messages a PUBACK frees, retained messages for a SUBSCRIBE) stops
    /// there. The loop says it before handing over each packet; without
    /// it, `max_outgoing` bytes at a time. At least one message goes, so
    /// the output fills and the loop says when it has room again.
    pub fn output_room(&mut self, id: ConnId, room: usize) {
        self.room = Some((id, room.max(1)));
    }

    /// Connection `id`'s output has room again, `room` bytes: what waits
    /// goes out, up to that.
    pub fn output_ready(&mut self, id: ConnId, room: usize, now: Instant, out: &mut Vec<Action>) {
        let Some(s) = self.conns.get(id).and_then(|c| c.session).map(Slot::get) else {
            return;
        };
        if let Some(flow) = self.sessions[s].existing_flow_mut() {
            flow.congested = false;
        }
        self.output_room(id, room);
        self.pump(s, now, out);
    }

    /// One decoded packet from connection `id`.
    pub fn packet(&mut self, id: ConnId, packet: Packet, now: Instant, out: &mut Vec<Action>) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        // Any packet counts as activity ([MQTT-3.1.2-23]).
        if let (Some(_), Some(limit)) = (conn.session, conn.idle_limit()) {
            conn.deadline = Some(now + limit);
        }
        let session = conn.session.map(Slot::get);
        let Some(session) = session else {
            match packet {
                Packet::Connect(connect) => {
                    self.on_connect(id, *connect, &Origin::default(), now, out)
                }
                // The first packet must be CONNECT ([MQTT-3.1.0-1]).
                _ => self.drop_conn(id, None, now, out),
            }
            return;
        };
        match packet {
            Packet::Publish(p) => self.on_publish(id, session, p, now, out),
            Packet::PubAck(ack) => self.on_puback(session, ack.packet_id, now, out),
            Packet::PubRec(ack) => self.on_pubrec(id, session, ack, now, out),
            Packet::PubRel(ack) => self.on_pubrel(id, session, ack.packet_id, out),
            Packet::PubComp(ack) => self.on_pubcomp(session, ack.packet_id, now, out),
            Packet::Subscribe(s) => self.on_subscribe(id, session, s, now, out),
            Packet::Unsubscribe(u) => self.on_unsubscribe(id, session, u, out),
            Packet::PingReq => out.push(Action::Send(id, Packet::PingResp)),
            Packet::Disconnect(d) => self.on_disconnect(id, session, d, now, out),
            // A second CONNECT is a protocol error ([MQTT-3.1.0-2]); so is
            // any packet only a server sends, and AUTH, as roost offers no
            // enhanced authentication.
            _ => self.drop_conn(id, Some(reason::PROTOCOL_ERROR), now, out),
        }
    }

    /// The connection sent bytes that do not decode: answer as the spec
    /// says and close.
    pub fn decode_error(
        &mut self,
        id: ConnId,
        err: &DecodeError,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let who = match conn.session {
            Some(s) => format!("client {}", self.sessions[s.get()].client_id),
            None => format!("connection {id}"),
        };
        let mut code = err.reason_code();
        match err {
            // Refused by `max_inbound` for want of memory.
            DecodeError::TooLarge { size, max } if *max < self.config.max_packet_size as usize => {
                log::warn!(
                    "{who}: a {size}-byte packet would take the heap over memory_limit, closing"
                );
                code = reason::QUOTA_EXCEEDED;
            }
            DecodeError::TooLarge { size, .. } => log::warn!(
                "{who}: {size}-byte packet over max_packet_size {}, closing",
                self.config.max_packet_size
            ),
            _ => log::debug!("{who}: {err}"),
        }
        if conn.session.is_some() {
            self.drop_conn(id, Some(code), now, out);
            return;
        }
        if let DecodeError::UnsupportedVersion(_) = err {
            // [MQTT-3.1.2-2]: CONNACK 0x01 in the 3.x layout, which any
            // client can read whatever level it speaks (as mosquitto does).
            self.refuse(id, reason::V3_UNACCEPTABLE_PROTOCOL_VERSION, out);
            return;
        }
        self.drop_conn(id, None, now, out);
    }

    /// Fires every timer due at `now`.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.memory_logged != 0 && !self.over_memory_limit() {
            self.memory_logged = 0;
        }
        if self.next_sweep.is_none_or(|at| at <= now) {
            self.retained.remove_expired(now);
            self.next_sweep = Some(now + RETAINED_SWEEP);
        }
        // At most one live entry per connection and two per session (will
        // and expiry); once stale ones outnumber them, sweep.
        let live = self.conns.live + 2 * self.sessions.len();
        if self.timers.len() > 2 * live + 64 {
            let (conns, sessions) = (&self.conns, &self.sessions);
            self.timers.retain(|timer| match timer {
                Timer::Conn(id, serial) => conns.get(id.get()).is_some_and(|c| c.timer == serial),
                Timer::SessionExpiry(s, generation)
                | Timer::Will(s, generation)
                | Timer::Stall(s, generation) => sessions
                    .get(s.get())
                    .is_some_and(|s| s.generation == generation),
            });
        }
        while let Some(timer) = self.timers.pop_due(now) {
            let s = match timer {
                Timer::Conn(id, serial) => {
                    self.conn_timer(id.get(), serial, now, out);
                    continue;
                }
                Timer::SessionExpiry(s, generation)
                | Timer::Will(s, generation)
                | Timer::Stall(s, generation) => match self.sessions.get(s.get()) {
                    Some(session) if session.generation == generation => s.get(),
                    _ => continue,
                },
            };
            match timer {
                Timer::SessionExpiry(..) => {
                    self.stats.clients_expired += 1;
                    self.end_session(s, now, out);
                }
                Timer::Will(..) => {
                    let will = self.sessions[s].pending_will.take();
                    if let Some(will) = will.filter(|w| self.will_allowed(s, w)) {
                        self.publish_will(*will, now, out);
                    }
                }
                Timer::Stall(..) => self.check_stall(s, now, out),
                Timer::Conn(..) => unreachable!("handled above"),
            }
        }
    }

    /// When `tick` next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Server shutdown: v5 clients are told 0x8B ([MQTT-3.14.2-1]), every
    /// connection closes. Wills are not published: no client is left to
    /// receive them.
    pub fn shutdown(&mut self, out: &mut Vec<Action>) {
        for (id, conn) in self.conns.iter() {
            if conn.session.is_some() && conn.version == Version::V5 {
                let packet = disconnect(reason::SERVER_SHUTTING_DOWN);
                out.push(Action::Send(id, fit(packet, conn)));
            }
            out.push(Action::Close(id));
        }
        self.conns = Conns::default();
    }

    fn conn_timer(&mut self, id: ConnId, serial: u64, now: Instant, out: &mut Vec<Action>) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if conn.timer != serial {
            return;
        }
        match conn.deadline {
            // Not read from meanwhile: its silence is roost's doing.
            Some(deadline) if deadline <= now && self.held.contains_key(&id) => {
                let limit = conn.idle_limit().unwrap_or(self.config.connect_timeout);
                let deadline = now + limit;
                if let Some(conn) = self.conns.get_mut(id) {
                    conn.deadline = Some(deadline);
                }
                self.arm(id, deadline);
            }
            Some(deadline) if deadline <= now => {
                if conn.session.is_none() {
                    log::debug!("connection {id}: no CONNECT within connect_timeout, closing");
                }
                // [MQTT-3.1.2-24]: close after 1.5 x keep-alive of silence.
                self.drop_conn(id, Some(reason::KEEP_ALIVE_TIMEOUT), now, out);
            }
            Some(deadline) => self.arm(id, deadline),
            None => {}
        }
    }

    /// Closes a connection the broker gives up on. A v5 client that got as
    /// far as CONNACK is told why first (when `reason` says); the will is
    /// published, as for any close without DISCONNECT.
    fn drop_conn(&mut self, id: ConnId, reason: Option<u8>, now: Instant, out: &mut Vec<Action>) {
        if let (Some(code), Some(conn)) = (reason, self.conns.get(id)) {
            if conn.session.is_some() && conn.version == Version::V5 {
                out.push(Action::Send(id, fit(disconnect(code), conn)));
            }
        }
        self.detach(id, Gone::Dropped(reason), now, out);
        out.push(Action::Close(id));
    }

    /// Answers a CONNECT with a refusal and closes; nothing was attached.
    fn refuse(&mut self, id: ConnId, code: u8, out: &mut Vec<Action>) {
        self.refuse_with(id, code, Vec::new(), out);
    }

    /// [`Broker::refuse`], the CONNACK carrying `props` too (v5).
    fn refuse_with(&mut self, id: ConnId, code: u8, mut props: Properties, out: &mut Vec<Action>) {
        // 3.x CONNACKs carry no properties: the encoder leaves them out.
        props.extend(reason_string(code));
        let connack = connack(false, code, props);
        if let Some(conn) = self.conns.remove(id) {
            out.push(Action::Send(id, fit(connack, &conn)));
        }
        out.push(Action::Close(id));
    }

    /// Forgets connection `id`, publishing or scheduling its will and
    /// leaving its session to expire; logs that its client is gone, and why.
    fn detach(&mut self, id: ConnId, gone: Gone, now: Instant, out: &mut Vec<Action>) {
        let Some(conn) = self.conns.remove(id) else {
            return;
        };
        self.held.remove(&id);
        let Some(s) = conn.session.map(Slot::get) else {
            return;
        };
        if self.config.connection_messages {
            let client = &self.sessions[s].client_id;
            match gone {
                Gone::Disconnected => log::info!("Client {client} disconnected."),
                Gone::Closed => log::info!("Client {client} closed its connection."),
                Gone::Dropped(code) => {
                    let why = code.and_then(reason::describe).unwrap_or("closed by roost");
                    log::info!("Client {client} disconnected: {why}.");
                }
            }
        }
        // An offline session never holds publishers.
        self.unblock(s, out);
        let generation = self.serial();
        let session = &mut self.sessions[s];
        session.conn = None;
        session.renew(generation, &mut self.spare_flows);
        // mosquitto's `persistent_client_expiration` shortens any longer
        // expiry, v5 clients' too; a bridge's queue is kept for its return.
        let expiry = match self.config.persistent_client_expiration {
            Some(max) if session.role != Role::Bridge => session.expiry.min(max),
            _ => session.expiry,
        };
        // A kept session's expiry starts running.
        self.changes += u64::from(expiry != 0);
        if let Some(will) = conn.will {
            // The will waits for its delay or the end of the session,
            // whichever comes first ([MQTT-3.1.3-9]).
            let delay = will_delay(&will).min(expiry);
            if delay == 0 {
                if self.will_allowed(s, &will) {
                    self.publish_will(*will, now, out);
                }
            } else {
                self.sessions[s].pending_will = Some(will);
                self.timers
                    .add(now + secs(delay), Timer::Will(Slot::new(s), generation));
            }
        }
        match expiry {
            // A bridge's session with `local_cleansession`: it stays (its
            // subscriptions are the config's), emptied.
            0 if self.sessions[s].role == Role::Bridge => self.drop_for_absent_bridge(s),
            0 => self.end_session(s, now, out),
            u32::MAX => {}
            _ => self.timers.add(
                now + secs(expiry),
                Timer::SessionExpiry(Slot::new(s), generation),
            ),
        }
    }

    /// Ends a session: its subscriptions and queued messages go, and a will
    /// still waiting for its delay is published now.
    fn end_session(&mut self, s: usize, now: Instant, out: &mut Vec<Action>) {
        let will = self.sessions[s].pending_will.take();
        let will = will.filter(|w| self.will_allowed(s, w));
        self.unblock(s, out);
        if self.sessions[s].expiry != 0 {
            self.changes += 1;
            self.record_for(s, |who| JournalRecord::SessionEnd { who });
        }
        let session = self.sessions.remove(s);
        for filter in session.subscriptions.iter() {
            self.remove_subscription(filter, s);
        }
        self.by_client_id.remove(&session.client_id);
        if self.by_client_id.len() < self.by_client_id.capacity() / 4 {
            self.by_client_id.shrink_to(self.by_client_id.len() * 2);
        }
        let flow = session.into_flow();
        let unacknowledged = flow
            .inflight
            .into_iter()
            .filter(|f| f.awaiting != session::Awaiting::Complete)
            .map(|f| f.out);
        let pending: Vec<_> = unacknowledged
            .chain(flow.queue)
            .filter(|o| o.share().is_some())
            .collect();
        self.reroute_shared(pending, now, out);
        if let Some(will) = will {
            self.publish_will(*will, now, out);
        }
    }

    /// Drops session `s`'s subscription to `filter`, shared or not.
    fn remove_subscription(&mut self, filter: &str, s: usize) -> bool {
        match topic::parse_shared(filter) {
            Some(Ok(_)) => self.leave_group(filter, s),
            _ => self.topics.unsubscribe(filter, s),
        }
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

fn will_delay(will: &Will) -> u32 {
    crate::property!(will.properties, WillDelayInterval).unwrap_or(0)
}

/// A server DISCONNECT, with a Reason String saying why (allowed in
/// DISCONNECT whatever Request Problem Information says, [MQTT-3.1.2-29]).
fn disconnect(code: u8) -> Packet {
    Packet::Disconnect(ReasonOnly {
        reason: code,
        properties: reason_string(code),
    })
}

/// `packet` for `conn`, without its Reason String if that would take it
/// over the client's Maximum Packet Size ([MQTT-3.1.2-25]). Only error
/// answers carry one, so the trial encoding is off the message path.
fn fit(mut packet: Packet, conn: &Conn) -> Packet {
    if conn.max_packet < u32::MAX {
        let mut bytes = Vec::new();
        crate::protocol::encode(&packet, conn.version, &mut bytes);
        if bytes.len() > conn.max_packet as usize {
            packet.drop_diagnostics();
        }
    }
    packet
}

fn reason_string(code: u8) -> Properties {
    reason::describe(code)
        .map(|why| vec![crate::protocol::Property::ReasonString(why.into())])
        .unwrap_or_default()
}

fn connack(session_present: bool, code: u8, properties: Properties) -> Packet {
    Packet::ConnAck(crate::protocol::ConnAck {
        session_present,
        code,
        properties,
    })
}
