//! Listeners: the sockets roost opens and what they speak. `listener`
//! lines open blocks; the keys after one belong to it, and before any to
//! the default listener (`port`, `bind_address`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::QoS;

use super::keys::{
    Key,
    Reload::{Applied, Restart},
    Scope::Global,
    Scope::Listener as Each,
};
use super::reader::{Line, cut};
use super::{Located, Parser, Settings, tls};

pub const DEFAULT_PORT: u16 = 1883;
/// The largest WebSocket upgrade request read unless
/// `websockets_headers_size` says otherwise (mosquitto 2.1's default).
pub(super) const DEFAULT_HEADERS_SIZE: u16 = 4096;

pub(super) const KEYS: &[Key] = &[
    Key::set(
        "listener",
        Global,
        Restart,
        "a listener on PORT, on every interface or on ADDR (an IP address or host name); \
         `listener 0 PATH`: on a Unix socket",
        listener,
    )
    .words(),
    Key::set(
        "port",
        Global,
        Restart,
        "the port of the default listener",
        |p, l| {
            p.blocks[0].port = Some(l.number()?);
            Ok(())
        },
    ),
    Key::set(
        "bind_address",
        Global,
        Restart,
        "the address of the default listener (an IP address or host name)",
        |p, l| {
            p.blocks[0].host = Some(host(l.value));
            Ok(())
        },
    )
    .text(),
    Key::set(
        "bind_interface",
        Each,
        Restart,
        "the listener takes connections that come in through this network interface only",
        |p, l| {
            p.block().interface = Some((l.value.to_owned(), l.at.into()));
            Ok(())
        },
    )
    .text(),
    Key::set(
        "socket_domain",
        Each,
        Restart,
        "the listener's sockets of one address family only",
        |p, l| {
            let domain = match l.value {
                "ipv4" => Domain::V4,
                "ipv6" => Domain::V6,
                v => return Err(format!("`socket_domain` takes ipv4 or ipv6, not `{v}`")),
            };
            p.block().domain = Some((domain, l.at.into()));
            Ok(())
        },
    ),
    Key::set(
        "protocol",
        Each,
        Restart,
        "what the listener speaks: MQTT, or MQTT over WebSockets",
        |p, l| {
            let protocol = match l.value {
                "mqtt" => Protocol::Mqtt,
                "websockets" => Protocol::WebSockets,
                v => return Err(format!("`protocol` takes mqtt or websockets, not `{v}`")),
            };
            p.block().protocol = Some((protocol, l.at.into()));
            Ok(())
        },
    ),
    Key::set(
        "max_qos",
        Each,
        Restart,
        "the highest QoS the listener's clients may publish with and are granted",
        max_qos,
    ),
    Key::set(
        "maximum_qos",
        Each,
        Restart,
        "the same as `max_qos`",
        max_qos,
    ),
    Key::set(
        "websockets_headers_size",
        Global,
        Restart,
        "the largest WebSocket upgrade request read",
        |p, l| {
            // 0: the default, as in mosquitto.
            p.s.websockets_headers_size = match l.number()? {
                0 => DEFAULT_HEADERS_SIZE,
                v => v,
            };
            Ok(())
        },
    ),
    Key::set(
        "max_connections",
        Global,
        Restart,
        "the most client connections, all listeners together",
        |p, l| {
            let v: i64 = l.number()?;
            p.s.max_connections = usize::try_from(v).ok();
            Ok(())
        },
    ),
    Key::set(
        "connect_timeout",
        Global,
        Applied,
        "how long a new connection may take to send CONNECT",
        |p, l| {
            p.s.broker.connect_timeout = Duration::from_secs(l.number()?);
            Ok(())
        },
    )
    .own(),
];

fn max_qos(p: &mut Parser, l: &Line) -> Result<(), String> {
    let qos = l
        .number()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| format!("`{}` takes 0, 1 or 2, not `{}`", l.key, l.value))?;
    p.block().max_qos = Some((qos, l.at.into()));
    Ok(())
}

