//! systemd, spoken directly rather than through libsystemd: the notify
//! protocol (one datagram of `KEY=VALUE` lines to `$NOTIFY_SOCKET`) for
//! READY, STATUS, RELOADING, STOPPING and the watchdog, and socket
//! activation (`LISTEN_FDS` sockets from fd 3 on, meant for the process
//! named by `LISTEN_PID`). Outside systemd none of these variables is set
//! and everything here does nothing.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;
/// STATUS= is refreshed at most this often: counting clients walks every
/// connection, and nobody reads `systemctl status` ten times a second.
const STATUS_EVERY: Duration = Duration::from_secs(5);

pub struct Notifier {
    socket: Option<(UnixDatagram, UnixAddr)>,
    /// Half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3) advises.
    ping_every: Option<Duration>,
    next_ping: Option<Instant>,
    next_status: Instant,
    /// Something happened since the last STATUS= check.
    status_pending: bool,
    last_clients: Option<usize>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    pub fn from_env(now: Instant) -> Notifier {
        let var = |name| std::env::var(name).ok();
        let socket = var("NOTIFY_SOCKET").and_then(|path| match connect(&path) {
            Ok(socket) => Some(socket),
            Err(e) => {
                log::warn!("NOTIFY_SOCKET={path}: {e}; not notifying systemd");
                None
            }
        });
        let ping_every = socket.as_ref().and_then(|_| {
            watchdog_interval(
                var("WATCHDOG_USEC").as_deref(),
                var("WATCHDOG_PID").as_deref(),
                std::process::id(),
            )
        });
        if let Some(every) = ping_every {
            log::info!("systemd watchdog: pinging every {every:?}");
        }
        Notifier {
            socket,
            ping_every,
            next_ping: ping_every.map(|every| now + every),
            next_status: now,
            status_pending: false,
            last_clients: None,
        }
    }

    /// Sends one notification; a failure is logged, never fatal.
    fn send(&self, state: &str) {
        if let Some((socket, addr)) = &self.socket {
            if let Err(e) = socket.send_to_addr(state.as_bytes(), addr) {
                log::warn!("systemd notify `{}`: {e}", state.replace('\n', " "));
            }
        }
    }

    /// Listeners bound, state loaded: the service is up.
    pub fn ready(&mut self, clients: usize) {
        self.last_clients = Some(clients);
        self.send(&format!("READY=1\nSTATUS={}", status(clients)));
    }

    /// Starting a reload; `ready` ends it. systemd wants the monotonic
    /// time with it to tell this reload from an earlier one.
    pub fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=shutting down");
    }

    /// When the loop must wake next for systemd's sake.
    pub fn next_deadline(&self) -> Option<Instant> {
        let status = self.status_pending.then_some(self.next_status);
        self.next_ping.into_iter().chain(status).min()
    }

    /// Called once per loop iteration: pets the watchdog when due (so a
    /// wedged loop stops petting it and systemd restarts roost) and
    /// refreshes STATUS= when the client count changed.
    pub fn tick(&mut self, now: Instant, clients: impl FnOnce() -> usize) {
        if self.socket.is_none() {
            return;
        }
        if let (Some(at), Some(every)) = (self.next_ping, self.ping_every) {
            if at <= now {
                self.send("WATCHDOG=1");
                self.next_ping = Some(now + every);
            }
        }
        if now < self.next_status {
            self.status_pending = true;
            return;
        }
        self.status_pending = false;
        self.next_status = now + STATUS_EVERY;
        let n = clients();
        if self.last_clients != Some(n) {
            self.last_clients = Some(n);
            self.send(&format!("STATUS={}", status(n)));
        }
    }
}

fn status(clients: usize) -> String {
    format!("clients connected: {clients}")
}

/// A socket aimed at `path`: a file system path, or `@name` for a name
/// in the abstract namespace.
fn connect(path: &str) -> io::Result<(UnixDatagram, UnixAddr)> {
    let addr = match path.strip_prefix('@') {
        Some(name) => UnixAddr::from_abstract_name(name)?,
        None if path.starts_with('/') => UnixAddr::from_pathname(path)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "neither a path nor an abstract name",
            ));
        }
    };
    let socket = UnixDatagram::unbound()?;
    // A notification must never stall the loop that every client shares.
    socket.set_nonblocking(true)?;
    Ok((socket, addr))
}

