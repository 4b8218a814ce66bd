//! PUBLISH in both directions: inbound QoS flows, routing to matching
//! sessions, the in-flight window, queues, and the acks that move them on.

use std::rc::Rc;
use std::time::Instant;

use super::message::Message;
use super::session::{Awaiting, Outgoing, Queued};
use super::sys::is_sys;
use super::timer::Timer;
use super::topic::{MAX_LEVELS, too_deep};
use super::{Action, Broker, Conn, ConnId, Delivery, JournalRecord, Refused, Slot, Who, reason};
use crate::protocol::{
    Ack, Packet, Property, Publish, PublishRef, QoS, Version, Will, publish_len,
};

/// False when a Payload Format Indicator of 1 announces UTF-8 that the
/// payload is not.
pub(super) fn payload_format_ok(properties: &[Property], payload: &[u8]) -> bool {
    crate::property!(properties, PayloadFormatIndicator) != Some(1)
        || std::str::from_utf8(payload).is_ok()
}

fn ack(packet_id: u16, reason: u8) -> Ack {
    Ack {
        packet_id,
        reason,
        properties: Vec::new(),
    }
}

impl Broker {
    /// The PUBACK or PUBREC answering an inbound PUBLISH (none for QoS 0),
    /// held for the journal's commit if records were added since `before`.
    fn acknowledge(
        &self,
        id: ConnId,
        p: (QoS, u16),
        code: u8,
        before: usize,
        out: &mut Vec<Action>,
    ) {
        let packet = match p.0 {
            QoS::AtMostOnce => return,
            QoS::AtLeastOnce => Packet::PubAck(ack(p.1, code)),
            QoS::ExactlyOnce => Packet::PubRec(ack(p.1, code)),
        };
        out.push(self.reply(id, packet, before));
    }