/// `listener PORT [ADDR]`: as mosquitto reads it, what follows the
/// address is ignored, and an address starting with `#` is a comment.
/// Port 0 with an address that is not an IP address (or `localhost`) is
/// a Unix socket at that path, as in mosquitto 2.0; with one it is roost's
/// own: a TCP port the system picks (for tests).
fn listener(p: &mut Parser, l: &Line) -> Result<(), String> {
    let (port, after) = cut(l.value);
    let (host, after) = cut(after);
    let port = super::number(l.key, port)?;
    let host = match host {
        "" => None,
        h if h.starts_with('#') => None,
        h => {
            p.ignored(l.at, l.key, after);
            Some(match self::host(h) {
                Host::Name(_) if port == 0 => Host::Unix(h.into()),
                host => host,
            })
        }
    };
    if p.blocks.len() > usize::from(u8::MAX) {
        return Err("more than 255 listeners".into());
    }
    p.blocks.push(Block {
        port: Some(port),
        host,
        ..Block::default()
    });
    Ok(())
}

/// One listener: the sockets it opens and the rules its clients meet.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub address: Address,
    /// `bind_interface`: connections through this network interface only.
    pub interface: Option<String>,
    /// Index into [`Settings::security`] and [`crate::broker::Config::auth`].
    pub auth: u8,
    pub protocol: Protocol,
    /// `certfile` and the rest: TLS on every socket (under WebSockets'
    /// framing on a `protocol websockets` listener); None without.
    pub tls: Option<crate::tls::Server>,
    /// `max_qos`: the highest QoS its clients may publish with and are
    /// granted.
    pub max_qos: QoS,
}

/// Where a listener listens.
#[derive(Debug, Clone, PartialEq)]
pub enum Address {
    /// These TCP sockets. Without an address (or with `localhost`) a
    /// listener has an IPv4 and an IPv6 socket, as in mosquitto;
    /// `socket_domain` keeps one of them.
    Ip(Vec<SocketAddr>),
    /// A socket on every address a host name has (of `domain` only, when
    /// set), looked up when roost starts (getaddrinfo, as mosquitto), not
    /// when the file is read: a reload does not wait on DNS.
    Name {
        name: String,
        port: u16,
        domain: Option<Domain>,
    },
    /// A Unix domain socket (`listener 0 PATH`).
    Unix(PathBuf),
}

impl Address {
    /// The TCP sockets to bind, a host name looked up now; none for a
    /// Unix socket.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>, String> {
        let Address::Name { name, port, domain } = self else {
            return Ok(match self {
                Address::Ip(addrs) => addrs.clone(),
                _ => Vec::new(),
            });
        };
        let found = (name.as_str(), *port)
            .to_socket_addrs()
            .map_err(|e| format!("listener {self}: cannot resolve `{name}`: {e}"))?;
        let mut addrs: Vec<SocketAddr> = Vec::new();
        // /etc/hosts may name an address twice.
        for a in found.filter(|a| in_domain(a.ip(), *domain)) {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        if addrs.is_empty() {
            return Err(format!(
                "listener {self}: `{name}` has no address of the family `socket_domain` asks for"
            ));
        }
        Ok(addrs)
    }
}

impl Address {
    /// The port: mosquitto's 0 for a Unix socket.
    pub fn port(&self) -> u16 {
        match self {
            Address::Ip(addrs) => addrs.first().map_or(0, SocketAddr::port),
            Address::Name { port, .. } => *port,
            Address::Unix(_) => 0,
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Ip(addrs) => match addrs.first() {
                Some(a) => write!(f, "{a}"),
                None => f.write_str("(no address)"),
            },
            Address::Name { name, port, .. } => write!(f, "{name}:{port}"),
            Address::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What a listener speaks (mosquitto's `protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Protocol {
    #[default]
    Mqtt,
    /// MQTT over WebSockets (`src/net/ws.rs`).
    WebSockets,
}

/// Where a listener binds, as written.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Host {
    Ip(IpAddr),
    /// Both loopback addresses, as `localhost` resolves.
    Localhost,
    /// A host name, looked up at start.
    Name(String),
    /// A Unix socket's path (`listener 0 PATH`).
    Unix(PathBuf),
}

/// `socket_domain`: one address family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Domain {
    V4,
    V6,
}

/// The default listener (`port`, `bind_address`) or a `listener` line,
/// with the keys that apply to it when written after it.
#[derive(Default)]
pub(super) struct Block {
    pub port: Option<u16>,
    pub host: Option<Host>,
    pub domain: Option<Located<Domain>>,
    pub protocol: Option<Located<Protocol>>,
    pub max_qos: Option<Located<QoS>>,
    pub interface: Option<Located<String>>,
    pub password_file: Option<Located<PathBuf>>,
    pub acl_file: Option<Located<PathBuf>>,
    pub allow_anonymous: Option<Located<bool>>,
    pub tls: tls::Keys,
}

impl Block {
    /// What a reload calls block `index`'s listener: `listener 1883
    /// 127.0.0.1`, or the default listener.
    pub fn place(&self, index: usize) -> String {
        match index {
            0 => "the default listener".into(),
            _ => format!("listener {}", self.address()),
        }
    }

