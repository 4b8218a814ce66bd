//! Moving from mosquitto without losing state: a mosquitto.db written by
//! mosquitto itself (retained messages, kept sessions, their subscriptions,
//! queued and in-flight messages) is imported by `roost
//! import-mosquitto-db` and at the first start, and comes back to real
//! clients; mosquitto's file is never changed.
//!
//! tests/fixtures/mosquitto-2.0.11.db was written by the same steps
//! (`ROOST_MOSQUITTO_FIXTURE=path cargo test --test mosquitto_db
//! write_fixture -- --ignored`), without the large message, so that the
//! reader is tested where mosquitto is not installed.

mod common;
#[path = "common/wire.rs"]
mod wire;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use common::{
    Proc, Roost, SIGTERM, TempDir, free_port, refused_to_start, run_roost, text, wait_until,
};
use wire::*;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/mosquitto-2.0.11.db"
);
const TRUNCATED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/mosquitto-2.0.11-truncated.db"
);

/// Above the 64 KiB of roost's read buffer and of a 16-bit length.
const LARGE: usize = 300_000;

fn mosquitto_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("mosquitto"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/mosquitto")).filter(|p| p.is_file()))
}

/// Every byte value, in a queued and a retained message.
fn blob() -> Vec<u8> {
    (0..=255u8).collect()
}

fn large() -> Vec<u8> {
    (0..LARGE).map(|i| (i % 251) as u8).collect()
}

/// A QoS 1 or 2 PUBLISH, its flow completed.
fn publish(c: &mut Client, p: Publish) {
    let (qos, pid) = (p.qos, p.pid.unwrap_or(0));
    c.send(&p.encode(c.v5));
    match qos {
        1 => assert_eq!(c.expect_kind(PUBACK).pid(), pid),
        2 => {
            assert_eq!(c.expect_kind(PUBREC).pid(), pid);
            c.send(&ack(PUBREL, pid));
            assert_eq!(c.expect_kind(PUBCOMP).pid(), pid);
        }
        _ => {}
    }
}

fn kept(addr: &str, connect: Connect, filters: &[(&str, u8)], props: Props) -> Client {
    let (mut c, _) = Client::connect(addr, &connect.clean(false));
    c.send(&subscribe(1, filters, c.v5, props));
    c.expect_kind(SUBACK);
    c
}

fn v5_session() -> Connect {
    Connect::v5("keeper5").props(Props::new().u32(P_SESSION_EXPIRY, 3600))
}

