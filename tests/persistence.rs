//! `persistence true`: retained messages, sessions, subscriptions and queued
//! QoS 1 messages survive a clean restart, and a SIGKILL after a save
//! (SIGUSR1, `autosave_interval`, `autosave_on_changes`); a damaged file is
//! reported, moved aside and, unless the config says so, stops start-up.

mod common;
#[path = "common/wire.rs"]
mod wire;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Proc, Roost, SIGTERM, TempDir, have, refused_to_start, wait_until};
use wire::*;

const SIGKILL: i32 = 9;
const SIGUSR1: i32 = 10;
/// A short window for negative checks ("nothing arrives").
const QUIET: Duration = Duration::from_millis(300);

fn config(dir: &Path, extra: &str) -> String {
    format!(
        "listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}\n{extra}",
        dir.display()
    )
}

fn db(dir: &Path) -> PathBuf {
    dir.join("roost.db")
}

/// How many saves roost has logged.
fn saves(r: &Roost) -> usize {
    r.log()
        .iter()
        .filter(|l| l.contains("persistence: saved"))
        .count()
}

/// A kept (clean session 0) v3.1.1 session subscribed to `filter` at QoS 1,
/// then disconnected, so messages queue for it.
fn offline_subscriber(addr: &str, id: &str, filter: &str) {
    let (mut c, _) = Client::connect(addr, &Connect::v4(id).clean(false));
    c.send(&subscribe(1, &[(filter, 1)], false, Props::new()));
    c.expect_kind(9);
    c.send(&disconnect());
}

/// Publishes numbered QoS 1 messages `from..to` to `topic`, each acknowledged.
fn publish_numbered(addr: &str, topic: &str, range: std::ops::Range<u16>) {
    let mut p = Client::v4(addr, "publisher");
    for i in range {
        p.send(
            &Publish::new(topic, i.to_string().as_bytes())
                .qos(1, i + 1)
                .encode(false),
        );
        assert_eq!(p.expect_kind(4).pid(), i + 1);
    }
}

fn retain(addr: &str, topic: &str, payload: &[u8]) {
    let mut p = Client::v4(addr, "retainer");
    p.send(
        &Publish::new(topic, payload)
            .qos(1, 1)
            .retain(true)
            .encode(false),
    );
    p.expect_kind(4);
}

/// Resumes session `id` and returns the payloads of the `n` messages it is
/// sent, acknowledging each.
fn resume_and_take(addr: &str, id: &str, n: usize) -> (Client, Vec<String>) {
    let (mut c, connack) = Client::connect(addr, &Connect::v4(id).clean(false));
    assert!(connack.session_present, "session {id} survived");
    let mut got = Vec::new();
    for _ in 0..n {
        let p = c.expect_publish();
        c.send(&ack(4, p.pid.expect("QoS 1")));
        got.push(String::from_utf8(p.payload).unwrap());
    }
    (c, got)
}

/// A new client subscribed to `state/#`, to which the retained messages
/// there are on their way.
fn state_reader(addr: &str) -> Client {
    let mut c = Client::v4(addr, "reader");
    c.send(&subscribe(1, &[("state/#", 1)], false, Props::new()));
    c.expect_kind(SUBACK);
    c
}

fn numbers(range: std::ops::Range<u16>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

#[test]
fn state_survives_a_clean_restart() {
    let dir = TempDir::new("roost-persist");
    let conf = config(&dir.path, "");
    let mut r = Roost::with_config(&conf);
    offline_subscriber(&r.addr(), "keeper", "sensors/#");
    publish_numbered(&r.addr(), "sensors/t", 0..5);
    retain(&r.addr(), "state/valve", b"open");
    assert!(r.signal_and_wait(SIGTERM).unwrap().success());
    assert!(
        wait_until(|| saves(&r) == 1),
        "saved at shutdown: {:#?}",
        r.log()
    );

    let r = Roost::with_config(&conf);
    assert!(
        r.log().iter().any(|l| l.contains("loaded 1 sessions")),
        "{:#?}",
        r.log()
    );
    let (mut c, got) = resume_and_take(&r.addr(), "keeper", 5);
    assert_eq!(got, numbers(0..5), "in order");
    // The subscription itself came back: a new message reaches the session
    // without it subscribing again.
    publish_numbered(&r.addr(), "sensors/t", 5..6);
    assert_eq!(c.expect_publish().payload, b"5");
    let mut fresh = state_reader(&r.addr());
    let p = fresh.expect_publish();
    assert_eq!(
        (p.topic_str().as_str(), &p.payload[..]),
        ("state/valve", &b"open"[..])
    );
}

/// mosquitto's own clients see the same: a retained message and a queued
/// QoS 1 message published with mosquitto_pub come back after a restart
/// to mosquitto_sub.
#[test]
fn mosquitto_clients_see_state_after_a_restart() {
    if !have("mosquitto_sub") || !have("mosquitto_pub") {
        eprintln!("SKIPPED: mosquitto-clients not installed");
        return;
    }
    let dir = TempDir::new("roost-persist");
    let conf = config(&dir.path, "");
    let mut r = Roost::with_config(&conf);
    let port = r.port.to_string();
    let sub = |extra: &[&str]| {
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-v"])
            .args(extra);
        Proc::spawn(cmd)
    };
    // -E: subscribe, then disconnect; the session (-c) is kept.
    let mut s = sub(&["-c", "-i", "phone", "-t", "home/#", "-E"]);
    assert!(s.wait_exit().success());
    for (topic, msg, retain) in [("home/door", "locked", true), ("home/bell", "ring", false)] {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            msg,
        ]);
        if retain {
            cmd.arg("-r");
        }
        assert!(Proc::spawn(cmd).wait_exit().success());
    }
    assert!(r.signal_and_wait(SIGTERM).unwrap().success());

    let r = Roost::with_config(&conf);
    let port = r.port.to_string();
    let sub = |extra: &[&str]| {
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-v", "-W", "10"])
            .args(extra);
        Proc::spawn(cmd)
    };
    let mut s = sub(&["-c", "-i", "phone", "-t", "home/#", "-C", "3"]);
    assert!(s.wait_exit().success(), "{:#?}", s.output());
    // Both queued messages in order, then the retained one again, sent for
    // the re-subscription.
    assert_eq!(
        s.output(),
        ["home/door locked", "home/bell ring", "home/door locked"]
    );
}

