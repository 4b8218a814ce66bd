//! Heap accounting for `$SYS/broker/heap/...` and `memory_limit`: a global
//! allocator that hands every request to the system allocator and counts
//! the bytes in use and the most ever in use.
//!
//! `main.rs` installs it for the broker process. The library does not: a
//! global allocator is the whole program's choice, and the test and bench
//! programs that link the library have no use for the counts. Without it
//! the counts stay 0.
//!
//! The counts are of bytes asked for, not of what malloc keeps for its own
//! bookkeeping; RSS (`$SYS/broker/memory/rss`) shows that.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The counting allocator: `#[global_allocator] static A: Counting = Counting;`
pub struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Heap bytes in use now.
pub fn heap_current() -> usize {
    CURRENT.load(Relaxed)
}

/// The most heap bytes ever in use at once.
pub fn heap_maximum() -> usize {
    PEAK.load(Relaxed)
}

/// Starts the peak afresh from what is in use now: the fuzz target bounds
/// what one event may take.
pub fn reset_maximum() {
    PEAK.store(CURRENT.load(Relaxed), Relaxed);
}

/// Freed heap past which it is handed back to the system.
const TRIM_FREED: usize = 2 << 20;

/// Hands heap memory freed since a peak back to the system: glibc keeps
/// freed memory for reuse, so after a burst (a flood of clients, an
/// attacker's subscriptions) RSS would stay at the peak for good.
#[derive(Default)]
pub struct Trim {
    /// The peak when it last trimmed.
    peak: usize,
    /// The heap in use when it last trimmed.
    level: usize,
}

impl Trim {
    /// Trims if the heap is `TRIM_FREED` or more below a peak it has not
    /// trimmed after yet, or below where it last trimmed: a burst freed
    /// over several calls is handed back as it goes, not only its first
    /// `TRIM_FREED`. The loop calls it now and then.
    pub fn now_and_then(&mut self) {
        if self.due(heap_current(), heap_maximum()) {
            trim();
        }
    }

    fn due(&mut self, now: usize, peak: usize) -> bool {
        let from = if peak > self.peak { peak } else { self.level };
        if from.saturating_sub(now) < TRIM_FREED {
            return false;
        }
        (self.peak, self.level) = (peak, now);
        true
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks and shrinks glibc's own heap.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Relaxed) + by;
    // A plain load and store, not an atomic maximum (a compare-and-swap
    // loop): roost allocates on one thread, and a peak missed by a racing
    // thread would only under-report.
    if now > PEAK.load(Relaxed) {
        PEAK.store(now, Relaxed);
    }
}

fn shrank(by: usize) {
    CURRENT.fetch_sub(by, Relaxed);
}

// SAFETY: every call is passed on unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counting touches only atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            match new_size.checked_sub(layout.size()) {
                Some(more) => grew(more),
                None => shrank(layout.size() - new_size),
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Driven by hand: the test program's allocator is not this one, and
    /// other tests running at the same time do not move the counts.
    #[test]
    fn counts_bytes_in_use_and_the_peak() {
        let a = Counting;
        let before = heap_current();
        let small = Layout::from_size_align(100, 8).unwrap();
        unsafe {
            let p = a.alloc(small);
            assert_eq!(heap_current(), before + 100);
            let q = a.realloc(p, small, 1000);
            assert_eq!(heap_current(), before + 1000);
            let big = Layout::from_size_align(1000, 8).unwrap();
            let q = a.realloc(q, big, 10);
            assert_eq!(heap_current(), before + 10);
            let z = a.alloc_zeroed(big);
            assert!(std::slice::from_raw_parts(z, 1000).iter().all(|&b| b == 0));
            assert_eq!(heap_current(), before + 1010);
            a.dealloc(z, big);
            a.dealloc(q, Layout::from_size_align(10, 8).unwrap());
        }
        assert_eq!(heap_current(), before);
        assert!(heap_maximum() >= before + 1010);
    }

    #[test]
    fn trims_below_a_new_peak_and_again_for_each_further_drop() {
        const MIB: usize = 1 << 20;
        let mut t = Trim::default();
        assert!(!t.due(MIB, MIB), "no burst yet");
        assert!(!t.due(9 * MIB, 10 * MIB), "1 MiB below the peak");
        assert!(t.due(8 * MIB, 10 * MIB), "2 MiB below the peak");
        assert!(!t.due(7 * MIB, 10 * MIB), "1 MiB below the last trim");
        assert!(t.due(6 * MIB, 10 * MIB), "2 MiB below the last trim");
        assert!(t.due(MIB / 10, 10 * MIB), "the rest of the burst freed");
        assert!(!t.due(MIB / 10, 10 * MIB), "nothing freed since");
        assert!(!t.due(11 * MIB, 12 * MIB), "a new peak, 1 MiB below");
        assert!(t.due(10 * MIB, 12 * MIB), "a new peak, 2 MiB below");
    }
}
