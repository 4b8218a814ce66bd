//! The test plays systemd: it listens on a notify socket and hands roost a
//! listening socket, as systemd does for `Type=notify`, `WatchdogSec=` and
//! socket activation, and checks what roost says and does.

mod common;
#[path = "common/wire.rs"]
mod wire;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{SIGTERM, TIMEOUT, TempDir};

/// What the service unit would set: ping at least every 300 ms.
const WATCHDOG: Duration = Duration::from_millis(600);

/// roost as systemd would start it, its stderr lines forwarded to `lines`.
struct Service {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Service {
    fn start(mut cmd: Command) -> Service {
        cmd.env("RUST_LOG", "roost=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start roost");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Service { child, lines }
    }

    /// The port of the first `listening on ADDR:PORT` line.
    fn port(&self) -> u16 {
        let deadline = Instant::now() + TIMEOUT;
        while let Ok(line) = self.lines.recv_timeout(deadline - Instant::now()) {
            if let Some(addr) = line.split("listening on ").nth(1) {
                return addr.trim().rsplit(':').next().unwrap().parse().unwrap();
            }
        }
        panic!("roost did not report a listener");
    }

    fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits (bounded) for roost to exit; true if it exited with 0.
    fn exited_cleanly(&mut self) -> bool {
        common::wait_until(|| self.child.try_wait().unwrap().is_some())
            && self.child.wait().unwrap().success()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn roost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_roost"))
}

/// systemd's end of `$NOTIFY_SOCKET`.
struct NotifySocket {
    socket: UnixDatagram,
}

impl NotifySocket {
    fn bind(addr: &UnixAddr) -> NotifySocket {
        let socket = UnixDatagram::bind_addr(addr).unwrap();
        NotifySocket { socket }
    }

