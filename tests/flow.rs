//! Flow control, over real loopback sockets with independent clients
//! (mosquitto_sub, paho-mqtt, rumqttc and the raw client in
//! tests/common/wire.rs): whatever a publisher had acknowledged reaches
//! every subscriber that keeps reading, however slowly; a subscriber that
//! stops reading costs its publishers at most `slow_subscriber_timeout`
//! seconds; retained messages all reach a new subscriber.
//!
//! Every test counts messages (sequence numbers in the payloads); none
//! measures speed. Waits poll against a deadline. A subscriber knows it has everything when the marker its
//! publisher sent last (same topic, same QoS, so delivered after the rest)
//! arrives, and gives up at the deadline otherwise.

mod common;
#[path = "common/flow.rs"]
mod flow;
#[path = "common/wire.rs"]
mod wire;

use std::collections::HashSet;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{Proc, Roost, TempDir, have, have_paho, run_roost, text, wait_until};
use flow::*;
use wire::*;

// ------------------------------------------------ retained messages

const RETAINED: usize = 2000;

/// A Home Assistant discovery topic: `homeassistant/<component>/<id>/config`.
fn discovery_topic(i: usize) -> String {
    let component = ["sensor", "binary_sensor", "switch", "light"][i % 4];
    format!("homeassistant/{component}/node{i:04}/config")
}

/// A broker holding 2,000 retained 1.2 KB discovery messages, published
/// at QoS 1 (each one acknowledged, so stored).
fn broker_with_discovery() -> Roost {
    let roost = start("");
    let mut publisher = Client::v4(&roost.addr(), "ha-publisher");
    let (_, acked) = publish_window(&mut publisher, 64, Instant::now() + LONG, |i| {
        let p = Publish::new(&discovery_topic(i), &payload(&format!("r{i}"), 1200));
        (i < RETAINED).then(|| p.retain(true))
    });
    assert_eq!(acked.len(), RETAINED, "retained messages acknowledged");
    roost
}

/// `mosquitto_sub -t 'homeassistant/#' -C 2000` at QoS 0 gets all 2,000
/// retained messages, each with RETAIN set.
#[test]
fn all_retained_messages_reach_mosquitto_sub() {
    skip_without!(have("mosquitto_sub") && have("stdbuf"), "mosquitto-clients");
    let roost = broker_with_discovery();
    let mut cmd = Command::new("stdbuf");
    cmd.args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p"])
        .arg(roost.port.to_string())
        .args(["-q", "0", "-t", "homeassistant/#", "-C", "2000", "-W", "60"])
        .args(["-F", "%r %t"]);
    let sub = Proc::spawn(cmd);
    let count = |out: &[String]| out.iter().filter(|l| l.starts_with("1 ")).count();
    let out = wait_output(&sub, Instant::now() + LONG, |out| count(out) >= RETAINED);
    let topics: HashSet<&str> = out.iter().filter_map(|l| l.strip_prefix("1 ")).collect();
    let flagless = out.iter().filter(|l| l.starts_with("0 ")).count();
    assert_eq!(
        (topics.len(), flagless),
        (RETAINED, 0),
        "mosquitto_sub received {} of {RETAINED} retained messages with RETAIN set \
         ({flagless} without)",
        topics.len()
    );
}

