//! Settings from a mosquitto.conf-style file: `key value` lines, `#`
//! comments. A key roost does not know is an error naming file and line,
//! never silently ignored: a gateway owner must not believe a setting of
//! their old mosquitto.conf took effect when it did not.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use crate::{auth, broker};

pub const DEFAULT_PORT: u16 = 1883;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen; empty means the default, 127.0.0.1:1883.
    pub listeners: Vec<SocketAddr>,
    /// Whether `allow_anonymous` was set explicitly.
    pub anonymous_explicit: bool,
    /// mosquitto_passwd-format users and password hashes.
    pub password_file: Option<PathBuf>,
    /// mosquitto-format access control list.
    pub acl_file: Option<PathBuf>,
    /// Most simultaneous client connections; None for no limit.
    pub max_connections: Option<usize>,
    /// Unsent bytes a connection may hold before QoS 0 messages to it are
    /// dropped and it is no longer read from.
    pub max_outgoing_bytes: usize,
    /// How often `$SYS` is published; zero for never.
    pub sys_interval: Duration,
    /// Heap bytes past which new messages and connections are refused;
    /// 0 for no limit.
    pub memory_limit: usize,
    pub broker: broker::Config,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listeners: Vec::new(),
            anonymous_explicit: false,
            password_file: None,
            acl_file: None,
            max_connections: None,
            max_outgoing_bytes: 256 * 1024,
            sys_interval: Duration::from_secs(10),
            memory_limit: 0,
            broker: broker::Config::default(),
        }
    }
}

impl Settings {
    /// The listeners to open: the configured ones, or loopback:1883 (as
    /// mosquitto 2 does when none is configured).
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        if self.listeners.is_empty() {
            vec![SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                DEFAULT_PORT,
            )]
        } else {
            self.listeners.clone()
        }
    }

    /// Reads the password and ACL files named in the config. Called at
    /// start-up and again to reload them (see [`broker::Broker::set_access`]).
    pub fn load_access(&self) -> Result<Option<Rc<dyn broker::Access>>, String> {
        auth::load(self.password_file.as_deref(), self.acl_file.as_deref())
    }

    /// Refuses an open door: a listener reachable from the network accepts
    /// anonymous clients only when the config says so explicitly. (With a
    /// password file anonymous clients are refused unless allowed.)
    pub fn check(&self) -> Result<(), String> {
        self.check_listeners(&self.listen_addrs())
    }

    /// `check` for listeners whose address is only known at start-up
    /// (sockets passed by systemd).
    pub fn check_listeners(&self, addrs: &[SocketAddr]) -> Result<(), String> {
        if self.anonymous_explicit || !self.broker.allow_anonymous {
            return Ok(());
        }
        match addrs.iter().find(|a| !a.ip().is_loopback()) {
            Some(addr) => Err(format!(
                "listener {addr} is reachable from the network: set `password_file`, \
                 or `allow_anonymous true` to accept clients without a password there"
            )),
            None => Ok(()),
        }
    }
}

pub fn load(path: &Path) -> Result<Settings, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// Parses config `text`; errors read `FILE:LINE: what is wrong`.
pub fn parse(text: &str, file: &str) -> Result<Settings, String> {
    let mut s = Settings::default();
    // `bind_address` and `port` set the default listener, mosquitto style.
    let mut port = None;
    let mut bind = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let key = words.next().unwrap_or_default();
        let args: Vec<&str> = words.collect();
        let at = |msg: String| format!("{file}:{}: {msg}", n + 1);
        apply(&mut s, &mut port, &mut bind, key, &args).map_err(at)?;
    }
    // As mosquitto 2: with a password file, anonymous clients are refused
    // unless the config allows them.
    if s.password_file.is_some() && !s.anonymous_explicit {
        s.broker.allow_anonymous = false;
    }
    if port.is_some() || bind.is_some() {
        let ip = bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        s.listeners
            .insert(0, SocketAddr::new(ip, port.unwrap_or(DEFAULT_PORT)));
    }
    Ok(s)
}

