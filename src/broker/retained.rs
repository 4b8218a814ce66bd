//! Retained messages, kept in topic order, and the cursors that hand them
//! to a new subscription a few at a time.
//!
//! The store is one sorted map whose keys are the topics with `/` written
//! as a zero byte (a topic cannot contain U+0000). Sorted that way, every
//! topic comes right before the topics below it, so the map reads like a
//! topic trie walked depth first: the topics under `a/b` are one range, and
//! a filter level that cannot match lets the walk jump past the whole range
//! in one lookup. Finding the matches of a filter so costs about one lookup
//! per match and per branch skipped, not a pass over the store, and a
//! cursor only has to remember the last key it gave out.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;
use std::time::Instant;

use super::message::Message;
use super::session::{Outgoing, one_id};
use crate::protocol::QoS;

#[derive(Default)]
pub struct Retained {
    map: BTreeMap<Box<[u8]>, Rc<Message>>,
}

/// `topic` as a key of the store.
fn key(topic: &str) -> Box<[u8]> {
    topic
        .bytes()
        .map(|b| if b == b'/' { 0 } else { b })
        .collect()
}

/// What the walk does after looking at one key.
enum Step {
    Match,
    /// Go on at the first key at or after this one.
    SeekTo(Vec<u8>),
    /// Go on at the key after this one.
    Next,
    /// No key from here on can match.
    Done,
}

