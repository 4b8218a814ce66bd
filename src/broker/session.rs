//! A client's session: what outlives its connection when it asks for that
//! (subscriptions, QoS 1/2 messages in flight or queued, inbound QoS 2 ids).

use super::filters::Filters;
use super::message::Message;
use super::retained::Cursor;
use super::{ConnId, Slot};
use crate::protocol::{QoS, Will};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

/// A message on its way to one session: the shared message plus what is
/// particular to this delivery. 24 bytes: every queued message is one.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub msg: Rc<Message>,
    pub qos: QoS,
    pub retain: bool,
    /// What only some deliveries have, boxed.
    route: Option<Box<Route>>,
}

#[derive(Debug, Clone)]
struct Route {
    /// v5 Subscription Identifiers of the matching subscriptions.
    sub_ids: Box<[u32]>,
    /// The shared subscription it came through, to re-route it to another
    /// member if this session ends before acknowledging it.
    share: Option<Rc<str>>,
}

impl Outgoing {
    pub fn new(
        msg: Rc<Message>,
        qos: QoS,
        retain: bool,
        sub_ids: Box<[u32]>,
        share: Option<Rc<str>>,
    ) -> Outgoing {
        let route =
            (!sub_ids.is_empty() || share.is_some()).then(|| Box::new(Route { sub_ids, share }));
        Outgoing {
            msg,
            qos,
            retain,
            route,
        }
    }

    /// The v5 Subscription Identifiers it goes out with.
    pub fn sub_ids(&self) -> &[u32] {
        self.route.as_ref().map_or(&[], |r| &r.sub_ids)
    }

    /// The shared subscription it came through.
    pub fn share(&self) -> Option<&Rc<str>> {
        self.route.as_ref().and_then(|r| r.share.as_ref())
    }
}