#[test]
fn sigusr1_saves_so_a_sigkill_loses_nothing_acknowledged_before() {
    let dir = TempDir::new("roost-persist");
    let conf = config(&dir.path, "autosave_interval 0\n");
    let mut r = Roost::with_config(&conf);
    offline_subscriber(&r.addr(), "keeper", "sensors/#");
    publish_numbered(&r.addr(), "sensors/t", 0..20);
    retain(&r.addr(), "state/valve", b"shut");
    unsafe { libc::kill(r.pid() as i32, SIGUSR1) };
    assert!(wait_until(|| saves(&r) == 1), "{:#?}", r.log());
    r.signal_and_wait(SIGKILL);

    let r = Roost::with_config(&conf);
    let (_c, got) = resume_and_take(&r.addr(), "keeper", 20);
    assert_eq!(got, numbers(0..20));
    let mut fresh = state_reader(&r.addr());
    assert_eq!(fresh.expect_publish().payload, b"shut");
}

#[test]
fn autosave_interval_saves_changes_in_time() {
    let dir = TempDir::new("roost-persist");
    let conf = config(&dir.path, "autosave_interval 1\n");
    let mut r = Roost::with_config(&conf);
    retain(&r.addr(), "state/a", b"1");
    assert!(wait_until(|| saves(&r) == 1), "{:#?}", r.log());
    r.signal_and_wait(SIGKILL);

    let r = Roost::with_config(&conf);
    let mut fresh = state_reader(&r.addr());
    assert_eq!(fresh.expect_publish().payload, b"1");
}

#[test]
fn autosave_on_changes_counts_changes() {
    let dir = TempDir::new("roost-persist");
    let conf = config(&dir.path, "autosave_on_changes true\nautosave_interval 3\n");
    let mut r = Roost::with_config(&conf);
    retain(&r.addr(), "state/a", b"1");
    retain(&r.addr(), "state/b", b"2");
    // Each retain was acknowledged, so processed: two changes, no save.
    assert_eq!(saves(&r), 0, "{:#?}", r.log());
    retain(&r.addr(), "state/c", b"3");
    assert!(wait_until(|| saves(&r) == 1), "{:#?}", r.log());
    r.signal_and_wait(SIGKILL);

    let r = Roost::with_config(&conf);
    let mut fresh = state_reader(&r.addr());
    let mut got: Vec<Vec<u8>> = (0..3).map(|_| fresh.expect_publish().payload).collect();
    got.sort();
    assert_eq!(got, [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
}

fn damaged(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("roost.db.damaged-"))
        .collect()
}

/// Writes a real snapshot (one retained message) and returns its bytes.
fn saved_snapshot(dir: &Path) -> Vec<u8> {
    let mut r = Roost::with_config(&config(dir, ""));
    retain(&r.addr(), "state/a", b"1");
    assert!(r.signal_and_wait(SIGTERM).unwrap().success());
    std::fs::read(db(dir)).unwrap()
}

#[test]
fn a_truncated_snapshot_is_reported_moved_aside_and_stops_start_up() {
    let dir = TempDir::new("roost-persist");
    let conf_dir = TempDir::new("roost-conf");
    let bytes = saved_snapshot(&dir.path);
    let cut = &bytes[..bytes.len() / 2];
    std::fs::write(db(&dir.path), cut).unwrap();

    let out = refused_to_start(&conf_dir, &config(&dir.path, "")).join("\n");
    assert!(out.contains(&db(&dir.path).display().to_string()), "{out}");
    assert!(out.contains("truncated"), "{out}");
    assert!(out.contains("moved aside"), "{out}");
    let aside = damaged(&dir.path);
    assert_eq!(aside.len(), 1, "moved aside, not deleted");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), cut, "kept as it was");
    assert!(!db(&dir.path).exists());
    // A restart loop does not quietly start empty either.
    let out = refused_to_start(&conf_dir, &config(&dir.path, "")).join("\n");
    assert!(out.contains("damaged one was moved aside"), "{out}");

    // Saying so in the config starts with empty state.
    let r = Roost::with_config(&config(&dir.path, "persistence_damaged start_empty\n"));
    let mut fresh = state_reader(&r.addr());
    assert!(
        matches!(fresh.recv(QUIET), Recv::Timeout),
        "nothing retained"
    );
}

#[test]
fn a_corrupted_byte_is_caught_by_the_checksum() {
    let dir = TempDir::new("roost-persist");
    let conf_dir = TempDir::new("roost-conf");
    let mut bytes = saved_snapshot(&dir.path);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(db(&dir.path), &bytes).unwrap();
    let out = refused_to_start(&conf_dir, &config(&dir.path, "")).join("\n");
    assert!(out.contains("checksum"), "{out}");
    assert_eq!(damaged(&dir.path).len(), 1);
}

#[test]
fn a_missing_persistence_location_is_a_start_up_error() {
    let dir = TempDir::new("roost-persist");
    let conf_dir = TempDir::new("roost-conf");
    let out = refused_to_start(&conf_dir, &config(&dir.path.join("nope"), "")).join("\n");
    assert!(out.contains("persistence_location"), "{out}");
}
