//! Large messages and the broker's memory, over real loopback sockets
//! with the raw client in tests/common/wire.rs: messages up to 16 MB are
//! delivered intact with the default and the shipped configuration; one
//! large message to many slow readers is held once, not once per reader;
//! a connection closed for size says so at WARN; clients that flood
//! PINGREQs without reading cannot grow the broker.
//!
//! Memory is read from /proc (VmRSS before, VmHWM after), so each bound
//! holds at the broker's peak, not at a moment a test happened to sample.

mod common;
#[path = "common/flow.rs"]
mod flow;
#[path = "common/wire.rs"]
mod wire;

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Roost, TempDir, wait_until};
use flow::*;
use wire::*;

const MIB: usize = 1 << 20;

/// `len` pseudo-random bytes (a shifted or truncated copy would not
/// compare equal).
fn bulk(seed: u64, len: usize) -> Arc<Vec<u8>> {
    let mut rng = XorShift(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend(rng.next().to_le_bytes());
    }
    out.truncate(len);
    Arc::new(out)
}

/// Publishes a 2 MB and a 16 MB message at QoS 0 and at QoS 1 (one
/// topic each) to a QoS 1 subscriber of `big/#`, and checks that all
/// four arrive at their QoS, byte for byte.
fn large_messages_arrive_intact(roost: &Roost) {
    let mut messages = Vec::new();
    for (i, size) in [2 * MIB, 16 * MIB].into_iter().enumerate() {
        for qos in [0, 1] {
            let topic = format!("big/{}m-q{qos}", size / MIB);
            messages.push((topic, qos, bulk(2 * i as u64 + qos as u64 + 1, size)));
        }
    }
    let mut sub = Client::v4(&roost.addr(), "big-sub");
    assert_eq!(sub.subscribe(1, &[("big/#", 1)]), [1]);
    let addr = roost.addr();
    let sent = messages.clone();
    // A publisher that fails ends the subscriber's wait: what it did not
    // publish cannot arrive.
    let sub_stream = sub.stream.try_clone().unwrap();
    let publisher = thread::spawn(move || {
        let mut c = Client::v4(&addr, "big-pub");
        let until = Instant::now() + LONG;
        for (done, (topic, qos, body)) in sent.iter().enumerate() {
            let ok = match qos {
                0 => c.try_send(&Publish::new(topic, body).encode(false)).is_ok(),
                _ => {
                    let (_, acked) = publish_window(&mut c, 1, until, |i| {
                        (i == 0).then(|| Publish::new(topic, body))
                    });
                    acked.len() == 1
                }
            };
            if !ok {
                let _ = sub_stream.shutdown(Shutdown::Both);
                return format!("connection lost publishing {topic} after {done} messages");
            }
        }
        "all published".to_string()
    });
    let mut count = 0;
    let got = receive(&mut sub, Instant::now() + LONG, |_| {
        count += 1;
        count == messages.len()
    });
    let publisher = publisher.join().unwrap();
    let intact = messages
        .iter()
        .filter(|(topic, qos, body)| {
            got.iter()
                .any(|p| p.topic_str() == *topic && p.qos == *qos && p.payload == **body)
        })
        .count();
    let received: Vec<_> = got
        .iter()
        .map(|p| (p.topic_str(), p.qos, p.payload.len()))
        .collect();
    assert_eq!(
        intact,
        messages.len(),
        "{intact} of {} large messages arrived intact; received {received:?}; \
         publisher: {publisher}; broker log: {:#?}",
        messages.len(),
        roost.log()
    );
}

/// 2 MB and 16 MB messages with the embedded defaults.
#[test]
fn large_messages_with_the_default_configuration() {
    large_messages_arrive_intact(&Roost::start());
}

/// The shipped systemd/roost.conf (localhost only, anonymous clients
/// allowed), on a free loopback port and persisting to a temporary
/// directory.
fn shipped_config(persistence: &TempDir) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/roost.conf");
    let mut out = String::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        assert!(
            !line.starts_with("listener "),
            "{path} serves more than localhost"
        );
        let line = if line.starts_with("persistence_location ") {
            format!("persistence_location {}/", persistence.path.display())
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out + "listener 0 127.0.0.1\nallow_anonymous true\n"
}