    /// Its `listener` line's value: `1883`, `1883 127.0.0.1`.
    pub fn address(&self) -> String {
        let port = self.port.unwrap_or(DEFAULT_PORT);
        match &self.host {
            Some(Host::Ip(ip)) => format!("{port} {ip}"),
            Some(Host::Localhost) => format!("{port} localhost"),
            Some(Host::Name(name)) => format!("{port} {name}"),
            Some(Host::Unix(path)) => format!("{port} {}", path.display()),
            None => port.to_string(),
        }
    }

    /// Whether the block configures a listener (`listener`, `port` or
    /// `bind_address`).
    pub fn configured(&self) -> bool {
        self.port.is_some() || self.host.is_some()
    }
}

impl Settings {
    /// The listeners to open: the configured ones, or localhost:1883 (as
    /// mosquitto 2 does when none is configured).
    pub fn listen_on(&self) -> Vec<Listener> {
        if self.listeners.is_empty() {
            vec![Listener {
                address: Address::Ip(host_addrs(Some(&Host::Localhost), None, DEFAULT_PORT)),
                interface: None,
                auth: 0,
                protocol: Protocol::Mqtt,
                tls: None,
                max_qos: QoS::ExactlyOnce,
            }]
        } else {
            self.listeners.clone()
        }
    }

    /// Every IP address [`Settings::listen_on`] binds, host names looked
    /// up.
    pub fn listen_addrs(&self) -> Result<Vec<SocketAddr>, String> {
        let mut addrs = Vec::new();
        for l in self.listen_on() {
            addrs.extend(l.address.resolve()?);
        }
        Ok(addrs)
    }

    /// The paths of the Unix socket listeners.
    pub fn unix_sockets(&self) -> Vec<PathBuf> {
        let paths = self.listeners.iter().filter_map(|l| match &l.address {
            Address::Unix(path) => Some(path.clone()),
            _ => None,
        });
        paths.collect()
    }

