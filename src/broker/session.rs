//! A client's session: what outlives its connection when it asks for that
//! (subscriptions, QoS 1/2 messages in flight or queued, inbound QoS 2 ids).

use super::message::Message;
use crate::protocol::{QoS, Will};
use std::collections::VecDeque;
use std::rc::Rc;

/// A message on its way to one session: the shared message plus what is
/// particular to this delivery.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub msg: Rc<Message>,
    pub qos: QoS,
    pub retain: bool,
    /// v5 Subscription Identifiers of the matching subscriptions.
    pub sub_ids: Box<[u32]>,
    /// The shared subscription it came through, to re-route it to another
    /// member if this session ends before acknowledging it.
    pub share: Option<Rc<str>>,
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
    /// The connection attached now, if online.
    pub conn: Option<usize>,
    /// Renewed (broker-wide unique) on every attach and detach, so stale
    /// timers are ignored.
    pub generation: u64,
    /// Seconds the session outlives its connection; `u32::MAX` is forever.
    pub expiry: u32,
    pub subscriptions: Vec<Rc<str>>,
    /// Outbound QoS 1/2 messages sent and not yet fully acknowledged, in
    /// the order they were sent.
    pub inflight: VecDeque<Inflight>,
    /// Messages waiting for the in-flight window or for the client to return.
    pub queue: VecDeque<Outgoing>,
    /// Inbound QoS 2 packet ids PUBREC'd and awaiting PUBREL: a PUBLISH
    /// with one of these ids is a duplicate ([MQTT-4.3.3-10]).
    pub awaiting_rel: Vec<u16>,
    /// In-flight window of the attached connection.
    pub window: u16,
    pub last_packet_id: u16,
    /// A will held back by its Will Delay Interval.
    pub pending_will: Option<Box<Will>>,
    /// Whether a queue overflow was logged since the queue last drained.
    pub overflow_logged: bool,
    /// Payload bytes in `queue` (saturating; a u32 fills padding).
    pub queued_bytes: u32,
    /// Index into `Config::auth`: the rules of the listener the client
    /// last connected through (mosquitto's rule for offline sessions).
    pub auth: u8,
}

impl Session {
    pub fn new(client_id: Rc<str>) -> Session {
        Session {
            client_id,
            username: None,
            conn: None,
            generation: 0,
            expiry: 0,
            subscriptions: Vec::new(),
            inflight: VecDeque::new(),
            queue: VecDeque::new(),
            awaiting_rel: Vec::new(),
            window: 0,
            last_packet_id: 0,
            pending_will: None,
            overflow_logged: false,
            queued_bytes: 0,
            auth: 0,
        }
    }

    /// A packet id not used by any message in flight ([MQTT-2.2.1-3]).
    /// Only called while the in-flight window has room, which is below
    /// 65535, so a free id always exists.
    pub fn next_packet_id(&mut self) -> u16 {
        loop {
            self.last_packet_id = self.last_packet_id.checked_add(1).unwrap_or(1);
            let id = self.last_packet_id;
            if !self.inflight.iter().any(|f| f.packet_id == id) {
                return id;
            }
        }
    }

    pub fn inflight_position(&self, packet_id: u16, awaiting: Awaiting) -> Option<usize> {
        self.inflight
            .iter()
            .position(|f| f.packet_id == packet_id && f.awaiting == awaiting)
    }

    /// Queues `out`, within at most `max` entries and `max_bytes` payload
    /// bytes (0: no bound). When full, the oldest QoS 0 messages make
    /// room; failing that the new message is dropped. As in mosquitto, a
    /// queue under its byte bound takes a message that crosses it.
    /// Returns false when something was dropped.
    pub fn enqueue(&mut self, out: Outgoing, max: usize, max_bytes: u32) -> bool {
        let mut dropped = false;
        while (max > 0 && self.queue.len() >= max)
            || (max_bytes > 0 && self.queued_bytes >= max_bytes)
        {
            let Some(i) = self.queue.iter().position(|o| o.qos == QoS::AtMostOnce) else {
                return false;
            };
            let old = self.queue.remove(i).expect("found above");
            self.queued_bytes = self.queued_bytes.saturating_sub(payload_len(&old));
            dropped = true;
        }
        self.queued_bytes = self.queued_bytes.saturating_add(payload_len(&out));
        self.queue.push_back(out);
        !dropped
    }

