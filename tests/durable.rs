//! `persistence_mode journal`: acknowledged means stored. roost is killed
//! with SIGKILL (no save) at random points while a publisher sends numbered
//! QoS 1 and 2 messages to an offline subscriber; every acknowledged message
//! must come back, in order, QoS 2 ones exactly once. A full disk makes
//! roost refuse (0x97) or withhold acks, keep serving, and recover.

mod common;
#[path = "common/wire.rs"]
mod wire;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::{Roost, TempDir, refused_to_start, wait_until};
use wire::*;

const SIGKILL: i32 = 9;
/// A short window for negative checks ("nothing more arrives").
const QUIET: Duration = Duration::from_millis(300);

fn config(dir: &Path) -> String {
    format!(
        "listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_mode journal\n\
         persistence_location {}\nmax_queued_messages 100000\n",
        dir.display()
    )
}

/// A kept session for "sub", subscribed to `n/#` at QoS 2, then offline.
fn offline_subscriber(addr: &str) {
    let (mut c, _) = Client::connect(addr, &Connect::v4("sub").clean(false));
    c.send(&subscribe(1, &[("n/#", 2)], false, Props::new()));
    c.expect_kind(9);
    c.send(&disconnect());
}

/// Resumes "sub" and takes every message until all of `expected` came and
/// then none for `QUIET`: (number, QoS) in arrival order.
fn drain(addr: &str, expected: &[u32]) -> Vec<(u32, u8)> {
    let state = Mutex::new(Receiver::default());
    receive(addr, &state, Some(expected));
    state.into_inner().unwrap().taken
}

