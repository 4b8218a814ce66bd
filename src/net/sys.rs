//! The loop's side of `$SYS`: when the next update is due, and the memory
//! figures only the process can see.

use std::time::{Duration, Instant};

use crate::broker::Memory;

/// Every `sys_interval`, starting at once; never when it is zero.
pub struct Schedule {
    interval: Duration,
    next: Option<Instant>,
}

impl Schedule {
    pub fn new(interval: Duration, now: Instant) -> Schedule {
        Schedule {
            interval,
            next: (!interval.is_zero()).then_some(now),
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.next
    }

    /// Whether an update is due at `now`; if so, the next one is set.
    pub fn due(&mut self, now: Instant) -> bool {
        match self.next {
            Some(at) if at <= now => {
                self.next = Some(now + self.interval);
                true
            }
            _ => false,
        }
    }
}

pub fn memory() -> Memory {
    Memory {
        heap_current: crate::mem::heap_current() as u64,
        heap_maximum: crate::mem::heap_maximum() as u64,
        rss: rss().unwrap_or(0),
    }
}

/// Resident set size in bytes: the second field of /proc/self/statm, in
/// pages.
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_starts_at_once_and_zero_turns_it_off() {
        let now = Instant::now();
        let mut s = Schedule::new(Duration::from_secs(10), now);
        assert!(s.due(now));
        assert!(!s.due(now + Duration::from_secs(9)));
        assert!(s.due(now + Duration::from_secs(11)));
        assert_eq!(s.next_deadline(), Some(now + Duration::from_secs(21)));
        let mut off = Schedule::new(Duration::ZERO, now);
        assert_eq!(off.next_deadline(), None);
        assert!(!off.due(now + Duration::from_secs(100)));
    }

    #[test]
    fn rss_is_read() {
        let rss = rss().unwrap();
        assert!(rss > 100_000, "{rss}");
    }
}
