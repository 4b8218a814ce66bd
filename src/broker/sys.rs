//! `$SYS/broker/...`: the broker's own figures, published the way
//! mosquitto 2 publishes them: retained, at QoS 2 (lowered to each
//! subscription's), every `sys_interval`, and a topic only when its value
//! changed since the last update (every topic the first time).
//!
//! The loop calls [`Broker::publish_sys`] on its schedule, with what only
//! the process can measure ([`Memory`]); it counts bytes and packets into
//! [`Broker::stats`] as they cross the sockets. Updates are routed like
//! any message, so the ACL decides who reads them.

use std::time::Instant;

use super::load::Loads;
use super::message::stored;
use super::topic::parse_shared;
use super::{Action, Broker, Message};
use crate::protocol::QoS;

/// Topics that start with this are the broker's: no client may publish to
/// them (mosquitto compares the same four bytes).
pub const PREFIX: &str = "$SYS";

/// Whether `topic` is one of the broker's own: no client publishes there,
/// and persistence leaves them out (they describe this run).
pub fn is_sys(topic: &str) -> bool {
    topic.starts_with(PREFIX)
}

/// Memory figures of the process, measured by the loop.
#[derive(Debug, Default, Clone, Copy)]
pub struct Memory {
    /// Heap bytes in use, and the most ever in use (see `crate::mem`).
    pub heap_current: u64,
    pub heap_maximum: u64,
    /// Resident set size, in bytes.
    pub rss: u64,
}

/// How many numeric topics an update covers, besides the loads.
const FIGURES: usize = 25;

/// What the updates so far have published.
#[derive(Default)]
pub(super) struct Published {
    /// The first update: uptime counts from it.
    started: Option<Instant>,
    values: [Option<u64>; FIGURES],
    /// The most clients (connected, or with a session kept) seen at an
    /// update: sampled, as by mosquitto, so a client that came and went in
    /// between is not counted.
    clients_maximum: u64,
    loads: Loads,
}

impl Broker {
    /// One `$SYS` update: uptime, and every figure and load average whose
    /// value changed (the first update also publishes the version, once).
    pub fn publish_sys(&mut self, now: Instant, memory: Memory, out: &mut Vec<Action>) {
        let started = match self.sys.started {
            Some(started) => started,
            None => {
                self.sys.started = Some(now);
                let version = format!("roost version {}", env!("CARGO_PKG_VERSION"));
                self.publish_retained("$SYS/broker/version", version, now, out);
                now
            }
        };
        let uptime = now.duration_since(started).as_secs();
        self.publish_retained("$SYS/broker/uptime", format!("{uptime} seconds"), now, out);
        for (i, (topic, value)) in self.sys_figures(memory).into_iter().enumerate() {
            if self.sys.values[i] != Some(value) {
                self.sys.values[i] = Some(value);
                self.publish_retained(topic, value.to_string(), now, out);
            }
        }
        let stats = &self.stats;
        let counts = [
            stats.packets_received,
            stats.packets_sent,
            stats.publish_dropped,
            stats.publish_received,
            stats.publish_sent,
            stats.bytes_received,
            stats.bytes_sent,
            stats.sockets_accepted,
            stats.connects_received,
        ];
        for (topic, value) in self.sys.loads.update(now, counts) {
            self.publish_retained(&topic, value, now, out);
        }
    }

    fn sys_figures(&mut self, memory: Memory) -> [(&'static str, u64); FIGURES] {
        let connected = self.clients() as u64;
        let total = self.sessions.len() as u64;
        self.sys.clients_maximum = self.sys.clients_maximum.max(total);
        let (mut subscriptions, mut shared) = (0, 0);
        for (_, session) in &self.sessions {
            for filter in session.subscriptions.iter() {
                match parse_shared(filter) {
                    Some(_) => shared += 1,
                    None => subscriptions += 1,
                }
            }
        }
        let (stored, stored_bytes) = stored();
        let stats = &self.stats;
        [
            ("$SYS/broker/clients/total", total),
            ("$SYS/broker/clients/maximum", self.sys.clients_maximum),
            // Sessions kept for clients that are not connected; `inactive`
            // and `active` are mosquitto's older names, which dashboards
            // still read.
            ("$SYS/broker/clients/disconnected", total - connected),
            ("$SYS/broker/clients/inactive", total - connected),
            ("$SYS/broker/clients/connected", connected),
            ("$SYS/broker/clients/active", connected),
            ("$SYS/broker/clients/expired", stats.clients_expired),
            // Each message once, however many queues hold it; the second
            // name is mosquitto's older one.
            ("$SYS/broker/store/messages/count", stored),
            ("$SYS/broker/messages/stored", stored),
            ("$SYS/broker/store/messages/bytes", stored_bytes),
            // Packets of every type, as mosquitto counts "messages".
            ("$SYS/broker/messages/received", stats.packets_received),
            ("$SYS/broker/messages/sent", stats.packets_sent),
            (
                "$SYS/broker/publish/messages/received",
                stats.publish_received,
            ),
            ("$SYS/broker/publish/messages/sent", stats.publish_sent),
            (
                "$SYS/broker/publish/bytes/received",
                stats.publish_bytes_received,
            ),
            ("$SYS/broker/publish/bytes/sent", stats.publish_bytes_sent),
            (
                "$SYS/broker/publish/messages/dropped",
                stats.publish_dropped,
            ),
            ("$SYS/broker/bytes/received", stats.bytes_received),
            ("$SYS/broker/bytes/sent", stats.bytes_sent),
            ("$SYS/broker/subscriptions/count", subscriptions),
            ("$SYS/broker/shared_subscriptions/count", shared),
            // `$SYS` topics included, as in mosquitto.
            (
                "$SYS/broker/retained messages/count",
                self.retained.len() as u64,
            ),
            ("$SYS/broker/heap/current", memory.heap_current),
            ("$SYS/broker/heap/maximum", memory.heap_maximum),
            // roost's own: mosquitto has no RSS topic.
            ("$SYS/broker/memory/rss", memory.rss),
        ]
    }

    /// Publishes a retained message as the broker itself: `$SYS`, and
    /// the state of bridges.
    pub fn publish_retained(
        &mut self,
        topic: &str,
        payload: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let msg = Message::new(
            topic.into(),
            payload.into_bytes(),
            QoS::ExactlyOnce,
            true,
            Vec::new(),
            now,
        );
        self.store_and_route(msg, None, None, now, out);
    }
}