#[test]
fn journal_loses_nothing_acknowledged_to_a_sigkill() {
    let dir = TempDir::new("roost-journal");
    let conf = config(&dir.path);
    let mut r = Roost::with_config(&conf);
    offline_subscriber(&r.addr());
    let mut p = Client::v4(&r.addr(), "pub");
    for i in 0..50u16 {
        p.send(
            &Publish::new("n/x", i.to_string().as_bytes())
                .qos(1, i + 1)
                .encode(false),
        );
        p.expect_kind(4);
    }
    // No save ever ran: only the journal has them.
    r.signal_and_wait(SIGKILL);
    assert!(!r.log().iter().any(|l| l.contains("persistence: saved")));

    let r = Roost::with_config(&conf);
    let got: Vec<u32> = drain(&r.addr(), &(0..50).collect::<Vec<_>>())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

/// The publisher's view across broker restarts.
#[derive(Default)]
struct Publisher {
    next: u32,
    /// The message in flight: number, QoS, and whether PUBREC came.
    inflight: Option<(u32, u8, bool)>,
    /// Messages roost acknowledged (PUBACK, or PUBREC for QoS 2).
    acked: Vec<(u32, u8)>,
}

fn pid_of(n: u32) -> u16 {
    (n % 60_000) as u16 + 1
}

/// Publishes numbered messages (QoS 1 and 2 alternating), one at a time,
/// until the broker goes away; first finishes what was in flight, as a
/// client resuming its session must.
fn publish_until_killed(addr: &str, state: &Mutex<Publisher>) {
    let Ok(stream) = std::net::TcpStream::connect(addr) else {
        return;
    };
    drop(stream);
    let mut c = Client::open(addr);
    c.send(&Connect::v4("pub").clean(false).encode());
    if !matches!(c.recv(Duration::from_secs(5)), Recv::Packet(p) if p.kind() == CONNACK) {
        return;
    }
    let resend = state.lock().unwrap().inflight;
    match resend {
        Some((n, qos, false)) => c.send(&message(n, qos).dup(true).encode(false)),
        Some((n, _, true)) => c.send(&ack(PUBREL, pid_of(n))),
        None => {}
    }
    loop {
        {
            let mut st = state.lock().unwrap();
            if st.inflight.is_none() {
                let n = st.next;
                st.next += 1;
                let qos = 1 + (n % 2) as u8;
                st.inflight = Some((n, qos, false));
                c.send(&message(n, qos).encode(false));
            }
        }
        let p = match c.recv(Duration::from_secs(5)) {
            Recv::Packet(p) => p,
            _ => return,
        };
        let mut st = state.lock().unwrap();
        let Some((n, qos, _)) = st.inflight else {
            continue;
        };
        if p.pid() != pid_of(n) {
            continue;
        }
        match p.kind() {
            PUBACK => {
                st.acked.push((n, qos));
                st.inflight = None;
            }
            PUBREC => {
                st.acked.push((n, qos));
                st.inflight = Some((n, qos, true));
                c.send(&ack(PUBREL, pid_of(n)));
            }
            PUBCOMP => st.inflight = None,
            _ => {}
        }
    }
}

fn message(n: u32, qos: u8) -> Publish {
    Publish::new("n/x", n.to_string().as_bytes()).qos(qos, pid_of(n))
}

/// A small xorshift generator: random kill points, reproducible from the
/// seed printed on failure.
fn next_random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Kills per kill-loop test.
const ROUNDS: usize = 15;

/// A seed for `next_random`, printed so that a failure can be replayed.
fn random_seed() -> u64 {
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    seed
}

/// A journal's directory and roost's config, with "sub" subscribed in it
/// (`offline_subscriber`).
fn journal_with_a_kept_subscriber() -> (TempDir, String) {
    let dir = TempDir::new("roost-journal");
    let conf = config(&dir.path);
    let r = Roost::with_config(&conf);
    offline_subscriber(&r.addr());
    (dir, conf)
}

/// Lets some messages through (`progress` grows), then kills roost at a
/// random point.
fn kill_at_random(r: &mut Roost, seed: &mut u64, progress: impl Fn() -> usize) {
    let before = progress();
    assert!(wait_until(|| progress() > before));
    std::thread::sleep(Duration::from_millis(next_random(seed) % 80));
    r.signal_and_wait(SIGKILL);
}

/// Every message in `acked` (number, QoS) is in `arrived`, a QoS 2 one
/// exactly once, and first arrivals are in order (only a QoS 1 message
/// sent again after a restart comes back).
fn check_arrivals(seed: u64, acked: &[(u32, u8)], arrived: &[(u32, u8)]) {
    let mut times: HashMap<u32, usize> = HashMap::new();
    let mut firsts = Vec::new();
    for &(n, _) in arrived {
        let t = times.entry(n).or_default();
        *t += 1;
        if *t == 1 {
            firsts.push(n);
        }
    }
    assert!(
        firsts.windows(2).all(|w| w[1] > w[0]),
        "seed {seed}: out of order: {firsts:?}"
    );
    for &(n, qos) in acked {
        let times = times.get(&n).copied().unwrap_or(0);
        assert!(times >= 1, "seed {seed}: acknowledged message {n} lost");
        if qos == 2 {
            assert_eq!(
                times, 1,
                "seed {seed}: QoS 2 message {n} arrived {times} times"
            );
        }
    }
}

#[test]
fn kill_9_loop_every_acknowledged_message_arrives_in_order_qos2_once() {
    let mut seed = random_seed();
    let (_dir, conf) = journal_with_a_kept_subscriber();
    let state = Arc::new(Mutex::new(Publisher::default()));
    for _ in 0..ROUNDS {
        let mut r = Roost::with_config(&conf);
        let (addr, st) = (r.addr(), state.clone());
        let publisher = std::thread::spawn(move || publish_until_killed(&addr, &st));
        kill_at_random(&mut r, &mut seed, || state.lock().unwrap().acked.len());
        publisher.join().unwrap();
    }
    let r = Roost::with_config(&conf);
    let st = state.lock().unwrap();
    let acked: Vec<u32> = st.acked.iter().map(|&(n, _)| n).collect();
    let got = drain(&r.addr(), &acked);
    check_arrivals(seed, &st.acked, &got);
    eprintln!(
        "{ROUNDS} kills survived, {} messages acknowledged, {} delivered",
        st.acked.len(),
        got.len()
    );
}

/// The online subscriber's view across broker restarts: a QoS 2 receiver
/// that holds each packet id from PUBLISH to PUBREL and takes a PUBLISH
/// under an id it holds only once (the spec's "method B").
#[derive(Default)]
struct Receiver {
    held: HashSet<u16>,
    /// What it took, (number, QoS), in order.
    taken: Vec<(u32, u8)>,
    connects: usize,
}

/// Resumes "sub" and receives until the broker goes away or, given
/// `expected`, until every one of them was taken and `QUIET` passed.
fn receive(addr: &str, state: &Mutex<Receiver>, expected: Option<&[u32]>) {
    if std::net::TcpStream::connect(addr).is_err() {
        return;
    }
    let mut c = Client::open(addr);
    c.send(&Connect::v4("sub").clean(false).encode());
    match c.recv(Duration::from_secs(5)) {
        Recv::Packet(p) if p.kind() == CONNACK => {
            assert!(p.connack(false).session_present);
            state.lock().unwrap().connects += 1;
        }
        _ => return,
    }
    let mut missing: HashSet<u32> = expected.unwrap_or_default().iter().copied().collect();
    for (n, _) in &state.lock().unwrap().taken {
        missing.remove(n);
    }
    let deadline = Instant::now() + common::TIMEOUT;
    loop {
        let done = expected.is_some() && missing.is_empty();
        let wait = if done {
            QUIET
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        let p = match c.recv(wait) {
            Recv::Packet(p) => p,
            Recv::Timeout if done => return,
            Recv::Closed if expected.is_none() => return,
            other => panic!("{other:?}; acknowledged but not taken: {missing:?}"),
        };
        let mut st = state.lock().unwrap();
        match p.kind() {
            PUBLISH => {
                let msg = p.publish(false);
                // The number, then padding in some tests.
                let text = std::str::from_utf8(&msg.payload).unwrap();
                let n: u32 = text.split(' ').next().unwrap().parse().unwrap();
                let pid = msg.pid.unwrap();
                let take = msg.qos == 1 || st.held.insert(pid);
                if take {
                    st.taken.push((n, msg.qos));
                    missing.remove(&n);
                }
                c.send(&ack(if msg.qos == 1 { PUBACK } else { PUBREC }, pid));
            }
            PUBREL => {
                st.held.remove(&p.pid());
                c.send(&ack(PUBCOMP, p.pid()));
            }
            k => panic!("unexpected packet type {k}"),
        }
    }
}

/// The kill loop above with the subscriber online throughout, so kills
/// come while messages are on their way to it. None may be lost and no
/// QoS 2 message taken twice: a QoS 2 message sent again after a restart
/// under a new packet id would be taken twice, and a later one sent under
/// an id the receiver still holds would be dropped as a copy.
#[test]
fn kill_9_loop_with_the_subscriber_online_qos2_once() {
    let mut seed = random_seed();
    let (_dir, conf) = journal_with_a_kept_subscriber();
    let publisher = Arc::new(Mutex::new(Publisher::default()));
    let receiver = Arc::new(Mutex::new(Receiver::default()));
    for round in 0..ROUNDS {
        let mut r = Roost::with_config(&conf);
        let (addr, st) = (r.addr(), receiver.clone());
        let sub = std::thread::spawn(move || receive(&addr, &st, None));
        assert!(wait_until(|| receiver.lock().unwrap().connects > round));
        let (addr, st) = (r.addr(), publisher.clone());
        let publish = std::thread::spawn(move || publish_until_killed(&addr, &st));
        kill_at_random(&mut r, &mut seed, || receiver.lock().unwrap().taken.len());
        publish.join().unwrap();
        sub.join().unwrap();
    }
    let r = Roost::with_config(&conf);
    let acked: Vec<u32> = publisher
        .lock()
        .unwrap()
        .acked
        .iter()
        .map(|a| a.0)
        .collect();
    receive(&r.addr(), &receiver, Some(&acked));
    let st = receiver.lock().unwrap();
    check_arrivals(seed, &publisher.lock().unwrap().acked, &st.taken);
    eprintln!(
        "{ROUNDS} kills survived, {} messages acknowledged, {} taken",
        acked.len(),
        st.taken.len()
    );
}

/// Resumes "sub" and takes its numbered QoS 1 messages, acknowledging
/// each, until none comes for `QUIET`.
fn take_all(addr: &str) -> Vec<u32> {
    let (mut c, connack) = Client::connect(addr, &Connect::v4("sub").clean(false));
    assert!(connack.session_present);
    let mut got = Vec::new();
    while let Recv::Packet(m) = c.recv(QUIET) {
        let m = m.publish(false);
        c.send(&ack(PUBACK, m.pid.unwrap()));
        got.push(String::from_utf8(m.payload).unwrap().parse().unwrap());
    }
    got
}

/// A damaged record in the middle of the journal is not the end of the
/// journal: roost does not quietly start without what came after it. It
/// refuses to start, saying what is damaged and how much follows, and
/// keeps refusing; with `persistence_damaged start_empty` it starts with
/// what came before the record, keeping a copy of the whole journal.
#[test]
fn a_damaged_journal_record_stops_start_up_and_the_journal_is_kept() {
    let dir = TempDir::new("roost-journal");
    let conf_dir = TempDir::new("roost-conf");
    let conf = config(&dir.path);
    let mut r = Roost::with_config(&conf);
    offline_subscriber(&r.addr());
    let mut p = Client::v4(&r.addr(), "pub");
    for i in 0..300u16 {
        p.send(
            &Publish::new("n/x", i.to_string().as_bytes())
                .qos(1, i + 1)
                .encode(false),
        );
        p.expect_kind(PUBACK);
    }
    r.signal_and_wait(SIGKILL);
    let journal = dir.path.join("roost.db.journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&journal, &bytes).unwrap();

    for _ in 0..2 {
        let out = refused_to_start(&conf_dir, &conf).join("\n");
        assert!(out.contains("roost.db.journal"), "{out}");
        assert!(out.contains("damaged"), "{out}");
        assert!(out.contains("records after it ("), "{out}");
        assert!(out.contains("persistence_damaged start_empty"), "{out}");
    }
    assert_eq!(std::fs::read(&journal).unwrap(), bytes, "left as it was");

    let r = Roost::with_config(&format!("{conf}persistence_damaged start_empty\n"));
    assert!(
        r.log()
            .iter()
            .any(|l| l.contains("damaged") && l.contains("copied to")),
        "{:#?}",
        r.log()
    );
    let copies: Vec<_> = std::fs::read_dir(&dir.path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("roost.db.journal.damaged-"))
        .collect();
    assert_eq!(copies.len(), 1);
    assert_eq!(
        std::fs::read(&copies[0]).unwrap(),
        bytes,
        "the whole journal kept"
    );
    // What came before the damaged record is there, in order.
    let got = take_all(&r.addr());
    assert!((100..300).contains(&got.len()), "{} kept", got.len());
    assert_eq!(got, (0..got.len() as u32).collect::<Vec<_>>());
}

/// A tmpfs of `size` mounted on a fresh directory (root only), unmounted
/// when dropped.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = TempDir::new("roost-full");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir.path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }

    /// Fills the disk with one file; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir.path)
            .status();
    }
}

#[test]
fn a_full_disk_withholds_or_refuses_acks_and_recovers() {
    let Some(disk) = SmallDisk::mount("256k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs (needs root)");
        return;
    };
    let conf = config(&disk.dir.path);
    let mut r = Roost::with_config(&conf);
    offline_subscriber(&r.addr());
    let filler = disk.fill();
    let (mut p, _) = Client::connect(&r.addr(), &Connect::v5("p5"));
    let big = |n: u32| format!("{n} {}", " ".repeat(8192));
    // The journal cannot take it: the ack is withheld...
    p.send(
        &Publish::new("n/x", big(1).as_bytes())
            .qos(1, 1)
            .encode(true),
    );
    assert!(
        matches!(p.recv(QUIET), Recv::Timeout),
        "not acknowledged unstored"
    );
    // ...and from then on QoS 1/2 messages are refused with 0x97.
    p.send(
        &Publish::new("n/x", big(2).as_bytes())
            .qos(1, 2)
            .encode(true),
    );
    let refused = p.expect_kind(PUBACK);
    assert_eq!((refused.pid(), refused.ack_reason()), (2, 0x97));
    assert!(
        r.log()
            .iter()
            .any(|l| l.contains("cannot write the journal"))
    );
    // Everyone else is still served.
    let mut a = Client::v4(&r.addr(), "a");
    a.send(&subscribe(1, &[("live", 0)], false, Props::new()));
    a.expect_kind(SUBACK);
    let mut b = Client::v4(&r.addr(), "b");
    b.send(&Publish::new("live", b"still here").encode(false));
    assert_eq!(a.expect_publish().payload, b"still here");
    // Space returns: the withheld ack goes out, new messages are taken.
    std::fs::remove_file(filler).unwrap();
    let late = p.expect_kind(PUBACK);
    assert_eq!((late.pid(), late.ack_reason()), (1, 0));
    assert!(wait_until(|| r
        .log()
        .iter()
        .any(|l| l.contains("can be written again"))));
    p.send(
        &Publish::new("n/x", big(3).as_bytes())
            .qos(1, 3)
            .encode(true),
    );
    let ok = p.expect_kind(PUBACK);
    assert_eq!((ok.pid(), ok.ack_reason()), (3, 0));
    r.signal_and_wait(SIGKILL);

    let r = Roost::with_config(&conf);
    let got: Vec<u32> = drain(&r.addr(), &[1, 3])
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(got, [1, 3], "what was acknowledged, not what was refused");
}