    pub(super) fn on_publish(
        &mut self,
        id: ConnId,
        s: usize,
        mut p: Publish,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        // Subscription Identifiers are the server's to send ([MQTT-3.3.4-6]).
        if p.properties
            .iter()
            .any(|prop| matches!(prop, Property::SubscriptionIdentifier(_)))
        {
            return self.drop_conn(id, Some(reason::PROTOCOL_ERROR), now, out);
        }
        let max_qos = self
            .conns
            .get(id)
            .map_or(QoS::ExactlyOnce, |c| self.listener(c.listener).max_qos);
        if p.qos > max_qos {
            // Over the listener's `max_qos`, which CONNACK told a v5
            // client: DISCONNECT 0x9B; 3.x just closes, as mosquitto does.
            log::info!(
                "client {}: PUBLISH at QoS {} over the listener's max_qos {}, closing",
                self.sessions[s].client_id,
                p.qos as u8,
                max_qos as u8
            );
            return self.drop_conn(id, Some(reason::QOS_NOT_SUPPORTED), now, out);
        }
        if p.retain && !self.config.retain_available {
            // A protocol error after CONNACK said Retain Available 0
            // ([MQTT-3.2.2-14]): v5 DISCONNECT 0x9A; 3.x just closes, as
            // mosquitto does.
            log::info!(
                "client {}: retained PUBLISH with retain_available false, closing",
                self.sessions[s].client_id
            );
            return self.drop_conn(id, Some(reason::RETAIN_NOT_SUPPORTED), now, out);
        }
        let alias = crate::property!(p.properties, TopicAlias);
        if let Some(alias) = alias {
            if let Err(code) = self.resolve_alias(id, alias, &mut p.topic) {
                return self.drop_conn(id, Some(code), now, out);
            }
        }
        if too_deep(&p.topic) {
            // As mosquitto, which takes it for a malformed packet.
            log::info!(
                "client {}: PUBLISH to a topic of more than {MAX_LEVELS} levels, closing",
                self.sessions[s].client_id
            );
            return self.drop_conn(id, Some(reason::TOPIC_NAME_INVALID), now, out);
        }
        self.stats.publish_received += 1;
        self.stats.publish_bytes_received += p.payload.len() as u64;
        let (qos, packet_id) = (p.qos, p.packet_id);
        let v5 = self.is_v5(id);
        if v5 && !payload_format_ok(&p.properties, &p.payload) {
            // Payload Format Indicator 1 promises UTF-8 (MQTT 5.0 3.3.2.3.2):
            // refused in the ack, or by DISCONNECT when there is no ack.
            let code = reason::PAYLOAD_FORMAT_INVALID;
            if qos == QoS::AtMostOnce {
                return self.drop_conn(id, Some(code), now, out);
            }
            return self.acknowledge(id, (qos, packet_id), code, usize::MAX, out);
        }
        let limit = self.config.message_size_limit;
        let refused = if limit > 0 && p.payload.len() > limit as usize {
            // As mosquitto 2: v5 is told 0x95.
            Some((reason::PACKET_TOO_LARGE, "payload over message_size_limit"))
        } else if !self.may_publish(s, &p.topic) {
            // As mosquitto: v5 is told 0x87.
            Some((reason::NOT_AUTHORIZED, "not authorised"))
        } else {
            None
        };
        if let Some((code, why)) = refused {
            log::debug!(
                "client {}: PUBLISH to {} dropped, {why}",
                self.sessions[s].client_id,
                p.topic
            );
            // 3.1.1 has no way to say no, so the message is acknowledged
            // as usual and dropped (as mosquitto does).
            let code = if v5 { code } else { reason::SUCCESS };
            return self.acknowledge(id, (qos, packet_id), code, usize::MAX, out);
        }
        if qos != QoS::AtMostOnce && !self.storage_ok && self.needs_storage(s, &p) {
            // The journal cannot be written (disk full): nothing is
            // acknowledged that is not stored. v5 is told 0x97; 3.x gets no
            // ack and sends the message again later. A message that needs
            // no record is taken as usual.
            log::debug!(
                "client {}: PUBLISH refused, storage unavailable",
                self.sessions[s].client_id
            );
            if v5 {
                self.quota_exceeded(id, (qos, packet_id), out);
            }
            return;
        }
        let before = self.journal_len();
        // Exactly once: a QoS 2 id already PUBREC'd is a re-send, not a new
        // message ([MQTT-4.3.3-10]).
        let duplicate =
            qos == QoS::ExactlyOnce && self.sessions[s].flow().awaiting_rel.contains(&packet_id);
        let mut code = reason::SUCCESS;
        let routed_from = out.len();
        // One that clears a retained message frees memory: taken.
        let clears = p.retain && p.payload.is_empty();
        if !duplicate {
            if !clears && self.over_memory_limit() {
                return self.refuse_over_memory(id, qos, packet_id, v5, now, out);
            }
            let session = &mut self.sessions[s];
            let window = usize::from(self.config.max_inflight);
            if v5 && qos == QoS::ExactlyOnce && session.flow().awaiting_rel.len() >= window {
                // More QoS 2 flows open than the Receive Maximum advertised
                // in CONNACK ([MQTT-3.3.4-8]).
                return self.drop_conn(id, Some(reason::RECEIVE_MAXIMUM_EXCEEDED), now, out);
            }
            if qos == QoS::ExactlyOnce {
                session
                    .flow_mut(&mut self.spare_flows)
                    .awaiting_rel
                    .push(packet_id);
            }
            // The QoS 2 id of a kept session must survive to catch a re-send.
            let awaits = (self.journal.is_some() && qos == QoS::ExactlyOnce && session.expiry != 0)
                .then(|| (self.session_key(s), packet_id));
            let msg = Message::new(p.topic, p.payload, qos, p.retain, p.properties, now);
            if self.store_and_route(msg, Some(s), awaits, now, out) == 0 {
                code = reason::NO_MATCHING_SUBSCRIBERS;
            }
        }
        if !v5 {
            code = reason::SUCCESS;
        }
        self.acknowledge(id, (qos, packet_id), code, before, out);
        // A publisher subscribed to its own topic gets the ack before the
        // copy, as from mosquitto: some clients take a PUBLISH that comes
        // first for a sign the ack was lost.
        let copy = out[routed_from..]
            .iter()
            .position(|a| matches!(a, Action::Publish(to, _) if *to == id));
        if let (Some(i), QoS::AtLeastOnce | QoS::ExactlyOnce) = (copy, qos) {
            let ack = out.pop().expect("just pushed");
            out.insert(routed_from + i, ack);
        }
    }