/// Runs mosquitto with persistence in `dir`, builds the state the checks
/// below expect, and stops it with SIGTERM so that it saves; returns its
/// mosquitto.db. `large`: whether to retain a `LARGE` message too.
fn make_mosquitto_db(bin: &Path, dir: &Path, large_retained: bool) -> PathBuf {
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    // `user root` keeps mosquitto, started as root, from switching to the
    // user mosquitto, who could not write here.
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
             persistence_location {}/\nautosave_interval 0\nuser root\nlog_dest stderr\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-c").arg(&conf);
    let mut m = Proc::spawn(cmd);
    // Logged once every listener is open, unlike "Opening ... listen
    // socket", which comes before the bind.
    m.wait_line("mosquitto running", |l| l.ends_with(" running"));
    let addr = format!("127.0.0.1:{port}");

    let mut setter = Client::v4(&addr, "setter");
    publish(
        &mut setter,
        Publish::new("home/temp", b"21.5").qos(1, 1).retain(true),
    );
    publish(
        &mut setter,
        Publish::new("bin/blob", &blob()).qos(2, 2).retain(true),
    );
    if large_retained {
        publish(
            &mut setter,
            Publish::new("big/blob", &large()).qos(1, 3).retain(true),
        );
    }
    let mut setter5 = Client::v5(&addr, "setter5");
    let props = Props::new()
        .str(P_CONTENT_TYPE, "text/plain")
        .pair(P_USER_PROPERTY, "k", "v");
    publish(
        &mut setter5,
        Publish::new("v5/retained", b"props")
            .qos(1, 1)
            .retain(true)
            .props(props),
    );

    // Sessions that are away: their messages queue.
    kept(
        &addr,
        Connect::v4("keeper"),
        &[("q/0", 0), ("q/1", 1), ("q/2", 2)],
        Props::new(),
    )
    .send(&disconnect());
    // No Local (0x04), Retain As Published (0x08), an identifier.
    kept(
        &addr,
        v5_session(),
        &[("v5/+", 1 | 0x04 | 0x08)],
        Props::new().varint(P_SUBSCRIPTION_ID, 42),
    )
    .send(&disconnect_v5(0));
    // Sessions still connected when mosquitto stops, their flows open.
    let mut flight = kept(&addr, Connect::v4("flight"), &[("f/#", 2)], Props::new());
    let (mut pub2, _) = Client::connect(&addr, &Connect::v4("pub2").clean(false));

    publish(&mut setter, Publish::new("q/1", b"one").qos(1, 10));
    publish(&mut setter, Publish::new("q/2", b"two").qos(2, 11));
    publish(&mut setter, Publish::new("q/1", b"three").qos(2, 12));
    // QoS 0 for keeper: mosquitto (queue_qos0_messages false) keeps none.
    publish(&mut setter, Publish::new("q/0", b"zero").qos(1, 13));
    publish(&mut setter, Publish::new("q/2", &blob()).qos(2, 14));
    publish(
        &mut setter5,
        Publish::new("v5/x", b"five")
            .qos(1, 2)
            .props(Props::new().pair(P_USER_PROPERTY, "a", "b")),
    );

    // flight: f1 unacknowledged (wait_for_puback), f2 unacknowledged
    // (wait_for_pubrec), f3 PUBREC'd, its PUBREL not completed
    // (wait_for_pubcomp).
    for (topic, qos, pid) in [("f/1", 1, 20), ("f/2", 2, 21), ("f/3", 2, 22)] {
        publish(
            &mut setter,
            Publish::new(topic, topic.as_bytes()).qos(qos, pid),
        );
    }
    let pids: Vec<u16> = (0..3)
        .map(|_| flight.expect_publish().pid.unwrap())
        .collect();
    flight.send(&ack(PUBREC, pids[2]));
    assert_eq!(flight.expect_kind(PUBREL).pid(), pids[2]);
    // pub2: a QoS 2 message PUBREC'd by mosquitto, its PUBREL not sent.
    pub2.send(&Publish::new("q/2", b"pending").qos(2, 7).encode(false));
    assert_eq!(pub2.expect_kind(PUBREC).pid(), 7);

    m.signal(SIGTERM);
    assert!(m.wait_exit().success(), "{:#?}", m.output());
    let db = dir.join("mosquitto.db");
    assert!(wait_until(|| db.exists()), "{:#?}", m.output());
    db
}

/// mosquitto.db bytes made once per test run, or None (and a note) when
/// mosquitto is not installed.
fn mosquitto_db() -> Option<&'static [u8]> {
    static DB: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    let db = DB.get_or_init(|| {
        let bin = mosquitto_bin()?;
        let dir = TempDir::new("roost-mosquitto");
        Some(std::fs::read(make_mosquitto_db(&bin, &dir.path, true)).unwrap())
    });
    if db.is_none() {
        eprintln!("SKIPPED: mosquitto not installed");
    }
    db.as_deref()
}

#[test]
#[ignore = "writes the fixture; run by hand with ROOST_MOSQUITTO_FIXTURE=path"]
fn write_fixture() {
    let to = std::env::var("ROOST_MOSQUITTO_FIXTURE").expect("ROOST_MOSQUITTO_FIXTURE");
    let bin = mosquitto_bin().expect("mosquitto");
    let dir = TempDir::new("roost-mosquitto");
    std::fs::copy(make_mosquitto_db(&bin, &dir.path, false), to).unwrap();
}

/// mosquitto's file as a test found it, to show it unchanged.
struct Untouched {
    path: PathBuf,
    bytes: Vec<u8>,
    mtime: SystemTime,
}

impl Untouched {
    fn write(path: PathBuf, bytes: &[u8]) -> Untouched {
        std::fs::write(&path, bytes).unwrap();
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        Untouched {
            path,
            bytes: bytes.to_vec(),
            mtime,
        }
    }

    fn check(&self) {
        let now = std::fs::read(&self.path).expect("mosquitto's file is still there");
        assert!(now == self.bytes, "{} changed", self.path.display());
        let mtime = std::fs::metadata(&self.path).unwrap().modified().unwrap();
        assert_eq!(mtime, self.mtime, "{} touched", self.path.display());
        let dir = self.path.parent().unwrap();
        let aside: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("damaged"))
            .collect();
        assert!(aside.is_empty(), "moved aside: {aside:?}");
    }
}