/// While the journal cannot be written, a message no kept session needs is
/// acknowledged and delivered as usual: only what must be stored waits.
#[test]
fn a_full_disk_still_takes_what_needs_no_storage() {
    let Some(disk) = SmallDisk::mount("256k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs (needs root)");
        return;
    };
    let r = Roost::with_config(&config(&disk.dir.path));
    offline_subscriber(&r.addr());
    let mut live = Client::v4(&r.addr(), "live");
    assert_eq!(live.subscribe(1, &[("live/#", 1)]), vec![1]);
    let filler = disk.fill();
    let mut p = Client::v4(&r.addr(), "p311");
    let big = format!("1 {}", " ".repeat(8192));
    p.send(&Publish::new("n/x", big.as_bytes()).qos(1, 1).encode(false));
    assert!(matches!(p.recv(QUIET), Recv::Timeout), "stored first");
    p.send(&Publish::new("live/x", b"2").qos(1, 2).encode(false));
    assert_eq!(p.expect_kind(PUBACK).pid(), 2, "needs no storage");
    assert_eq!(live.recv_publish_ack().payload, b"2");
    std::fs::remove_file(filler).unwrap();
    assert_eq!(p.expect_kind(PUBACK).pid(), 1);
}

/// A withheld ack stays withheld through the journal's retries, however
/// long the disk stays full: an ack released by a retry that wrote nothing
/// promised a message a SIGKILL then lost.
#[test]
fn a_withheld_ack_outlasts_the_retries_of_a_full_disk() {
    let Some(disk) = SmallDisk::mount("256k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs (needs root)");
        return;
    };
    let conf = config(&disk.dir.path);
    let mut r = Roost::with_config(&conf);
    offline_subscriber(&r.addr());
    let filler = disk.fill();
    let (mut p, _) = Client::connect(&r.addr(), &Connect::v5("p5"));
    let big = format!("1 {}", " ".repeat(8192));
    p.send(&Publish::new("n/x", big.as_bytes()).qos(1, 1).encode(true));
    // The journal retries every second: three retries without space.
    let deadline = Instant::now() + Duration::from_millis(3500);
    while Instant::now() < deadline {
        if let Recv::Packet(ack) = p.recv(QUIET) {
            r.signal_and_wait(SIGKILL);
            std::fs::remove_file(&filler).unwrap();
            let r = Roost::with_config(&conf);
            let got = drain(&r.addr(), &[1]);
            panic!("{ack:?} while the disk was full; after a SIGKILL the subscriber got {got:?}");
        }
    }
    std::fs::remove_file(filler).unwrap();
    let late = p.expect_kind(PUBACK);
    assert_eq!((late.pid(), late.ack_reason()), (1, 0));
}

