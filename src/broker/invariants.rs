//! What must hold of the broker's state between any two events, checked by
//! the fuzz target (`tests/fuzz`, built with `--cfg fuzzing`) and the unit
//! tests after every call. Not compiled into roost itself.

use super::session::Role;
use super::timer::Timer;
use super::{Broker, ConnId, Slot};

impl Broker {
    /// Panics, saying which, unless every invariant holds:
    /// - connections and sessions point at each other, every session is
    ///   found by its client id, and an offline session is one that was
    ///   asked to outlive its connection, or a bridge's that holds no
    ///   messages while its remote is away (`local_cleansession`);
    /// - every pending deadline (connect or keep-alive, session expiry,
    ///   delayed will) has its timer entry, so nothing waits forever;
    /// - bounds: in-flight messages within the window, queues within
    ///   `max_queued` (past it only since it filled while online), packet ids
    ///   in flight (both ways) unique and non-zero,
    ///   inbound topic aliases within `topic_alias_max`;
    /// - the timer heap holds at most `2 x live + 64` entries. `tick`
    ///   sweeps stale entries before it fires any, so this one holds after
    ///   two `tick`s with no event between them (the unit tests and the
    ///   fuzz target tick twice at the same instant before checking).
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        for (id, conn) in self.conns.iter() {
            if let Some(s) = conn.session.map(Slot::get) {
                let back = self.sessions.get(s).and_then(|session| session.conn);
                let back = back.map(Slot::get);
                assert_eq!(
                    back,
                    Some(id),
                    "connection {id}'s session {s} is not attached to it"
                );
            }
            if let Some(deadline) = conn.deadline {
                let live = Timer::Conn(Slot::new(id), conn.timer);
                let armed = self.timers.iter().find(|(_, t)| *t == live);
                assert!(
                    armed.is_some_and(|(at, _)| at <= deadline),
                    "connection {id}: no timer at or before its deadline"
                );
            }
            let aliases = conn.aliases.as_ref().map_or(0, |a| a.inbound.len());
            assert!(aliases <= usize::from(self.config.topic_alias_max));
        }
        assert_eq!(
            self.conns.live,
            self.conns.iter().count(),
            "live connection count"
        );
        assert_eq!(
            self.by_client_id.len(),
            self.sessions.len(),
            "sessions without a client id entry, or the reverse"
        );
        for (s, session) in &self.sessions {
            let name = &session.client_id;
            assert_eq!(
                self.by_client_id.get(name),
                Some(&s),
                "client {name}: index"
            );
            match session.conn.map(Slot::get) {
                Some(id) => {
                    let conn = self.conns.get(id).and_then(|c| c.session).map(Slot::get);
                    assert_eq!(conn, Some(s), "client {name}: connection {id} not attached");
                }
                None => {
                    // But a bridge's with `local_cleansession`, which
                    // holds nothing while offline.
                    assert!(
                        session.expiry > 0 || session.role == Role::Bridge,
                        "client {name}: offline with expiry 0"
                    );
                    if session.expiry == 0 {
                        let flow = session.flow();
                        assert!(
                            flow.queue.is_empty() && flow.inflight.is_empty(),
                            "bridge {name}: holds messages with local_cleansession"
                        );
                    }
                    let generation = session.generation;
                    if session.expiry != u32::MAX && session.expiry != 0 {
                        let timer = Timer::SessionExpiry(Slot::new(s), generation);
                        assert!(self.has_timer(timer), "client {name}: no expiry timer");
                    }
                    if session.pending_will.is_some() {
                        let timer = Timer::Will(Slot::new(s), generation);
                        assert!(self.has_timer(timer), "client {name}: no will timer");
                    }
                }
            }
            let flow = session.flow();
            let window = usize::from(self.inflight_bound.max(1));
            assert!(
                flow.inflight.len() <= window,
                "client {name}: {} in flight, window {window}",
                flow.inflight.len()
            );
            // 0 is mosquitto's "no limit". Past it only since it filled
            // while online (an offline session keeps what it was given).
            let max_queued = self.config.max_queued;
            assert!(
                max_queued == 0
                    || flow.queue.len() <= max_queued
                    || flow.full_since.is_some()
                    || session.conn.is_none(),
                "client {name}: {} queued, max {}",
                flow.queue.len(),
                self.config.max_queued
            );
            if session.conn.is_none() {
                assert!(
                    flow.holding.is_empty() && flow.full_since.is_none(),
                    "client {name}: offline and holding publishers"
                );
            }
            // A full queue frees its publishers in time, by a timer of its
            // own generation; one that was once pending must not linger.
            let stall = Timer::Stall(Slot::new(s), session.generation);
            assert_eq!(
                flow.stall_pending,
                self.has_timer(stall),
                "client {name}: stall timer pending {}",
                flow.stall_pending
            );
            if flow.full_since.is_some() && !flow.stuck && session.conn.is_some() {
                assert!(flow.stall_pending, "client {name}: full, no stall timer");
            }
            assert!(
                unique_non_zero(flow.inflight.iter().map(|f| f.packet_id)),
                "client {name}: outbound packet ids {:?}",
                flow.inflight
                    .iter()
                    .map(|f| (f.packet_id, f.awaiting))
                    .collect::<Vec<_>>()
            );
            assert!(
                unique_non_zero(flow.awaiting_rel.iter().copied()),
                "client {name}: inbound QoS 2 ids {:?}",
                flow.awaiting_rel
            );
            let mut filters: Vec<&str> = session.subscriptions.iter().map(|f| &**f).collect();
            filters.sort_unstable();
            filters.dedup();
            assert_eq!(
                filters.len(),
                session.subscriptions.len(),
                "client {name}: filters repeat"
            );
        }
        for (g, group) in &self.groups {
            assert!(!group.members.is_empty(), "shared group {g} has no members");
            for m in &group.members {
                assert!(
                    self.sessions.contains(m.session),
                    "shared group {g}: member gone"
                );
            }
        }
        let live = self.conns.live + 2 * self.sessions.len();
        assert!(
            self.timers.len() <= 2 * live + 64,
            "{} timer entries for {live} live owners",
            self.timers.len()
        );
    }

    fn has_timer(&self, timer: Timer) -> bool {
        self.timers.iter().any(|(_, t)| t == timer)
    }

    /// The packet ids of the QoS 1 and 2 messages in flight to the client
    /// on connection `id` and not yet acknowledged (PUBREC'd ones included
    /// until PUBCOMP).
    #[doc(hidden)]
    pub fn in_flight(&self, id: ConnId) -> Vec<u16> {
        let session = self.conns.get(id).and_then(|c| c.session);
        session.map_or(Vec::new(), |s| {
            let inflight = &self.sessions[s.get()].flow().inflight;
            inflight.iter().map(|f| f.packet_id).collect()
        })
    }
}

fn unique_non_zero(ids: impl Iterator<Item = u16>) -> bool {
    let mut ids: Vec<u16> = ids.collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    ids.len() == n && !ids.contains(&0)
}