/// How often to pet the watchdog, if it is enabled for this process.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if pid.is_some_and(|p| p.parse() != Ok(own_pid)) {
        return None;
    }
    match usec?.parse::<u64>() {
        Ok(0) | Err(_) => None,
        Ok(usec) => Some(Duration::from_micros(usec / 2)),
    }
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only to `ts`; CLOCK_MONOTONIC is always
    // available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// How many sockets systemd passed to this process.
fn passed_fds(pid: Option<&str>, fds: Option<&str>, own_pid: u32) -> usize {
    if pid.and_then(|p| p.parse().ok()) != Some(own_pid) {
        return 0;
    }
    fds.and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The listening sockets systemd passed (socket activation), empty when
/// roost was not socket-activated. Clears the variables, as
/// sd_listen_fds(3) does, so nothing started later mistakes them for its
/// own.
pub fn listen_fds() -> io::Result<Vec<TcpListener>> {
    let n = passed_fds(
        std::env::var("LISTEN_PID").ok().as_deref(),
        std::env::var("LISTEN_FDS").ok().as_deref(),
        std::process::id(),
    );
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: called from main before any other thread exists.
        unsafe { std::env::remove_var(name) };
    }
    (0..n as RawFd)
        .map(|i| adopt(LISTEN_FDS_START + i))
        .collect()
}