/// On a full disk a kept subscriber's QoS 2 delivery waits for the journal,
/// and QoS 0 messages to it pass meanwhile; once space returns the QoS 2
/// message follows, and the publisher's PUBREC.
#[test]
fn a_full_disk_holds_a_qos2_delivery_but_not_qos0_behind_it() {
    let Some(disk) = SmallDisk::mount("256k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs (needs root)");
        return;
    };
    let r = Roost::with_config(&config(&disk.dir.path));
    let (mut sub, mut p) = online_subscriber_and_publisher(&r.addr());
    let filler = disk.fill();
    let big = format!("1 {}", " ".repeat(8192));
    p.send(&Publish::new("n/x", big.as_bytes()).qos(2, 1).encode(false));
    assert!(
        matches!(sub.recv(QUIET), Recv::Timeout),
        "not sent before its packet id is stored"
    );
    p.send(&Publish::new("n/live", b"2").encode(false));
    let m = sub.expect_publish();
    assert_eq!((m.qos, m.payload.len()), (0, 1), "QoS 0 passes");
    std::fs::remove_file(filler).unwrap();
    let m = sub.expect_publish();
    assert_eq!((m.qos, m.payload.len()), (2, big.len()));
    assert_eq!(p.expect_kind(PUBREC).pid(), 1);
}

