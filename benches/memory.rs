//! Memory benchmark: what an idle MQTT connection costs the broker.
//!
//! Run with `cargo bench --bench memory`. For each broker (roost, and
//! mosquitto when it is installed) it:
//!
//! 1. starts the broker on a loopback port and reads its idle `Rss` and
//!    `Private_Dirty` from `/proc/PID/smaps_rollup`;
//! 2. opens N connections (default 1000, `ROOST_BENCH_CONNS` overrides), each
//!    a v3.1.1 CONNECT (clean session, keep-alive 0, distinct client id) and
//!    one QoS 0 SUBSCRIBE to its own topic `bench/<i>/state`, and keeps them
//!    open and idle;
//! 3. reads the broker's memory again once it has settled and prints the
//!    growth per connection, side by side, with the ratio roost/mosquitto.
//!
//! Only user-space memory of the broker process is counted; the kernel's
//! socket buffers are not (they are the same for both brokers).
//!
//! Environment:
//! - `ROOST_BENCH_CONNS`: number of idle connections (default 1000). The
//!   bench raises its own `RLIMIT_NOFILE` soft limit to the hard limit; the
//!   brokers inherit it.
//! - `ROOST_BENCH_BROKERS`: comma-separated list of brokers to measure, from
//!   `roost` and `mosquitto` (default both; mosquitto is skipped with a note
//!   when it is not installed).
//! - `ROOST_BENCH_MOSQUITTO`: path of the mosquitto binary (default
//!   `/usr/sbin/mosquitto`, then `mosquitto` on `PATH`).
//!
//! Every step is bounded: a broker that does not answer for 10 s fails its
//! measurement, and a watchdog ends the whole run (killing the brokers) if it
//! exceeds its overall time limit. Traffic goes to 127.0.0.1 only; client
//! sockets are spread over the source addresses 127.0.0.2..=127.0.0.9 so that
//! large N does not run out of ephemeral ports.

mod common;

use std::io::{self, IsTerminal, Read};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use common::{
    Broker, Brokers, Mem, connect_client, env_usize, fmt_ratio, install_guards, raise_nofile,
    settle, start_mosquitto, start_roost, subscribe,
};

/// Default number of idle connections.
const DEFAULT_CONNS: usize = 1000;

/// Opens one idle, subscribed client: CONNECT/CONNACK, SUBSCRIBE/SUBACK.
fn open_client(tag: &str, i: usize, dst: SocketAddrV4) -> Result<TcpStream, String> {
    let client_id = format!("rb-{tag}-{i}");
    let mut s = connect_client(&client_id, i, dst)?;
    let packet_id = (i % 0xffff + 1) as u16;
    subscribe(
        &mut s,
        &client_id,
        packet_id,
        &[format!("bench/{i}/state")],
        0,
    )?;
    Ok(s)
}

// ---------------------------------------------------------------------------
// One measurement

struct Measurement {
    idle: Mem,
    loaded: Mem,
    after_close: Mem,
    connect_time: Duration,
}

fn measure(mut broker: Broker, conns: usize) -> Result<Measurement, String> {
    let name = broker.name;
    let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, broker.port);
    eprintln!("{name}: pid {}, listening on {dst}; settling", broker.pid());
    let idle = settle(&mut broker)?;
    eprintln!("{name}: opening {conns} idle connections");
    let tag = &name[..1];
    let started = Instant::now();
    let mut clients = Vec::with_capacity(conns);
    let step = (conns / 10).max(1);
    let progress = io::stderr().is_terminal();
    for i in 0..conns {
        match open_client(tag, i, dst) {
            Ok(s) => clients.push(s),
            Err(e) => {
                let alive = broker.check_alive().err().unwrap_or_default();
                return Err(format!(
                    "{name}: {e}\n{alive}\n  last log lines:\n{}",
                    broker.log_tail()
                ));
            }
        }
        if progress && (i + 1) % step == 0 {
            eprint!("\r{name}: {}/{conns} connected and subscribed", i + 1);
        }
    }
    let connect_time = started.elapsed();
    if progress {
        eprintln!();
    }
    eprintln!(
        "{name}: {conns} connected and subscribed in {:.2} s; settling",
        connect_time.as_secs_f64()
    );
    let loaded = settle(&mut broker)?;
    // Every client is still connected: a read must time out, not see EOF.
    if let Some(first) = clients.first() {
        let mut probe = first
            .try_clone()
            .map_err(|e| format!("{name}: try_clone: {e}"))?;
        probe
            .set_nonblocking(true)
            .map_err(|e| format!("{name}: set_nonblocking: {e}"))?;
        let mut b = [0u8; 1];
        match probe.read(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Ok(0) => return Err(format!("{name}: closed an idle connection")),
            other => return Err(format!("{name}: idle connection got {other:?}")),
        }
    }
    eprintln!("{name}: closing the connections");
    drop(clients);
    let after_close = settle(&mut broker)?;
    broker.stop();
    Ok(Measurement {
        idle,
        loaded,
        after_close,
        connect_time,
    })
}