impl Retained {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Stores `msg` as its topic's retained message, or clears the topic's
    /// when the payload is empty ([MQTT-3.3.1-10], [MQTT-3.3.1-11]).
    pub fn set(&mut self, msg: &Rc<Message>) {
        if msg.payload.is_empty() {
            self.map.remove(&*key(&msg.topic));
        } else {
            self.map.insert(key(&msg.topic), msg.clone());
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &Rc<Message>> {
        self.map.values()
    }

    /// Drops the messages whose Message Expiry Interval has passed.
    pub fn remove_expired(&mut self, now: Instant) {
        self.map.retain(|_, m| !m.expired(now));
    }

    /// The first message after key `after` (from the start when empty)
    /// whose topic matches `filter`, with its key. A leading wildcard does
    /// not match topics starting with `$` ([MQTT-4.7.2-1]).
    pub fn next_match(&self, filter: &str, after: &[u8]) -> Option<(&[u8], &Rc<Message>)> {
        let mut from = match after {
            [] => Bound::Unbounded,
            after => Bound::Excluded(after.to_vec()),
        };
        loop {
            let bounds = (from.as_ref().map(Vec::as_slice), Bound::Unbounded);
            let (key, msg) = self.map.range::<[u8], _>(bounds).next()?;
            from = match step(filter, key) {
                Step::Match => return Some((key, msg)),
                Step::SeekTo(at) => Bound::Included(at),
                Step::Next => Bound::Excluded(key.to_vec()),
                Step::Done => return None,
            };
        }
    }
}

/// Where the walk for `filter` goes from `key`: the key itself if it
/// matches, else the first key after it that could.
fn step(filter: &str, key: &[u8]) -> Step {
    // Byte offset of the key's current level.
    let mut pos = 0;
    for (i, level) in filter.split('/').enumerate() {
        let wildcard = level == "#" || level == "+";
        if i == 0 && wildcard && key.first() == Some(&b'$') {
            // Past every topic starting with `$`.
            return Step::SeekTo(vec![b'$' + 1]);
        }
        if level == "#" {
            // `a/#` matches `a` too ([MQTT-4.7.1-2]).
            return Step::Match;
        }
        if pos > key.len() {
            // The key has fewer levels; those below it come right after it.
            return Step::Next;
        }
        let end = key[pos..]
            .iter()
            .position(|&b| b == 0)
            .map_or(key.len(), |e| pos + e);
        if !wildcard {
            match key[pos..end].cmp(level.as_bytes()) {
                std::cmp::Ordering::Less => {
                    let mut at = key[..pos].to_vec();
                    at.extend_from_slice(level.as_bytes());
                    return Step::SeekTo(at);
                }
                std::cmp::Ordering::Greater if i == 0 => return Step::Done,
                std::cmp::Ordering::Greater => return past(&key[..pos - 1]),
                std::cmp::Ordering::Equal => {}
            }
        }
        pos = end + 1;
    }
    if pos > key.len() {
        Step::Match
    } else {
        // More levels than the filter: past everything under this prefix.
        past(&key[..pos - 1])
    }
}

/// The first key after `prefix` and every key below it.
fn past(prefix: &[u8]) -> Step {
    let mut at = prefix.to_vec();
    at.push(1);
    Step::SeekTo(at)
}

/// The retained messages a new subscription has still to be sent, walked
/// as its connection can take them.
#[derive(Debug, Clone)]
pub struct Cursor {
    pub filter: Rc<str>,
    /// The key of the last message given out; empty before the first.
    after: Vec<u8>,
    /// The newest message (by number) it gives out: later ones reached
    /// the subscription live.
    until: u64,
    /// The QoS granted, and the v5 Subscription Identifier (0: none).
    pub qos: QoS,
    pub sub_id: u32,
}

impl Cursor {
    /// A cursor at the start of `filter`'s matches, for messages up to
    /// number `until`.
    pub fn new(filter: Rc<str>, until: u64, qos: QoS, sub_id: u32) -> Cursor {
        Cursor {
            filter,
            after: Vec::new(),
            until,
            qos,
            sub_id,
        }
    }

    /// The next message to send, moving past it; None when done. It goes
    /// out with RETAIN 1 ([MQTT-3.3.1-8]).
    pub fn next(&mut self, store: &Retained, now: Instant) -> Option<Outgoing> {
        loop {
            let (key, msg) = store.next_match(&self.filter, &self.after)?;
            self.after.clear();
            self.after.extend_from_slice(key);
            if msg.id <= self.until && !msg.expired(now) {
                let qos = msg.qos.min(self.qos);
                return Some(Outgoing::new(
                    msg.clone(),
                    qos,
                    true,
                    one_id(self.sub_id),
                    None,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::topic::matches;

    fn store(topics: &[&str]) -> Retained {
        let mut store = Retained::default();
        for (i, topic) in topics.iter().enumerate() {
            let mut msg = Message::new(
                topic.to_string(),
                b"x".to_vec(),
                QoS::AtMostOnce,
                true,
                Vec::new(),
                Instant::now(),
            );
            msg.id = i as u64 + 1;
            store.set(&Rc::new(msg));
        }
        store
    }

    fn walk(store: &Retained, filter: &str) -> Vec<String> {
        let mut cursor = Cursor::new(filter.into(), u64::MAX, QoS::AtMostOnce, 0);
        std::iter::from_fn(|| cursor.next(store, Instant::now()))
            .map(|o| o.msg.topic.clone())
            .collect()
    }

    #[test]
    fn a_walk_finds_exactly_what_matches_in_topic_order() {
        let topics = [
            "a", "a/b", "a/b/c", "a/bc", "a-b", "a/", "a//c", "ab/c", "b/b", "b/c/d", "$SYS/x",
            "$SYS", "/a", "/", "x/y/z", "a/b/c/d", "b", "a/c", "c/a/b",
        ];
        let store = store(&topics);
        let filters = [
            "#",
            "+",
            "a",
            "a/#",
            "a/+",
            "a/+/c",
            "+/b",
            "+/+",
            "+/b/#",
            "$SYS/#",
            "$SYS",
            "+/#",
            "/#",
            "/+",
            "a/b",
            "a/b/#",
            "zz/#",
            "a/+/+/d",
            "+/c/+",
            "a//#",
            "b/#",
            "a/b/c/d/#",
        ];
        for filter in filters {
            let mut want: Vec<&str> = topics
                .iter()
                .copied()
                .filter(|t| matches(filter, t))
                .collect();
            // Topic order: `/` sorts before any other character.
            want.sort_by_key(|t| key(t));
            assert_eq!(walk(&store, filter), want, "filter {filter}");
        }
    }

    #[test]
    fn a_walk_jumps_over_branches_that_cannot_match() {
        let topics: Vec<String> = (0..10_000).map(|i| format!("dev/{i}/state")).collect();
        let mut refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        refs.push("other/1/config");
        let store = store(&refs);
        assert_eq!(walk(&store, "other/+/config"), ["other/1/config"]);
        assert_eq!(walk(&store, "+/+/config"), ["other/1/config"]);
        assert_eq!(walk(&store, "dev/17/+"), ["dev/17/state"]);
        assert!(walk(&store, "dev/x/state").is_empty());
    }

    #[test]
    fn a_cursor_skips_newer_and_expired_messages_and_sees_changes_ahead() {
        let mut store = store(&["t/1", "t/2", "t/3"]);
        let mut cursor = Cursor::new("t/+".into(), 3, QoS::AtMostOnce, 0);
        let now = Instant::now();
        assert_eq!(cursor.next(&store, now).unwrap().msg.topic, "t/1");
        // Replaced after the subscription: its new value went out live.
        let mut newer = Message::new(
            "t/2".into(),
            b"y".to_vec(),
            QoS::AtMostOnce,
            true,
            vec![],
            now,
        );
        newer.id = 4;
        store.set(&Rc::new(newer));
        let mut cleared =
            Message::new("t/3".into(), Vec::new(), QoS::AtMostOnce, true, vec![], now);
        cleared.id = 5;
        store.set(&Rc::new(cleared));
        assert!(cursor.next(&store, now).is_none());
        assert_eq!(store.len(), 2);
    }
}