/// Snapshot mode on a full disk: the save fails, is logged, roost keeps
/// serving, and the next save after space returns succeeds.
#[test]
fn a_full_disk_fails_snapshot_saves_without_stopping_the_broker() {
    let Some(disk) = SmallDisk::mount("256k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs (needs root)");
        return;
    };
    let conf = format!(
        "listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}\nautosave_interval 1\n",
        disk.dir.path.display()
    );
    let r = Roost::with_config(&conf);
    let filler = disk.fill();
    let mut p = Client::v4(&r.addr(), "p");
    p.send(
        &Publish::new("state/a", " ".repeat(8192).as_bytes())
            .qos(1, 1)
            .retain(true)
            .encode(false),
    );
    p.expect_kind(PUBACK);
    assert!(wait_until(|| r
        .log()
        .iter()
        .any(|l| l.contains("cannot save"))));
    let mut a = Client::v4(&r.addr(), "a");
    a.send(&subscribe(1, &[("state/#", 0)], false, Props::new()));
    a.expect_kind(SUBACK);
    assert_eq!(a.expect_publish().payload.len(), 8192, "still serving");
    std::fs::remove_file(filler).unwrap();
    assert!(wait_until(|| r
        .log()
        .iter()
        .any(|l| l.contains("persistence: saved"))));
}