// ---------------------------------------------------------------------------
// Reporting

fn per_conn_bytes(before_kib: u64, after_kib: u64, conns: usize) -> f64 {
    (after_kib as f64 - before_kib as f64) * 1024.0 / conns as f64
}

fn print_table(conns: usize, roost: Option<&Measurement>, mosq: Option<&Measurement>) {
    type Row = (&'static str, fn(&Measurement, usize) -> f64, usize);
    let rows: [Row; 8] = [
        ("idle RSS at start (KiB)", |m, _| m.idle.rss_kib as f64, 0),
        (
            "idle Private_Dirty at start (KiB)",
            |m, _| m.idle.private_dirty_kib as f64,
            0,
        ),
        (
            "RSS with all connections (KiB)",
            |m, _| m.loaded.rss_kib as f64,
            0,
        ),
        (
            "bytes per idle connection (RSS)",
            |m, n| per_conn_bytes(m.idle.rss_kib, m.loaded.rss_kib, n),
            0,
        ),
        (
            "bytes per idle connection (Private_Dirty)",
            |m, n| per_conn_bytes(m.idle.private_dirty_kib, m.loaded.private_dirty_kib, n),
            0,
        ),
        (
            "RSS after all disconnected (KiB)",
            |m, _| m.after_close.rss_kib as f64,
            0,
        ),
        (
            "Private_Dirty after all disconnected (KiB)",
            |m, _| m.after_close.private_dirty_kib as f64,
            0,
        ),
        (
            "time to connect + subscribe all (s)",
            |m, _| m.connect_time.as_secs_f64(),
            2,
        ),
    ];
    let head = format!("memory (N={conns} idle connections, 1 subscription each)");
    let w = rows
        .iter()
        .map(|r| r.0.len())
        .max()
        .unwrap_or(0)
        .max(head.len())
        + 2;
    println!(
        "{head:<w$}{:>12}{:>12}{:>18}",
        "roost", "mosquitto", "roost/mosquitto"
    );
    for (label, get, prec) in rows {
        let r = roost.map(|m| get(m, conns));
        let m = mosq.map(|m| get(m, conns));
        let cell = |v: Option<f64>| v.map_or_else(|| String::from("-"), |v| format!("{v:.prec$}"));
        println!(
            "{label:<w$}{:>12}{:>12}{:>18}",
            cell(r),
            cell(m),
            fmt_ratio(r, m)
        );
    }
}

// ---------------------------------------------------------------------------

fn main() {
    let conns = env_usize("ROOST_BENCH_CONNS", DEFAULT_CONNS);
    let brokers = Brokers::from_env();

    let nofile = match raise_nofile() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cannot raise the open-file limit: {e}");
            std::process::exit(2);
        }
    };
    // Our N client sockets plus a few; each broker inherits the same limit.
    if (conns as u64) + 64 > nofile {
        eprintln!(
            "N={conns} needs about {} file descriptors, but RLIMIT_NOFILE is {nofile}; \
             lower ROOST_BENCH_CONNS",
            conns + 64
        );
        std::process::exit(2);
    }

    // Whole-run watchdog: generous, but bounded.
    install_guards("memory", Duration::from_secs(120 + (conns as u64) / 50));

    brokers.print_header();
    println!("RLIMIT_NOFILE: {nofile}");

    let wall = Instant::now();
    let mut failures = Vec::new();
    let roost = if brokers.roost {
        match start_roost().and_then(|b| measure(b, conns)) {
            Ok(m) => Some(m),
            Err(e) => {
                failures.push(format!("roost: {e}"));
                None
            }
        }
    } else {
        None
    };
    let mosq = match &brokers.mosquitto {
        Some(bin) => match start_mosquitto(bin).and_then(|b| measure(b, conns)) {
            Ok(m) => Some(m),
            Err(e) => {
                failures.push(format!("mosquitto: {e}"));
                None
            }
        },
        None => None,
    };

    println!();
    print_table(conns, roost.as_ref(), mosq.as_ref());
    println!(
        "(user-space memory of the broker process from /proc/PID/smaps_rollup; \
         kernel socket buffers not counted; bench took {:.1} s)",
        wall.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        eprintln!();
        for f in &failures {
            eprintln!("FAILED {f}");
        }
        std::process::exit(1);
    }
}