/// 2 MB and 16 MB messages with the shipped configuration.
#[test]
fn large_messages_with_the_shipped_configuration() {
    let persistence = TempDir::new("roost-flow-persist");
    let config = shipped_config(&persistence);
    let roost = Roost::spawn_logging(&[], Some(&config), None, "roost=info");
    large_messages_arrive_intact(&roost);
}

/// A 16 MB QoS 0 message to 50 subscribers that start reading only once
/// the broker has taken the whole message (the publisher's PINGRESP):
/// all 50 get it intact, and the broker's peak RSS grows by less than
/// three copies of it.
#[test]
fn a_large_message_to_50_slow_subscribers_is_held_once() {
    const SUBSCRIBERS: usize = 50;
    const SIZE: usize = 16 * MIB;
    let roost = start("");
    let body = bulk(7, SIZE);
    let subs: Vec<Client> = (0..SUBSCRIBERS)
        .map(|s| {
            let mut c = Client::v4(&roost.addr(), &format!("slow-{s}"));
            assert_eq!(c.subscribe(1, &[("big/#", 0)]), [0]);
            c
        })
        .collect();
    let before = roost.rss_kib();

    let mut publisher = Client::v4(&roost.addr(), "big-pub");
    let written = publisher.try_send(&Publish::new("big/one", &body).encode(false));
    let taken = written.is_ok() && pinged(&mut publisher, Instant::now() + LONG);
    assert!(
        taken,
        "the broker did not take the 16 MB publish (write: {written:?}); log: {:#?}",
        roost.log()
    );

    let until = Instant::now() + LONG;
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut c| {
            let body = body.clone();
            thread::spawn(move || {
                let got = receive(&mut c, until, |_| true);
                got.len() == 1 && got[0].payload == *body
            })
        })
        .collect();
    let intact = readers
        .into_iter()
        .map(|r| r.join().unwrap())
        .filter(|&ok| ok)
        .count();
    let growth = roost.peak_rss_kib().saturating_sub(before);
    assert_eq!(
        intact, SUBSCRIBERS,
        "{intact} of {SUBSCRIBERS} subscribers got the 16 MB message intact"
    );
    let bound = 3 * SIZE / 1024;
    assert!(
        (growth as usize) < bound,
        "broker peak RSS grew by {growth} KiB (VmHWM after - VmRSS before), \
         bound {bound} KiB (three copies of the message)"
    );
}

/// `max_packet_size 1000` and a 2,000-byte PUBLISH from `big-sender`:
/// the connection is closed and a WARN line names the client, the
/// packet's size and the limit.
#[test]
fn a_connection_closed_for_size_is_logged_at_warn() {
    let roost = start("max_packet_size 1000\n");
    let mut c = Client::v4(&roost.addr(), "big-sender");
    c.send(&Publish::new("big/x", &[b'x'; 2000]).encode(false));
    c.expect_closed();
    let warn = |log: &[String]| {
        log.iter()
            .find(|l| l.contains(" WARN ") && l.contains("big-sender"))
            .cloned()
    };
    wait_until(|| warn(&roost.log()).is_some());
    let log = roost.log();
    let line = warn(&log).unwrap_or_else(|| panic!("no WARN line naming big-sender: {log:#?}"));
    // The message, after the `[time LEVEL target]` prefix.
    let message = line.split_once("] ").map_or(line.as_str(), |(_, m)| m);
    let numbers: Vec<u64> = message
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        numbers.contains(&1000) && numbers.iter().any(|n| (2000..=2100).contains(n)),
        "WARN line without the limit (1000) and the packet size (~2010): {line}"
    );
}