/// The Subscription Identifiers of a delivery through one subscription
/// whose id is `id` (0: none).
pub fn one_id(id: u32) -> Box<[u32]> {
    if id == 0 {
        Box::new([])
    } else {
        Box::new([id])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaiting {
    /// QoS 1 sent, PUBACK due.
    Ack,
    /// QoS 2 sent, PUBREC due.
    Received,
    /// PUBREL sent, PUBCOMP due.
    Complete,
}

#[derive(Debug)]
pub struct Inflight {
    pub packet_id: u16,
    pub awaiting: Awaiting,
    pub out: Outgoing,
}

pub struct Session {
    pub client_id: Rc<str>,
    /// The user name it connected with, for access checks; kept only while
    /// access control is on, as every session pays for it.
    pub username: Option<Box<str>>,
    /// The connection attached now, if online (see [`Session::conn`]).
    pub conn: Option<Slot>,
    /// Renewed (broker-wide unique) on every attach and detach, so stale
    /// timers are ignored.
    pub generation: u64,
    /// Seconds the session outlives its connection; `u32::MAX` is forever.
    pub expiry: u32,
    pub subscriptions: Filters,
    /// The QoS 1/2 state, only while a flow is open or a message queued:
    /// an idle session, or one that only sees QoS 0, holds none. Read it
    /// with [`Session::flow`], change it with [`Session::flow_mut`].
    flow: Option<Box<Flow>>,
    /// In-flight window of the attached connection.
    pub window: u16,
    /// Kept outside `flow`, so ids go on counting after it is freed.
    pub last_packet_id: u16,
    /// A will held back by its Will Delay Interval.
    pub pending_will: Option<Box<Will>>,
    /// Index into `Config::auth`: the rules of the listener the client
    /// last connected through (mosquitto's rule for offline sessions).
    pub auth: u8,
    /// Logged in by its TLS certificate (`use_identity_as_username`), not
    /// a password: a reload of the password file leaves it be.
    pub certified: bool,
    pub role: Role,
    /// The journal knows its key and what it connected with (see
    /// `journal.rs`).
    pub declared: bool,
}

/// Bridges are sessions too, treated as mosquitto treats them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    /// Another broker's bridge, connected with mosquitto's private
    /// protocol bit: its 3.x subscriptions are No Local and Retain As
    /// Published, so what it forwards is not sent back to it.
    RemoteBridge,
    /// The local side of one of roost's own bridges (see `bridge.rs`):
    /// passes access control, never expires, and no client may take it.
    Bridge,
}

/// What a session has going beyond an idle subscription, either way:
/// QoS 1/2 flows, and messages waiting for a connection that cannot take
/// them now.
#[derive(Default)]
pub struct Flow {
    /// Outbound QoS 1/2 messages sent and not yet fully acknowledged, in
    /// the order they were sent.
    pub inflight: VecDeque<Inflight>,
    /// Retained messages still owed to new subscriptions: sent before the
    /// queue, as the connection takes them.
    pub retained: VecDeque<Cursor>,
    /// Messages waiting for the in-flight window, for room in the
    /// connection's output, or for the client to return.
    pub queue: VecDeque<Outgoing>,
    /// Inbound QoS 2 packet ids PUBREC'd and awaiting PUBREL: a PUBLISH
    /// with one of these ids is a duplicate ([MQTT-4.3.3-10]).
    pub awaiting_rel: Vec<u16>,
    /// Payload bytes in `queue` (saturating).
    pub queued_bytes: u32,
    /// Whether a queue overflow was logged since the queue last drained.
    pub overflow_logged: bool,
    /// The connection's output is full: everything waits in the queue
    /// until the loop says it has room (`Broker::output_ready`).
    pub congested: bool,
    /// While online: since when the queue has been at its bound without
    /// draining to half of it. Its publishers are held meanwhile, for up
    /// to `slow_subscriber_timeout`.
    pub full_since: Option<Instant>,
    /// Full for longer than `slow_subscriber_timeout`: its publishers go
    /// free, and it drops at its bound until the queue drains.
    pub stuck: bool,
    /// A `Stall` timer is pending for `full_since`.
    pub stall_pending: bool,
    /// The publishing connections not read from until the queue drains.
    pub holding: Vec<ConnId>,
}

/// What [`Session::flow`] reads for a session that has none.
const NO_FLOW: &Flow = &Flow {
    inflight: VecDeque::new(),
    retained: VecDeque::new(),
    queue: VecDeque::new(),
    awaiting_rel: Vec::new(),
    queued_bytes: 0,
    overflow_logged: false,
    congested: false,
    full_since: None,
    stuck: false,
    stall_pending: false,
    holding: Vec::new(),
};

impl Flow {
    fn is_empty(&self) -> bool {
        self.inflight.is_empty()
            && self.retained.is_empty()
            && self.queue.is_empty()
            && self.awaiting_rel.is_empty()
            && !self.congested
            && self.full_since.is_none()
            && !self.stall_pending
            && self.holding.is_empty()
    }

    /// Whether the queue holds `max` entries or `max_bytes` payload bytes
    /// (0: no bound). As in mosquitto, a queue under its byte bound takes
    /// a message that crosses it.
    pub fn is_full(&self, max: usize, max_bytes: u32) -> bool {
        (max > 0 && self.queue.len() >= max) || (max_bytes > 0 && self.queued_bytes >= max_bytes)
    }

    /// Whether the queue is down to half its bounds, where held publishers
    /// are read from again.
    pub fn is_below_half(&self, max: usize, max_bytes: u32) -> bool {
        (max == 0 || self.queue.len() <= max / 2)
            && (max_bytes == 0 || self.queued_bytes <= max_bytes / 2)
    }

    /// Queues `out` whatever the bounds.
    pub fn push(&mut self, out: Outgoing) {
        self.queued_bytes = self.queued_bytes.saturating_add(payload_len(&out));
        self.queue.push_back(out);
    }

    /// Queues `out` within the bounds (see [`Flow::is_full`]). When full,
    /// the oldest QoS 0 messages make room; failing that the new message
    /// is dropped.
    pub fn enqueue(&mut self, out: Outgoing, max: usize, max_bytes: u32) -> Queued {
        let mut queued = Queued::All;
        while self.is_full(max, max_bytes) {
            let Some(i) = self.queue.iter().position(|o| o.qos == QoS::AtMostOnce) else {
                return Queued::Refused;
            };
            self.remove_queued(i);
            queued = Queued::MadeRoom;
        }
        self.push(out);
        queued
    }

    /// Takes the queued message at `i` out.
    pub fn remove_queued(&mut self, i: usize) -> Option<Outgoing> {
        let out = self.queue.remove(i)?;
        self.queued_bytes = self.queued_bytes.saturating_sub(payload_len(&out));
        Some(out)
    }
}

/// What [`Flow::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Queued, nothing dropped.
    All,
    /// Queued, older QoS 0 messages dropped to make room.
    MadeRoom,
    /// Not queued: the queue is full of QoS 1/2 messages.
    Refused,
}

