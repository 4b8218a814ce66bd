//! What tests/flow.rs and tests/flow_limits.rs share: a broker on a
//! loopback port, payloads keyed for counting, a subscriber loop that
//! acknowledges as it reads, and a QoS 1 publisher with a fixed window.
//! Included by `#[path]` next to `mod common;` and `mod wire;`.
#![allow(dead_code)] // each test crate uses its own subset

use std::collections::{HashMap, HashSet};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Proc, Roost};
use crate::wire::*;

/// Deadline for one heavy step (a burst, a drain): ample on a loaded
/// 2-core machine for what takes a second or two on an idle one.
pub const LONG: Duration = Duration::from_secs(60);

/// A broker on a free loopback port with `extra` config lines, logging
/// at info (debug would log every connection of the larger tests).
pub fn start(extra: &str) -> Roost {
    let config = format!("listener 0 127.0.0.1\nallow_anonymous true\n{extra}");
    Roost::spawn_logging(&[], Some(&config), None, "roost=info")
}

/// A payload of `len` bytes that starts with `key` and a space.
pub fn payload(key: &str, len: usize) -> Vec<u8> {
    let mut p = format!("{key} ").into_bytes();
    p.resize(len.max(p.len()), b'.');
    p
}

/// The key a payload starts with (up to the first space).
pub fn key(p: &Publish) -> String {
    let end = p.payload.iter().position(|&b| b == b' ');
    String::from_utf8_lossy(&p.payload[..end.unwrap_or(p.payload.len())]).into_owned()
}

/// Reads PUBLISHes, acknowledging those at QoS 1, until `done` (asked
/// after each) says so, the connection closes, or `until` passes.
pub fn receive(
    c: &mut Client,
    until: Instant,
    mut done: impl FnMut(&Publish) -> bool,
) -> Vec<Publish> {
    let mut got = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        match c.recv(left) {
            Recv::Packet(p) if p.kind() == PUBLISH => {
                let p = p.publish(c.v5);
                c.ack_publish(&p);
                let stop = done(&p);
                got.push(p);
                if stop {
                    return got;
                }
            }
            Recv::Packet(_) => {}
            Recv::Closed | Recv::Timeout => return got,
        }
    }
}

/// Publishes `make(0)`, `make(1)`, ... at QoS 1 (packet ids set here)
/// until `make` returns None, keeping at most `window` unacknowledged;
/// stops early when the connection closes or `until` passes. Returns how
/// many were sent and the indexes of those acknowledged.
pub fn publish_window(
    c: &mut Client,
    window: usize,
    until: Instant,
    mut make: impl FnMut(usize) -> Option<Publish>,
) -> (usize, Vec<usize>) {
    let mut inflight: HashMap<u16, usize> = HashMap::new();
    let mut acked = Vec::new();
    let (mut next, mut more) = (0, true);
    while more || !inflight.is_empty() {
        let mut out = Vec::new();
        while more && inflight.len() < window {
            let Some(p) = make(next) else {
                more = false;
                break;
            };
            let pid = (next % 65535) as u16 + 1;
            out.extend(p.qos(1, pid).encode(c.v5));
            inflight.insert(pid, next);
            next += 1;
        }
        if !out.is_empty() && c.try_send(&out).is_err() {
            break;
        }
        if inflight.is_empty() {
            continue;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match c.recv(left) {
            Recv::Packet(p) if p.kind() == PUBACK => {
                let i = inflight.remove(&p.pid());
                acked.push(i.unwrap_or_else(|| panic!("PUBACK for unknown id {}", p.pid())));
            }
            Recv::Packet(_) => {}
            Recv::Closed | Recv::Timeout => break,
        }
    }
    (next, acked)
}

/// The last message of a run: a subscriber that gets it has had
/// everything its publisher sent before on that topic.
pub const END: &str = "end";

/// A subscriber's `done` for [`receive`]: true once `markers` END
/// messages have arrived.
pub fn ends(mut markers: usize) -> impl FnMut(&Publish) -> bool {
    move |p| {
        if key(p) == END {
            markers -= 1;
        }
        markers == 0
    }
}

/// Whether `got` holds each of `want` exactly once (END markers aside)
/// and nothing else; if not, says how it differs.
pub fn exactly(got: &[Publish], want: &HashSet<String>) -> Result<(), String> {
    let mut seen = HashSet::new();
    let mut dups = 0;
    for p in got {
        let k = key(p);
        if k != END && !seen.insert(k) {
            dups += 1;
        }
    }
    let missing = want.difference(&seen).count();
    let extra = seen.difference(want).count();
    if missing == 0 && dups == 0 && extra == 0 {
        return Ok(());
    }
    Err(format!(
        "received {} of {} acknowledged messages ({missing} missing, \
         {dups} duplicated, {extra} never acknowledged)",
        want.len() - missing,
        want.len()
    ))
}

/// [`exactly`], failing the test; `who` names the subscriber.
pub fn assert_exactly(who: &str, got: &[Publish], want: &HashSet<String>) {
    if let Err(e) = exactly(got, want) {
        panic!("{who}: {e}");
    }
}

/// Polls `proc`'s output until `enough` holds or `until` passes, and
/// returns the output.
pub fn wait_output(proc: &Proc, until: Instant, enough: impl Fn(&[String]) -> bool) -> Vec<String> {
    loop {
        let out = proc.output();
        if enough(&out) || Instant::now() >= until {
            return out;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// PINGREQ, then waits (until `until`) for PINGRESP: true once the broker
/// has processed everything sent before; false if it closed the
/// connection or did not answer in time.
pub fn pinged(c: &mut Client, until: Instant) -> bool {
    c.send(&pingreq());
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match c.recv(left) {
            Recv::Packet(p) if p.kind() == PINGRESP => return true,
            Recv::Packet(_) => {}
            Recv::Closed | Recv::Timeout => return false,
        }
    }
}