/// 100 clients connect, never read, and write PINGREQs as fast as the
/// broker takes them; meanwhile a normal client connects, subscribes,
/// publishes and receives. The broker's peak RSS stays within 20 MiB of
/// what it was before the flooders connected.
#[test]
fn a_ping_flood_from_100_clients_that_never_read_stays_bounded() {
    const CLIENTS: usize = 100;
    /// Per flooder: stop after this many bytes.
    const CAP: usize = 256 * MIB;
    /// How long the flood runs at least (the window memory is watched
    /// in) and at most.
    const FLOOD: Duration = Duration::from_secs(5);
    const FLOOD_MAX: Duration = Duration::from_secs(30);
    let roost = start("");
    let before = roost.rss_kib();
    let streams: Vec<TcpStream> = (0..CLIENTS)
        .map(|i| {
            let c = Client::v4(&roost.addr(), &format!("flood-{i}"));
            let s = c.stream.try_clone().unwrap();
            s.set_nonblocking(true).unwrap();
            small_receive_buffer(&s);
            s
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (stop, total) = (stop.clone(), total.clone());
        thread::spawn(move || flood_pings(streams, CAP, FLOOD_MAX, &stop, &total))
    };
    // Under way: 64 KiB written per flooder (what fits in the socket
    // buffers alone).
    let started = Instant::now();
    assert!(
        wait_until(|| total.load(Ordering::Relaxed) >= CLIENTS * 64 * 1024),
        "flood did not get going: {} bytes",
        total.load(Ordering::Relaxed)
    );

    // The normal client on its own thread: a broker that does not answer
    // fails it (a panic, reported below) without ending the flood.
    const STEPS: [&str; 5] = ["connect", "subscribe", "connect", "publish", "receive"];
    let step = Arc::new(AtomicUsize::new(0));
    let addr = roost.addr();
    let at = step.clone();
    let normal = thread::spawn(move || {
        let mut sub = Client::v4(&addr, "normal-sub");
        at.store(1, Ordering::Relaxed);
        assert_eq!(sub.subscribe(1, &[("normal/#", 1)]), [1]);
        at.store(2, Ordering::Relaxed);
        let mut publisher = Client::v4(&addr, "normal-pub");
        at.store(3, Ordering::Relaxed);
        publisher.publish(&Publish::new("normal/x", b"still here").qos(1, 1));
        at.store(4, Ordering::Relaxed);
        assert_eq!(sub.recv_publish_ack().payload, b"still here");
        started.elapsed()
    });
    while (started.elapsed() < FLOOD || !normal.is_finished()) && !flood.is_finished() {
        thread::sleep(Duration::from_millis(20));
    }
    let growth = roost.peak_rss_kib().saturating_sub(before);
    stop.store(true, Ordering::Relaxed);
    let (written, closed) = flood.join().unwrap();
    let normal = normal
        .join()
        .map_err(|_| STEPS[step.load(Ordering::Relaxed)]);
    eprintln!(
        "flood: {} MiB written by {CLIENTS} clients ({closed} closed by the broker) \
         in {:?}; normal client served after (or failed at): {normal:?}; \
         peak RSS growth {growth} KiB",
        written / MIB,
        started.elapsed()
    );
    assert!(
        growth < 20 * 1024,
        "broker peak RSS grew by {growth} KiB (bound 20 MiB) while {CLIENTS} clients \
         wrote {} MiB of PINGREQs without reading",
        written / MIB
    );
    if let Err(step) = normal {
        panic!("a normal client failed during the flood at its {step} step (panic above)");
    }
}

/// Shrinks `s`'s receive buffer to the minimum, as on a small device:
/// what a client does not read then stays with the broker instead of in
/// this machine's socket buffers.
fn small_receive_buffer(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4096;
    // SAFETY: a valid socket and an int option of the size given.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
}

/// Writes PINGREQs on every non-blocking `stream` as fast as each takes
/// them, until `stop`, `max` passes or each has written `cap` bytes.
/// Returns the bytes written and how many streams the broker closed.
fn flood_pings(
    mut streams: Vec<TcpStream>,
    cap: usize,
    max: Duration,
    stop: &AtomicBool,
    total: &AtomicUsize,
) -> (usize, usize) {
    let pings = pingreq().repeat(32 * 1024);
    let mut written = vec![0usize; streams.len()];
    let mut open = vec![true; streams.len()];
    let end = Instant::now() + max;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let mut progress = false;
        for ((s, w), open) in streams.iter_mut().zip(&mut written).zip(&mut open) {
            if !*open || *w >= cap {
                continue;
            }
            // Resume mid-packet after a partial write.
            match s.write(&pings[*w % 2..]) {
                Ok(n) => {
                    *w += n;
                    total.fetch_add(n, Ordering::Relaxed);
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => *open = false,
            }
        }
        if !open.iter().any(|&o| o) {
            break;
        }
        if !progress {
            thread::sleep(Duration::from_millis(1));
        }
    }
    let closed = open.iter().filter(|&&o| !o).count();
    (written.iter().sum(), closed)
}
