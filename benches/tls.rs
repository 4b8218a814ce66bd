//! TLS benchmark: what a TLS connection costs the broker, roost beside
//! mosquitto, both with the same certificate (ECDSA P-256, made by rcgen
//! for the run) and negotiating TLS 1.3, as both do by default.
//!
//! Run with `cargo bench --bench tls`. For each broker (roost, and
//! mosquitto when it is installed):
//!
//! 1. memory: on a fresh start, N connections (default 1000,
//!    `ROOST_BENCH_CONNS`) each doing a v3.1.1 CONNECT and one QoS 0
//!    SUBSCRIBE and kept open and idle, as in the memory bench, over plain
//!    TCP; then on another fresh start the same over TLS. The growth of the
//!    broker's RSS per connection, for each, and the difference;
//! 2. handshakes: for `HANDSHAKE_TIME`, `HANDSHAKERS` client threads each
//!    in a loop: TCP connect, a full TLS handshake (no session resumption),
//!    CONNECT and CONNACK, close. Handshakes per second, and per second of
//!    the broker's CPU time: the clients' half of each handshake runs on
//!    the same two cores, so the second figure is the one to compare.
//!
//! Environment: `ROOST_BENCH_CONNS`, `ROOST_BENCH_BROKERS` and
//! `ROOST_BENCH_MOSQUITTO`, as for the memory bench. Every step is bounded
//! (10 s without an answer fails it, a watchdog ends the run); traffic goes
//! to 127.0.0.1 only.

mod common;
#[path = "../tests/common/pki.rs"]
mod pki;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use common::{
    ANSWER_TIMEOUT, Broker, Brokers, CpuMark, Pair, connect_client, connect_packet, env_usize,
    exit_on_failures, install_guards, io_context, print_table, raise_nofile, read_packet, settle,
    start_mosquitto_with, start_roost_with, subscribe, subscribe_packet,
};

const DEFAULT_CONNS: usize = 1000;
const HANDSHAKE_TIME: Duration = Duration::from_secs(3);
const HANDSHAKERS: usize = 2;

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// The figures of one broker.
struct Figures {
    plain_per_conn: f64,
    tls_per_conn: f64,
    handshakes: usize,
    wall_secs: f64,
    broker_cpu_secs: f64,
}

