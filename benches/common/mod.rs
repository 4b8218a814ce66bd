//! What the benchmarks share: starting roost and mosquitto side by side on
//! loopback ports, reading a broker's memory from `/proc`, side-by-side tables,
//! hand-encoded MQTT 3.1.1 clients spread over the source addresses
//! 127.0.0.2..=127.0.0.9, and the guards that keep a run bounded (a watchdog,
//! a panic hook and `Drop` that kill the brokers, `PR_SET_PDEATHSIG`).
//!
//! `overload.rs` also starts rumqttd (`start_rumqttd`, chosen with
//! `Brokers::from_env_with_rumqttd`); the other benches never do.
//!
//! Each bench (`memory.rs`, `throughput.rs`, `persistence.rs`, `tls.rs`,
//! `overload.rs`, `hostile.rs`) declares `mod common;`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A broker that is silent for this long has stopped answering.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for memory figures to stop changing (overload.rs
/// settles nothing, hence the `allow`s).
#[allow(dead_code)]
const SETTLE_MAX: Duration = Duration::from_secs(5);
#[allow(dead_code)]
const SETTLE_STEP: Duration = Duration::from_millis(100);
/// Identical consecutive samples that count as settled.
#[allow(dead_code)]
const SETTLE_SAME: u32 = 5;
/// Client sockets bind to 127.0.0.FIRST_SRC .. 127.0.0.(FIRST_SRC+SRC_ADDRS-1).
const FIRST_SRC: u8 = 2;
const SRC_ADDRS: usize = 8;
/// Lines of a broker's log kept to explain a failure.
const LOG_TAIL: usize = 20;

/// PIDs of brokers that are running, so that a panic or the watchdog can
/// kill them even when no destructor runs.
static LIVE_PIDS: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

pub fn kill_live_children() {
    // `try_lock`: never block in a panic hook or the watchdog.
    if let Ok(pids) = LIVE_PIDS.try_lock() {
        for &pid in pids.iter() {
            // SAFETY: plain syscall; each pid is a child not yet reaped, so it
            // cannot have been reused by another process.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Memory of a process

#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mem {
    pub rss_kib: u64,
    pub private_dirty_kib: u64,
}

#[allow(dead_code)]
pub fn read_mem(pid: u32) -> Result<Mem, String> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    match (field("Rss:"), field("Private_Dirty:")) {
        (Some(rss_kib), Some(private_dirty_kib)) => Ok(Mem {
            rss_kib,
            private_dirty_kib,
        }),
        _ => Err(format!(
            "{path}: no Rss/Private_Dirty (has the process exited?)"
        )),
    }
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...), in KiB.
#[allow(dead_code)]
pub fn status_kib(pid: u32, field: &str) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{path}: no {field} (has the process exited?)"))
}

// ---------------------------------------------------------------------------
// CPU time of a process (memory.rs measures none, hence the `allow`s)

/// The fields of `/proc/<pid>/stat` (`pid` may be `self`) from field 3,
/// the state, on: those after the command name, which may hold spaces.
#[allow(dead_code)]
pub fn stat_fields(pid: &str) -> Result<Vec<String>, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{path}: no ')'"))?;
    Ok(rest.split_whitespace().map(String::from).collect())
}

/// utime + stime of `/proc/<pid>/stat` (`pid` may be `self`), in seconds.
#[allow(dead_code)]
pub fn cpu_secs(pid: &str) -> Result<f64, String> {
    let fields = stat_fields(pid)?;
    // Fields 14 and 15 overall; the first after ')' is field 3.
    let get = |i: usize| -> Result<u64, String> {
        fields
            .get(i - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("/proc/{pid}/stat: bad field {i}"))
    };
    let ticks = get(14)? + get(15)?;
    // SAFETY: plain libc call without pointers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Ok(ticks as f64 / hz.max(1) as f64)
}

/// CPU seconds of the broker and of this process (the load generator).
#[allow(dead_code)]
#[derive(Clone, Copy)]
pub struct CpuMark {
    pub broker: f64,
    pub generator: f64,
    pub at: Instant,
}

#[allow(dead_code)]
impl CpuMark {
    pub fn take(broker: &Broker) -> Result<Self, String> {
        Ok(CpuMark {
            broker: cpu_secs(&broker.pid().to_string())?,
            generator: cpu_secs("self")?,
            at: Instant::now(),
        })
    }
}

// ---------------------------------------------------------------------------
// A broker process

pub struct Broker {
    pub name: &'static str,
    child: Child,
    pub port: u16,
    log_tail: Arc<Mutex<VecDeque<String>>>,
    scratch: Option<PathBuf>,
}

