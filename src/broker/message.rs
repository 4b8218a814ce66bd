//! An application message as the broker keeps it: one copy, shared through
//! `Rc` by every queue, in-flight slot and the retained store.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::protocol::{Properties, Property, QoS};

#[derive(Debug)]
pub struct Message {
    /// Unique for the broker's lifetime, and kept by persistence, so the
    /// journal can say which message a subscriber acknowledged; 0 for one
    /// not numbered.
    pub id: u64,
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
    /// Properties forwarded unchanged (user properties, response topic,
    /// correlation data, content type, payload format). Those that are
    /// per hop or per delivery are taken out: see [`Message::new`].
    pub properties: Properties,
    /// From the Message Expiry Interval.
    pub expires: Option<Instant>,
    /// Counts it in [`stored`] while it lives.
    pub(super) _stored: Stored,
}

impl Message {
    /// Builds a message from what a client published (or its will), taking
    /// out the properties that are not forwarded as they came: the Topic
    /// Alias is per connection, the Message Expiry Interval is re-computed
    /// for each delivery ([MQTT-3.3.2-6]), and the Will Delay Interval
    /// belongs to the will, not to the message.
    pub fn new(
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
        mut properties: Properties,
        now: Instant,
    ) -> Message {
        let mut expires = None;
        properties.retain(|p| match p {
            Property::MessageExpiryInterval(secs) => {
                expires = Some(now + Duration::from_secs(u64::from(*secs)));
                false
            }
            Property::TopicAlias(_)
            | Property::WillDelayInterval(_)
            | Property::SubscriptionIdentifier(_) => false,
            _ => true,
        });
        Message {
            id: 0,
            _stored: Stored::new(&payload),
            topic,
            payload,
            qos,
            retain,
            properties,
            expires,
        }
    }

    pub fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }

    /// The Message Expiry Interval to forward: what is left, in whole
    /// seconds rounded up so a message never outlives its sender's wish.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }
}

thread_local! {
    /// The messages alive and their payload bytes, for `$SYS`. Each is
    /// counted once however many queues hold it, and only its last `Rc`
    /// knows when it goes; the loop is one thread, so a counter beside it
    /// costs an add, where one inside the broker would need a pointer in
    /// every message.
    static STORED: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// How many messages are stored (retained, queued, in flight), and their
/// payload bytes: mosquitto's `store/messages/count` and `.../bytes`.
pub fn stored() -> (u64, u64) {
    STORED.get()
}

/// A message's place in [`stored`]: counted when made, uncounted when
/// dropped. It keeps the payload length it counted (in what would be
/// padding), so the two always match.
#[derive(Debug)]
pub(super) struct Stored(u32);

impl Stored {
    pub(super) fn new(payload: &[u8]) -> Stored {
        // MQTT caps a payload under 256 MiB.
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        STORED.set({
            let (count, bytes) = STORED.get();
            (count + 1, bytes + u64::from(len))
        });
        Stored(len)
    }
}

impl Drop for Stored {
    fn drop(&mut self) {
        let (count, bytes) = STORED.get();
        STORED.set((count - 1, bytes - u64::from(self.0)));
    }
}