/// "sub" back, its session kept.
fn resume_sub(addr: &str) -> Client {
    let (sub, connack) = Client::connect(addr, &Connect::v4("sub").clean(false));
    assert!(connack.session_present);
    sub
}

/// A kept session for "sub", subscribed to `n/#` at QoS 2 and online, and
/// a publisher.
fn online_subscriber_and_publisher(addr: &str) -> (Client, Client) {
    let (mut sub, _) = Client::connect(addr, &Connect::v4("sub").clean(false));
    sub.send(&subscribe(1, &[("n/#", 2)], false, Props::new()));
    sub.expect_kind(SUBACK);
    (sub, Client::v4(addr, "pub"))
}

/// A replay restores what a kept session held at the crash, in flight and
/// queued, whatever its queue's bound, and not what it dropped. The
/// subscriber reads 20 messages (its window) without acknowledging; 1,000
/// more fill its queue, one more finds it full (the publisher is held),
/// then, stuck past `slow_subscriber_timeout`, it drops the rest. After a
/// SIGKILL it gets exactly those 1,021 again (the replay once sent them
/// back through the queue's bound, and 20 were lost).
#[test]
fn replay_restores_the_window_and_the_queue_and_not_what_was_dropped() {
    let dir = TempDir::new("roost-journal");
    let conf = config(&dir.path).replace(
        "max_queued_messages 100000\n",
        "max_queued_messages 1000\nslow_subscriber_timeout 1\n",
    );
    let mut r = Roost::with_config(&conf);
    let (mut sub, mut p) = online_subscriber_and_publisher(&r.addr());
    for n in 0..1100 {
        p.send(&message(n, 1).encode(false));
        p.expect_kind(PUBACK);
    }
    for n in 0..20 {
        assert_eq!(sub.expect_publish().payload, n.to_string().as_bytes());
    }
    r.signal_and_wait(SIGKILL);
    drop(sub);

    let r = Roost::with_config(&conf);
    let got = take_all(&r.addr());
    let want: Vec<u32> = (0..1021).collect();
    assert!(
        got == want,
        "got {} messages, {:?} to {:?}",
        got.len(),
        got.first(),
        got.last()
    );
}

