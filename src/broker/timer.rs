//! Every deadline of the broker in one min-heap. Entries are never removed
//! early: each carries the generation of what it belongs to, and a popped
//! entry whose owner has moved on is ignored. Keep-alive does not re-arm on
//! every packet either: its entry fires at the old deadline and re-arms
//! itself if the connection was heard from since.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Connect timeout or keep-alive of a connection (id, serial).
    Conn(usize, u64),
    /// Session expiry of an offline session (slot, generation).
    SessionExpiry(usize, u64),
    /// Delayed will of an offline session (slot, generation).
    Will(usize, u64),
}

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl Timers {
    pub fn add(&mut self, at: Instant, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the earliest timer due at `now`, with the time it was set for.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => {
                let entry = self.heap.pop().map(|Reverse(entry)| entry);
                // A burst of connections leaves one stale entry each until
                // its deadline; give the room back once they have fired.
                let (len, cap) = (self.heap.len(), self.heap.capacity());
                if cap >= 1024 && len * 4 <= cap {
                    self.heap.shrink_to(len * 2);
                }
                entry
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_in_order_and_gives_room_back() {
        let now = Instant::now();
        let mut t = Timers::default();
        for i in 0..10_000u64 {
            t.add(
                now + Duration::from_millis(10_000 - i),
                Timer::Conn(i as usize, i),
            );
        }
        let mut last = now;
        let mut n = 0;
        while let Some((at, _)) = t.pop_due(now + Duration::from_secs(20)) {
            assert!(at >= last);
            last = at;
            n += 1;
        }
        assert_eq!(n, 10_000);
        assert!(t.heap.capacity() < 1024, "capacity {}", t.heap.capacity());
        assert_eq!(t.next_deadline(), None);
    }
}