impl Broker {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        let tail = self.log_tail.lock().map(|t| t.clone()).unwrap_or_default();
        if tail.is_empty() {
            return String::from("    (the broker logged nothing)");
        }
        let mut s = String::new();
        for line in tail {
            let _ = writeln!(s, "    {line}");
        }
        s.trim_end().to_string()
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); its last log lines:\n{}",
                self.name,
                self.log_tail()
            )),
            Err(e) => Err(format!("{}: waiting on pid {}: {e}", self.name, self.pid())),
        }
    }

    /// SIGTERM, then SIGKILL if it does not stop within a few seconds.
    pub fn stop(mut self) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: plain syscall on our own, not yet reaped, child.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // Drop kills (if still running) and reaps.
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        let _ = self.child.kill();
        if let Ok(mut pids) = LIVE_PIDS.lock() {
            pids.retain(|&p| p != pid);
        }
        let _ = self.child.wait();
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Spawns `cmd` with stderr piped into a thread that keeps the last lines and
/// reports the port of a `listening on 127.0.0.1:PORT` line.
fn spawn_broker(
    name: &'static str,
    cmd: Command,
    scratch: Option<PathBuf>,
) -> Result<(Broker, mpsc::Receiver<u16>), String> {
    spawn_broker_logging(name, cmd, scratch, false)
}

/// As `spawn_broker`; with `stdout_too`, stdout (where rumqttd logs) is
/// kept in the same tail.
fn spawn_broker_logging(
    name: &'static str,
    mut cmd: Command,
    scratch: Option<PathBuf>,
    stdout_too: bool,
) -> Result<(Broker, mpsc::Receiver<u16>), String> {
    cmd.stdin(Stdio::null())
        .stdout(if stdout_too {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped());
    // SAFETY: the closure runs between fork and exec and only makes one
    // async-signal-safe syscall. It makes the kernel kill the broker when the
    // bench dies, however it dies.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{name}: cannot start {:?}: {e}", cmd.get_program()))?;
    if let Ok(mut pids) = LIVE_PIDS.lock() {
        pids.push(child.id() as libc::pid_t);
    }
    let stderr = child.stderr.take().expect("stderr is piped");
    let log_tail = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        let (tail, tx) = (Arc::clone(&log_tail), tx.clone());
        thread::Builder::new()
            .name(format!("{name}-out"))
            .spawn(move || drain_log(stdout, tail, tx))
            .map_err(|e| format!("spawning log thread: {e}"))?;
    }
    let tail = Arc::clone(&log_tail);
    thread::Builder::new()
        .name(format!("{name}-log"))
        .spawn(move || drain_log(stderr, tail, tx))
        .map_err(|e| format!("spawning log thread: {e}"))?;
    Ok((
        Broker {
            name,
            child,
            port: 0,
            log_tail,
            scratch,
        },
        rx,
    ))
}

fn drain_log(stderr: impl Read, tail: Arc<Mutex<VecDeque<String>>>, port_tx: mpsc::Sender<u16>) {
    const MARK: &str = "listening on ";
    const HOST: &str = "127.0.0.1:";
    let mut sent = false;
    for line in BufReader::new(stderr).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line).into_owned();
        if !sent {
            // `listening on 127.0.0.1:PORT`, or `ws://127.0.0.1:PORT`.
            let addr = line
                .split(MARK)
                .nth(1)
                .map(|a| a.trim_start_matches("ws://"));
            if let Some(port) = addr.and_then(|a| a.strip_prefix(HOST)) {
                let digits: String = port.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(port) = digits.parse::<u16>() {
                    sent = port_tx.send(port).is_ok();
                }
            }
        }
        if let Ok(mut t) = tail.lock() {
            if t.len() == LOG_TAIL {
                t.pop_front();
            }
            t.push_back(line);
        }
    }
}

// memory.rs starts brokers with `start_*_with` only.
#[allow(dead_code)]
pub fn start_roost() -> Result<Broker, String> {
    start_roost_with(&[])
}

