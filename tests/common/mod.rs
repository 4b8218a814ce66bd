//! Starts the real `roost` binary on an ephemeral loopback port and tears it
//! down again; shared by every integration test.
#![allow(dead_code)] // each test crate uses its own subset of these helpers

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upper bound for anything a test waits on.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Roost {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
    _dir: Option<TempDir>,
}

impl Roost {
    /// A broker with embedded defaults on 127.0.0.1 and a free port.
    pub fn start() -> Roost {
        Roost::spawn(&["-p", "0"], None)
    }

    /// A broker reading `config` (mosquitto.conf syntax); the config must
    /// contain a `listener 0 127.0.0.1` line (or pass `-p 0`).
    pub fn with_config(config: &str) -> Roost {
        Roost::spawn(&[], Some(config))
    }

    pub fn spawn(args: &[&str], config: Option<&str>) -> Roost {
        Roost::spawn_limited(args, config, None)
    }

    /// Like `spawn`, with the process's open-file limit set to `nofile`.
    pub fn spawn_limited(args: &[&str], config: Option<&str>, nofile: Option<u64>) -> Roost {
        Roost::launch(args, config, nofile, Some("roost=debug"))
    }

    /// Like `spawn_limited`, logging at `rust_log` (`RUST_LOG`) instead of
    /// debug: a test of thousands of connections would otherwise measure
    /// how fast the test reads the log pipe.
    pub fn spawn_logging(
        args: &[&str],
        config: Option<&str>,
        nofile: Option<u64>,
        rust_log: &str,
    ) -> Roost {
        Roost::launch(args, config, nofile, Some(rust_log))
    }

    /// Like `spawn`, but without RUST_LOG (which the others set to
    /// `roost=debug`), so the config's `log_type` decides what is logged.
    pub fn spawn_without_rust_log(args: &[&str], config: Option<&str>) -> Roost {
        Roost::launch(args, config, None, None)
    }

    fn launch(
        args: &[&str],
        config: Option<&str>,
        nofile: Option<u64>,
        rust_log: Option<&str>,
    ) -> Roost {
        let dir = config.map(|text| {
            let dir = TempDir::new("roost-test");
            std::fs::write(dir.path.join("roost.conf"), text).unwrap();
            dir
        });
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roost"));
        cmd.args(args);
        if let Some(dir) = &dir {
            cmd.arg("-c").arg(dir.path.join("roost.conf"));
        }
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe; it only touches `limit`.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        match rust_log {
            Some(filter) => cmd.env("RUST_LOG", filter),
            None => cmd.env_remove("RUST_LOG"),
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start roost");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let port = addr
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok());
                    if let Some(port) = port {
                        let _ = tx.send(port);
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let port = match rx.recv_timeout(TIMEOUT) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!("roost did not report a listener: {:?}", log.lock().unwrap());
            }
        };
        Roost {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything roost has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` and waits (bounded) for the process to exit.
    pub fn signal_and_wait(&mut self, signal: i32) -> Option<ExitStatus> {
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Resident set size of the broker process in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The highest resident set size the broker process has had, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// A `/proc/PID/status` figure given in kB.
    fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// True while the broker process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Roost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const SIGTERM: i32 = 15;
pub const SIGINT: i32 = 2;

/// Runs the roost binary with `args` to completion (no stdin).
pub fn run_roost(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run roost")
}

/// Process output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A loopback port free now, for a broker that cannot pick its own (a
/// mosquitto under test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` until it holds or `TIMEOUT` passes.
pub fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Whether an external tool is on PATH; tests that need one skip (and say
/// so) when it is missing, so `cargo test` passes on a bare machine.
pub fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// Whether python3 can import paho-mqtt.
pub fn have_paho() -> bool {
    Command::new("python3")
        .args(["-c", "import paho.mqtt.client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[macro_export]
macro_rules! skip_without {
    ($cond:expr, $what:expr) => {
        if !$cond {
            eprintln!("SKIPPED: {} not installed", $what);
            return;
        }
    };
}

/// Starts roost with `conf` (written to `conf_dir`), which must fail to
/// start; returns its output.
pub fn refused_to_start(conf_dir: &TempDir, conf: &str) -> Vec<String> {
    let path = conf_dir.path.join("roost.conf");
    std::fs::write(&path, conf).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roost"));
    cmd.arg("-c").arg(&path);
    let mut p = Proc::spawn(cmd);
    let status = p.wait_exit();
    assert_eq!(status.code(), Some(1), "{:#?}", p.output());
    p.output()
}

/// A child process (not roost) whose stdout and stderr lines are collected
/// as they come; every wait has a `TIMEOUT` deadline and the process is
/// killed on drop.
pub struct Proc {
    child: Child,
    /// The command line, for failure messages.
    label: String,
    rx: mpsc::Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout/stderr captured.
    pub fn spawn(mut cmd: Command) -> Proc {
        let label = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {label}: {e}"));
        let (tx, rx) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            let seen = seen.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    seen.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            }));
        }
        Proc {
            child,
            label,
            rx,
            seen,
            readers,
        }
    }

    /// The first line (from now on) satisfying `pred`; panics after TIMEOUT.
    pub fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "{}: no {what} within {TIMEOUT:?}; output: {:#?}",
                    self.label,
                    self.output()
                ),
            }
        }
    }

    /// Waits for exit, then for every line written before it; kills the
    /// process and panics after `TIMEOUT`.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The process is gone, so its pipes reach EOF: collect
                // every line it wrote before returning.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {TIMEOUT:?}; output: {:#?}",
                    self.label,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every line seen so far (stdout and stderr interleaved as read).
    pub fn output(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill({signal}) {}", self.label);
    }

    /// SIGKILL (so the process gets no chance to clean up) and reap.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// mosquitto, the reference broker, on a free loopback port with
/// anonymous clients and `config`; killed on drop.
pub struct Mosquitto {
    pub port: u16,
    _proc: Proc,
    _dir: TempDir,
}

impl Mosquitto {
    pub fn with_config(config: &str) -> Mosquitto {
        let port = free_port();
        let dir = TempDir::new("mosquitto");
        let conf = dir.path.join("mosquitto.conf");
        let text = format!("listener {port} 127.0.0.1\nallow_anonymous true\n{config}");
        std::fs::write(&conf, text).unwrap();
        let mut cmd = Command::new("mosquitto");
        cmd.arg("-c").arg(&conf);
        let proc = Proc::spawn(cmd);
        // Said once its listeners listen ("Opening ... listen socket"
        // comes before they do).
        proc.wait_line("running", |l| l.ends_with(" running"));
        Mosquitto {
            port,
            _proc: proc,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
