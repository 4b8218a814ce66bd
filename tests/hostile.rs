//! Hostile clients: packets shaped to make the broker do work out of all
//! proportion to what they carry. Each test sends the shape, requires the
//! answer within a bound far above what the work it should cost takes
//! (the broker here is a debug build), and a bystander served meanwhile.

#[path = "common/mod.rs"]
mod common;
#[path = "common/wire.rs"]
mod wire;

use common::Roost;
use std::time::{Duration, Instant};
use wire::*;

/// Far above what a linear pass over these packets takes in a debug build,
/// and far below what the quadratic or store-wide work they once caused.
const BOUND: Duration = Duration::from_secs(10);

/// roost with its defaults, logging at info: a debug line per filter would
/// measure how fast the test reads the log.
fn start() -> Roost {
    Roost::spawn_logging(&["-p", "0"], None, None, "roost=info")
}

/// Publishes `n` retained QoS 0 messages on `topic(i)`, in batches.
fn retain_many(r: &Roost, n: usize, topic: impl Fn(usize) -> String) {
    let mut p = Client::v4(&r.addr(), "retainer");
    let indices: Vec<usize> = (0..n).collect();
    for batch in indices.chunks(1000) {
        let mut bytes = Vec::new();
        for &i in batch {
            bytes.extend(Publish::new(&topic(i), b"r").retain(true).encode(false));
        }
        p.send(&bytes);
    }
    p.ping();
}

/// Sends `packet` and waits for its answer of `kind`; a bystander's ping
/// meanwhile must come back too. Returns how long the answer took.
fn answered_within_bound(r: &Roost, c: &mut Client, packet: &[u8], kind: u8) -> Duration {
    let mut bystander = Client::v4(&r.addr(), "bystander");
    let t0 = Instant::now();
    c.send(packet);
    match c.recv(BOUND) {
        Recv::Packet(p) => assert_eq!(p.kind(), kind, "{p:?}"),
        other => panic!("no answer within {BOUND:?}: {other:?}"),
    }
    let took = t0.elapsed();
    bystander.ping();
    took
}

/// Filters `prefix/0` .. `prefix/{n-1}`.
fn filters(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}/{i}")).collect()
}

#[test]
fn one_unsubscribe_of_100k_filters_costs_a_pass_over_them() {
    // Each filter once walked the session's whole list: 16.9 s of CPU in a
    // release build for 100,000.
    let r = start();
    let mut c = Client::v4(&r.addr(), "many");
    let all = filters("u", 100_000);
    for chunk in all.chunks(10_000) {
        let subs: Vec<(&str, u8)> = chunk.iter().map(|f| (f.as_str(), 0)).collect();
        c.send(&subscribe(1, &subs, false, Props::new()));
        c.expect_kind(SUBACK);
    }
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    let took = answered_within_bound(&r, &mut c, &unsubscribe(2, &names, false), UNSUBACK);
    eprintln!("UNSUBACK for 100,000 filters after {took:?}");
    // They are gone.
    let mut p = Client::v4(&r.addr(), "p");
    p.pub0("u/7", b"x");
    assert!(matches!(c.recv(Duration::from_millis(300)), Recv::Timeout));
}

#[test]
fn a_subscribe_of_many_filters_does_not_sweep_the_retained_store_for_each() {
    // Each filter once walked every retained message: 2.5 s in a release
    // build for 50,000 filters with 20,000 retained.
    let r = start();
    retain_many(&r, 20_000, |i| format!("dev/{i}/state"));
    let mut c = Client::v4(&r.addr(), "sweeper");
    let all = filters("nothing", 50_000);
    let subs: Vec<(&str, u8)> = all.iter().map(|f| (f.as_str(), 0)).collect();
    let took = answered_within_bound(
        &r,
        &mut c,
        &subscribe(1, &subs, false, Props::new()),
        SUBACK,
    );
    eprintln!("SUBACK for 50,000 filters with 20,000 retained after {took:?}");
}

#[test]
fn a_filter_repeated_250k_times_walks_the_retained_messages_once() {
    // One SUBSCRIBE of `#` 250,000 times with 10 retained messages made
    // 2.5 million deliveries at once.
    let r = start();
    retain_many(&r, 10, |i| format!("r/{i}"));
    let mut c = Client::v4(&r.addr(), "repeater");
    let subs = vec![("#", 0u8); 250_000];
    answered_within_bound(
        &r,
        &mut c,
        &subscribe(1, &subs, false, Props::new()),
        SUBACK,
    );
    let mut got = 0;
    while let Recv::Packet(p) = c.recv(Duration::from_millis(500)) {
        assert_eq!(p.kind(), PUBLISH);
        got += 1;
    }
    assert_eq!(got, 10, "each retained message once");
}

/// Whether a client can connect now.
fn connects(r: &Roost, id: &str) -> bool {
    let mut c = Client::open(&r.addr());
    c.send(&Connect::v4(id).encode());
    matches!(c.recv(Duration::from_secs(2)), Recv::Packet(p) if p.kind() == CONNACK)
}

#[test]
fn deep_filters_are_refused_and_memory_limit_holds_against_subscribe() {
    // 15 filters of 32,766 levels once took 55 MB of trie per 1 MB
    // SUBSCRIBE, past `memory_limit`, and never gave it back: new clients
    // were refused from then on.
    let r = Roost::spawn_logging(
        &[],
        Some("listener 0 127.0.0.1\nallow_anonymous true\nmemory_limit 20000000\n"),
        None,
        "roost=info",
    );
    let mut c = Client::v4(&r.addr(), "deep");
    let deep = format!("{}b", "a/".repeat(32_000));
    c.send(&subscribe(1, &[(&deep, 0), ("ok", 0)], false, Props::new()));
    assert_eq!(
        c.expect_kind(SUBACK).suback_codes(false),
        [0x80, 0],
        "over 200 levels"
    );
    // 200 levels are taken, until the heap reaches memory_limit.
    let mut refused = false;
    for batch in 0..100 {
        let filters: Vec<String> = (0..20)
            .map(|i| {
                // A wildcard filter: each level a trie node.
                let levels: Vec<String> = (0..199).map(|l| format!("{batch}-{i}-{l}")).collect();
                format!("{}/#", levels.join("/"))
            })
            .collect();
        let subs: Vec<(&str, u8)> = filters.iter().map(|f| (f.as_str(), 0)).collect();
        c.send(&subscribe(2, &subs, false, Props::new()));
        if c.expect_kind(SUBACK).suback_codes(false).contains(&0x80) {
            refused = true;
            break;
        }
    }
    assert!(refused, "memory_limit was never reached");
    assert!(!connects(&r, "newcomer"), "no new clients while over");
    // Once it is gone, its memory is given back and clients come in again.
    c.disconnect();
    assert!(common::wait_until(|| connects(&r, "newcomer")));
}