/// A fresh scratch directory for one broker start (removed when the broker
/// is dropped): a bench may start a broker many times.
fn scratch_dir() -> Result<PathBuf, String> {
    static STARTS: AtomicUsize = AtomicUsize::new(0);
    let n = STARTS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("roost-bench-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// `defaults`, each line replaced by the line of `overrides` with the same
/// key (first word), then the overrides whose key is not among the defaults.
fn config_text(defaults: &[&str], overrides: &[&str]) -> String {
    let key = |l: &str| l.split_whitespace().next().unwrap_or_default().to_string();
    let mut text = String::new();
    for d in defaults {
        let line = overrides.iter().find(|o| key(o) == key(d)).unwrap_or(d);
        let _ = writeln!(text, "{line}");
    }
    for o in overrides {
        if !defaults.iter().any(|d| key(d) == key(o)) {
            let _ = writeln!(text, "{o}");
        }
    }
    text
}

/// roost on a free loopback port. With `conf` lines it runs with `-c FILE`,
/// a generated config file holding `listener 0 127.0.0.1`,
/// `allow_anonymous true` and those lines
/// (e.g. `max_queued_messages 10000`); without, it runs with
/// `-p 0 --bind 127.0.0.1` and its defaults.
pub fn start_roost_with(conf: &[&str]) -> Result<Broker, String> {
    let bin = env!("CARGO_BIN_EXE_roost");
    // A binary cargo just wrote sits in the page cache as dirty pages
    // until written back, and smaps counts its mapped code as the
    // process's Private_Dirty (about 900 KiB of it). Written back first,
    // the figure is the process's own memory, as on a Pi.
    if let Ok(file) = std::fs::File::open(bin) {
        let _ = file.sync_all();
    }
    let mut cmd = Command::new(bin);
    let scratch = if conf.is_empty() {
        cmd.args(["-p", "0", "--bind", "127.0.0.1"]);
        None
    } else {
        let dir = scratch_dir()?;
        let file = dir.join("roost.conf");
        std::fs::write(
            &file,
            config_text(&["listener 0 127.0.0.1", "allow_anonymous true"], conf),
        )
        .map_err(|e| format!("{}: {e}", file.display()))?;
        cmd.arg("-c").arg(&file);
        Some(dir)
    };
    // The default log level (info) prints the line with the port.
    cmd.env_remove("RUST_LOG");
    let (mut broker, port_rx) = spawn_broker("roost", cmd, scratch)?;
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        match port_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(port) => {
                broker.port = port;
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stderr closed: the process is gone (or closed stderr).
                thread::sleep(Duration::from_millis(50));
                broker.check_alive()?;
                return Err(format!(
                    "roost closed stderr without logging `listening on 127.0.0.1:PORT`; log:\n{}",
                    broker.log_tail()
                ));
            }
        }
        broker.check_alive()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "roost ({bin}) did not log `listening on 127.0.0.1:PORT` within {} s; log:\n{}",
                ANSWER_TIMEOUT.as_secs(),
                broker.log_tail()
            ));
        }
    }
    wait_accepting(&mut broker)?;
    Ok(broker)
}

fn mosquitto_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ROOST_BENCH_MOSQUITTO") {
        return Some(PathBuf::from(p));
    }
    let sbin = Path::new("/usr/sbin/mosquitto");
    if sbin.exists() {
        return Some(sbin.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("mosquitto"))
            .find(|p| p.exists())
    })
}

fn mosquitto_version(bin: &Path) -> String {
    // `mosquitto -h` prints its version on the first line and exits non-zero.
    Command::new(bin)
        .arg("-h")
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            let all = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&all)
                .lines()
                .find(|l| l.contains("version"))
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| String::from("mosquitto (version unknown)"))
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

#[allow(dead_code)]
pub fn start_mosquitto(bin: &Path) -> Result<Broker, String> {
    start_mosquitto_with(bin, &[])
}

/// mosquitto with the generated config below, each of its lines replaced by
/// the line of `conf` with the same key (e.g. `max_queued_messages 10000`),
/// and the other lines of `conf` added.
pub fn start_mosquitto_with(bin: &Path, conf: &[&str]) -> Result<Broker, String> {
    let port = free_port()?;
    let dir = scratch_dir()?;
    let file = dir.join("mosquitto.conf");
    // Settings equivalent to roost's defaults: one loopback listener, no
    // connection limit, anonymous clients, no persistence, log to stderr,
    // 20 QoS 1/2 messages in flight and 1000 queued per client, and
    // TCP_NODELAY on accepted sockets (roost sets it; mosquitto does not by
    // default). `user root` keeps mosquitto (when started as root) from
    // switching user, which would clear the parent-death signal set in
    // spawn_broker.
    let listener = format!("listener {port} 127.0.0.1");
    let defaults = [
        listener.as_str(),
        "max_connections -1",
        "allow_anonymous true",
        "persistence false",
        "max_inflight_messages 20",
        "max_queued_messages 1000",
        "set_tcp_nodelay true",
        "log_dest stderr",
        "user root",
    ];
    std::fs::write(&file, config_text(&defaults, conf))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let mut cmd = Command::new(bin);
    cmd.arg("-c").arg(&file);
    let (mut broker, _port_rx) = spawn_broker("mosquitto", cmd, Some(dir))?;
    broker.port = port;
    wait_accepting(&mut broker)?;
    Ok(broker)
}

fn rumqttd_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ROOST_BENCH_RUMQTTD") {
        return Some(PathBuf::from(p));
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|d| d.join("bin").join("rumqttd"));
    if let Some(p) = cargo_bin.filter(|p| p.exists()) {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("rumqttd"))
            .find(|p| p.exists())
    })
}