/// Emptied QoS states kept for reuse: a subscriber whose window empties
/// with every acknowledgement would otherwise allocate and free its state
/// for every message (a third more instructions per QoS 1 delivery).
#[derive(Default)]
#[allow(clippy::vec_box)] // The boxes are what is reused.
pub struct SpareFlows(Vec<Box<Flow>>);

impl SpareFlows {
    /// How many are kept, and how many entries each may have room for (a
    /// full default window of 20 needs 32): at most about 200 KiB held.
    const COUNT: usize = 64;
    const ROOM: usize = 64;

    fn take(&mut self) -> Box<Flow> {
        self.0.pop().unwrap_or_default()
    }

    fn keep(&mut self, mut flow: Box<Flow>) {
        let room = flow.inflight.capacity()
            + flow.retained.capacity()
            + flow.queue.capacity()
            + flow.awaiting_rel.capacity()
            + flow.holding.capacity();
        if self.0.len() < Self::COUNT && room <= Self::ROOM {
            flow.overflow_logged = false;
            flow.stuck = false;
            self.0.push(flow);
        }
    }
}

impl Session {
    pub fn new(client_id: Rc<str>) -> Session {
        Session {
            client_id,
            username: None,
            conn: None,
            generation: 0,
            expiry: 0,
            subscriptions: Filters::default(),
            flow: None,
            window: 0,
            last_packet_id: 0,
            pending_will: None,
            auth: 0,
            role: Role::Client,
            declared: false,
            certified: false,
        }
    }

    /// The connection attached now, if online.
    pub fn conn(&self) -> Option<ConnId> {
        self.conn.map(Slot::get)
    }

    /// The QoS 1/2 state; empty when there is none.
    pub fn flow(&self) -> &Flow {
        self.flow.as_deref().unwrap_or(NO_FLOW)
    }

    /// The QoS 1/2 state to change, taken from `spare` if there is none.
    /// Call [`Session::release_flow`] after taking things out of it.
    pub fn flow_mut(&mut self, spare: &mut SpareFlows) -> &mut Flow {
        self.flow.get_or_insert_with(|| spare.take())
    }

    /// Attached or detached: timers set for the old generation are ignored
    /// when they fire, so none is pending for it any more.
    pub fn renew(&mut self, generation: u64, spare: &mut SpareFlows) {
        self.generation = generation;
        if let Some(flow) = &mut self.flow {
            flow.stall_pending = false;
        }
        self.release_flow(spare);
    }

    /// The state to change, if the session has one.
    pub fn existing_flow_mut(&mut self) -> Option<&mut Flow> {
        self.flow.as_deref_mut()
    }

    /// Adds `out`, sent under `packet_id`, at the end of the in-flight window.
    pub fn put_in_flight(
        &mut self,
        spare: &mut SpareFlows,
        packet_id: u16,
        awaiting: Awaiting,
        out: Outgoing,
    ) {
        self.flow_mut(spare).inflight.push_back(Inflight {
            packet_id,
            awaiting,
            out,
        });
    }

    /// Hands the QoS 1/2 state back to `spare` once nothing is left in it.
    pub fn release_flow(&mut self, spare: &mut SpareFlows) {
        if self.flow.as_ref().is_some_and(|f| f.is_empty()) {
            spare.keep(self.flow.take().expect("checked above"));
        }
    }