    /// `-p`/`--bind`: one MQTT listener on `addr` in place of the
    /// configured ones, with the rules (and TLS) of the first of them.
    pub fn replace_listeners(&mut self, addr: SocketAddr) {
        let first = self.listen_on().swap_remove(0);
        self.listeners = vec![Listener {
            address: Address::Ip(vec![addr]),
            interface: None,
            protocol: Protocol::Mqtt,
            ..first
        }];
    }
}

/// Refuses listener keys before the first `listener` line when the
/// default listener they would belong to is not used.
pub(super) fn check_default(blocks: &[Block]) -> Result<(), String> {
    let default = &blocks[0];
    let default_used = default.configured() || blocks.len() == 1;
    let listener_key = [
        ("socket_domain", default.domain.as_ref().map(|(_, at)| at)),
        (
            "bind_interface",
            default.interface.as_ref().map(|(_, at)| at),
        ),
        ("protocol", default.protocol.as_ref().map(|(_, at)| at)),
        (
            "max_qos",
            // `max_qos 2` asks for nothing.
            default
                .max_qos
                .as_ref()
                .filter(|(q, _)| *q < QoS::ExactlyOnce)
                .map(|(_, at)| at),
        ),
    ]
    .into_iter()
    .find_map(|(key, at)| Some((key, at?.as_str())))
    .or_else(|| default.tls.first_set());
    if let (false, Some((key, at))) = (default_used, listener_key) {
        return Err(format!(
            "{at}: `{key}` comes before any `listener` line: it belongs \
             to the default listener (`port`, `bind_address`), which is not configured"
        ));
    }
    Ok(())
}

/// The listeners of the blocks, each with the rules of its own block
/// with `per_listener_settings`, else the shared ones.
pub(super) fn finish(
    blocks: &[Block],
    per_listener: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<Listener>, String> {
    let mut listeners = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let domain = b.domain.as_ref().map(|(d, _)| *d);
        let protocol = b.protocol.as_ref().map_or(Protocol::Mqtt, |(p, _)| *p);
        let max_qos = b.max_qos.as_ref().map_or(QoS::ExactlyOnce, |(q, _)| *q);
        if i == 0 && !b.configured() {
            // No `port`/`bind_address`: used only when no listener is
            // configured; its `socket_domain` then narrows localhost,
            // its `protocol` applies and its TLS keys make it a TLS
            // listener.
            let tls = b.tls.finish(warnings)?;
            let keys = domain.is_some()
                || b.interface.is_some()
                || b.protocol.is_some()
                || tls.is_some()
                || max_qos < QoS::ExactlyOnce;
            if blocks.len() == 1 && keys {
                listeners.push(Listener {
                    address: Address::Ip(host_addrs(Some(&Host::Localhost), domain, DEFAULT_PORT)),
                    interface: b.interface.as_ref().map(|(i, _)| i.clone()),
                    auth: 0,
                    protocol,
                    tls,
                    max_qos,
                });
            }
            continue;
        }
        let port = b.port.unwrap_or(DEFAULT_PORT);
        let address = match &b.host {
            Some(Host::Unix(path)) => {
                if let Some((_, at)) = b.protocol.as_ref().filter(|(p, _)| *p != Protocol::Mqtt) {
                    return Err(format!(
                        "{at}: a Unix socket listener speaks MQTT only (mosquitto does not \
                         start with WebSockets on one either)"
                    ));
                }
                // Accepted, as by mosquitto, but said to do nothing.
                let unused = [
                    ("socket_domain", b.domain.as_ref().map(|(_, at)| at)),
                    ("bind_interface", b.interface.as_ref().map(|(_, at)| at)),
                ];
                for (key, at) in unused {
                    if let Some(at) = at {
                        warnings.push(format!(
                            "{at}: `{key}` does nothing on a Unix socket listener"
                        ));
                    }
                }
                Address::Unix(path.clone())
            }
            Some(Host::Name(name)) => Address::Name {
                name: name.clone(),
                port,
                domain,
            },
            host => {
                let addrs = host_addrs(host.as_ref(), domain, port);
                if let (true, Some((_, at))) = (addrs.is_empty(), &b.domain) {
                    return Err(format!(
                        "{at}: `socket_domain` leaves its listener no address"
                    ));
                }
                Address::Ip(addrs)
            }
        };
        let auth = if per_listener { i as u8 } else { 0 };
        let interface = match address {
            Address::Unix(_) => None,
            _ => b.interface.as_ref().map(|(i, _)| i.clone()),
        };
        listeners.push(Listener {
            address,
            interface,
            auth,
            protocol,
            tls: b.tls.finish(warnings)?,
            max_qos,
        });
    }
    Ok(listeners)
}

/// The sockets of a listener on `host` (None: every interface), an IP
/// address or `localhost`.
fn host_addrs(host: Option<&Host>, domain: Option<Domain>, port: u16) -> Vec<SocketAddr> {
    let ips: Vec<IpAddr> = match host {
        Some(Host::Ip(ip)) => vec![*ip],
        Some(Host::Localhost) => vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()],
        _ => vec![Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()],
    };
    ips.into_iter()
        .filter(|&ip| in_domain(ip, domain))
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

fn in_domain(ip: IpAddr, domain: Option<Domain>) -> bool {
    match domain {
        Some(Domain::V4) => ip.is_ipv4(),
        Some(Domain::V6) => ip.is_ipv6(),
        None => true,
    }
}

fn host(v: &str) -> Host {
    match v {
        "localhost" => Host::Localhost,
        _ => v.parse().map_or_else(|_| Host::Name(v.into()), Host::Ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn addrs(list: &[&str]) -> Result<Vec<SocketAddr>, String> {
        Ok(list.iter().map(|a| a.parse().unwrap()).collect())
    }

    #[test]
    fn listeners_and_limits() {
        let s = parse(
            "# gateway\nlistener 1884 127.0.0.1\nlistener 8883\n\nmax_connections -1\n\
             max_inflight_messages 5\nmax_queued_messages 10\nmax_packet_size 4096\n\
             allow_anonymous true\nmax_outgoing_bytes 1000\nconnect_timeout 3\n\
             max_queued_bytes 5000\nmessage_size_limit 100\nretain_available false\n",
            "t.conf",
        )
        .unwrap();
        // Without an address: IPv4 and IPv6, as mosquitto.
        assert_eq!(
            s.listen_addrs(),
            addrs(&["127.0.0.1:1884", "0.0.0.0:8883", "[::]:8883"])
        );
        assert_eq!(s.max_connections, None);
        assert_eq!(s.broker.max_inflight, 5);
        assert_eq!(s.broker.max_queued, 10);
        assert_eq!(s.broker.max_queued_bytes, 5000);
        assert_eq!(s.broker.max_packet_size, 4096);
        assert_eq!(s.broker.message_size_limit, 100);
        assert!(!s.broker.retain_available);
        assert_eq!(s.broker.max_outgoing, 1000);
        assert_eq!(s.broker.connect_timeout, Duration::from_secs(3));
        assert!(s.check().is_ok());
        let e = parse("message_size_limit 268435456\n", "t.conf").unwrap_err();
        assert!(e.contains("268435455"), "{e}");
    }

    #[test]
    fn default_listener_is_localhost() {
        let s = parse("", "t.conf").unwrap();
        assert_eq!(s.listen_addrs(), addrs(&["127.0.0.1:1883", "[::1]:1883"]));
        let s = parse("port 1999\nbind_address 127.0.0.2\n", "t.conf").unwrap();
        assert_eq!(s.listen_addrs(), addrs(&["127.0.0.2:1999"]));
        let s = parse("socket_domain ipv6\n", "t.conf").unwrap();
        assert_eq!(s.listen_addrs(), addrs(&["[::1]:1883"]));
    }

    #[test]
    fn socket_domain_keeps_one_family_of_its_listener() {
        let s = parse(
            "listener 1 localhost\nsocket_domain ipv4\nlistener 2\nsocket_domain ipv6\n\
             listener 3 ::1\nlistener 4\n",
            "t.conf",
        )
        .unwrap();
        assert_eq!(
            s.listen_addrs(),
            addrs(&["127.0.0.1:1", "[::]:2", "[::1]:3", "0.0.0.0:4", "[::]:4"])
        );
        let e = parse("listener 5 127.0.0.1\nsocket_domain ipv6\n", "t.conf").unwrap_err();
        assert_eq!(
            e,
            "t.conf:2: `socket_domain` leaves its listener no address"
        );
        let e = parse("socket_domain ipv4\nlistener 5\n", "t.conf").unwrap_err();
        assert!(
            e.starts_with("t.conf:1: `socket_domain` comes before any"),
            "{e}"
        );
        let e = parse("socket_domain ipv5\n", "t.conf").unwrap_err();
        assert!(e.starts_with("t.conf:1: "), "{e}");
    }

    #[test]
    fn host_names_and_unix_sockets() {
        let s = parse(
            "listener 1 gw.example # a name\nsocket_domain ipv4\nlistener 0 /run/r.sock\n\
             listener 0 127.0.0.1\nlistener 2 localhost\nbind_interface eth0\n",
            "t.conf",
        )
        .unwrap();
        let at: Vec<&Address> = s.listeners.iter().map(|l| &l.address).collect();
        let name = Address::Name {
            name: "gw.example".into(),
            port: 1,
            domain: Some(Domain::V4),
        };
        // Port 0 and an IP address: roost's own, a port the system picks.
        let ip = Address::Ip(vec!["127.0.0.1:0".parse().unwrap()]);
        assert_eq!(at[..3], [&name, &Address::Unix("/run/r.sock".into()), &ip]);
        assert_eq!(s.listeners[3].interface.as_deref(), Some("eth0"));
        assert_eq!(s.unix_sockets(), [PathBuf::from("/run/r.sock")]);
        let s = parse("bind_address gw.example\n", "t.conf").unwrap();
        assert_eq!(s.listeners[0].address.to_string(), "gw.example:1883");
        // Looked up when asked.
        let localhost = Address::Name {
            name: "localhost".into(),
            port: 7,
            domain: Some(Domain::V4),
        };
        assert_eq!(localhost.resolve(), addrs(&["127.0.0.1:7"]));
    }

    #[test]
    fn max_qos_is_set_per_listener() {
        let s = parse(
            "listener 1\nmax_qos 1\nlistener 2\nlistener 3\nmaximum_qos 0 # as mosquitto\n",
            "t.conf",
        )
        .unwrap();
        let max: Vec<QoS> = s.listeners.iter().map(|l| l.max_qos).collect();
        use QoS::{AtLeastOnce, AtMostOnce, ExactlyOnce};
        assert_eq!(max, [AtLeastOnce, ExactlyOnce, AtMostOnce]);
        // Before any listener: the default listener's.
        assert_eq!(
            parse("max_qos 0\n", "t.conf").unwrap().listen_on()[0].max_qos,
            AtMostOnce
        );
        let e = parse("max_qos 1\nlistener 1\n", "t.conf").unwrap_err();
        assert!(e.starts_with("t.conf:1: `max_qos` comes before any"), "{e}");
        assert!(parse("max_qos 2\nlistener 1\n", "t.conf").is_ok());
        for bad in ["max_qos 3", "max_qos x", "max_qos -1"] {
            let e = parse(bad, "t.conf").unwrap_err();
            assert!(e.contains("takes 0, 1 or 2"), "{bad}: {e}");
        }
    }

    #[test]
    fn protocol_is_set_per_listener() {
        let s = parse(
            "listener 1883 127.0.0.1\nlistener 8080 127.0.0.1\nprotocol websockets\n\
             listener 1884 127.0.0.1\nprotocol mqtt\nwebsockets_headers_size 8192\n",
            "t.conf",
        )
        .unwrap();
        let protocols: Vec<Protocol> = s.listeners.iter().map(|l| l.protocol).collect();
        use Protocol::{Mqtt, WebSockets};
        assert_eq!(protocols, [Mqtt, WebSockets, Mqtt]);
        assert_eq!(s.websockets_headers_size, 8192);
        // Before any listener: the default listener's, as `socket_domain`.
        let s = parse("protocol websockets\n", "t.conf").unwrap();
        assert_eq!(s.listen_on()[0].protocol, WebSockets);
        assert_eq!(s.listen_addrs(), addrs(&["127.0.0.1:1883", "[::1]:1883"]));
        let s = parse("port 8080\nprotocol websockets\n", "t.conf").unwrap();
        assert_eq!(s.listen_on()[0].protocol, WebSockets);
        let e = parse("protocol websockets\nlistener 1\n", "t.conf").unwrap_err();
        assert!(
            e.starts_with("t.conf:1: `protocol` comes before any"),
            "{e}"
        );
        // mosquitto's 0 is the default; its range is 0 to 65535.
        let size = |v: &str| {
            parse(&format!("websockets_headers_size {v}\n"), "t.conf")
                .map(|s| s.websockets_headers_size)
        };
        assert_eq!(size("0"), Ok(DEFAULT_HEADERS_SIZE));
        assert!(size("65536").unwrap_err().starts_with("t.conf:1: "));
        let e = parse("protocol http\n", "t.conf").unwrap_err();
        assert!(e.contains("mqtt or websockets"), "{e}");
    }
}