    /// The next queued message.
    pub fn dequeue(&mut self) -> Option<Outgoing> {
        let out = self.queue.pop_front()?;
        self.queued_bytes = self.queued_bytes.saturating_sub(payload_len(&out));
        Some(out)
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
        Outgoing {
            msg: Rc::new(Message::new(
                "t".into(),
                vec![b'x'; len],
                qos,
                false,
                Vec::new(),
                Instant::now(),
            )),
            qos,
            retain: false,
            sub_ids: Box::new([]),
            share: None,
        }
    }

    #[test]
    fn packet_ids_skip_those_in_flight_and_wrap() {
        let mut s = Session::new("c".into());
        s.last_packet_id = u16::MAX - 1;
        assert_eq!(s.next_packet_id(), u16::MAX);
        s.inflight.push_back(Inflight {
            packet_id: 1,
            awaiting: Awaiting::Ack,
            out: out(QoS::AtLeastOnce),
        });
        assert_eq!(s.next_packet_id(), 2, "0 is never used, 1 is in flight");
    }

    #[test]
    fn full_queue_drops_oldest_qos0_first() {
        let mut s = Session::new("c".into());
        assert!(s.enqueue(out(QoS::AtLeastOnce), 2, 0));
        assert!(s.enqueue(out(QoS::AtMostOnce), 2, 0));
        assert!(!s.enqueue(out(QoS::ExactlyOnce), 2, 0));
        let qos: Vec<QoS> = s.queue.iter().map(|o| o.qos).collect();
        assert_eq!(qos, [QoS::AtLeastOnce, QoS::ExactlyOnce]);
        assert!(!s.enqueue(out(QoS::AtLeastOnce), 2, 0));
        assert_eq!(s.queue.len(), 2, "bounded");
    }

    #[test]
    fn byte_bound_takes_the_message_that_crosses_it_then_drops() {
        let mut s = Session::new("c".into());
        assert!(s.enqueue(sized(QoS::AtLeastOnce, 60), 0, 100));
        assert!(
            s.enqueue(sized(QoS::AtLeastOnce, 60), 0, 100),
            "under: taken"
        );
        assert_eq!(s.queued_bytes, 120);
        assert!(
            !s.enqueue(sized(QoS::AtLeastOnce, 1), 0, 100),
            "over: dropped"
        );
        assert_eq!(s.queue.len(), 2);
        assert_eq!(s.dequeue().map(|o| o.msg.payload.len()), Some(60));
        assert_eq!(s.queued_bytes, 60);
        // QoS 0 messages make room.
        let mut s = Session::new("c".into());
        for _ in 0..2 {
            assert!(s.enqueue(sized(QoS::AtMostOnce, 50), 0, 100));
        }
        assert!(!s.enqueue(sized(QoS::AtLeastOnce, 10), 0, 100));
        let kept: Vec<(QoS, usize)> = s
            .queue
            .iter()
            .map(|o| (o.qos, o.msg.payload.len()))
            .collect();
        assert_eq!(kept, [(QoS::AtMostOnce, 50), (QoS::AtLeastOnce, 10)]);
        assert_eq!(s.queued_bytes, 60);
        // 0 entries means no count bound, as in mosquitto.
        let mut s = Session::new("c".into());
        for _ in 0..5000 {
            assert!(s.enqueue(out(QoS::AtLeastOnce), 0, 0));
        }
    }
}
