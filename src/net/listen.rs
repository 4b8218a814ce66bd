//! The listening sockets: those systemd passed, and the ones roost binds
//! itself. Those are made by hand, because an IPv6 socket must be set
//! IPv6-only before it is bound (std and mio offer no way to): a listener
//! without an address then binds `0.0.0.0` and `[::]` on one port, as
//! mosquitto does. `bind_interface` is set before binding, too.

use std::ffi::CString;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::stream::Listening;
use super::systemd::{self, Listen};
use super::unix;
use crate::config::{Address, Listener, Settings};

/// What binding would find wrong, found without binding (for
/// `--check-config`, and at start before any socket is opened): a host
/// name that does not resolve, a network interface that does not exist,
/// a Unix socket's path that cannot be used.
pub fn check(listeners: &[Listener]) -> Result<(), String> {
    check_unresolved(listeners)?;
    sockets(listeners).map(drop)
}

/// [`check`] but for host names, which [`sockets`] looks up.
fn check_unresolved(listeners: &[Listener]) -> Result<(), String> {
    for l in listeners {
        if let Address::Unix(path) = &l.address {
            unix::check(path)?;
        }
        if let Some(name) = &l.interface {
            interface(name).map_err(|e| format!("listener {}: {e}", l.address))?;
        }
    }
    Ok(())
}

/// How many connections may wait to be accepted (as mio's bind).
const BACKLOG: libc::c_int = 1024;

/// Every listening socket, each with the index of its listener in
/// `listeners` (`Settings::listen_on`). systemd passes TCP sockets only:
/// Unix ones roost always makes itself.
pub fn open(settings: &Settings, listeners: &[Listener]) -> io::Result<Vec<(Listening, usize)>> {
    check_unresolved(listeners).map_err(io::Error::other)?;
    let tcp = sockets(listeners).map_err(io::Error::other)?;
    let passed = systemd::listen_fds()?;
    let plan = if passed.is_empty() {
        tcp.into_iter()
            .map(|(tag, addr)| (tag, Listen::Bind(addr)))
            .collect()
    } else {
        log::info!("socket activation: {} socket(s) from systemd", passed.len());
        // With no listener configured, `listeners` holds the default one.
        let configured = if settings.listeners.is_empty() {
            Vec::new()
        } else {
            tcp
        };
        systemd::plan(&configured, passed, (0, false)).map_err(io::Error::other)?
    };
    let mut open = Vec::new();
    for ((index, optional), listen) in plan {
        let interface = listeners.get(index).and_then(|l| l.interface.as_deref());
        let listener = match listen {
            Listen::Passed(l) => {
                let addr = l.local_addr()?;
                settings
                    .check_listener(listeners[index].auth, addr)
                    .map_err(io::Error::other)?;
                if let Some(name) = interface {
                    let msg = format!(
                        "listener {addr} has `bind_interface {name}`, but its socket comes \
                         from systemd: set BindToDevice={name} in roost.socket instead"
                    );
                    return Err(io::Error::other(msg));
                }
                l
            }
            Listen::Bind(addr) => match bind(addr, interface) {
                Ok(l) => l,
                Err(e) if optional && family_missing(&e) => {
                    log::warn!("cannot listen on {addr}: {e}; skipping it");
                    continue;
                }
                Err(e) => {
                    let msg = format!("cannot listen on {addr}: {e}");
                    return Err(io::Error::new(e.kind(), msg));
                }
            },
        };
        open.push((
            Listening::Tcp(mio::net::TcpListener::from_std(listener)),
            index,
        ));
    }
    for (index, l) in listeners.iter().enumerate() {
        if let Address::Unix(path) = &l.address {
            let listener = unix::bind(path).map_err(io::Error::other)?;
            open.push((
                Listening::Unix(mio::net::UnixListener::from_std(listener)),
                index,
            ));
        }
    }
    Ok(open)
}

/// A socket's listener (its index) and whether it may be skipped.
type Tag = (usize, bool);

