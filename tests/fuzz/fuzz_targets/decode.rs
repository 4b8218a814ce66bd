//! The packet decoder at every protocol level, fed arbitrary bytes.
//!
//! Input: one selector byte (protocol level and packet-size limit), then the
//! bytes as they would arrive on a connection. Checks:
//! - `decode` never panics;
//! - a packet that decodes, encoded again, decodes to the same packet and
//!   uses every byte of the encoding (round trip);
//! - heap: an incomplete or oversized packet allocates nothing, whatever
//!   its length fields claim; a whole one allocates at most `EXPANSION`
//!   times the bytes it was given (counted by the global allocator below).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;
use roost::protocol::{DecodeError, Version, decode, encode};

/// Live heap bytes and the highest value since the last `reset`.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(live, Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// What `f` returns, and the most heap it had allocated at once.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let result = f();
    (result, PEAK.load(Relaxed) - base)
}

/// How many heap bytes a decoded packet may take per byte of the packet:
/// in-memory lists (properties, topic filters) take more than their wire
/// form. The worst case is a PUBLISH made of 2-byte Subscription
/// Identifiers, each a 48-byte `Property`.
const EXPANSION: usize = 24;
/// Fixed allowance: a `Box<Connect>` and the like.
const SLACK: usize = 512;

const LIMITS: [usize; 6] = [16, 200, 4096, 65_536, 1 << 20, 268_435_460];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let version = match selector & 3 {
        0 => Version::V31,
        1 => Version::V311,
        _ => Version::V5,
    };
    let max = LIMITS[usize::from(selector >> 2) % LIMITS.len()];

    let (result, heap) = peak_heap(|| decode(bytes, version, max));
    match &result {
        Ok(None) | Err(DecodeError::TooLarge { .. }) => {
            assert_eq!(heap, 0, "{} allocated {heap} bytes", short(&result))
        }
        _ => {
            let allowed = EXPANSION * bytes.len().min(max) + SLACK;
            assert!(
                heap <= allowed,
                "decoding {} bytes allocated {heap} (allowed {allowed}): {}",
                bytes.len(),
                short(&result)
            );
        }
    }

    let Ok(Some((packet, used))) = result else {
        return;
    };
    assert!(used <= bytes.len() && used <= max, "used {used}");
    let mut again = Vec::new();
    encode(&packet, version, &mut again);
    match decode(&again, version, usize::MAX) {
        Ok(Some((back, n))) => {
            assert_eq!(n, again.len(), "re-encoding not consumed whole");
            assert!(
                back == packet,
                "round trip: {} became {}",
                short(&packet),
                short(&back)
            );
        }
        other => panic!(
            "re-encoded {} as {again:02x?}: {}",
            short(&packet),
            short(&other)
        ),
    }
});

/// The start of `x`'s debug form: a packet can hold thousands of items.
fn short(x: &impl std::fmt::Debug) -> String {
    let mut s = format!("{x:?}");
    if s.len() > 400 {
        let cut = (0..=400)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        s.truncate(cut);
        s.push_str("...");
    }
    s
}