fn rumqttd_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| String::from("rumqttd (version unknown)"))
}

/// The rumqttd configuration `start_rumqttd` writes: one MQTT 3.1.1 (`v4`)
/// listener on 127.0.0.1:`port`, nothing else (no v5, WebSocket, console
/// or Prometheus listener), and the limits of rumqttd's own example
/// `rumqttd.toml`, which are generous: 10010 connections, a commit log per
/// subscribed filter of 10 segments of 100 MiB each (rumqttd counts 4
/// bytes + topic + payload per message, so the memory it takes is several
/// times that: 3.5 GB were seen with 64-byte payloads), 100 packets read
/// per batch, 200 messages forwarded per wake-up.
#[allow(dead_code)]
pub fn rumqttd_config(port: u16) -> String {
    format!(
        "id = 0\n\n\
         [router]\n\
         id = 0\n\
         max_connections = 10010\n\
         max_outgoing_packet_count = 200\n\
         max_segment_size = 104857600\n\
         max_segment_count = 10\n\n\
         [v4.1]\n\
         name = \"v4-1\"\n\
         listen = \"127.0.0.1:{port}\"\n\
         next_connection_delay_ms = 1\n\n\
         [v4.1.connections]\n\
         connection_timeout_ms = 60000\n\
         max_payload_size = 20480\n\
         max_inflight_count = 100\n\
         dynamic_filters = true\n"
    )
}

/// rumqttd with `rumqttd_config` on a free loopback port. It refuses
/// clients whose CONNECT asks for keep-alive 0 (`connect_session_with`
/// asks for another), and logs (warnings and errors) to stdout.
#[allow(dead_code)]
pub fn start_rumqttd(bin: &Path) -> Result<Broker, String> {
    let port = free_port()?;
    let dir = scratch_dir()?;
    let file = dir.join("rumqttd.toml");
    std::fs::write(&file, rumqttd_config(port)).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut cmd = Command::new(bin);
    cmd.arg("-q").arg("-c").arg(&file);
    // Plain log lines in the tail, without colour codes.
    cmd.env("NO_COLOR", "1");
    cmd.env_remove("RUST_LOG");
    let (mut broker, _port_rx) = spawn_broker_logging("rumqttd", cmd, Some(dir), true)?;
    broker.port = port;
    wait_accepting(&mut broker)?;
    Ok(broker)
}

/// Waits until the broker accepts a TCP connection (closed again at once).
fn wait_accepting(broker: &mut Broker) -> Result<(), String> {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, broker.port);
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        broker.check_alive()?;
        match TcpStream::connect_timeout(&addr.into(), Duration::from_secs(1)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "{} does not accept connections on {addr} after {} s: {e}; log:\n{}",
                    broker.name,
                    ANSWER_TIMEOUT.as_secs(),
                    broker.log_tail()
                ));
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Samples the broker's memory until it stops changing (bounded).
#[allow(dead_code)]
pub fn settle(broker: &mut Broker) -> Result<Mem, String> {
    let deadline = Instant::now() + SETTLE_MAX;
    broker.check_alive()?;
    let mut last = read_mem(broker.pid())?;
    let mut same = 0;
    loop {
        thread::sleep(SETTLE_STEP);
        broker.check_alive()?;
        let now = read_mem(broker.pid())?;
        if now == last {
            same += 1;
            if same >= SETTLE_SAME {
                return Ok(now);
            }
        } else {
            same = 0;
            last = now;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "  note: {} memory still changing after {} s; using the last sample",
                broker.name,
                SETTLE_MAX.as_secs()
            );
            return Ok(now);
        }
    }
}

// ---------------------------------------------------------------------------
// MQTT 3.1.1, just the packets this bench sends

pub fn put_remaining_length(buf: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        buf.push(byte);
        if n == 0 {
            break;
        }
    }
}

pub fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u16).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// CONNECT, protocol level 4, keep-alive 0 (off), clean session or not.
#[allow(dead_code)]
pub fn connect_packet(client_id: &str, clean: bool) -> Vec<u8> {
    connect_packet_with(client_id, clean, 0)
}

/// CONNECT, protocol level 4, keep-alive `keep_alive` seconds (0: off; rumqttd
/// refuses 0), clean session or not.
pub fn connect_packet_with(client_id: &str, clean: bool, keep_alive: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(12 + client_id.len());
    put_str(&mut body, "MQTT");
    body.push(4); // protocol level: 3.1.1
    body.push(if clean { 0x02 } else { 0x00 }); // connect flags
    body.extend_from_slice(&keep_alive.to_be_bytes());
    put_str(&mut body, client_id);
    let mut pkt = vec![0x10];
    put_remaining_length(&mut pkt, body.len());
    pkt.extend_from_slice(&body);
    pkt
}