/// A session's client id goes to the journal once, however many records
/// are about the session: a 60,000-byte id once cost 60 KB per delivered
/// message and per filter subscribed.
#[test]
fn a_long_client_id_is_written_to_the_journal_once() {
    let dir = TempDir::new("roost-journal");
    let r = Roost::with_config(&config(&dir.path));
    let id = "c".repeat(60_000);
    let (mut sub, _) = Client::connect(&r.addr(), &Connect::v4(&id).clean(false));
    let filters: Vec<String> = (0..100).map(|i| format!("n/{i}")).collect();
    let subs: Vec<(&str, u8)> = filters.iter().map(|f| (f.as_str(), 1)).collect();
    sub.send(&subscribe(1, &subs, false, Props::new()));
    sub.expect_kind(SUBACK);
    let mut p = Client::v4(&r.addr(), "pub");
    for i in 0..100u16 {
        p.send(
            &Publish::new(&format!("n/{i}"), b"x")
                .qos(1, i + 1)
                .encode(false),
        );
        p.expect_kind(PUBACK);
        let m = sub.expect_publish();
        sub.send(&ack(PUBACK, m.pid.unwrap()));
    }
    p.ping();
    sub.ping();
    let journal = std::fs::metadata(dir.path.join("roost.db.journal"))
        .unwrap()
        .len();
    assert!(journal < 100_000, "journal of {journal} bytes");
}

/// What a subscriber that was online acknowledged is not sent again after
/// a crash; a QoS 2 message it had PUBREC'd comes back as PUBREL only.
#[test]
fn deliveries_acknowledged_before_a_sigkill_are_not_repeated() {
    let dir = TempDir::new("roost-journal");
    let conf = config(&dir.path);
    let mut r = Roost::with_config(&conf);
    let (mut sub, mut p) = online_subscriber_and_publisher(&r.addr());
    let mut publish = |n: u32, qos: u8| {
        p.send(&message(n, qos).encode(false));
        p.expect_kind(if qos == 1 { PUBACK } else { PUBREC });
        if qos == 2 {
            p.send(&ack(PUBREL, pid_of(n)));
            p.expect_kind(PUBCOMP);
        }
    };
    for n in 0..10 {
        publish(n, 1 + (n % 2) as u8);
        let m = sub.expect_publish();
        let pid = m.pid.unwrap();
        if m.qos == 1 {
            sub.send(&ack(PUBACK, pid));
        } else {
            sub.send(&ack(PUBREC, pid));
            sub.expect_kind(PUBREL);
            sub.send(&ack(PUBCOMP, pid));
        }
    }
    // One more, PUBREC'd but not completed.
    publish(10, 2);
    let pending = sub.expect_publish().pid.unwrap();
    sub.send(&ack(PUBREC, pending));
    sub.expect_kind(PUBREL);
    // A later acknowledged publish: its commit covers the acks before it.
    publish(11, 1);
    let last = sub.expect_publish().pid.unwrap();
    sub.send(&ack(PUBACK, last));
    publish(12, 1);
    r.signal_and_wait(SIGKILL);

    let r = Roost::with_config(&conf);
    let mut sub = resume_sub(&r.addr());
    let rel = sub.expect_kind(PUBREL);
    assert_eq!(rel.pid(), pending, "the PUBREL again, not the message");
    let m = sub.expect_publish();
    assert_eq!(m.payload, b"12", "only what was not acknowledged");
    sub.send(&ack(PUBACK, m.pid.unwrap()));
    assert!(matches!(sub.recv(QUIET), Recv::Timeout));
}