fn apply(
    s: &mut Settings,
    port: &mut Option<u16>,
    bind: &mut Option<IpAddr>,
    key: &str,
    args: &[&str],
) -> Result<(), String> {
    let one = || match args {
        [v] => Ok(*v),
        _ => Err(format!("`{key}` takes one value")),
    };
    match key {
        "listener" => {
            let (p, addr) = match args {
                [p] => (*p, None),
                [p, a] => (*p, Some(*a)),
                _ => return Err("`listener` takes a port and an optional bind address".into()),
            };
            // Without an address mosquitto listens on every interface.
            let ip = addr
                .map(ip)
                .transpose()?
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            s.listeners.push(SocketAddr::new(ip, number(key, p)?));
        }
        "port" => *port = Some(number(key, one()?)?),
        "bind_address" => *bind = Some(ip(one()?)?),
        "max_connections" => {
            let v: i64 = number(key, one()?)?;
            s.max_connections = usize::try_from(v).ok();
        }
        "max_inflight_messages" => {
            // mosquitto: 0 means no limit; a u16 window is the most MQTT allows.
            let v: u16 = number(key, one()?)?;
            s.broker.max_inflight = if v == 0 { u16::MAX } else { v };
        }
        "max_queued_messages" => s.broker.max_queued = number(key, one()?)?,
        "max_packet_size" => {
            let v: u32 = number(key, one()?)?;
            if v < 20 {
                return Err(format!("`{key}` must be at least 20 bytes"));
            }
            s.broker.max_packet_size = v;
        }
        "max_keepalive" => s.broker.max_keepalive = number(key, one()?)?,
        "max_topic_alias" => s.broker.topic_alias_max = number(key, one()?)?,
        "outbound_topic_aliases" => s.broker.outbound_topic_aliases = boolean(key, one()?)?,
        "allow_anonymous" => {
            s.broker.allow_anonymous = boolean(key, one()?)?;
            s.anonymous_explicit = true;
        }
        "password_file" => s.password_file = Some(one()?.into()),
        "acl_file" => s.acl_file = Some(one()?.into()),
        "max_outgoing_bytes" => s.max_outgoing_bytes = number(key, one()?)?,
        "connect_timeout" => s.broker.connect_timeout = Duration::from_secs(number(key, one()?)?),
        "sys_interval" => s.sys_interval = Duration::from_secs(number(key, one()?)?),
        "memory_limit" => s.memory_limit = number(key, one()?)?,
        _ => return Err(format!("unknown or unsupported key `{key}`")),
    }
    Ok(())
}

fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("`{key}`: `{v}` is not a valid number here"))
}

fn boolean(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{key}` takes true or false, not `{v}`")),
    }
}

fn ip(v: &str) -> Result<IpAddr, String> {
    if v == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    v.parse().map_err(|_| format!("`{v}` is not an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_and_limits() {
        let s = parse(
            "# gateway\nlistener 1884 127.0.0.1\nlistener 8883\n\nmax_connections -1\n\
             max_inflight_messages 5\nmax_queued_messages 10\nmax_packet_size 4096\n\
             allow_anonymous true\nmax_outgoing_bytes 1000\nconnect_timeout 3\n",
            "t.conf",
        )
        .unwrap();
        assert_eq!(
            s.listen_addrs(),
            [
                "127.0.0.1:1884".parse().unwrap(),
                "0.0.0.0:8883".parse().unwrap()
            ]
        );
        assert_eq!(s.max_connections, None);
        assert_eq!(s.broker.max_inflight, 5);
        assert_eq!(s.broker.max_queued, 10);
        assert_eq!(s.broker.max_packet_size, 4096);
        assert_eq!(s.max_outgoing_bytes, 1000);
        assert_eq!(s.broker.connect_timeout, Duration::from_secs(3));
        assert!(s.check().is_ok());
    }

    #[test]
    fn sys_interval_and_memory_limit() {
        let s = parse("", "t.conf").unwrap();
        assert_eq!(s.sys_interval, Duration::from_secs(10));
        assert_eq!(s.memory_limit, 0);
        let s = parse("sys_interval 0\nmemory_limit 1048576\n", "t.conf").unwrap();
        assert_eq!(s.sys_interval, Duration::ZERO);
        assert_eq!(s.memory_limit, 1 << 20);
        for bad in [
            "sys_interval -1",
            "sys_interval 1.5",
            "memory_limit -1",
            "memory_limit 1M",
        ] {
            let e = parse(bad, "t.conf").unwrap_err();
            assert!(e.starts_with("t.conf:1: `"), "{bad}: {e}");
        }
    }

    #[test]
    fn default_listener_is_loopback() {
        let s = parse("", "t.conf").unwrap();
        assert_eq!(s.listen_addrs(), ["127.0.0.1:1883".parse().unwrap()]);
        let s = parse("port 1999\nbind_address 127.0.0.2\n", "t.conf").unwrap();
        assert_eq!(s.listen_addrs(), ["127.0.0.2:1999".parse().unwrap()]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse(
            "listener 1883\npersistence_location /x\n",
            "/etc/roost.conf",
        )
        .unwrap_err();
        assert_eq!(
            e,
            "/etc/roost.conf:2: unknown or unsupported key `persistence_location`"
        );
        let e = parse("\n\nmax_queued_messages lots\n", "a.conf").unwrap_err();
        assert!(e.starts_with("a.conf:3: "), "{e}");
        let e = parse("allow_anonymous yes\n", "a.conf").unwrap_err();
        assert!(e.starts_with("a.conf:1: "), "{e}");
    }

    #[test]
    fn network_listener_needs_explicit_anonymous() {
        let s = parse("listener 1883\n", "t.conf").unwrap();
        assert!(s.check().unwrap_err().contains("allow_anonymous"));
        let s = parse("listener 1883\nallow_anonymous true\n", "t.conf").unwrap();
        assert!(s.check().is_ok());
    }

    #[test]
    fn password_file_closes_the_door_to_anonymous_clients() {
        let s = parse("listener 1883\npassword_file /etc/roost/pw\n", "t.conf").unwrap();
        assert!(s.check().is_ok());
        assert!(!s.broker.allow_anonymous);
        assert_eq!(s.password_file, Some("/etc/roost/pw".into()));
        let s = parse(
            "allow_anonymous true\npassword_file pw\nacl_file acl\n",
            "t.conf",
        )
        .unwrap();
        assert!(s.broker.allow_anonymous);
        assert_eq!(s.acl_file, Some("acl".into()));
    }
}