/// SUBSCRIBE to `filters`, each at `qos`.
pub fn subscribe_packet(packet_id: u16, filters: &[String], qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    for f in filters {
        put_str(&mut body, f);
        body.push(qos); // requested QoS
    }
    let mut pkt = vec![0x82];
    put_remaining_length(&mut pkt, body.len());
    pkt.extend_from_slice(&body);
    pkt
}

/// UNSUBSCRIBE from `filters` (hostile.rs only, hence the `allow`).
#[allow(dead_code)]
pub fn unsubscribe_packet(packet_id: u16, filters: &[String]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    for f in filters {
        put_str(&mut body, f);
    }
    let mut pkt = vec![0xa2];
    put_remaining_length(&mut pkt, body.len());
    pkt.extend_from_slice(&body);
    pkt
}

/// Reads one whole packet: its first byte and its body.
pub fn read_packet(s: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    s.read_exact(&mut first)?;
    let mut len = 0usize;
    for shift in [0, 7, 14, 21] {
        let mut b = [0u8; 1];
        s.read_exact(&mut b)?;
        len |= usize::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            let mut body = vec![0; len];
            s.read_exact(&mut body)?;
            return Ok((first[0], body));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "remaining length longer than 4 bytes",
    ))
}

pub fn io_context(what: &str, e: io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
            "{what}: no answer for {} s (the broker stopped answering)",
            ANSWER_TIMEOUT.as_secs()
        ),
        io::ErrorKind::UnexpectedEof => format!("{what}: the broker closed the connection"),
        _ => format!("{what}: {e}"),
    }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = addr.port().to_be();
    sa.sin_addr = libc::in_addr {
        s_addr: u32::from(*addr.ip()).to_be(),
    };
    sa
}