/// Each TCP address with its listener's index, and whether it is one of
/// several a listener has (without an address, or `localhost`, or a host
/// name with more than one): on a machine without IPv6 the others serve
/// alone. Host names are looked up now.
fn sockets(listeners: &[Listener]) -> Result<Vec<(Tag, SocketAddr)>, String> {
    let mut sockets = Vec::new();
    for (index, l) in listeners.iter().enumerate() {
        let addrs = l.address.resolve()?;
        let optional = addrs.len() > 1;
        sockets.extend(addrs.into_iter().map(|a| ((index, optional), a)));
    }
    Ok(sockets)
}

/// Refuses a network interface that does not exist.
fn interface(name: &str) -> Result<CString, String> {
    let no_such = || format!("bind_interface {name}: there is no such network interface");
    let c_name = CString::new(name).map_err(|_| no_such())?;
    // SAFETY: a NUL-terminated string that outlives the call.
    if unsafe { libc::if_nametoindex(c_name.as_ptr()) } == 0 {
        return Err(no_such());
    }
    Ok(c_name)
}

/// A non-blocking listening socket on `addr`; IPv6 ones take IPv6 only
/// (IPV6_V6ONLY, as mosquitto sets it). With `interface` it takes only
/// connections that come in through that network interface
/// (SO_BINDTODEVICE).
fn bind(addr: SocketAddr, interface: Option<&str>) -> io::Result<TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let kind = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket(2) has no memory arguments; the fd is owned at once.
    let fd = unsafe { libc::socket(family, kind, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nothing else refers to.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    enable(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    if let Some(name) = interface {
        let c_name = self::interface(name).map_err(io::Error::other)?;
        let len = c_name.as_bytes_with_nul().len() as libc::socklen_t;
        // SAFETY: setsockopt reads `len` bytes of the name.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                c_name.as_ptr().cast(),
                len,
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("bind_interface {name}: {e}"),
            ));
        }
    }
    let r = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_in is plain data; zero is a valid value.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = a.port().to_be();
            sa.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            // SAFETY: `sa` is a sockaddr_in of the size given.
            unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const sa).cast(),
                    socklen::<libc::sockaddr_in>(),
                )
            }
        }
        SocketAddr::V6(a) => {
            enable(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)?;
            // SAFETY: sockaddr_in6 is plain data; zero is a valid value.
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_port = a.port().to_be();
            sa.sin6_addr.s6_addr = a.ip().octets();
            sa.sin6_flowinfo = a.flowinfo();
            sa.sin6_scope_id = a.scope_id();
            // SAFETY: `sa` is a sockaddr_in6 of the size given.
            unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const sa).cast(),
                    socklen::<libc::sockaddr_in6>(),
                )
            }
        }
    };
    // SAFETY: listen(2) on an fd we own.
    if r != 0 || unsafe { libc::listen(fd.as_raw_fd(), BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}

/// Whether a bind failed only because this machine lacks the address
/// family (IPv6 disabled, or no `::1`).
fn family_missing(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EAFNOSUPPORT) || e.kind() == io::ErrorKind::AddrNotAvailable
}

fn enable(fd: &OwnedFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `len` bytes from `one`.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const one).cast(),
            socklen::<libc::c_int>(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn socklen<T>() -> libc::socklen_t {
    std::mem::size_of::<T>() as libc::socklen_t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_share_a_port() {
        let v4 = bind("0.0.0.0:0".parse().unwrap(), None).unwrap();
        let port = v4.local_addr().unwrap().port();
        match bind(SocketAddr::new("::".parse().unwrap(), port), None) {
            Ok(v6) => assert_eq!(v6.local_addr().unwrap().port(), port),
            Err(e) if family_missing(&e) => eprintln!("SKIPPED: no IPv6 here ({e})"),
            Err(e) => panic!("[::]:{port} next to 0.0.0.0:{port}: {e}"),
        }
        let taken = bind(SocketAddr::new("0.0.0.0".parse().unwrap(), port), None).unwrap_err();
        assert_eq!(taken.kind(), io::ErrorKind::AddrInUse);
    }
}