/// Takes over fd `fd`, which must be a listening TCP socket.
fn adopt(fd: RawFd) -> io::Result<TcpListener> {
    let int_opt = |level, name| {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`.
        let r = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
        (r == 0).then_some(value)
    };
    let domain = int_opt(libc::SOL_SOCKET, libc::SO_DOMAIN);
    let listening = int_opt(libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(1);
    if !matches!(domain, Some(libc::AF_INET | libc::AF_INET6)) || !listening {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} from systemd is not a listening TCP socket (ListenStream= only)"),
        ));
    }
    // SAFETY: systemd passed this fd to this process alone, and nothing
    // else in roost refers to it, so the listener may own it.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    // Passed fds arrive without close-on-exec.
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A listener to open: a socket from systemd, or an address to bind.
pub enum Listen {
    Passed(TcpListener),
    Bind(SocketAddr),
}

/// Pairs the listeners roost should open with the sockets systemd passed.
/// With none configured (`configured` empty) every passed socket is used
/// as is, tagged `unconfigured`; else each configured address (tagged with
/// what its listener needs to know) takes the passed socket bound to it,
/// if any, and is bound itself otherwise, unless a passed socket on "every
/// interface" of the same port already serves it (systemd's dual-stack
/// `[::]` covers `0.0.0.0` too).
///
/// The sockets and the listeners must agree, or roost refuses to start
/// with an error naming both: a configured address that a passed socket
/// overlaps without matching it (`listener 1883 127.0.0.1` against
/// `ListenStream=1883`) could be bound by neither roost (the port is
/// taken) nor adopted (a socket cannot be narrowed); and a passed socket
/// no listener wants would keep taking connections nobody accepts.
pub fn plan<T: Copy>(
    configured: &[(T, SocketAddr)],
    passed: Vec<TcpListener>,
    unconfigured: T,
) -> Result<Vec<(T, Listen)>, String> {
    if configured.is_empty() {
        return Ok(passed
            .into_iter()
            .map(|l| (unconfigured, Listen::Passed(l)))
            .collect());
    }
    let passed_addrs: Vec<(SocketAddr, bool)> = passed
        .iter()
        .filter_map(|l| Some((l.local_addr().ok()?, v6_only(l))))
        .collect();
    let mut passed: Vec<Option<TcpListener>> = passed.into_iter().map(Some).collect();
    let mut adopted: Vec<SocketAddr> = Vec::new();
    let mut plan = Vec::new();
    for &(tag, want) in configured {
        let found = passed.iter_mut().find(|l| {
            l.as_ref()
                .and_then(|l| l.local_addr().ok())
                .is_some_and(|have| same_listener(want, have))
        });
        match found.and_then(Option::take) {
            Some(l) => {
                adopted.extend(l.local_addr().ok());
                plan.push((tag, Listen::Passed(l)));
            }
            None if adopted.iter().any(|&have| same_listener(want, have)) => {}
            None => {
                if let Some(&(have, _)) = passed_addrs
                    .iter()
                    .find(|&&(have, v6_only)| overlap(want, have, v6_only))
                {
                    return Err(format!(
                        "listener {want} (in the config) and the socket {have} that systemd \
                         passed (roost.socket's ListenStream=) overlap: roost can neither \
                         bind the listener (the socket holds the port) nor narrow the socket \
                         to it. Make them the same (`systemctl edit roost.socket`, or the \
                         `listener` line), or turn socket activation off \
                         (`systemctl disable --now roost.socket`)"
                    ));
                }
                plan.push((tag, Listen::Bind(want)));
            }
        }
    }
    if let Some(have) = passed.iter().flatten().find_map(|l| l.local_addr().ok()) {
        let wanted: Vec<String> = configured.iter().map(|(_, a)| a.to_string()).collect();
        return Err(format!(
            "the socket {have} that systemd passed (roost.socket's ListenStream=) matches \
             no listener in the config ({}): clients connecting to it would wait \
             unanswered. Add a `listener` for it, change the socket \
             (`systemctl edit roost.socket`), or turn socket activation off \
             (`systemctl disable --now roost.socket`)",
            wanted.join(", ")
        ));
    }
    Ok(plan)
}

/// Whether a socket bound to `have` serves a listener configured as
/// `want`. "Every interface" matches across families: systemd's
/// `ListenStream=1883` is a dual-stack `[::]:1883`, and `listener 1883`
/// means `0.0.0.0:1883`.
fn same_listener(want: SocketAddr, have: SocketAddr) -> bool {
    want == have
        || (want.port() == have.port() && want.ip().is_unspecified() && have.ip().is_unspecified())
}

/// Whether binding `want` would collide with a socket bound to `have`
/// (`have_v6_only`: that socket takes IPv6 alone). roost binds its IPv6
/// sockets IPv6-only, so a `want` of that family never takes IPv4.
fn overlap(want: SocketAddr, have: SocketAddr, have_v6_only: bool) -> bool {
    if want.port() != have.port() {
        return false;
    }
    let covers = |a: SocketAddr, b: SocketAddr| a.ip().is_unspecified() || a.ip() == b.ip();
    match (want, have) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
            covers(want, have) || covers(have, want)
        }
        // A dual-stack `[::]` takes every IPv4 address of its port too.
        (SocketAddr::V4(_), SocketAddr::V6(_)) => have.ip().is_unspecified() && !have_v6_only,
        (SocketAddr::V6(_), SocketAddr::V4(_)) => false,
    }
}

/// Whether an IPv6 socket takes IPv6 alone (IPV6_V6ONLY, systemd's
/// `BindIPv6Only=ipv6-only`); false for IPv4 sockets.
fn v6_only(l: &TcpListener) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let r = unsafe {
        libc::getsockopt(
            l.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    r == 0 && value != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_only_for_this_process() {
        let half = Some(Duration::from_millis(500));
        assert_eq!(watchdog_interval(Some("1000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("1000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("1000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    #[test]
    fn listen_fds_only_for_this_process() {
        assert_eq!(passed_fds(Some("7"), Some("2"), 7), 2);
        assert_eq!(passed_fds(Some("8"), Some("2"), 7), 0);
        assert_eq!(passed_fds(None, Some("2"), 7), 0);
        assert_eq!(passed_fds(Some("7"), None, 7), 0);
        assert_eq!(passed_fds(Some("7"), Some("x"), 7), 0);
    }

    #[test]
    fn notify_socket_names() {
        let (_, addr) = connect("@roost/notify").unwrap();
        assert_eq!(addr.as_abstract_name(), Some(&b"roost/notify"[..]));
        let (_, addr) = connect("/run/systemd/notify").unwrap();
        assert_eq!(
            addr.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert!(connect("vsock:2:1234").is_err());
    }

    #[test]
    fn wildcard_listeners_match_across_families() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(same_listener(a("0.0.0.0:1883"), a("[::]:1883")));
        assert!(same_listener(a("127.0.0.1:1883"), a("127.0.0.1:1883")));
        assert!(!same_listener(a("127.0.0.1:1883"), a("[::]:1883")));
        assert!(!same_listener(a("0.0.0.0:1883"), a("[::]:1884")));
    }

    #[test]
    fn plan_adopts_matching_sockets_and_binds_the_rest() {
        let passed = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = passed.local_addr().unwrap();
        let other: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let plan = plan(&[(1, other), (2, addr)], vec![passed], 0).unwrap();
        assert!(matches!(plan[0], (1, Listen::Bind(a)) if a == other));
        assert!(matches!(&plan[1], (2, Listen::Passed(l)) if l.local_addr().unwrap() == addr));
    }

    #[test]
    fn plan_uses_every_passed_socket_when_none_is_configured() {
        let passed = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(matches!(
            plan::<u8>(&[], vec![passed], 7).unwrap()[..],
            [(7, Listen::Passed(_))]
        ));
    }

    #[test]
    fn a_dual_stack_socket_serves_both_families_of_a_listener() {
        let passed = match TcpListener::bind("[::]:0") {
            Ok(l) => l,
            Err(e) => return eprintln!("SKIPPED: no IPv6 here ({e})"),
        };
        let port = passed.local_addr().unwrap().port();
        let both = [
            (0, SocketAddr::from(([0, 0, 0, 0], port))),
            (0, SocketAddr::from(([0u16; 8], port))),
        ];
        assert!(matches!(
            plan(&both, vec![passed], 0).unwrap()[..],
            [(0, Listen::Passed(_))]
        ));
    }

    #[test]
    fn overlapping_sockets_and_listeners() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        // systemd's dual-stack [::]:1883 takes 127.0.0.1:1883 and 0.0.0.0:1883.
        assert!(overlap(a("127.0.0.1:1883"), a("[::]:1883"), false));
        assert!(!overlap(a("127.0.0.1:1883"), a("[::]:1883"), true));
        assert!(overlap(a("[::1]:1883"), a("[::]:1883"), false));
        // A specific socket is in the way of a wildcard listener.
        assert!(overlap(a("0.0.0.0:1883"), a("127.0.0.1:1883"), false));
        assert!(!overlap(a("127.0.0.2:1883"), a("127.0.0.1:1883"), false));
        assert!(!overlap(a("127.0.0.1:1884"), a("[::]:1883"), false));
        // roost's own IPv6 sockets are IPv6-only.
        assert!(!overlap(a("[::]:1883"), a("127.0.0.1:1883"), false));
    }

    #[test]
    fn plan_refuses_a_socket_that_overlaps_a_listener() {
        let passed = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = passed.local_addr().unwrap().port();
        let want = SocketAddr::from(([127, 0, 0, 1], port));
        let e = plan(&[(0, want)], vec![passed], 0).err().unwrap();
        assert!(e.contains(&format!("listener 127.0.0.1:{port}")), "{e}");
        assert!(e.contains(&format!("socket 0.0.0.0:{port}")), "{e}");
        assert!(e.contains("systemctl disable --now roost.socket"), "{e}");
    }

    #[test]
    fn plan_refuses_a_socket_no_listener_wants() {
        let passed = TcpListener::bind("127.0.0.1:0").unwrap();
        let have = passed.local_addr().unwrap();
        let want: SocketAddr = "127.0.0.2:0".parse().unwrap();
        let e = plan(&[(0, want)], vec![passed], 0).err().unwrap();
        assert!(e.contains(&format!("socket {have}")), "{e}");
        assert!(
            e.contains("matches no listener in the config (127.0.0.2:0)"),
            "{e}"
        );
    }
}
