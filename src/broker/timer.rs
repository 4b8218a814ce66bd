//! Every deadline of the broker in one min-heap. Entries are never removed
//! early: each carries the generation of what it belongs to, and a popped
//! entry whose owner has moved on is ignored. Keep-alive does not re-arm on
//! every packet either: its entry fires at the old deadline and re-arms
//! itself if the connection was heard from since.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::Slot;

/// 16 bytes: with its time, a heap entry is 32 (every connection has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Connect timeout or keep-alive of a connection (id, serial).
    Conn(Slot, u64),
    /// Session expiry of an offline session (slot, generation).
    SessionExpiry(Slot, u64),
    /// Delayed will of an offline session (slot, generation).
    Will(Slot, u64),
    /// When an online session's full queue stops holding its publishers
    /// (slot, generation).
    Stall(Slot, u64),
}

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl Timers {
    pub fn add(&mut self, at: Instant, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops the entries `live` rejects and the room they took: stale
    /// entries otherwise stay until their deadline, and a burst of short
    /// connections would grow the heap for good.
    pub fn retain(&mut self, mut live: impl FnMut(Timer) -> bool) {
        self.heap.retain(|Reverse((_, timer))| live(*timer));
        self.heap.shrink_to(self.heap.len() * 2);
    }

    /// Every entry, live or stale, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Instant, Timer)> + '_ {
        self.heap.iter().map(|Reverse(entry)| *entry)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the earliest timer due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, t))| t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_in_order_and_retain_gives_room_back() {
        let now = Instant::now();
        let mut t = Timers::default();
        for i in 0..10_000u64 {
            t.add(
                now + Duration::from_millis(10_000 - i),
                Timer::Conn(Slot::new(i as usize), i),
            );
        }
        t.retain(|timer| matches!(timer, Timer::Conn(id, _) if id.get() % 100 == 0));
        assert_eq!(t.len(), 100);
        assert!(t.heap.capacity() <= 200, "capacity {}", t.heap.capacity());
        let mut fired = Vec::new();
        while let Some(Timer::Conn(id, _)) = t.pop_due(now + Duration::from_secs(5)) {
            fired.push(id.get());
        }
        let due: Vec<usize> = (50..100).rev().map(|i| i * 100).collect();
        assert_eq!(fired, due, "the due ones, earliest first");
        assert_eq!(t.len(), 50);
    }
}
