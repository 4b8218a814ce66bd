//! The mosquitto.db importer (`roost import-mosquitto-db`, and start-up
//! with a mosquitto.db beside roost's file) fed arbitrary files. The seed
//! is a file mosquitto 2.0.11 wrote (tests/fixtures/mosquitto-2.0.11.db).
//!
//! Checks, besides "no panic": whatever it imports, the broker restores
//! as one of its own snapshots with `Broker::check_invariants` holding
//! (unique packet ids, in flight within the window, no session that ends
//! with its connection, every expiry armed).
#![no_main]

use std::time::{Duration, Instant, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use roost::broker::{Broker, Config};
use roost::persist::import::{Fit, read};

fuzz_target!(|data: &[u8]| {
    // When the seed was written, so that its sessions have not expired.
    let now = UNIX_EPOCH + Duration::from_secs(1_796_528_000);
    let fit = Fit::default();
    if let Ok(import) = read(data, now, &fit) {
        let mut broker = Broker::new(Config {
            max_inflight: fit.max_inflight,
            ..Config::default()
        });
        broker.restore(import.snapshot, Instant::now(), now);
        broker.check_invariants();
    }
});
