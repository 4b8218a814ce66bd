//! The local side of roost's own bridges (`crate::bridge`). Each is a
//! session that outlives every connection to the remote broker and holds
//! the bridge's `out` subscriptions, so what is published while the remote
//! is away waits in its queue (bounded, and persisted like any kept
//! session's) and goes out in order once it is back. After the remote's
//! CONNACK the loop attaches the connection to that session: from then on
//! the remote's PUBLISH and acks go through [`Broker::packet`] as a
//! client's would, and deliveries to it leave as [`Action::Publish`].

use std::rc::Rc;
use std::time::Instant;

use super::session::Role;
use super::topic::Sub;
use super::{Action, Broker, Conn, ConnId};
use crate::protocol::{Packet, SubOptions, Subscribe, Unsubscribe, Version};

/// What a bridge asks of the remote as it connects.
#[derive(Debug, Clone, Default)]
pub struct RemoteFilters {
    /// Its `in` and `both` topics.
    pub subscribe: Vec<(String, SubOptions)>,
    /// `bridge_attempt_unsubscribe`: its `out` topics, which an older
    /// config may have subscribed to.
    pub unsubscribe: Vec<String>,
}

/// What the remote broker said about itself in CONNACK.
#[derive(Debug, Clone, Copy)]
pub struct Remote {
    pub version: Version,
    /// Its Receive Maximum: QoS 1/2 messages it takes in flight.
    pub receive_max: u16,
    /// The largest packet it takes (its own, or `bridge_max_packet_size`).
    pub max_packet: u32,
}

impl Broker {
    /// Makes sure bridge session `client_id` exists with exactly the
    /// subscriptions `subs` (the config may have changed since a restored
    /// session was saved; its queue stays). Retained messages matching a
    /// new subscription are queued for the remote. Unless it is to `keep`
    /// what waits for an absent remote (`local_cleansession false`), it
    /// holds nothing then: expiry 0 says so, and it is not saved.
    pub fn add_bridge(
        &mut self,
        client_id: &str,
        subs: &[(String, SubOptions)],
        keep: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let s = match self.by_client_id.get(client_id) {
            Some(&s) => s,
            None => self.new_session(client_id.into()),
        };
        let session = &mut self.sessions[s];
        session.role = Role::Bridge;
        session.expiry = if keep { u32::MAX } else { 0 };
        let stale: Vec<Rc<str>> = session
            .subscriptions
            .iter()
            .filter(|f| !subs.iter().any(|(g, _)| ***f == **g))
            .cloned()
            .collect();
        for filter in stale {
            self.unsubscribe(s, &filter);
        }
        for (filter, options) in subs {
            let filter: Rc<str> = filter.as_str().into();
            let entry = Sub {
                session: s,
                options: *options,
                id: 0,
            };
            let new = self.topics.subscribe(&filter, entry);
            self.subscribed(s, &filter, *options, 0, new);
            if new {
                self.send_retained(s, filter, *options, 0, now, out);
            }
        }
        if !keep {
            // Restored from when the config kept it.
            self.drop_for_absent_bridge(s);
        }
    }

    /// Bridge session `s`, with `local_cleansession`, lost its remote:
    /// what it held for it goes (counted as dropped), as in mosquitto.
    pub(super) fn drop_for_absent_bridge(&mut self, s: usize) {
        let dropped = self.sessions[s].drop_outgoing(&mut self.spare_flows);
        if dropped > 0 {
            self.stats.publish_dropped += dropped as u64;
            log::info!(
                "bridge session {}: {dropped} messages for the remote dropped (local_cleansession)",
                self.sessions[s].client_id
            );
        }
    }

    /// The remote broker accepted connection `id` of bridge `client_id`:
    /// the bridge unsubscribes and subscribes there as `filters` say (the
    /// acks are the loop's to read), and its session resumes on it,
    /// sending again what the remote had not acknowledged, then its queue.
    pub fn bridge_connected(
        &mut self,
        id: ConnId,
        client_id: &str,
        remote: Remote,
        filters: RemoteFilters,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(&s) = self.by_client_id.get(client_id) else {
            return;
        };
        self.conns.insert(
            id,
            Conn {
                timer: 0,
                session: None,
                version: remote.version,
                // The bridge's own pings watch the remote.
                keep_alive: 0,
                deadline: None,
                will: None,
                max_packet: remote.max_packet,
                aliases: None,
                listener: super::NO_LISTENER,
            },
        );
        self.attach(s, id, remote.receive_max);
        // Ids no message in flight has: the remote sees one client.
        if !filters.unsubscribe.is_empty() {
            let unsubscribe = Unsubscribe {
                packet_id: self.sessions[s].next_packet_id(),
                filters: filters.unsubscribe,
                properties: Vec::new(),
            };
            out.push(Action::Send(id, Packet::Unsubscribe(unsubscribe)));
        }
        if !filters.subscribe.is_empty() {
            let subscribe = Subscribe {
                packet_id: self.sessions[s].next_packet_id(),
                filters: filters.subscribe,
                properties: Vec::new(),
            };
            out.push(Action::Send(id, Packet::Subscribe(subscribe)));
        }
        self.resume(s, id, now, out);
    }

    /// Messages bridge `client_id` holds for its remote, queued or in
    /// flight (`start_type lazy` connects past a threshold).
    pub fn bridge_backlog(&self, client_id: &str) -> usize {
        self.by_client_id.get(client_id).map_or(0, |&s| {
            let flow = self.sessions[s].flow();
            flow.queue.len() + flow.inflight.len()
        })
    }
}