/// A TCP connection from `src` (any port) to `dst`, within `timeout`.
fn connect_from(src: Ipv4Addr, dst: SocketAddrV4, timeout: Duration) -> io::Result<TcpStream> {
    let sa_len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain syscall; the descriptor is checked, then owned by `stream`.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // Choose the source port at connect time (per destination), not at bind
    // time. Best effort: without it, bind still works for moderate N.
    // SAFETY: valid fd, pointer and length of a c_int.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let src_sa = sockaddr(SocketAddrV4::new(src, 0));
    // SAFETY: valid fd, pointer and length of a sockaddr_in.
    if unsafe { libc::bind(fd, (&src_sa as *const libc::sockaddr_in).cast(), sa_len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let dst_sa = sockaddr(dst);
    // SAFETY: valid fd, pointer and length of a sockaddr_in.
    if unsafe { libc::connect(fd, (&dst_sa as *const libc::sockaddr_in).cast(), sa_len) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(err);
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        }
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
    }
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A v3.1.1 client (clean session, keep-alive off) connected as `client_id`:
/// CONNECT sent and CONNACK checked. Its socket is bound to the source
/// address `i` selects from 127.0.0.2..=127.0.0.9, and has blocking reads
/// and writes that time out after `ANSWER_TIMEOUT`.
#[allow(dead_code)]
pub fn connect_client(client_id: &str, i: usize, dst: SocketAddrV4) -> Result<TcpStream, String> {
    connect_session(client_id, i, dst, true).map(|(s, _)| s)
}

/// A TCP connection to `dst` from the source address `i` selects (see
/// `connect_client`), nothing sent yet.
pub fn open_from(i: usize, dst: SocketAddrV4, who: &str) -> Result<TcpStream, String> {
    let src = Ipv4Addr::new(127, 0, 0, FIRST_SRC + (i % SRC_ADDRS) as u8);
    connect_from(src, dst, ANSWER_TIMEOUT)
        .map_err(|e| io_context(&format!("{who}: connect {src} -> {dst}"), e))
}

/// As `connect_client`, with clean session `clean`; also returns the
/// CONNACK's session-present flag.
#[allow(dead_code)]
pub fn connect_session(
    client_id: &str,
    i: usize,
    dst: SocketAddrV4,
    clean: bool,
) -> Result<(TcpStream, bool), String> {
    connect_session_with(client_id, i, dst, clean, 0)
}

/// As `connect_session`, asking for keep-alive `keep_alive` seconds.
pub fn connect_session_with(
    client_id: &str,
    i: usize,
    dst: SocketAddrV4,
    clean: bool,
    keep_alive: u16,
) -> Result<(TcpStream, bool), String> {
    let mut s = open_from(i, dst, client_id)?;
    s.write_all(&connect_packet_with(client_id, clean, keep_alive))
        .map_err(|e| io_context(&format!("{client_id}: sending CONNECT"), e))?;
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack)
        .map_err(|e| io_context(&format!("{client_id}: waiting for CONNACK"), e))?;
    // Session present (bit 0 of byte 2) may only be set without clean session.
    if connack[..2] != [0x20, 0x02] || connack[3] != 0 || connack[2] > u8::from(!clean) {
        return Err(format!(
            "{client_id}: expected CONNACK accepted (20 02 0x 00), got {connack:02x?}"
        ));
    }
    Ok((s, connack[2] == 1))
}

/// Subscribes `s` to `filters` at `qos` and checks that the SUBACK grants
/// that QoS to every one.
pub fn subscribe(
    s: &mut TcpStream,
    who: &str,
    packet_id: u16,
    filters: &[String],
    qos: u8,
) -> Result<(), String> {
    s.write_all(&subscribe_packet(packet_id, filters, qos))
        .map_err(|e| io_context(&format!("{who}: sending SUBSCRIBE"), e))?;
    let (first, body) =
        read_packet(s).map_err(|e| io_context(&format!("{who}: waiting for SUBACK"), e))?;
    let mut want = packet_id.to_be_bytes().to_vec();
    want.resize(2 + filters.len(), qos);
    if first != 0x90 || body != want {
        return Err(format!(
            "{who}: expected SUBACK {packet_id} granting QoS {qos} to {} filter(s), \
             got {first:02x} {body:02x?}",
            filters.len()
        ));
    }
    Ok(())
}

/// Appends a PUBLISH of `payload` to `topic` at `qos` (packet id
/// `packet_id` when `qos` > 0), with the retain flag `retain`.
pub fn put_publish(
    buf: &mut Vec<u8>,
    topic: &str,
    qos: u8,
    retain: bool,
    packet_id: u16,
    payload: &[u8],
) {
    let id_len = if qos > 0 { 2 } else { 0 };
    buf.push(0x30 | (qos << 1) | u8::from(retain));
    put_remaining_length(buf, 2 + topic.len() + id_len + payload.len());
    put_str(buf, topic);
    if qos > 0 {
        buf.extend_from_slice(&packet_id.to_be_bytes());
    }
    buf.extend_from_slice(payload);
}

/// A PUBLISH as a packet of its own; see [`put_publish`].
// Not every bench uses every helper below.
#[allow(dead_code)]
pub fn publish_packet(
    topic: &str,
    qos: u8,
    retain: bool,
    packet_id: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut pkt = Vec::with_capacity(7 + topic.len() + payload.len());
    put_publish(&mut pkt, topic, qos, retain, packet_id, payload);
    pkt
}

/// PUBACK of `packet_id`.
#[allow(dead_code)]
pub fn puback_packet(packet_id: u16) -> [u8; 4] {
    let id = packet_id.to_be_bytes();
    [0x40, 0x02, id[0], id[1]]
}

/// The PUBACK that the PUBLISH `first`, `body` asks for: Some when it is
/// QoS 1.
#[allow(dead_code)]
pub fn puback_for(first: u8, body: &[u8]) -> Option<[u8; 4]> {
    if (first >> 1) & 3 != 1 {
        return None;
    }
    // topic length, topic, packet id
    let at = 2 + usize::from(u16::from_be_bytes([body[0], body[1]]));
    Some(puback_packet(u16::from_be_bytes([body[at], body[at + 1]])))
}

/// Reads the next packet from `s`, which must be a PUBACK.
#[allow(dead_code)]
pub fn read_puback(s: &mut TcpStream, who: &str) -> Result<(), String> {
    match read_packet(s).map_err(|e| io_context(&format!("{who}: waiting for PUBACK"), e))? {
        (0x40, body) if body.len() == 2 => Ok(()),
        (first, body) => Err(format!(
            "{who}: expected PUBACK, got {first:02x} {body:02x?}"
        )),
    }
}

/// Reads packets from `s` until a PUBLISH arrives, and acknowledges it when
/// it is QoS 1. `Ok(false)` when nothing came within the socket's read
/// timeout.
#[allow(dead_code)]
pub fn receive_publish(s: &mut TcpStream, who: &str) -> Result<bool, String> {
    loop {
        let (first, body) = match read_packet(s) {
            Ok(p) => p,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(io_context(&format!("{who}: waiting for PUBLISH"), e)),
        };
        if first & 0xf0 != 0x30 {
            continue;
        }
        if let Some(ack) = puback_for(first, &body) {
            s.write_all(&ack)
                .map_err(|e| io_context(&format!("{who}: sending PUBACK"), e))?;
        }
        return Ok(true);
    }
}

/// DISCONNECT, then the connection is closed.
#[allow(dead_code)]
pub fn disconnect(mut s: TcpStream, who: &str) -> Result<(), String> {
    s.write_all(&[0xe0, 0x00])
        .map_err(|e| io_context(&format!("{who}: sending DISCONNECT"), e))?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// A PINGREQ/PINGRESP round trip: once it returns, the broker has handled
/// everything `s` sent before. Packets other than PINGRESP that arrive in
/// the meantime are skipped.
#[allow(dead_code)]
pub fn ping(s: &mut TcpStream, who: &str) -> Result<(), String> {
    s.write_all(&[0xc0, 0x00])
        .map_err(|e| io_context(&format!("{who}: sending PINGREQ"), e))?;
    loop {
        let (first, _) =
            read_packet(s).map_err(|e| io_context(&format!("{who}: waiting for PINGRESP"), e))?;
        if first == 0xd0 {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------
// Reporting

fn machine_line() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| String::from("unknown CPU"));
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| String::from("unknown"));
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| format!(", {} MiB RAM", kib / 1024));
    format!("machine: {model}, nproc {cpus}{mem}; kernel: Linux {kernel}")
}

pub fn fmt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
        _ => String::from("-"),
    }
}