fn conf(dir: &Path, extra: &str) -> String {
    format!(
        "listener 0 127.0.0.1\nallow_anonymous true\npersistence true\n\
         persistence_location {}\n{extra}",
        dir.display()
    )
}

/// The next PUBLISH, acknowledged as its QoS asks.
fn take(c: &mut Client) -> Publish {
    let p = c.expect_publish();
    match (p.qos, p.pid) {
        (1, Some(pid)) => c.send(&ack(PUBACK, pid)),
        (2, Some(pid)) => {
            c.send(&ack(PUBREC, pid));
            // Other messages may come first.
            assert_eq!(c.expect_skipping(PUBREL).pid(), pid);
            c.send(&ack(PUBCOMP, pid));
        }
        _ => {}
    }
    p
}

fn user_props(p: &Publish) -> Vec<(String, String)> {
    p.props
        .iter()
        .filter(|p| p.id == P_USER_PROPERTY)
        .filter_map(|p| match &p.value {
            PropValue::Pair(k, v) => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

/// What `make_mosquitto_db` left comes back from roost at `addr`.
fn check_imported(addr: &str, large_retained: bool) {
    // Retained messages, with their payloads, QoS and properties.
    let mut reader = Client::v4(addr, "reader");
    let mut filters = vec![("home/temp", 2), ("bin/blob", 2)];
    if large_retained {
        filters.push(("big/blob", 2));
    }
    reader.send(&subscribe(1, &filters, false, Props::new()));
    reader.expect_kind(SUBACK);
    let mut got: Vec<(String, Vec<u8>, u8, bool)> = (0..filters.len())
        .map(|_| take(&mut reader))
        .map(|p| (p.topic_str(), p.payload, p.qos, p.retain))
        .collect();
    got.sort();
    let mut want = vec![
        ("bin/blob".to_string(), blob(), 2, true),
        ("home/temp".to_string(), b"21.5".to_vec(), 1, true),
    ];
    if large_retained {
        want.push(("big/blob".to_string(), large(), 1, true));
    }
    want.sort();
    assert!(
        got == want,
        "retained: {:?}",
        got.iter().map(|g| &g.0).collect::<Vec<_>>()
    );
    let mut reader5 = Client::v5(addr, "reader5");
    reader5.send(&subscribe(1, &[("v5/retained", 1)], true, Props::new()));
    reader5.expect_kind(SUBACK);
    let p = take(&mut reader5);
    assert_eq!((p.payload.as_slice(), p.retain), (&b"props"[..], true));
    assert_eq!(
        find_prop(&p.props, P_CONTENT_TYPE),
        Some(&PropValue::Str("text/plain".into()))
    );
    assert_eq!(user_props(&p), [("k".to_string(), "v".to_string())]);

    // keeper: the session resumes with its queue, in order, without
    // subscribing again; no QoS 0 message was kept.
    let (mut keeper, connack) = Client::connect(addr, &Connect::v4("keeper").clean(false));
    assert!(connack.session_present, "[MQTT-3.2.2-2]");
    let got: Vec<(String, Vec<u8>, u8)> = (0..5)
        .map(|_| take(&mut keeper))
        .map(|p| (p.topic_str(), p.payload, p.qos))
        .collect();
    let want = [
        ("q/1", b"one".to_vec(), 1),
        ("q/2", b"two".to_vec(), 2),
        ("q/1", b"three".to_vec(), 1),
        ("q/2", blob(), 2),
        // pub2's, delivered once its PUBREL is due.
        ("q/2", b"pending".to_vec(), 2),
    ]
    .map(|(t, p, q)| (t.to_string(), p, q));
    assert_eq!(got, want);
    // Its subscriptions came across: a new message reaches it.
    let mut setter = Client::v4(addr, "setter");
    publish(&mut setter, Publish::new("q/1", b"after").qos(1, 1));
    let p = take(&mut keeper);
    assert_eq!(
        (p.topic_str().as_str(), p.payload.as_slice()),
        ("q/1", &b"after"[..])
    );

    // keeper5: v5 options and the subscription identifier. mosquitto had
    // sent it the retained message when it subscribed: sent again.
    let (mut keeper5, connack) = Client::connect(addr, &v5_session().clean(false));
    assert!(connack.session_present);
    let p = take(&mut keeper5);
    assert_eq!(
        (p.topic_str().as_str(), p.dup, p.retain, p.sub_ids()),
        ("v5/retained", true, true, vec![42])
    );
    let p = take(&mut keeper5);
    assert_eq!(
        (p.topic_str().as_str(), p.payload.as_slice()),
        ("v5/x", &b"five"[..])
    );
    assert_eq!(p.sub_ids(), [42]);
    assert_eq!(user_props(&p), [("a".to_string(), "b".to_string())]);
    // No Local: its own message does not come back; Retain As Published:
    // the next one keeps its RETAIN flag.
    publish(&mut keeper5, Publish::new("v5/self", b"mine").qos(1, 1));
    publish(
        &mut setter,
        Publish::new("v5/other", b"theirs").qos(1, 2).retain(true),
    );
    let p = take(&mut keeper5);
    assert_eq!(
        (p.topic_str().as_str(), p.retain, p.sub_ids()),
        ("v5/other", true, vec![42])
    );

    // flight: what mosquitto had sent comes again under the same packet
    // ids, PUBLISH with DUP, the PUBREL as it was ([MQTT-4.4.0-1]).
    let (mut flight, connack) = Client::connect(addr, &Connect::v4("flight").clean(false));
    assert!(connack.session_present);
    let mut resent: Vec<(u8, bool, String, u8)> = (0..3)
        .map(|_| flight.expect())
        .map(|p| match p.kind() {
            PUBLISH => {
                let p = p.publish(false);
                (PUBLISH, p.dup, p.topic_str(), p.qos)
            }
            kind => (kind, false, String::new(), 1),
        })
        .collect();
    resent.sort();
    assert_eq!(
        resent,
        [
            (PUBLISH, true, "f/1".into(), 1),
            (PUBLISH, true, "f/2".into(), 2),
            (PUBREL, false, String::new(), 1),
        ]
    );

    // pub2: its PUBREL is answered.
    let (mut pub2, connack) = Client::connect(addr, &Connect::v4("pub2").clean(false));
    assert!(connack.session_present);
    pub2.send(&ack(PUBREL, 7));
    assert_eq!(pub2.expect_kind(PUBCOMP).pid(), 7);
    // ... and delivers nothing twice.
    keeper.expect_silence(std::time::Duration::from_millis(200));
}

const SUMMARY: &str = "4 retained, 4 sessions, 5 subscriptions, 10 queued messages; \
     1 incoming QoS 2 messages awaiting PUBREL, delivered now";

/// A directory holding `db` as mosquitto.db, as it was before roost ran.
fn with_mosquitto_db(db: &[u8]) -> (TempDir, Untouched) {
    let dir = TempDir::new("roost-import");
    let mosquitto = Untouched::write(dir.path.join("mosquitto.db"), db);
    (dir, mosquitto)
}

/// `roost import-mosquitto-db -c CONF mosquitto.db`, with roost's state in
/// `state` below `dir`; returns the config and what the command said.
fn import_command(dir: &Path, mosquitto: &Untouched) -> (String, std::process::Output) {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let conf = conf(&state, "");
    let conf_path = dir.join("roost.conf");
    std::fs::write(&conf_path, &conf).unwrap();
    let out = run_roost(&[
        "import-mosquitto-db",
        "-c",
        conf_path.to_str().unwrap(),
        mosquitto.path.to_str().unwrap(),
    ]);
    (conf, out)
}

#[test]
fn the_command_imports_what_mosquitto_kept() {
    let Some(db) = mosquitto_db() else { return };
    let (dir, mosquitto) = with_mosquitto_db(db);
    let (conf, out) = import_command(&dir.path, &mosquitto);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains(SUMMARY), "{said}");
    let target = dir.path.join("state/roost.db");
    assert!(said.contains(&target.display().to_string()), "{said}");
    // A second import would replace roost's state: refused.
    let (_, out) = import_command(&dir.path, &mosquitto);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(said.contains("roost.db exists"), "{said}");

    let mut r = Roost::with_config(&conf);
    check_imported(&r.addr(), true);
    assert!(r.signal_and_wait(SIGTERM).unwrap().success());
    mosquitto.check();
}

/// roost started on `dir` with `extra` config lines: it says it imported
/// mosquitto's file, and what.
fn first_start(dir: &Path, mosquitto: &Untouched, extra: &str) -> Roost {
    let r = Roost::with_config(&conf(dir, extra));
    let log = r.log().join("\n");
    let line = r
        .log()
        .into_iter()
        .find(|l| l.contains("INFO") && l.contains("imported mosquitto's"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains(&mosquitto.path.display().to_string()),
        "{line}"
    );
    assert!(line.contains(SUMMARY), "{line}");
    r
}

/// A mosquitto.conf kept as it is: `persistence_file mosquitto.db` in
/// mosquitto's directory. roost imports it at its first start, keeps its
/// own state in roost.db beside it, and never touches mosquitto's file.
#[test]
fn the_first_start_imports_the_file_persistence_file_names() {
    let Some(db) = mosquitto_db() else { return };
    let (dir, mosquitto) = with_mosquitto_db(db);
    let extra = "persistence_file mosquitto.db\n";
    let mut r = first_start(&dir.path, &mosquitto, extra);
    let log = r.log().join("\n");
    assert!(
        log.contains("persistence_file mosquitto.db is mosquitto's"),
        "{log}"
    );
    check_imported(&r.addr(), true);
    assert!(r.signal_and_wait(SIGTERM).unwrap().success());
    mosquitto.check();
    assert!(dir.path.join("roost.db").exists());

    // Next start: roost's own state; mosquitto's file is not read again.
    let mut r = Roost::with_config(&conf(&dir.path, extra));
    let log = r.log().join("\n");
    assert!(!log.contains("imported mosquitto's"), "{log}");
    let mut reader = Client::v4(&r.addr(), "reader");
    reader.send(&subscribe(1, &[("home/temp", 1)], false, Props::new()));
    reader.expect_kind(SUBACK);
    assert_eq!(take(&mut reader).payload, b"21.5");
    assert!(r.signal_and_wait(SIGTERM).unwrap().success());
    mosquitto.check();
}

/// mosquitto's default file name in roost's `persistence_location`, in
/// journal mode.
#[test]
fn the_first_start_imports_mosquitto_db_beside_roost_db() {
    let Some(db) = mosquitto_db() else { return };
    let (dir, mosquitto) = with_mosquitto_db(db);
    let mut r = first_start(&dir.path, &mosquitto, "persistence_mode journal\n");
    check_imported(&r.addr(), true);
    assert!(r.signal_and_wait(SIGTERM).unwrap().success());
    mosquitto.check();
}

/// Without mosquitto: the committed fixture, through the command.
#[test]
fn the_fixture_imports_and_comes_back() {
    let (dir, mosquitto) = with_mosquitto_db(&std::fs::read(FIXTURE).unwrap());
    let (conf, out) = import_command(&dir.path, &mosquitto);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The fixture was written some time ago: keeper5's hour may be over.
    let r = Roost::with_config(&conf);
    let mut reader = Client::v4(&r.addr(), "reader");
    reader.send(&subscribe(1, &[("bin/blob", 2)], false, Props::new()));
    reader.expect_kind(SUBACK);
    assert_eq!(take(&mut reader).payload, blob());
    let (mut keeper, connack) = Client::connect(&r.addr(), &Connect::v4("keeper").clean(false));
    assert!(connack.session_present);
    assert_eq!(take(&mut keeper).payload, b"one");
    mosquitto.check();
}

/// A mosquitto.db cut short stops start-up with the reason, and stays
/// where and as it is; `persistence_damaged start_empty` starts without it.
#[test]
fn a_damaged_mosquitto_db_stops_start_up_and_is_left_alone() {
    let (dir, mosquitto) = with_mosquitto_db(&std::fs::read(TRUNCATED).unwrap());
    let conf_dir = TempDir::new("roost-import-conf");
    let out = refused_to_start(&conf_dir, &conf(&dir.path, "")).join("\n");
    assert!(out.contains("mosquitto.db: cut short"), "{out}");
    assert!(out.contains("left as it is"), "{out}");
    mosquitto.check();
    assert!(!dir.path.join("roost.db").exists());

    let mut r = Roost::with_config(&conf(&dir.path, "persistence_damaged start_empty\n"));
    assert!(
        r.log().iter().any(|l| l.contains("cut short")),
        "{:#?}",
        r.log()
    );
    assert!(r.signal_and_wait(SIGTERM).unwrap().success());
    mosquitto.check();
}

/// A mosquitto.db under roost's own file name is not written over.
#[test]
fn a_mosquitto_db_named_roost_db_is_refused_not_overwritten() {
    let dir = TempDir::new("roost-import");
    let mosquitto = Untouched::write(dir.path.join("roost.db"), &std::fs::read(FIXTURE).unwrap());
    let conf_dir = TempDir::new("roost-import-conf");
    let out = refused_to_start(&conf_dir, &conf(&dir.path, "")).join("\n");
    assert!(out.contains("this is a mosquitto.db"), "{out}");
    mosquitto.check();
}