    /// The next notification, within `TIMEOUT`.
    fn next(&self) -> String {
        self.socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = [0; 4096];
        let n = self.socket.recv(&mut buf).expect("a notification in time");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// Notifications until one contains `line`; the others are returned.
    fn until(&self, line: &str) -> Vec<String> {
        let deadline = Instant::now() + TIMEOUT;
        let mut before = Vec::new();
        while Instant::now() < deadline {
            let msg = self.next();
            if msg.lines().any(|l| l == line) {
                return before;
            }
            before.push(msg);
        }
        panic!("no {line} within {TIMEOUT:?}; got {before:?}");
    }
}

/// An MQTT 3.1.1 client session up to CONNACK: the broker is serving.
fn mqtt_connect(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("port accepts connections");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(&wire::Connect::v4("systemd-test").encode())
        .unwrap();
    let mut connack = [0; 4];
    s.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    s
}

#[test]
fn notify_ready_status_watchdog_stopping() {
    let dir = TempDir::new("roost-notify");
    let path = dir.path.join("notify");
    let notify = NotifySocket::bind(&UnixAddr::from_pathname(&path).unwrap());
    let mut cmd = roost();
    cmd.args(["-p", "0"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string());
    let mut roost = Service::start(cmd);

    // READY=1 is the first thing said, and by then the listener is bound:
    // its log line is already in the pipe and a client is served.
    let ready = notify.next();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains("STATUS=clients connected: 0"), "{ready:?}");
    let _client = mqtt_connect(roost.port());

    // The watchdog is petted from the loop, each time well within
    // WATCHDOG_USEC (systemd's limit), and not in a busy loop.
    let start = Instant::now();
    let mut last = start;
    let mut pings = 0;
    let mut status = Vec::new();
    while pings < 6 {
        let msg = notify.next();
        if msg == "WATCHDOG=1" {
            let gap = last.elapsed();
            assert!(gap < WATCHDOG, "watchdog gap {gap:?}");
            last = Instant::now();
            pings += 1;
        } else {
            status.push(msg);
        }
    }
    // Five gaps of at least WATCHDOG / 2 each, less some delivery jitter.
    assert!(start.elapsed() >= WATCHDOG / 2 * 4, "pinging too often");

    // STATUS= follows the client count (refreshed every few seconds).
    if !status.iter().any(|m| m == "STATUS=clients connected: 1") {
        notify.until("STATUS=clients connected: 1");
    }

    roost.signal(SIGTERM);
    notify.until("STOPPING=1");
    assert!(roost.exited_cleanly());
}

#[test]
fn notify_over_abstract_socket_and_reload() {
    let name = format!("roost-test-{}", std::process::id());
    let notify = NotifySocket::bind(&UnixAddr::from_abstract_name(&name).unwrap());
    let mut cmd = roost();
    cmd.args(["-p", "0"])
        .env("NOTIFY_SOCKET", format!("@{name}"));
    let mut roost = Service::start(cmd);
    assert!(notify.next().starts_with("READY=1"));

    // SIGHUP: RELOADING=1 with the monotonic time systemd asks for, then
    // READY=1 again; the broker keeps serving.
    roost.signal(libc::SIGHUP);
    let reloading = notify.next();
    let mut lines = reloading.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"));
    let usec: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .expect("MONOTONIC_USEC");
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    assert!(usec <= now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000);
    assert!(notify.next().starts_with("READY=1"));
    mqtt_connect(roost.port());

    roost.signal(SIGTERM);
    notify.until("STOPPING=1");
    assert!(roost.exited_cleanly());
}

/// roost started the way systemd starts a socket-activated service:
/// `socket` as fd 3, `LISTEN_FDS=1`, `LISTEN_PID` its own pid.
fn socket_activated(socket: TcpListener, args: &[&str]) -> Service {
    let fd = socket.as_raw_fd();
    // The pid is known only after fork, so a shell sets LISTEN_PID to its
    // own pid ($$) and execs roost, which keeps that pid.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_roost"))
        .args(args)
        .env("LISTEN_FDS", "1");
    // SAFETY: dup2 and fcntl are async-signal-safe and touch only fds.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto 3 clears close-on-exec; if the socket already is
            // fd 3, clear it by hand.
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let service = Service::start(cmd);
    drop(socket); // from here on only roost holds it
    service
}

#[test]
fn socket_activation_without_configured_listener() {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let roost = socket_activated(socket, &[]);
    assert_eq!(roost.port(), port);
    mqtt_connect(port);
}

#[test]
fn socket_activation_matches_the_configured_listener() {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    // The port is taken (by the passed socket), so roost would fail to
    // bind it itself: serving on it proves the socket was adopted. The
    // second listener has no passed socket and is bound as usual.
    let text = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\nlistener 0 127.0.0.1\nallow_anonymous true\n"
    );
    let dir = TempDir::new("roost-activation");
    let conf = dir.path.join("roost.conf");
    std::fs::write(&conf, text).unwrap();
    let roost = socket_activated(socket, &["-c", conf.to_str().unwrap()]);
    assert_eq!(roost.port(), port);
    let other = roost.port();
    assert_ne!(other, port);
    mqtt_connect(port);
    mqtt_connect(other);
}

/// A listener the passed socket overlaps without matching it (the socket
/// on every interface, the listener on loopback) is refused, naming both,
/// with status 1, which roost.service's RestartPreventExitStatus= keeps
/// from a restart loop.
#[test]
fn socket_activation_refuses_a_socket_that_overlaps_a_listener() {
    let socket = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let dir = TempDir::new("roost-activation-overlap");
    let conf = dir.path.join("roost.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
    .unwrap();
    let mut roost = socket_activated(socket, &["-c", conf.to_str().unwrap()]);
    assert!(common::wait_until(|| roost
        .child
        .try_wait()
        .unwrap()
        .is_some()));
    assert_eq!(roost.child.wait().unwrap().code(), Some(1));
    // roost has exited: the reader thread ends at the pipe's end.
    let said: Vec<String> = roost.lines.iter().collect();
    let said = said.join("\n");
    assert!(
        said.contains(&format!("listener 127.0.0.1:{port} (in the config)"))
            && said.contains(&format!("the socket 0.0.0.0:{port} that systemd passed")),
        "{said}"
    );
}

/// The example config the .deb installs as /etc/roost/roost.conf starts.
#[test]
fn example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/roost.conf");
    let settings = roost::config::load(&path).unwrap();
    settings.check().unwrap();
    // Local programs only, as mosquitto 2 out of the box.
    let localhost: Vec<std::net::SocketAddr> = vec![
        "127.0.0.1:1883".parse().unwrap(),
        "[::1]:1883".parse().unwrap(),
    ];
    assert_eq!(settings.listen_addrs(), Ok(localhost));
    assert!(settings.listeners.is_empty(), "no listener line");
    // Where the unit's StateDirectory= is.
    assert!(settings.persistence.enabled);
    assert_eq!(
        settings.persistence.path(),
        std::path::Path::new("/var/lib/roost/roost.db")
    );
}
