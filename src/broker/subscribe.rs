//! SUBSCRIBE and UNSUBSCRIBE, and the retained messages a new
//! subscription receives.

use std::collections::HashSet;
use std::rc::Rc;
use std::time::Instant;

use super::retained::Cursor;
use super::session::Role;
use super::topic::{Sub, parse_shared, valid_filter};
use super::{Action, Broker, ConnId, JournalRecord, Refused, StoredSub, reason};
use crate::protocol::{Packet, QoS, SubAck, SubOptions, Subscribe, UnsubAck, Unsubscribe};

impl Broker {
    pub(super) fn on_subscribe(
        &mut self,
        id: ConnId,
        s: usize,
        sub: Subscribe,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let v5 = self.is_v5(id);
        let before = self.journal_len();
        let sub_id = crate::property!(sub.properties, SubscriptionIdentifier).unwrap_or(0);
        let mut codes = Vec::with_capacity(sub.filters.len());
        let mut retained_for = Vec::new();
        // mosquitto's rule for a 3.x bridge: what it forwards here is not
        // sent back, and keeps its retain flag when sent on.
        let bridge = !v5 && self.sessions[s].role == Role::RemoteBridge;
        let max_qos = self
            .conns
            .get(id)
            .map_or(QoS::ExactlyOnce, |c| self.listener(c.listener).max_qos);
        for (filter, mut options) in sub.filters {
            // Granted at most at the listener's `max_qos`, as by mosquitto.
            options.qos = options.qos.min(max_qos);
            if bridge {
                options.no_local = true;
                options.retain_as_published = true;
            }
            let filter: Rc<str> = filter.into();
            let shared = parse_shared(&filter);
            let valid = match shared {
                Some(share) => share.is_ok(),
                None => valid_filter(&filter),
            };
            if !valid {
                codes.push(if v5 {
                    reason::TOPIC_FILTER_INVALID
                } else {
                    reason::V3_SUBACK_FAILURE
                });
                continue;
            }
            // Checked for each filter: one SUBSCRIBE may hold many.
            if self.over_memory_limit() {
                self.log_memory_refusal(Refused::Subscriptions);
                codes.push(if v5 {
                    reason::QUOTA_EXCEEDED
                } else {
                    reason::V3_SUBACK_FAILURE
                });
                continue;
            }
            let entry = Sub {
                session: s,
                options,
                id: sub_id,
            };
            let new = match shared {
                Some(Ok((_, inner))) => {
                    if options.no_local {
                        // [MQTT-3.8.3-4]
                        return self.drop_conn(id, Some(reason::PROTOCOL_ERROR), now, out);
                    }
                    self.join_group(&filter, inner, entry)
                }
                _ => self.topics.subscribe(&filter, entry),
            };
            self.subscribed(s, &filter, options, sub_id, new);
            // Granted as requested up to `max_qos` ([MQTT-3.8.4-6]).
            codes.push(options.qos as u8);
            if shared.is_none() && wants_retained(options, new) {
                retained_for.push((filter, options));
            }
        }
        let suback = Packet::SubAck(SubAck {
            packet_id: sub.packet_id,
            codes,
            properties: Vec::new(),
        });
        out.push(self.reply(id, suback, before));
        // A filter repeated in one SUBSCRIBE walks the retained messages
        // once.
        let mut seen = HashSet::new();
        let repeats = retained_for.len() > 1;
        for (filter, options) in retained_for {
            if !repeats || seen.insert(filter.clone()) {
                self.send_retained(s, filter, options, sub_id, now, out);
            }
        }
    }

    /// Books a subscription of session `s` made in the topic table (`new`
    /// when it replaced none): the session's list, the change count and
    /// the journal.
    pub(super) fn subscribed(
        &mut self,
        s: usize,
        filter: &Rc<str>,
        options: SubOptions,
        sub_id: u32,
        new: bool,
    ) {
        self.changes += 1;
        self.record_for(s, |who| JournalRecord::Subscribe {
            who,
            sub: StoredSub {
                filter: filter.to_string(),
                options,
                id: sub_id,
            },
        });
        if new {
            self.sessions[s].subscriptions.insert(filter.clone());
        }
        log::debug!(
            target: crate::logging::SUBSCRIBE,
            "client {} subscribed to {filter} (QoS {})",
            self.sessions[s].client_id,
            options.qos as u8
        );
    }

    /// Retained messages matching a new subscription are sent as its
    /// connection takes them (see `retained.rs`): those retained now, and
    /// not replaced since (the new value went out live).
    pub(super) fn send_retained(
        &mut self,
        s: usize,
        filter: Rc<str>,
        options: SubOptions,
        sub_id: u32,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let cursor = Cursor::new(filter, self.next_serial, options.qos, sub_id);
        let flow = self.sessions[s].flow_mut(&mut self.spare_flows);
        flow.retained.push_back(cursor);
        self.pump(s, now, out);
    }

    pub(super) fn on_unsubscribe(
        &mut self,
        id: ConnId,
        s: usize,
        u: Unsubscribe,
        out: &mut Vec<Action>,
    ) {
        let v5 = self.is_v5(id);
        let before = self.journal_len();
        let mut codes = Vec::new();
        for filter in &u.filters {
            let removed = self.unsubscribe(s, filter);
            if v5 {
                codes.push(if removed {
                    reason::SUCCESS
                } else {
                    reason::NO_SUBSCRIPTION_EXISTED
                });
            }
        }
        let unsuback = Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            codes,
            properties: Vec::new(),
        });
        out.push(self.reply(id, unsuback, before));
    }

    /// Drops session `s`'s subscription to `filter`, booking it as
    /// [`Broker::subscribed`] does; false when there was none.
    pub(super) fn unsubscribe(&mut self, s: usize, filter: &str) -> bool {
        let removed = self.remove_subscription(filter, s);
        log::debug!(
            target: crate::logging::UNSUBSCRIBE,
            "client {} unsubscribed from {filter}",
            self.sessions[s].client_id
        );
        if removed {
            self.changes += 1;
            self.record_for(s, |who| JournalRecord::Unsubscribe {
                who,
                filter: filter.to_owned(),
            });
            self.sessions[s].subscriptions.remove(filter);
        }
        removed
    }
}

/// Whether a subscription gets the retained messages: Retain Handling 0
/// always, 1 only when `new`, 2 never ([MQTT-3.3.1-9], [MQTT-3.3.1-10]).
/// A shared subscription gets none (MQTT 5.0 section 4.8.2): callers check.
pub(super) fn wants_retained(options: SubOptions, new: bool) -> bool {
    options.retain_handling == 0 || (options.retain_handling == 1 && new)
}