// Side-by-side tables, for throughput.rs and persistence.rs (memory.rs
// prints its own, hence the `allow`s).

/// A row of a side-by-side table: a figure for each broker, printed with
/// `prec` decimals, their ratio, and a note.
#[allow(dead_code)]
pub struct Row {
    pub label: String,
    pub roost: Option<f64>,
    pub mosq: Option<f64>,
    pub prec: usize,
    pub note: String,
}

#[allow(dead_code)]
pub fn row(label: impl Into<String>, roost: Option<f64>, mosq: Option<f64>, prec: usize) -> Row {
    Row {
        label: label.into(),
        roost,
        mosq,
        prec,
        note: String::new(),
    }
}

/// Prints `rows` under `title`, columns roost, mosquitto, roost/mosquitto
/// and note, after a blank line.
#[allow(dead_code)]
pub fn print_table(title: &str, rows: &[Row]) {
    let lines: Vec<Line> = rows
        .iter()
        .map(|r| Line {
            label: r.label.clone(),
            values: vec![r.roost, r.mosq],
            prec: r.prec,
            note: r.note.clone(),
        })
        .collect();
    print_columns(title, &["roost", "mosquitto"], &[(0, 1)], &lines);
}

/// A row of a table of any number of columns: a figure for each, printed
/// with `prec` decimals, and a note.
#[allow(dead_code)]
pub struct Line {
    pub label: String,
    pub values: Vec<Option<f64>>,
    pub prec: usize,
    pub note: String,
}

/// Prints `lines` under `title`, after a blank line: a column per name in
/// `heads`, then for each `(a, b)` of `ratios` the ratio of column a to
/// column b, then the note.
#[allow(dead_code)]
pub fn print_columns(title: &str, heads: &[&str], ratios: &[(usize, usize)], lines: &[Line]) {
    let w = lines
        .iter()
        .map(|l| l.label.len())
        .chain([title.len()])
        .max()
        .unwrap_or(0)
        + 2;
    let ratio_heads: Vec<String> = ratios
        .iter()
        .map(|&(a, b)| format!("{}/{}", heads[a], heads[b]))
        .collect();
    let value_w = |h: &str| (h.len() + 2).max(12);
    let mut out = format!("\n{title:<w$}");
    for h in heads {
        let _ = write!(out, "{h:>0$}", value_w(h));
    }
    for h in &ratio_heads {
        let _ = write!(out, "{h:>0$}", h.len() + 2);
    }
    out.push_str("  note");
    println!("{out}");
    for l in lines {
        let mut out = format!("{:<w$}", l.label);
        for (h, v) in heads.iter().zip(&l.values) {
            let cell = v.map_or_else(|| String::from("-"), |v| format!("{v:.0$}", l.prec));
            let _ = write!(out, "{cell:>0$}", value_w(h));
        }
        for (&(a, b), h) in ratios.iter().zip(&ratio_heads) {
            let _ = write!(
                out,
                "{:>1$}",
                fmt_ratio(l.values[a], l.values[b]),
                h.len() + 2
            );
        }
        let _ = write!(out, "  {}", l.note);
        println!("{out}");
    }
}

/// A measurement for each broker (`None` where it was not measured or
/// failed).
#[allow(dead_code)]
pub struct Pair<T> {
    pub roost: Option<T>,
    pub mosq: Option<T>,
}

#[allow(dead_code)]
impl<T> Pair<T> {
    pub fn get(&self, f: impl Fn(&T) -> Option<f64>) -> (Option<f64>, Option<f64>) {
        (
            self.roost.as_ref().and_then(&f),
            self.mosq.as_ref().and_then(&f),
        )
    }

    pub fn row(&self, label: impl Into<String>, prec: usize, f: impl Fn(&T) -> Option<f64>) -> Row {
        let (r, m) = self.get(f);
        row(label, r, m, prec)
    }
}