    /// Whether journal mode must store `p`, from session `s`, before it
    /// is acknowledged: it is retained, or a QoS 2 id of a kept session, or
    /// a kept session subscribes to it at QoS 1 or 2. Asked only while the
    /// journal cannot be written.
    fn needs_storage(&mut self, s: usize, p: &Publish) -> bool {
        if p.retain || (p.qos == QoS::ExactlyOnce && self.sessions[s].expiry != 0) {
            return true;
        }
        let mut subs = std::mem::take(&mut self.scratch);
        self.topics.matches(&p.topic, &mut subs);
        let mut kept = subs.iter().any(|sub| {
            sub.options.qos != QoS::AtMostOnce && self.sessions[sub.session].expiry != 0
        });
        subs.clear();
        self.shared.matches(&p.topic, &mut subs);
        kept |= subs.iter().any(|group| {
            self.groups[group.session]
                .members
                .iter()
                .any(|m| m.options.qos != QoS::AtMostOnce && self.sessions[m.session].expiry != 0)
        });
        subs.clear();
        self.scratch = subs;
        kept
    }

    /// Refuses a v5 PUBLISH roost cannot take now (storage or memory):
    /// PUBACK/PUBREC 0x97.
    fn quota_exceeded(&self, id: ConnId, p: (QoS, u16), out: &mut Vec<Action>) {
        self.acknowledge(id, p, reason::QUOTA_EXCEEDED, usize::MAX, out);
    }

    /// A new message while the heap is over `memory_limit` (see
    /// [`Broker::set_memory_limit`]): dropped, as mosquitto drops a message
    /// it is denied memory for. A v5 client is told 0x97 (quota exceeded)
    /// in the PUBACK or PUBREC; a 3.x client, which cannot be told, is
    /// disconnected, as by mosquitto.
    fn refuse_over_memory(
        &mut self,
        id: ConnId,
        qos: QoS,
        packet_id: u16,
        v5: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.log_memory_refusal(Refused::Messages);
        if v5 {
            self.quota_exceeded(id, (qos, packet_id), out);
        } else {
            self.drop_conn(id, None, now, out);
        }
    }

    /// Maps a v5 Topic Alias to its topic, or records a new mapping
    /// ([MQTT-3.3.2-7] .. [MQTT-3.3.2-12]). Errors carry the reason code.
    fn resolve_alias(&mut self, id: ConnId, alias: u16, topic: &mut String) -> Result<(), u8> {
        let max = self.config.topic_alias_max;
        if alias == 0 || alias > max {
            return Err(reason::TOPIC_ALIAS_INVALID);
        }
        let conn = self.conns.get_mut(id).ok_or(reason::PROTOCOL_ERROR)?;
        let table = &mut conn.aliases.get_or_insert_with(Box::default).inbound;
        if table.is_empty() {
            *table = vec![None; usize::from(max)];
        }
        let slot = &mut table[usize::from(alias) - 1];
        if topic.is_empty() {
            *topic = slot.clone().ok_or(reason::PROTOCOL_ERROR)?;
        } else {
            *slot = Some(topic.clone());
        }
        Ok(())
    }

    /// Stores or clears the retained message of its topic: an empty payload
    /// clears it and is not stored ([MQTT-3.3.1-10], [MQTT-3.3.1-11]).
    pub(super) fn retain(&mut self, msg: &Rc<Message>) {
        // `$SYS` is the broker's own and current: not worth a save.
        self.changes += u64::from(!is_sys(&msg.topic));
        self.retained.set(msg);
    }