/// A QoS 2 message an online subscriber had received but not PUBREC'd at a
/// crash comes again under the same packet id with DUP set, so the
/// subscriber, which holds that id until PUBREL, does not take it twice.
#[test]
fn a_qos2_message_in_flight_at_a_sigkill_comes_again_under_its_packet_id() {
    let dir = TempDir::new("roost-journal");
    let conf = config(&dir.path);
    let mut r = Roost::with_config(&conf);
    let (mut sub, mut p) = online_subscriber_and_publisher(&r.addr());
    // Some flows first, so the packet id in flight is not the first a
    // fresh session would pick.
    for n in 0..3 {
        p.send(&message(n, 2).encode(false));
        p.expect_kind(PUBREC);
        p.send(&ack(PUBREL, pid_of(n)));
        p.expect_kind(PUBCOMP);
        let pid = sub.expect_publish().pid.unwrap();
        sub.send(&ack(PUBREC, pid));
        sub.expect_kind(PUBREL);
        sub.send(&ack(PUBCOMP, pid));
    }
    p.send(&message(3, 2).encode(false));
    p.expect_kind(PUBREC);
    let first = sub.expect_publish();
    assert!(!first.dup);
    // No PUBREC: the subscriber has it and holds its id.
    r.signal_and_wait(SIGKILL);

    let r = Roost::with_config(&conf);
    let mut sub = resume_sub(&r.addr());
    let again = sub.expect_publish();
    assert_eq!(again.payload, first.payload);
    assert_eq!(again.pid, first.pid, "the same packet id");
    assert!(again.dup, "marked as sent before");
    let pid = again.pid.unwrap();
    sub.send(&ack(PUBREC, pid));
    assert_eq!(sub.expect_kind(PUBREL).pid(), pid);
    sub.send(&ack(PUBCOMP, pid));
    assert!(matches!(sub.recv(QUIET), Recv::Timeout));
}

/// Retained QoS 1 messages sent to a kept session when it subscribed: the
/// one not yet acknowledged at a crash is sent again after the restart,
/// the one acknowledged is not. The journal's SUBSCRIBE record brings back
/// what it was sent, and the records of the acks follow it.
#[test]
fn retained_messages_sent_at_subscribe_survive_a_sigkill_until_acknowledged() {
    let dir = TempDir::new("roost-journal");
    let conf = config(&dir.path);
    let mut r = Roost::with_config(&conf);
    let mut p = Client::v4(&r.addr(), "pub");
    for (i, topic) in ["n/a", "n/b"].into_iter().enumerate() {
        let retained = Publish::new(topic, topic.as_bytes()).qos(1, i as u16 + 1);
        p.send(&retained.retain(true).encode(false));
        p.expect_kind(PUBACK);
    }
    let (mut sub, _) = Client::connect(&r.addr(), &Connect::v4("sub").clean(false));
    sub.send(&subscribe(1, &[("n/#", 1)], false, Props::new()));
    // The SUBACK waits for the commit, so retained messages may come first
    // (MQTT 3.1.1 section 3.8.4 allows it).
    let (mut retained, mut suback) = (Vec::new(), false);
    while retained.len() < 2 || !suback {
        let packet = sub.expect();
        if packet.kind() == SUBACK {
            suback = true;
        } else {
            let m = packet.publish(false);
            assert!(m.retain);
            retained.push((m.payload, m.pid.unwrap()));
        }
    }
    retained.sort();
    assert_eq!(retained[0].0, b"n/a");
    sub.send(&ack(PUBACK, retained[0].1));
    // A later acknowledged publish: its commit covers what came before it.
    p.send(&message(9, 1).encode(false));
    p.expect_kind(PUBACK);
    assert_eq!(sub.expect_publish().payload, b"9");
    r.signal_and_wait(SIGKILL);

    let r = Roost::with_config(&conf);
    let mut sub = resume_sub(&r.addr());
    let mut got = Vec::new();
    while let Recv::Packet(packet) = sub.recv(QUIET) {
        let m = packet.publish(false);
        sub.send(&ack(PUBACK, m.pid.unwrap()));
        got.push((m.payload, m.retain));
    }
    assert_eq!(
        got,
        [(b"n/b".to_vec(), true), (b"9".to_vec(), false)],
        "only what was not acknowledged, in order"
    );
}