pub fn raise_nofile() -> Result<u64, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit: {}", io::Error::last_os_error()));
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: valid pointer to an rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(format!("setrlimit: {}", io::Error::last_os_error()));
        }
    }
    // rlim_t is 32 bits on some targets (32-bit ARM), 64 on others.
    #[allow(clippy::unnecessary_cast)]
    Ok(lim.rlim_cur as u64)
}

/// A positive integer from the environment variable `name`, or `default`;
/// anything else ends the bench with status 2.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("{name} must be a positive integer, not {v:?}");
                std::process::exit(2);
            }
        },
        Err(_) => default,
    }
}

/// Kills the brokers on a panic, and ends the whole run (killing them) once
/// it has taken longer than `limit`.
pub fn install_guards(bench: &'static str, limit: Duration) {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_live_children();
        default_hook(info);
    }));
    thread::Builder::new()
        .name(String::from("watchdog"))
        .spawn(move || {
            thread::sleep(limit);
            eprintln!(
                "\n{bench} bench: still running after {} s, giving up (brokers killed)",
                limit.as_secs()
            );
            kill_live_children();
            std::process::exit(3);
        })
        .expect("spawn watchdog");
}

/// Which brokers to measure: `ROOST_BENCH_BROKERS` (a comma-separated list
/// from `roost` and `mosquitto`, default both, and for the benches that
/// call `from_env_with_rumqttd` also `rumqttd`, then default all three),
/// `ROOST_BENCH_MOSQUITTO` (the mosquitto binary, default
/// `/usr/sbin/mosquitto`, then `PATH`) and `ROOST_BENCH_RUMQTTD` (the
/// rumqttd binary, default `$CARGO_HOME/bin/rumqttd` or
/// `~/.cargo/bin/rumqttd`, then `PATH`).
pub struct Brokers {
    pub roost: bool,
    /// The mosquitto binary, when wanted and installed.
    pub mosquitto: Option<PathBuf>,
    mosquitto_wanted: bool,
    /// The rumqttd binary, when this bench measures it, it is wanted and
    /// installed.
    #[allow(dead_code)]
    pub rumqttd: Option<PathBuf>,
    rumqttd_wanted: bool,
    /// Whether this bench can measure rumqttd at all.
    rumqttd_known: bool,
}

impl Brokers {
    #[allow(dead_code)]
    pub fn from_env() -> Self {
        Self::from_env_listing("roost,mosquitto", false)
    }

    /// As `from_env`, for a bench that also measures rumqttd.
    #[allow(dead_code)]
    pub fn from_env_with_rumqttd() -> Self {
        Self::from_env_listing("roost,mosquitto,rumqttd", true)
    }

    fn from_env_listing(default: &str, rumqttd_known: bool) -> Self {
        let list = std::env::var("ROOST_BENCH_BROKERS").unwrap_or_else(|_| String::from(default));
        let want = |b: &str| list.split(',').any(|x| x.trim() == b);
        let mosquitto_wanted = want("mosquitto");
        let rumqttd_wanted = rumqttd_known && want("rumqttd");
        Brokers {
            roost: want("roost"),
            mosquitto: if mosquitto_wanted {
                mosquitto_path()
            } else {
                None
            },
            mosquitto_wanted,
            rumqttd: if rumqttd_wanted { rumqttd_path() } else { None },
            rumqttd_wanted,
            rumqttd_known,
        }
    }

    /// Prints the machine and the brokers measured.
    pub fn print_header(&self) {
        println!("{}", machine_line());
        println!(
            "roost: {}",
            if self.roost {
                env!("CARGO_BIN_EXE_roost")
            } else {
                "(not measured)"
            }
        );
        match (&self.mosquitto, self.mosquitto_wanted) {
            (Some(bin), _) => println!("mosquitto: {} ({})", bin.display(), mosquitto_version(bin)),
            (None, true) => println!("mosquitto: not installed, measuring roost alone"),
            (None, false) => println!("mosquitto: (not measured)"),
        }
        if self.rumqttd_known {
            match (&self.rumqttd, self.rumqttd_wanted) {
                (Some(bin), _) => {
                    println!("rumqttd: {} ({})", bin.display(), rumqttd_version(bin));
                }
                (None, true) => println!("rumqttd: not installed, not measured"),
                (None, false) => println!("rumqttd: (not measured)"),
            }
        }
    }
}

/// Prints the failures a run collected and exits with status 1, or returns
/// when there were none.
pub fn exit_on_failures(failures: &[String]) {
    if failures.is_empty() {
        return;
    }
    eprintln!();
    for f in failures {
        eprintln!("FAILED {f}");
    }
    std::process::exit(1);
}