/// A QoS 1 subscriber (rumqttc) gets all 2,000 retained messages.
#[test]
fn all_retained_messages_reach_a_qos1_rumqttc_subscriber() {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let roost = broker_with_discovery();
    let mut opts = MqttOptions::new("ha-rumqttc", "127.0.0.1", roost.port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = Client::new(opts, 16);
    client
        .subscribe("homeassistant/#", QoS::AtLeastOnce)
        .unwrap();
    let until = Instant::now() + LONG;
    let (mut topics, mut flagless) = (HashSet::new(), 0);
    while topics.len() < RETAINED {
        let left = until.saturating_duration_since(Instant::now());
        match connection.recv_timeout(left) {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                assert_eq!(p.qos, QoS::AtLeastOnce, "delivered QoS");
                if p.retain {
                    topics.insert(p.topic.clone());
                } else {
                    flagless += 1;
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("rumqttc: {e} after {} messages", topics.len()),
            Err(_) => break,
        }
    }
    assert_eq!(
        (topics.len(), flagless),
        (RETAINED, 0),
        "rumqttc received {} of {RETAINED} retained messages ({flagless} without RETAIN)",
        topics.len()
    );
}

// ------------------------------------------------ QoS 0 bursts

const SLOW_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paho/slow_sub.py");

/// 5,000 QoS 0 messages of 4 KB (20 MB: more than the kernel's socket
/// buffers between broker and subscriber hold) to a paho-mqtt subscriber
/// that sleeps 0.3 ms per message: all 5,000 arrive.
#[test]
fn qos0_burst_reaches_a_slow_paho_subscriber() {
    skip_without!(have_paho(), "python3 paho-mqtt");
    const N: usize = 5000;
    let roost = start("");
    let mut cmd = Command::new("python3");
    cmd.args(["-u", SLOW_SCRIPT, &roost.port.to_string(), "burst/#"])
        .args([N.to_string().as_str(), "0.3", &LONG.as_secs().to_string()]);
    let sub = Proc::spawn(cmd);
    let subscribed = |out: &[String]| out.iter().any(|l| l == "SUBSCRIBED");
    let out = wait_output(&sub, Instant::now() + common::TIMEOUT, subscribed);
    assert!(subscribed(&out), "paho subscriber: {out:#?}");

    // Written 16 messages at a time, as a client library buffers them.
    let mut publisher = Client::v4(&roost.addr(), "burst-publisher");
    for batch in (0..N).collect::<Vec<_>>().chunks(16) {
        let mut out = Vec::new();
        for i in batch {
            out.extend(Publish::new("burst/a", &payload(&format!("b{i}"), 4000)).encode(false));
        }
        publisher.try_send(&out).expect("publisher write");
    }
    let got = |out: &[String]| out.iter().any(|l| l.starts_with("GOT "));
    let out = wait_output(&sub, Instant::now() + LONG + common::TIMEOUT, got);
    let line = out.iter().find(|l| l.starts_with("GOT ")).cloned();
    let line = line.unwrap_or_else(|| panic!("paho subscriber did not finish: {out:#?}"));
    let counts: Vec<usize> = line
        .split(' ')
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(
        counts,
        [N, N],
        "paho received {} distinct of {N} ({line}: distinct, total)",
        counts[0]
    );
}

/// CONNECT and 1,000 QoS 0 PUBLISHes of 1 KB in one write() (a blocking
/// socket takes the whole buffer in one call): all 1,000 reach a
/// subscriber that reads normally.
#[test]
fn qos0_messages_in_one_write_all_arrive() {
    const N: usize = 1000;
    let roost = start("");
    let mut sub = Client::v4(&roost.addr(), "one-write-sub");
    assert_eq!(sub.subscribe(1, &[("burst/#", 0)]), [0]);

    let mut burst = Connect::v4("one-write-pub").encode();
    for i in 0..N {
        burst.extend(Publish::new("burst/a", &payload(&format!("w{i}"), 1000)).encode(false));
    }
    let addr = roost.addr();
    let publisher = thread::spawn(move || {
        let mut c = Client::open(&addr);
        c.try_send(&burst).expect("one write");
        c.expect_kind(CONNACK);
        c.pub0("burst/a", END.as_bytes());
        c.ping();
    });
    let got = receive(&mut sub, Instant::now() + LONG, ends(1));
    let want = (0..N).map(|i| format!("w{i}")).collect();
    assert_exactly("subscriber", &got, &want);
    publisher.join().unwrap();
}

// ------------------------------------------------ overload at QoS 1

/// Publishers each keep this many QoS 1 messages unacknowledged.
const WINDOW: usize = 64;

/// When each publisher of [`overload`] stops sending.
#[derive(Clone, Copy)]
enum Stop {
    /// After this many messages.
    After(usize),
    /// Once this long has passed since the start.
    For(Duration),
}

/// Runs `publishers` clients, each publishing QoS 1 messages (`<p>:<seq>`,
/// `size` bytes) on its own topic with a 64-message window until `stop`,
/// and then an END marker, to `subscribers` QoS 1 subscribers of `flow/#`
/// that acknowledge as they read. Asserts that each publisher had all it
/// sent acknowledged and each subscriber received every acknowledged
/// message exactly once.
fn overload(roost: &Roost, publishers: usize, subscribers: usize, size: usize, stop: Stop) {
    let addr = roost.addr();
    let started = Instant::now();
    let until = started
        + LONG
        + if let Stop::For(d) = stop {
            d
        } else {
            Duration::ZERO
        };
    let subs: Vec<_> = (0..subscribers)
        .map(|s| {
            let mut c = Client::v4(&addr, &format!("flow-sub-{s}"));
            assert_eq!(c.subscribe(1, &[("flow/#", 1)]), [1]);
            thread::spawn(move || {
                let got = receive(&mut c, until, ends(publishers));
                (got, started.elapsed())
            })
        })
        .collect();
    let pubs: Vec<_> = (0..publishers)
        .map(|p| {
            let addr = addr.clone();
            thread::spawn(move || {
                let mut c = Client::v4(&addr, &format!("flow-pub-{p}"));
                let topic = format!("flow/{p}");
                let (sent, acked) = publish_window(&mut c, WINDOW, until, |i| {
                    let more = match stop {
                        Stop::After(n) => i < n,
                        Stop::For(d) => started.elapsed() < d,
                    };
                    more.then(|| Publish::new(&topic, &payload(&format!("{p}:{i}"), size)))
                });
                if acked.len() == sent {
                    c.publish(&Publish::new(&topic, END.as_bytes()).qos(1, 1));
                }
                let keys: Vec<_> = acked.into_iter().map(|i| format!("{p}:{i}")).collect();
                (sent, keys, started.elapsed())
            })
        })
        .collect();
    let mut acked = HashSet::new();
    for (p, handle) in pubs.into_iter().enumerate() {
        let (sent, keys, took) = handle.join().unwrap();
        let count = keys.len();
        acked.extend(keys);
        eprintln!("publisher {p}: {count} of {sent} acknowledged after {took:?}");
        assert_eq!(count, sent, "publisher {p}: {count} of {sent} acknowledged");
    }
    let mut failed = Vec::new();
    for (s, handle) in subs.into_iter().enumerate() {
        let (got, took) = handle.join().unwrap();
        eprintln!("subscriber {s}: {} received after {took:?}", got.len());
        if let Err(e) = exactly(&got, &acked) {
            failed.push(format!("subscriber {s}: {e}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {subscribers} subscribers did not get every acknowledged message:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// Fan-in: 4 publishers with 64 QoS 1 messages in flight each, to one
/// QoS 1 subscriber, for 15 s: longer than the default
/// `slow_subscriber_timeout` (10 s), so a subscriber that keeps reading
/// must not be taken for a stuck one however long its queue stays full.
#[test]
fn fan_in_every_acknowledged_message_arrives() {
    let roost = start("");
    overload(&roost, 4, 1, 64, Stop::For(Duration::from_secs(15)));
}

/// Fan-out: one publisher with 64 QoS 1 messages in flight (5,000 in
/// all), to 50 QoS 1 subscribers.
#[test]
fn fan_out_every_acknowledged_message_arrives() {
    let roost = start("");
    overload(&roost, 1, 50, 64, Stop::After(5_000));
}

// ------------------------------------------------ a subscriber that stops reading

/// `slow_subscriber_timeout 1`, `max_queued_messages 100`: a QoS 1
/// subscriber that subscribes and then never reads holds the publisher
/// for about a second, then is dropped at its bound: the publisher gets
/// all 5,000 PUBACKs well within the deadline, a healthy subscriber gets
/// all 5,000, the drop is logged once at WARN with the stuck client's id
/// and counted in `$SYS/broker/publish/messages/dropped`.
#[test]
fn a_stuck_subscriber_releases_its_publishers() {
    const N: usize = 5000;
    /// Well under `LONG`, the subscribers' deadline.
    const PUBLISHED_WITHIN: Duration = Duration::from_secs(30);
    let roost = start("sys_interval 1\nmax_queued_messages 100\nslow_subscriber_timeout 1\n");
    let addr = roost.addr();
    let mut stuck = Client::v4(&addr, "stuck-sub");
    assert_eq!(stuck.subscribe(1, &[("flow/#", 1)]), [1]);
    let mut healthy = Client::v4(&addr, "healthy-sub");
    assert_eq!(healthy.subscribe(1, &[("flow/#", 1)]), [1]);
    let until = Instant::now() + LONG;
    let healthy = thread::spawn(move || receive(&mut healthy, until, ends(1)));

    let mut publisher = Client::v4(&addr, "flow-pub");
    let started = Instant::now();
    let (_, acked) = publish_window(&mut publisher, WINDOW, started + PUBLISHED_WITHIN, |i| {
        (i < N).then(|| Publish::new("flow/a", &payload(&format!("s{i}"), 64)))
    });
    let took = started.elapsed();
    assert_eq!(
        acked.len(),
        N,
        "publisher: {} of {N} acknowledged within {PUBLISHED_WITHIN:?}",
        acked.len()
    );
    publisher.publish(&Publish::new("flow/a", END.as_bytes()).qos(1, 1));
    let got = healthy.join().unwrap();
    let want = acked.iter().map(|i| format!("s{i}")).collect();
    assert_exactly("healthy subscriber", &got, &want);
    eprintln!("publisher done after {took:?}");

    let mut watcher = Client::v4(&addr, "sys-watcher");
    let dropped_topic = "$SYS/broker/publish/messages/dropped";
    assert_eq!(watcher.subscribe(1, &[(dropped_topic, 0)]), [0]);
    let dropped = receive(&mut watcher, Instant::now() + common::TIMEOUT, |p| {
        String::from_utf8_lossy(&p.payload)
            .parse::<u64>()
            .unwrap_or(0)
            > 0
    });
    let values: Vec<_> = dropped.iter().map(|p| text(&p.payload)).collect();
    assert!(
        values.last().is_some_and(|v| v != "0"),
        "{dropped_topic} never above 0: {values:?}"
    );

    let dropping = |id: &str| {
        let log = roost.log();
        let lines = log
            .iter()
            .filter(|l| l.contains(" WARN ") && l.contains("dropping"));
        lines.filter(|l| l.contains(id)).count()
    };
    wait_until(|| dropping("stuck-sub") > 0);
    assert_eq!(
        (dropping("stuck-sub"), dropping("healthy-sub")),
        (1, 0),
        "WARN lines saying `dropping` for stuck-sub and healthy-sub: {:#?}",
        roost.log()
    );
    drop(stuck);
}

/// `slow_subscriber_timeout` is a config key: 10 (the default) and 0
/// (never hold publishers) pass `roost --check-config`.
#[test]
fn slow_subscriber_timeout_is_a_config_key() {
    let dir = TempDir::new("roost-flow-conf");
    for value in ["10", "0"] {
        let conf = dir.path.join("roost.conf");
        let line = format!("slow_subscriber_timeout {value}");
        std::fs::write(
            &conf,
            format!("listener 0 127.0.0.1\nallow_anonymous true\n{line}\n"),
        )
        .unwrap();
        let out = run_roost(&["--check-config", "-c", conf.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "`{line}` refused: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}