    pub(super) fn publish_will(&mut self, will: Will, now: Instant, out: &mut Vec<Action>) {
        let w = will;
        let msg = Message::new(w.topic, w.payload, w.qos, w.retain, w.properties, now);
        self.store_and_route(msg, None, None, now, out);
    }

    /// Numbers a new message, retains it if flagged and routes it; in
    /// journal mode records it when that changed the durable state or when
    /// `awaits` (a kept session's QoS 2 id) must survive. Returns how many
    /// sessions matched.
    pub(super) fn store_and_route(
        &mut self,
        msg: Message,
        from: Option<usize>,
        awaits: Option<(Who, u16)>,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> usize {
        let msg = Rc::new(Message {
            id: self.serial(),
            ..msg
        });
        let changes = self.changes;
        if msg.retain {
            self.retain(&msg);
        }
        let before = self.journal_len();
        let matched = self.route(msg.clone(), from, now, out);
        if self.changes != changes || awaits.is_some() {
            // Ahead of the routing's own records (a QoS 2 delivery's packet
            // id), which name this message.
            self.record_at(before, |j| JournalRecord::Message {
                msg: j.stored(&msg),
                publisher: awaits,
            });
        }
        matched
    }

    /// Sends `msg` to every session with a matching subscription, once per
    /// session at the highest granted QoS ([MQTT-3.3.4-2]) with every
    /// matching subscription identifier ([MQTT-3.3.4-3]). `from` is the
    /// publishing session, for No Local. Returns how many sessions matched.
    pub(super) fn route(
        &mut self,
        msg: Rc<Message>,
        from: Option<usize>,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> usize {
        // The connection to hold back if a subscriber's queue is full.
        let publisher = from.and_then(|s| self.sessions[s].conn());
        let mut subs = std::mem::take(&mut self.scratch);
        self.topics.matches(&msg.topic, &mut subs);
        // [MQTT-3.8.3-3]: No Local keeps a client's messages from itself.
        subs.retain(|sub| !(sub.options.no_local && Some(sub.session) == from));
        subs.sort_unstable_by_key(|sub| sub.session);
        let mut matched = 0;
        for group in subs.chunk_by(|a, b| a.session == b.session) {
            matched += 1;
            let granted = group
                .iter()
                .map(|sub| sub.options.qos)
                .max()
                .unwrap_or(QoS::AtMostOnce);
            let sub_ids = group
                .iter()
                .filter(|sub| sub.id != 0)
                .map(|sub| sub.id)
                .collect();
            // Live messages go out with RETAIN 0 unless Retain As Published
            // asks otherwise ([MQTT-3.3.1-12], [MQTT-3.3.1-13]).
            let retain = msg.retain && group.iter().any(|sub| sub.options.retain_as_published);
            let o = Outgoing::new(msg.clone(), msg.qos.min(granted), retain, sub_ids, None);
            self.deliver(group[0].session, o, publisher, now, out);
        }
        subs.clear();
        self.shared.matches(&msg.topic, &mut subs);
        for group in &subs {
            self.deliver_shared(group.session, msg.clone(), publisher, now, out);
        }
        matched += subs.len();
        subs.clear();
        self.scratch = subs;
        matched
    }

    /// Hands a message to a session: sent now if its connection is online
    /// and can take it, queued otherwise. QoS 0 is not queued for an
    /// offline session (as mosquitto's default). `publisher` is the
    /// connection it came from, held back if the queue is full.
    pub(super) fn deliver(
        &mut self,
        s: usize,
        o: Outgoing,
        publisher: Option<ConnId>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if !self.may_read(s, &o.msg.topic) {
            return;
        }
        let session = &mut self.sessions[s];
        if o.qos != QoS::AtMostOnce && session.expiry != 0 {
            self.changes += 1;
        }
        match session.conn() {
            Some(id) if session.ready_for(o.qos) => {
                self.send_now(s, id, o, now, out);
            }
            Some(id) => self.enqueue_online(s, id, o, publisher, now, out),
            None if o.qos == QoS::AtMostOnce => {}
            // What a replay restores was queued once: dropped, it says so.
            None if self.replaying => self.sessions[s].flow_mut(&mut self.spare_flows).push(o),
            // Offline with expiry 0: a bridge's session with
            // `local_cleansession`, which keeps nothing for its remote.
            None if session.expiry == 0 => self.stats.publish_dropped += 1,
            None => self.enqueue_within_bounds(s, o),
        }
    }

    /// Queues a message for an online session. A full queue takes it all
    /// the same and holds the publisher back (TCP slows it) until the
    /// queue drains, so nothing is dropped that the client could still
    /// take; only once it has stayed full for `slow_subscriber_timeout`
    /// does it drop at its bound.
    fn enqueue_online(
        &mut self,
        s: usize,
        id: ConnId,
        o: Outgoing,
        publisher: Option<ConnId>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let (max, max_bytes) = (self.config.max_queued, self.config.max_queued_bytes);
        let timeout = self.config.slow_subscriber_timeout;
        let flow = self.sessions[s].flow_mut(&mut self.spare_flows);
        if timeout.is_zero() || flow.stuck || !flow.is_full(max, max_bytes) {
            return self.enqueue_within_bounds(s, o);
        }
        flow.push(o);
        self.mark_full(s, now);
        // A client reading its own messages is not held: its acks come
        // on the connection that would not be read.
        let Some(p) = publisher.filter(|&p| p != id) else {
            return;
        };
        let flow = self.sessions[s].flow_mut(&mut self.spare_flows);
        if !flow.holding.contains(&p) {
            flow.holding.push(p);
            let holders = self.held.entry(p).or_insert(0);
            *holders += 1;
            if *holders == 1 {
                out.push(Action::Hold(p));
            }
        }
    }

    /// An online session's queue is at its bound: from now on it holds its
    /// publishers, for at most `slow_subscriber_timeout`.
    pub(super) fn mark_full(&mut self, s: usize, now: Instant) {
        let timeout = self.config.slow_subscriber_timeout;
        let generation = self.sessions[s].generation;
        let Some(flow) = self.sessions[s].existing_flow_mut() else {
            return;
        };
        if flow.full_since.is_none() {
            flow.full_since = Some(now);
            if !flow.stall_pending {
                flow.stall_pending = true;
                self.timers
                    .add(now + timeout, Timer::Stall(Slot::new(s), generation));
            }
        }
    }

    /// Queues a message within the bounds; dropped, counted and logged
    /// (once until the queue drains) where they do not allow it. A kept
    /// session's dropped QoS 1/2 message is journaled as such.
    fn enqueue_within_bounds(&mut self, s: usize, o: Outgoing) {
        let (max, max_bytes) = (self.config.max_queued, self.config.max_queued_bytes);
        let (msg_id, qos) = (o.msg.id, o.qos);
        let session = &mut self.sessions[s];
        let flow = session.flow_mut(&mut self.spare_flows);
        let queued = flow.enqueue(o, max, max_bytes);
        if queued == Queued::All {
            return;
        }
        self.stats.publish_dropped += 1;
        if !flow.overflow_logged {
            flow.overflow_logged = true;
            let (len, bytes) = (flow.queue.len(), flow.queued_bytes);
            log::warn!(
                "client {}: queue full ({len} messages, {bytes} bytes), dropping",
                session.client_id,
            );
        }
        if queued == Queued::Refused && qos != QoS::AtMostOnce {
            self.record_for(s, |who| JournalRecord::Dropped { who, msg_id });
        }
    }

    /// An online session's queue has been full since `full_since`: past
    /// `slow_subscriber_timeout` its publishers go free, and it drops at
    /// its bound from now on, until it drains.
    pub(super) fn check_stall(&mut self, s: usize, now: Instant, out: &mut Vec<Action>) {
        let timeout = self.config.slow_subscriber_timeout;
        let generation = self.sessions[s].generation;
        let Some(flow) = self.sessions[s].existing_flow_mut() else {
            return;
        };
        flow.stall_pending = false;
        let Some(since) = flow.full_since.filter(|_| !flow.stuck) else {
            // Drained meanwhile: with no timer pending the state may go.
            return self.sessions[s].release_flow(&mut self.spare_flows);
        };
        if since + timeout > now {
            // Filled again since this timer was set.
            flow.stall_pending = true;
            self.timers
                .add(since + timeout, Timer::Stall(Slot::new(s), generation));
            return;
        }
        flow.stuck = true;
        flow.overflow_logged = true;
        let queued = flow.queue.len();
        log::warn!(
            "client {}: queue full ({queued} messages) for {} s (slow_subscriber_timeout), \
             dropping its messages at the bound until it catches up",
            self.sessions[s].client_id,
            timeout.as_secs_f32()
        );
        self.release_publishers(s, out);
    }

    /// Lets the publishers session `s` holds be read again (those no other
    /// session holds).
    pub(super) fn release_publishers(&mut self, s: usize, out: &mut Vec<Action>) {
        let Some(flow) = self.sessions[s].existing_flow_mut() else {
            return;
        };
        for p in flow.holding.drain(..) {
            // Gone if the connection closed meanwhile.
            if let Some(holders) = self.held.get_mut(&p) {
                *holders -= 1;
                if *holders == 0 {
                    self.held.remove(&p);
                    out.push(Action::Resume(p));
                }
            }
        }
    }

    /// Session `s`'s queue drained to half its bounds, or its connection
    /// went: no longer full, and its publishers go free.
    pub(super) fn unblock(&mut self, s: usize, out: &mut Vec<Action>) {
        if let Some(flow) = self.sessions[s].existing_flow_mut() {
            flow.full_since = None;
            flow.stuck = false;
            flow.congested = false;
        }
        self.release_publishers(s, out);
    }

    /// Sends what waits (retained messages owed to new subscriptions, then
    /// the queue) while the in-flight window has room, up to what the
    /// output can take ([`Broker::output_room`]): past that the loop says
    /// when it has room again ([`Broker::output_ready`]).
    pub(super) fn pump(&mut self, s: usize, now: Instant, out: &mut Vec<Action>) {
        let (max, max_bytes) = (self.config.max_queued, self.config.max_queued_bytes);
        let mut budget = match self.room.take() {
            Some((id, room)) if self.sessions[s].conn() == Some(id) => room,
            _ => self.config.max_outgoing,
        };
        while budget > 0 {
            let session = &mut self.sessions[s];
            let Some(id) = session.conn() else { return };
            let flow = session.flow();
            if flow.congested {
                return;
            }
            let (from_cursor, qos) = match (flow.retained.front(), flow.queue.front()) {
                (Some(cursor), _) => (true, cursor.qos),
                (None, Some(o)) => (false, o.qos),
                (None, None) => return session.queue_drained(&mut self.spare_flows),
            };
            // A cursor's next message may be QoS 0 all the same: it waits.
            if qos != QoS::AtMostOnce && session.window_full() {
                return;
            }
            let o = if from_cursor {
                let flow = session.flow_mut(&mut self.spare_flows);
                let cursor = flow.retained.front_mut().expect("checked above");
                let Some(o) = cursor.next(&self.retained, now) else {
                    flow.retained.pop_front();
                    continue;
                };
                o
            } else {
                let o = session.dequeue().expect("checked above");
                let flow = session.flow();
                if flow.full_since.is_some() && flow.is_below_half(max, max_bytes) {
                    self.unblock(s, out);
                }
                o
            };
            // Checked again: rights may have changed while it waited.
            if self.may_read(s, &o.msg.topic) {
                budget = budget.saturating_sub(self.send_now(s, id, o, now, out));
            }
        }
    }

    /// Sends `o` to connection `id` of session `s`; returns the bytes it
    /// takes (0 when it was not sent: expired, or too large for the
    /// client).
    fn send_now(
        &mut self,
        s: usize,
        id: ConnId,
        o: Outgoing,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> usize {
        if o.msg.expired(now) {
            self.stats.publish_dropped += 1;
            return 0;
        }
        let session = &mut self.sessions[s];
        let packet_id = if o.qos == QoS::AtMostOnce {
            0
        } else {
            session.next_packet_id()
        };
        let Some(d) = self.delivery(id, &o, packet_id, false, now) else {
            // Larger than the client's Maximum Packet Size: discarded as if
            // delivered ([MQTT-3.1.2-25]).
            self.stats.publish_dropped += 1;
            return 0;
        };
        let len = d.len(self.conn_version(id));
        let awaiting = match o.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Awaiting::Ack),
            QoS::ExactlyOnce => Some(Awaiting::Received),
        };
        let before = self.journal_len();
        if awaiting == Some(Awaiting::Received) {
            self.record_progress(s, o.msg.id, Progress::Sent(packet_id));
        }
        if let Some(awaiting) = awaiting {
            self.sessions[s].put_in_flight(&mut self.spare_flows, packet_id, awaiting, o);
        }
        out.push(self.publish_after(id, d, before));
        len
    }

    /// The PUBLISH for one delivery to connection `id`, or None when it
    /// would exceed the client's Maximum Packet Size.
    pub(super) fn delivery(
        &mut self,
        id: ConnId,
        o: &Outgoing,
        packet_id: u16,
        dup: bool,
        now: Instant,
    ) -> Option<Delivery> {
        let conn = self.conns.get_mut(id)?;
        let mut extra = Vec::new();
        let mut omit_topic = false;
        if conn.version == Version::V5 {
            extra.extend(
                o.sub_ids()
                    .iter()
                    .map(|&i| Property::SubscriptionIdentifier(i)),
            );
            if let Some(left) = o.msg.remaining_expiry(now) {
                extra.push(Property::MessageExpiryInterval(left));
            }
            let topic = &o.msg.topic;
            let mut new_alias = None;
            if let Some(aliases) = conn.aliases.as_ref().and_then(|a| a.outbound.as_ref()) {
                match aliases.map.get(topic) {
                    Some(&alias) => {
                        extra.push(Property::TopicAlias(alias));
                        omit_topic = true;
                    }
                    None if aliases.map.len() < usize::from(aliases.max) => {
                        let alias = aliases.map.len() as u16 + 1;
                        extra.push(Property::TopicAlias(alias));
                        new_alias = Some(alias);
                    }
                    None => {}
                }
            }
            if too_large(conn, o, omit_topic, &extra) {
                return None;
            }
            // Recorded only once the PUBLISH that teaches it will be sent.
            let outbound = conn.aliases.as_mut().and_then(|a| a.outbound.as_mut());
            if let (Some(alias), Some(aliases)) = (new_alias, outbound) {
                aliases.map.insert(topic.clone(), alias);
            }
        } else if conn.max_packet < u32::MAX && too_large(conn, o, false, &extra) {
            // A 3.x bridge's remote, limited by `bridge_max_packet_size`.
            return None;
        }
        Some(Delivery {
            msg: o.msg.clone(),
            qos: o.qos,
            retain: o.retain,
            dup,
            packet_id,
            extra,
            omit_topic,
        })
    }

    pub(super) fn on_puback(
        &mut self,
        s: usize,
        packet_id: u16,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.complete(s, packet_id, Awaiting::Ack, now, out);
    }

    pub(super) fn on_pubcomp(
        &mut self,
        s: usize,
        packet_id: u16,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.complete(s, packet_id, Awaiting::Complete, now, out);
    }

    /// The end of an outbound QoS flow: frees its window slot.
    fn complete(
        &mut self,
        s: usize,
        packet_id: u16,
        awaiting: Awaiting,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let session = &mut self.sessions[s];
        match session.inflight_position(packet_id, awaiting) {
            Some(i) => {
                let flow = session.flow_mut(&mut self.spare_flows);
                let done = flow.inflight.remove(i).map(|f| f.out.msg.id);
                self.changes += 1;
                self.record_progress(s, done.unwrap_or(0), Progress::Delivered);
                self.pump(s, now, out);
            }
            None => log::debug!(
                "client {}: {awaiting:?} for unknown packet id {packet_id}",
                session.client_id
            ),
        }
    }

    /// Journals how far a kept session's subscriber got with message
    /// `msg_id`.
    fn record_progress(&mut self, s: usize, msg_id: u64, progress: Progress) {
        if msg_id == 0 {
            return;
        }
        self.record_for(s, |who| match progress {
            Progress::Sent(packet_id) => JournalRecord::Sent {
                who,
                msg_id,
                packet_id,
            },
            Progress::Received(packet_id) => JournalRecord::Received {
                who,
                msg_id,
                packet_id,
            },
            Progress::Delivered => JournalRecord::Delivered { who, msg_id },
        });
    }

    pub(super) fn on_pubrec(
        &mut self,
        id: ConnId,
        s: usize,
        rec: Ack,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let session = &mut self.sessions[s];
        let code = match session.inflight_position(rec.packet_id, Awaiting::Received) {
            // A v5 PUBREC with an error code ends the flow ([MQTT-4.3.3-4]).
            Some(i) if rec.reason >= reason::UNSPECIFIED_ERROR => {
                let flow = session.flow_mut(&mut self.spare_flows);
                let done = flow.inflight.remove(i).map(|f| f.out.msg.id);
                self.record_progress(s, done.unwrap_or(0), Progress::Delivered);
                return self.pump(s, now, out);
            }
            Some(i) => {
                let f = &mut session.flow_mut(&mut self.spare_flows).inflight[i];
                f.awaiting = Awaiting::Complete;
                let msg_id = f.out.msg.id;
                self.changes += 1;
                self.record_progress(s, msg_id, Progress::Received(rec.packet_id));
                reason::SUCCESS
            }
            // A repeated PUBREC for a flow already at PUBREL: send it again.
            None if session
                .inflight_position(rec.packet_id, Awaiting::Complete)
                .is_some() =>
            {
                reason::SUCCESS
            }
            None => reason::PACKET_ID_NOT_FOUND,
        };
        // Held while any record is pending, the PUBREC's included: a
        // subscriber that has PUBREL forgets the packet id, and a copy sent
        // after a crash would then be new to it.
        out.push(self.reply(id, Packet::PubRel(ack(rec.packet_id, code)), 0));
    }

    pub(super) fn on_pubrel(
        &mut self,
        id: ConnId,
        s: usize,
        packet_id: u16,
        out: &mut Vec<Action>,
    ) {
        let before = self.journal_len();
        let session = &mut self.sessions[s];
        let code = match session
            .flow()
            .awaiting_rel
            .iter()
            .position(|&p| p == packet_id)
        {
            Some(i) => {
                session
                    .flow_mut(&mut self.spare_flows)
                    .awaiting_rel
                    .swap_remove(i);
                session.release_flow(&mut self.spare_flows);
                self.record_for(s, |who| JournalRecord::Released { who, packet_id });
                reason::SUCCESS
            }
            None => reason::PACKET_ID_NOT_FOUND,
        };
        out.push(self.reply(id, Packet::PubComp(ack(packet_id, code)), before));
    }
}

/// How far a kept session's subscriber got with a message, as journaled.
enum Progress {
    /// QoS 2, sent under this packet id.
    Sent(u16),
    /// QoS 2, PUBREC'd under this packet id.
    Received(u16),
    /// PUBACK'd or PUBCOMP'd: not sent again.
    Delivered,
}

/// Whether delivery `o` to `conn` would exceed the Maximum Packet Size it
/// accepts (sent with `extra` properties, and without its topic when
/// `omit_topic`).
fn too_large(conn: &Conn, o: &Outgoing, omit_topic: bool, extra: &[Property]) -> bool {
    let p = PublishRef {
        dup: false,
        qos: o.qos,
        retain: o.retain,
        topic: if omit_topic { "" } else { &o.msg.topic },
        packet_id: 1,
        properties: &o.msg.properties,
        extra,
        payload: &o.msg.payload,
    };
    publish_len(&p, conn.version) > conn.max_packet as usize
}