fn client_config(ca: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(cert.expect("CA certificate")).expect("CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every handshake a full one.
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// A TLS client of the broker on `port` that has sent CONNECT and had its
/// CONNACK (the handshake runs as the CONNECT is written).
fn tls_client(config: &Arc<ClientConfig>, port: u16, client_id: &str) -> Result<Tls, String> {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let tcp = TcpStream::connect_timeout(&addr.into(), ANSWER_TIMEOUT)
        .map_err(|e| io_context(&format!("{client_id}: connect"), e))?;
    tcp.set_read_timeout(Some(ANSWER_TIMEOUT))
        .and_then(|()| tcp.set_write_timeout(Some(ANSWER_TIMEOUT)))
        .and_then(|()| tcp.set_nodelay(true))
        .map_err(|e| format!("{client_id}: {e}"))?;
    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let conn = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let mut s = StreamOwned::new(conn, tcp);
    s.write_all(&connect_packet(client_id, true))
        .map_err(|e| io_context(&format!("{client_id}: TLS handshake and CONNECT"), e))?;
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack)
        .map_err(|e| io_context(&format!("{client_id}: waiting for CONNACK"), e))?;
    if connack != [0x20, 0x02, 0, 0] {
        return Err(format!("{client_id}: CONNACK {connack:02x?}"));
    }
    Ok(s)
}

/// RSS growth per idle subscribed connection, opened by `open(i)`.
fn per_connection<C>(
    mut broker: Broker,
    conns: usize,
    mut open: impl FnMut(&Broker, usize) -> Result<C, String>,
) -> Result<f64, String> {
    let idle = settle(&mut broker)?;
    let mut clients = Vec::with_capacity(conns);
    for i in 0..conns {
        match open(&broker, i) {
            Ok(c) => clients.push(c),
            Err(e) => return Err(format!("{}: {e}\n{}", broker.name, broker.log_tail())),
        }
    }
    let loaded = settle(&mut broker)?;
    drop(clients);
    broker.stop();
    Ok((loaded.rss_kib as f64 - idle.rss_kib as f64) * 1024.0 / conns as f64)
}

/// Full handshakes (and CONNECTs) for `HANDSHAKE_TIME` from
/// `HANDSHAKERS` threads: how many, in how long, for how much broker CPU.
fn handshakes(broker: &Broker, config: &Arc<ClientConfig>) -> Result<(usize, f64, f64), String> {
    let port = broker.port;
    let before = CpuMark::take(broker)?;
    let deadline = Instant::now() + HANDSHAKE_TIME;
    let threads: Vec<_> = (0..HANDSHAKERS)
        .map(|t| {
            let config = config.clone();
            thread::spawn(move || -> Result<usize, String> {
                let mut n = 0;
                while Instant::now() < deadline {
                    drop(tls_client(&config, port, &format!("hs-{t}-{n}"))?);
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for t in threads {
        total += t.join().map_err(|_| "a handshake thread panicked")??;
    }
    let after = CpuMark::take(broker)?;
    Ok((
        total,
        after.at.duration_since(before.at).as_secs_f64(),
        after.broker - before.broker,
    ))
}

fn measure(
    start: &dyn Fn(&[&str]) -> Result<Broker, String>,
    tls_conf: &[&str],
    config: &Arc<ClientConfig>,
    conns: usize,
) -> Result<Figures, String> {
    let plain_per_conn = per_connection(start(&[])?, conns, |b, i| {
        let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, b.port);
        let id = format!("plain-{i}");
        let mut s = connect_client(&id, i, dst)?;
        subscribe(&mut s, &id, 1, &[format!("bench/{i}/state")], 0)?;
        Ok(s)
    })?;
    let tls_per_conn = per_connection(start(tls_conf)?, conns, |b, i| {
        let id = format!("tls-{i}");
        let mut s = tls_client(config, b.port, &id)?;
        s.write_all(&subscribe_packet(1, &[format!("bench/{i}/state")], 0))
            .and_then(|()| read_packet(&mut s).map(drop))
            .map_err(|e| io_context(&format!("{id}: SUBSCRIBE"), e))?;
        Ok(s)
    })?;
    let broker = start(tls_conf)?;
    let (handshakes, wall_secs, broker_cpu_secs) = handshakes(&broker, config)?;
    broker.stop();
    Ok(Figures {
        plain_per_conn,
        tls_per_conn,
        handshakes,
        wall_secs,
        broker_cpu_secs,
    })
}

fn main() {
    install_guards("tls", Duration::from_secs(600));
    let brokers = Brokers::from_env();
    brokers.print_header();
    let conns = env_usize("ROOST_BENCH_CONNS", DEFAULT_CONNS);
    if let Err(e) = raise_nofile() {
        eprintln!("note: {e}");
    }
    let dir = std::env::temp_dir().join(format!("roost-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let ca = pki::Ca::new("roost bench CA");
    let ca_file = ca.write(&dir.join("ca.pem"));
    let server = ca.server(&dir, "server");
    let certfile = format!("certfile {}", server.cert.display());
    let keyfile = format!("keyfile {}", server.key.display());
    let tls_conf = [certfile.as_str(), keyfile.as_str()];
    let config = client_config(&ca_file);

    let mut failures = Vec::new();
    let mut run = |name: &str, start: &dyn Fn(&[&str]) -> Result<Broker, String>| {
        eprintln!("{name}: {conns} idle connections plain and over TLS, then handshakes");
        match measure(start, &tls_conf, &config, conns) {
            Ok(f) => Some(f),
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                None
            }
        }
    };
    let figures = Pair {
        roost: brokers
            .roost
            .then(|| run("roost", &|conf| start_roost_with(conf)))
            .flatten(),
        mosq: brokers
            .mosquitto
            .clone()
            .and_then(|bin| run("mosquitto", &move |conf| start_mosquitto_with(&bin, conf))),
    };
    let _ = std::fs::remove_dir_all(&dir);

    let title = format!(
        "TLS (N={conns} idle connections; handshakes: {HANDSHAKERS} clients, {} s)",
        HANDSHAKE_TIME.as_secs()
    );
    print_table(
        &title,
        &[
            figures.row("bytes per idle connection, plain TCP (RSS)", 0, |f| {
                Some(f.plain_per_conn)
            }),
            figures.row("bytes per idle connection, TLS (RSS)", 0, |f| {
                Some(f.tls_per_conn)
            }),
            figures.row("TLS extra per idle connection (bytes)", 0, |f| {
                Some(f.tls_per_conn - f.plain_per_conn)
            }),
            figures.row("full TLS handshakes + CONNECT per second", 0, |f| {
                Some(f.handshakes as f64 / f.wall_secs)
            }),
            figures.row("handshakes per broker CPU second", 0, |f| {
                Some(f.handshakes as f64 / f.broker_cpu_secs)
            }),
        ],
    );
    exit_on_failures(&failures);
}