    #[cfg(test)]
    pub fn holds_flow(&self) -> bool {
        self.flow.is_some()
    }

    /// Drops the outbound messages, in flight and queued (not the inbound
    /// QoS 2 ids, nor the retained messages owed to new subscriptions).
    /// Returns how many of them had not been delivered.
    pub fn drop_outgoing(&mut self, spare: &mut SpareFlows) -> usize {
        let Some(flow) = &mut self.flow else {
            return 0;
        };
        let unacknowledged = flow.inflight.iter();
        let unacknowledged = unacknowledged.filter(|f| f.awaiting != Awaiting::Complete);
        let dropped = unacknowledged.count() + flow.queue.len();
        flow.inflight.clear();
        flow.queue.clear();
        flow.queued_bytes = 0;
        flow.overflow_logged = false;
        self.release_flow(spare);
        dropped
    }

    /// The QoS 1/2 state of a session that ends.
    pub fn into_flow(self) -> Flow {
        self.flow.map(|f| *f).unwrap_or_default()
    }

    /// Whether the in-flight window of the attached connection is full.
    pub fn window_full(&self) -> bool {
        self.flow().inflight.len() >= usize::from(self.window)
    }

    /// Whether a message at `qos` may go out now rather than queue:
    /// nothing waits ahead of it, the connection's output has room, and a
    /// QoS 1/2 one has room in the window.
    pub fn ready_for(&self, qos: QoS) -> bool {
        let flow = self.flow();
        flow.queue.is_empty()
            && flow.retained.is_empty()
            && !flow.congested
            && (qos == QoS::AtMostOnce || !self.window_full())
    }

    /// A packet id not used by any message in flight ([MQTT-2.2.1-3]).
    /// Only called while the in-flight window has room, which is below
    /// 65535, so a free id always exists.
    pub fn next_packet_id(&mut self) -> u16 {
        loop {
            self.last_packet_id = self.last_packet_id.checked_add(1).unwrap_or(1);
            let id = self.last_packet_id;
            if !self.flow().inflight.iter().any(|f| f.packet_id == id) {
                return id;
            }
        }
    }

    pub fn inflight_position(&self, packet_id: u16, awaiting: Awaiting) -> Option<usize> {
        self.flow()
            .inflight
            .iter()
            .position(|f| f.packet_id == packet_id && f.awaiting == awaiting)
    }

    /// The next queued message.
    pub fn dequeue(&mut self) -> Option<Outgoing> {
        self.flow.as_mut()?.remove_queued(0)
    }

    /// The queue is empty: a later overflow is logged again, and the QoS
    /// state goes back to `spare` if nothing else is in it.
    pub fn queue_drained(&mut self, spare: &mut SpareFlows) {
        if let Some(flow) = &mut self.flow {
            flow.overflow_logged = false;
            // The room a burst took goes back.
            if flow.queue.capacity() > SpareFlows::ROOM {
                flow.queue = VecDeque::new();
            }
        }
        self.release_flow(spare);
    }
}

fn payload_len(out: &Outgoing) -> u32 {
    u32::try_from(out.msg.payload.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn out(qos: QoS) -> Outgoing {
        sized(qos, 1)
    }

    fn sized(qos: QoS, len: usize) -> Outgoing {
        let msg = Message::new(
            "t".into(),
            vec![b'x'; len],
            qos,
            false,
            Vec::new(),
            Instant::now(),
        );
        Outgoing::new(Rc::new(msg), qos, false, Box::new([]), None)
    }

    #[test]
    fn packet_ids_skip_those_in_flight_and_wrap() {
        let mut s = Session::new("c".into());
        s.last_packet_id = u16::MAX - 1;
        assert_eq!(s.next_packet_id(), u16::MAX);
        s.put_in_flight(
            &mut SpareFlows::default(),
            1,
            Awaiting::Ack,
            out(QoS::AtLeastOnce),
        );
        assert_eq!(s.next_packet_id(), 2, "0 is never used, 1 is in flight");
    }

    #[test]
    fn emptied_flows_are_kept_for_reuse_within_bounds() {
        let mut spare = SpareFlows::default();
        let mut s = Session::new("c".into());
        let flow = s.flow_mut(&mut spare);
        flow.awaiting_rel.push(1);
        flow.overflow_logged = true;
        s.release_flow(&mut spare);
        assert!(s.holds_flow(), "not empty: stays");
        s.flow_mut(&mut spare).awaiting_rel.clear();
        s.release_flow(&mut spare);
        assert!(!s.holds_flow());
        assert_eq!(spare.0.len(), 1);
        let flow = s.flow_mut(&mut spare);
        assert!(flow.awaiting_rel.capacity() > 0, "the same one again");
        assert!(!flow.overflow_logged);
        assert!(spare.0.is_empty());
        // One that grew past the bound is freed instead.
        flow.awaiting_rel.reserve(1000);
        s.release_flow(&mut spare);
        assert!(!s.holds_flow());
        assert!(spare.0.is_empty());
        let mut many: Vec<Session> = (0..100).map(|_| Session::new("c".into())).collect();
        for s in &mut many {
            s.flow_mut(&mut spare);
        }
        for s in &mut many {
            s.release_flow(&mut spare);
        }
        assert_eq!(spare.0.len(), SpareFlows::COUNT);
    }

    #[test]
    fn full_queue_drops_oldest_qos0_first() {
        let mut s = Flow::default();
        assert_eq!(s.enqueue(out(QoS::AtLeastOnce), 2, 0), Queued::All);
        assert_eq!(s.enqueue(out(QoS::AtMostOnce), 2, 0), Queued::All);
        assert_eq!(s.enqueue(out(QoS::ExactlyOnce), 2, 0), Queued::MadeRoom);
        let qos: Vec<QoS> = s.queue.iter().map(|o| o.qos).collect();
        assert_eq!(qos, [QoS::AtLeastOnce, QoS::ExactlyOnce]);
        assert_eq!(s.enqueue(out(QoS::AtLeastOnce), 2, 0), Queued::Refused);
        assert_eq!(s.queue.len(), 2, "bounded");
    }

    #[test]
    fn byte_bound_takes_the_message_that_crosses_it_then_drops() {
        let mut s = Flow::default();
        assert_eq!(s.enqueue(sized(QoS::AtLeastOnce, 60), 0, 100), Queued::All);
        assert_eq!(
            s.enqueue(sized(QoS::AtLeastOnce, 60), 0, 100),
            Queued::All,
            "under: taken"
        );
        assert_eq!(s.queued_bytes, 120);
        assert_eq!(
            s.enqueue(sized(QoS::AtLeastOnce, 1), 0, 100),
            Queued::Refused,
            "over: dropped"
        );
        assert_eq!(s.queue.len(), 2);
        assert_eq!(s.remove_queued(0).map(|o| o.msg.payload.len()), Some(60));
        assert_eq!(s.queued_bytes, 60);
        // QoS 0 messages make room.
        let mut s = Flow::default();
        for _ in 0..2 {
            assert_eq!(s.enqueue(sized(QoS::AtMostOnce, 50), 0, 100), Queued::All);
        }
        assert_eq!(
            s.enqueue(sized(QoS::AtLeastOnce, 10), 0, 100),
            Queued::MadeRoom
        );
        let kept: Vec<(QoS, usize)> = s
            .queue
            .iter()
            .map(|o| (o.qos, o.msg.payload.len()))
            .collect();
        assert_eq!(kept, [(QoS::AtMostOnce, 50), (QoS::AtLeastOnce, 10)]);
        assert_eq!(s.queued_bytes, 60);
        // 0 entries means no count bound, as in mosquitto.
        let mut s = Flow::default();
        for _ in 0..5000 {
            assert_eq!(s.enqueue(out(QoS::AtLeastOnce), 0, 0), Queued::All);
        }
    }
}
