//! Settings from a mosquitto.conf-style file: `key value` lines, `#`
//! comments, `include_dir` for a directory of more such files. A key roost
//! does not know is an error naming file and line, never silently ignored:
//! a gateway owner must not believe a setting of their old mosquitto.conf
//! took effect when it did not. Keys that only change how mosquitto looks
//! (not what it does) are accepted with a warning.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use crate::logging::{LogConfig, LogTypes};
use crate::{auth, bridge, broker, persist};

pub mod service;
mod tls;
pub use tls::{Tls, Version as TlsVersion};

pub const DEFAULT_PORT: u16 = 1883;
/// The largest WebSocket upgrade request read unless
/// `websockets_headers_size` says otherwise (mosquitto 2.1's default).
const DEFAULT_HEADERS_SIZE: u16 = 4096;

#[derive(Debug, Clone)]
pub struct Settings {
    /// The configured listeners; none means the default one, localhost:1883.
    pub listeners: Vec<Listener>,
    /// Password and ACL files and `allow_anonymous`, indexed by
    /// [`Listener::auth`]: entry 0 serves every listener, unless
    /// `per_listener_settings` gives each `listener` block its own (entry 0
    /// is then the default listener's).
    pub security: Vec<Security>,
    /// Most simultaneous client connections; None for no limit.
    pub max_connections: Option<usize>,
    pub log: LogConfig,
    pub pid_file: Option<PathBuf>,
    /// `user`: the account a roost started as root becomes.
    pub user: Option<String>,
    /// The file these came from: SIGHUP reads its log settings again.
    pub config_file: Option<PathBuf>,
    /// `FILE:LINE: why`, for keys accepted but without effect in roost.
    pub warnings: Vec<String>,
    /// How often `$SYS` is published; zero for never.
    pub sys_interval: Duration,
    /// Heap bytes past which new messages and connections are refused;
    /// 0 for no limit.
    pub memory_limit: usize,
    /// Largest WebSocket upgrade request read, in bytes.
    pub websockets_headers_size: u16,
    pub broker: broker::Config,
    pub persistence: persist::Config,
    /// The `connection` sections.
    pub bridges: Vec<bridge::Bridge>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listeners: Vec::new(),
            security: vec![Security::default()],
            max_connections: None,
            log: LogConfig::default(),
            pid_file: None,
            user: None,
            config_file: None,
            warnings: Vec::new(),
            sys_interval: Duration::from_secs(10),
            memory_limit: 0,
            websockets_headers_size: DEFAULT_HEADERS_SIZE,
            broker: broker::Config::default(),
            persistence: persist::Config::default(),
            bridges: Vec::new(),
        }
    }
}

/// One listener: the sockets it opens and the rules its clients meet.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// Without an address (or with `localhost`) a listener has an IPv4 and
    /// an IPv6 socket, as in mosquitto; `socket_domain` keeps one of them.
    pub addrs: Vec<SocketAddr>,
    /// Index into [`Settings::security`] and [`broker::Config::auth`].
    pub auth: u8,
    pub protocol: Protocol,
    /// `certfile` and the rest: TLS on every socket (under WebSockets'
    /// framing on a `protocol websockets` listener); None without.
    pub tls: Option<Tls>,
}

/// What a listener speaks (mosquitto's `protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Protocol {
    #[default]
    Mqtt,
    /// MQTT over WebSockets (`src/net/ws.rs`).
    WebSockets,
}

/// The settings mosquitto makes per listener with `per_listener_settings`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Security {
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
    /// `allow_anonymous` as set.
    pub allow_anonymous: Option<bool>,
    /// Whether the config has a listener (`listener`, `port` or
    /// `bind_address`); without one roost serves localhost only.
    pub listeners_configured: bool,
}

impl Security {
    /// mosquitto 2's rule: unless `allow_anonymous` says otherwise,
    /// anonymous clients are let in only when no listener is configured
    /// (localhost only), whatever the listener's address.
    pub fn allows_anonymous(&self) -> bool {
        self.allow_anonymous.unwrap_or(!self.listeners_configured)
    }
}

impl Settings {
    /// The listeners to open: the configured ones, or localhost:1883 (as
    /// mosquitto 2 does when none is configured).
    pub fn listen_on(&self) -> Vec<Listener> {
        if self.listeners.is_empty() {
            vec![Listener {
                addrs: host_addrs(Some(Host::Localhost), None, DEFAULT_PORT),
                auth: 0,
                protocol: Protocol::Mqtt,
                tls: None,
            }]
        } else {
            self.listeners.clone()
        }
    }

    /// Every address [`Settings::listen_on`] binds.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.listen_on().into_iter().flat_map(|l| l.addrs).collect()
    }

    /// `-p`/`--bind`: one MQTT listener on `addr` in place of the
    /// configured ones, with the rules (and TLS) of the first of them.
    pub fn replace_listeners(&mut self, addr: SocketAddr) {
        let first = self.listen_on().swap_remove(0);
        self.listeners = vec![Listener {
            addrs: vec![addr],
            protocol: Protocol::Mqtt,
            ..first
        }];
    }

    /// Reads the password and ACL files of each entry of `security`.
    /// Called at start-up and again to reload them (see
    /// [`broker::Broker::set_access`]).
    pub fn load_access(&self) -> Result<Vec<Option<Rc<dyn broker::Access>>>, String> {
        self.security
            .iter()
            .map(|s| auth::load(s.password_file.as_deref(), s.acl_file.as_deref()))
            .collect()
    }

    /// Refuses an open door: anonymous clients on a socket reachable from
    /// the network only when the config says so explicitly. (Only `--bind`
    /// or a socket from systemd can open one without a listener line.)
    pub fn check(&self) -> Result<(), String> {
        for l in self.listen_on() {
            for &addr in &l.addrs {
                self.check_listener(l.auth, addr)?;
            }
        }
        Ok(())
    }

    /// `check` for one socket of a listener whose rules are `auth`; also
    /// for sockets whose address is only known at start-up (passed by
    /// systemd).
    pub fn check_listener(&self, auth: u8, addr: SocketAddr) -> Result<(), String> {
        let s = &self.security[usize::from(auth)];
        if !s.allows_anonymous() || s.allow_anonymous.is_some() || addr.ip().is_loopback() {
            return Ok(());
        }
        Err(format!(
            "listener {addr} is reachable from the network: set `password_file`, \
             or `allow_anonymous true` to accept clients without a password there"
        ))
    }

    /// The files and directories roost writes: the log file, the pid
    /// file, and the persistence directory when persistence is on.
    pub fn written_paths(&self) -> Vec<(&'static str, &Path)> {
        let mut paths = Vec::new();
        if let Some(path) = &self.log.file {
            paths.push(("log_dest file", path.as_path()));
        }
        if let Some(path) = &self.pid_file {
            paths.push(("pid_file", path.as_path()));
        }
        if self.persistence.enabled {
            let dir = &self.persistence.location;
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir.as_path()
            };
            paths.push(("persistence_location", dir));
        }
        paths
    }

    /// The files roost goes on writing once running: the log file
    /// (reopened on SIGHUP) and its state.
    pub fn written_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.log.file.iter().cloned().collect();
        if self.persistence.enabled {
            files.extend(self.persistence.files());
        }
        files
    }

    /// After `user` took effect: what roost goes on writing must be
    /// writable as that user (the pid file is written already).
    pub fn check_paths_as(&self, user: &str) -> Result<(), String> {
        for (key, path) in self.written_paths() {
            if key != "pid_file" {
                writable(path).map_err(|e| {
                    format!("{key} {}: {e}, as user {user} (`user`)", path.display())
                })?;
            }
        }
        Ok(())
    }

    /// What `--check-config` and start-up add to parsing: the files roost
    /// will write can be written. Under systemd, refused for want of
    /// permission or on a file system mounted read-only for the service,
    /// the error says why: roost.service's user and `ProtectSystem=strict`.
    pub fn check_paths(&self) -> Result<(), String> {
        for (key, path) in self.written_paths() {
            writable(path).map_err(|e| {
                let mut msg = format!("{key} {}: {e}", path.display());
                let denied = e.raw_os_error() == Some(libc::EACCES) || read_only(path);
                if std::env::var_os("INVOCATION_ID").is_some() && denied {
                    msg.push_str(
                        " (under roost.service: roost runs as user roost with \
                         ProtectSystem=strict, and may write only its state directory \
                         /var/lib/roost, a private /tmp and what ReadWritePaths= adds; \
                         see docs/systemd.md)",
                    );
                }
                msg
            })?;
        }
        Ok(())
    }
}

/// Whether `path`, or the nearest directory above it that exists, is on a
/// file system mounted read-only (as for a service, by `ProtectSystem=`).
fn read_only(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Some(existing) = path.ancestors().find(|p| p.exists()) else {
        return false;
    };
    let Ok(c) = std::ffi::CString::new(existing.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statvfs writes only into `st`, plain data; `c` outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statvfs(c.as_ptr(), &mut st) == 0 && st.f_flag & libc::ST_RDONLY != 0 }
}

/// Whether `path` can be written, or created: checked with access(2),
/// so checking creates nothing.
fn writable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let target = if path.exists() {
        path
    } else {
        match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    };
    let c = std::ffi::CString::new(target.as_os_str().as_bytes())?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn load(path: &Path) -> Result<Settings, String> {
    let mut p = Parser::default();
    p.file(path, true)?;
    let mut s = p.finish()?;
    s.config_file = Some(path.to_owned());
    Ok(s)
}

/// Parses config `text`; errors read `FILE:LINE: what is wrong`.
pub fn parse(text: &str, file: &str) -> Result<Settings, String> {
    let mut p = Parser::default();
    p.text(text, file, true)?;
    p.finish()
}

/// Where a listener binds, as written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Host {
    Ip(IpAddr),
    /// Both loopback addresses, as `localhost` resolves.
    Localhost,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Domain {
    V4,
    V6,
}

/// A value and the `FILE:LINE` that set it.
type Located<T> = (T, String);

/// The default listener (`port`, `bind_address`) or a `listener` line,
/// with the keys that apply to it when written after it.
#[derive(Default)]
struct Block {
    port: Option<u16>,
    host: Option<Host>,
    domain: Option<Located<Domain>>,
    protocol: Option<Located<Protocol>>,
    password_file: Option<Located<PathBuf>>,
    acl_file: Option<Located<PathBuf>>,
    allow_anonymous: Option<Located<bool>>,
    tls: tls::Keys,
}

impl Block {
    /// The first key set that only a listener would use, for the error
    /// when this block's listener does not exist.
    fn first_set(&self) -> Option<(&'static str, &str)> {
        let at = [
            (
                "password_file",
                self.password_file.as_ref().map(|(_, at)| at),
            ),
            ("acl_file", self.acl_file.as_ref().map(|(_, at)| at)),
            (
                "allow_anonymous",
                self.allow_anonymous.as_ref().map(|(_, at)| at),
            ),
        ];
        at.into_iter()
            .find_map(|(key, at)| at.map(|at| (key, at.as_str())))
    }
}

struct Parser {
    s: Settings,
    /// Block 0 is the default listener; each `listener` line opens the next.
    blocks: Vec<Block>,
    per_listener_settings: bool,
    /// The first `log_type`/`log_dest` line replaces the default, later
    /// ones add to it (as in mosquitto).
    log_type_set: bool,
    log_dest_set: bool,
    /// Where each `connection` line is, for errors about its section.
    bridges_at: Vec<String>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            s: Settings::default(),
            blocks: vec![Block::default()],
            per_listener_settings: false,
            log_type_set: false,
            log_dest_set: false,
            bridges_at: Vec::new(),
        }
    }
}

impl Parser {
    fn file(&mut self, path: &Path, main: bool) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.text(&text, &path.display().to_string(), main)
    }

    fn text(&mut self, text: &str, file: &str, main: bool) -> Result<(), String> {
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let at = format!("{file}:{}", n + 1);
            if key == "include_dir" {
                if !main {
                    return Err(format!(
                        "{at}: `include_dir` is only read in the main config file (as in mosquitto)"
                    ));
                }
                self.include_dir(Path::new(rest.trim()), &at)?;
                continue;
            }
            self.apply(key, rest.trim(), &at)
                .map_err(|msg| format!("{at}: {msg}"))?;
        }
        Ok(())
    }

    /// Reads every `*.conf` file in `dir`, in mosquitto's order.
    fn include_dir(&mut self, dir: &Path, at: &str) -> Result<(), String> {
        if dir.as_os_str().is_empty() {
            return Err(format!("{at}: `include_dir` takes a directory"));
        }
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("{at}: include_dir {}: {e}", dir.display()))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("{at}: include_dir {}: {e}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // As mosquitto: a name ending in `.conf`, and more than that.
            if name.len() > 5 && name.ends_with(".conf") {
                names.push(name);
            }
        }
        names.sort_by(|a, b| include_order(a, b));
        for name in names {
            self.file(&dir.join(name), false)?;
        }
        Ok(())
    }

    /// The block the current line belongs to.
    fn block(&mut self) -> &mut Block {
        self.blocks.last_mut().expect("block 0 always exists")
    }

    fn apply(&mut self, key: &str, rest: &str, at: &str) -> Result<(), String> {
        let args: Vec<&str> = rest.split_whitespace().collect();
        let one = || match args[..] {
            [v] => Ok(v),
            _ => Err(format!("`{key}` takes one value")),
        };
        let s = &mut self.s;
        if key == "connection" {
            let b = bridge::config::new(rest)?;
            if s.bridges.iter().any(|other| other.name == b.name) {
                return Err(format!("a bridge named `{}` exists already", b.name));
            }
            s.bridges.push(b);
            self.bridges_at.push(at.into());
            return Ok(());
        }
        if bridge::config::KEYS.contains(&key) {
            let Some(b) = s.bridges.last_mut() else {
                return Err(format!(
                    "`{key}` belongs to a bridge: put it after a `connection` line"
                ));
            };
            if let Some(warning) = bridge::config::apply(b, key, rest)? {
                s.warnings.push(format!("{at}: {warning}"));
            }
            return Ok(());
        }
        match key {
            "listener" => {
                let (port, host) = match args[..] {
                    [p] => (p, None),
                    [p, h] => (p, Some(host(h)?)),
                    _ => return Err("`listener` takes a port and an optional bind address".into()),
                };
                if self.blocks.len() > usize::from(u8::MAX) {
                    return Err("more than 255 listeners".into());
                }
                self.blocks.push(Block {
                    port: Some(number(key, port)?),
                    host,
                    ..Block::default()
                });
            }
            "port" => self.blocks[0].port = Some(number(key, one()?)?),
            "bind_address" => self.blocks[0].host = Some(host(one()?)?),
            "socket_domain" => {
                let domain = match one()? {
                    "ipv4" => Domain::V4,
                    "ipv6" => Domain::V6,
                    v => return Err(format!("`socket_domain` takes ipv4 or ipv6, not `{v}`")),
                };
                self.block().domain = Some((domain, at.into()));
            }
            // WebSockets: the listener's protocol, and the upgrade
            // request's bound (0: the default, as in mosquitto).
            "protocol" => {
                let protocol = match one()? {
                    "mqtt" => Protocol::Mqtt,
                    "websockets" => Protocol::WebSockets,
                    v => return Err(format!("`protocol` takes mqtt or websockets, not `{v}`")),
                };
                self.block().protocol = Some((protocol, at.into()));
            }
            "websockets_headers_size" => {
                s.websockets_headers_size = match number(key, one()?)? {
                    0 => DEFAULT_HEADERS_SIZE,
                    v => v,
                }
            }
            "per_listener_settings" => self.per_listener_settings = boolean(key, one()?)?,
            "allow_anonymous" => {
                let v = boolean(key, one()?)?;
                self.block().allow_anonymous = Some((v, at.into()));
            }
            "password_file" | "acl_file" => {
                let path = (PathBuf::from(one()?), at.to_string());
                let block = self.block();
                let slot = if key == "password_file" {
                    &mut block.password_file
                } else {
                    &mut block.acl_file
                };
                if let Some((_, first)) = slot {
                    return Err(format!("duplicate `{key}` (first at {first})"));
                }
                *slot = Some(path);
            }
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
            "max_queued_bytes" => s.broker.max_queued_bytes = number(key, one()?)?,
            "max_packet_size" => {
                let v: u32 = number(key, one()?)?;
                s.broker.max_packet_size = match v {
                    // mosquitto's "no limit": MQTT's own.
                    0 => broker::MAX_PACKET_SIZE,
                    1..20 => return Err(format!("`{key}` must be at least 20 bytes")),
                    v => v.min(broker::MAX_PACKET_SIZE),
                };
            }
            "message_size_limit" => {
                let v: u32 = number(key, one()?)?;
                if v > MAX_PAYLOAD {
                    return Err(format!(
                        "`{key}` is at most {MAX_PAYLOAD} (MQTT's largest payload)"
                    ));
                }
                s.broker.message_size_limit = v;
            }
            "max_keepalive" => s.broker.max_keepalive = number(key, one()?)?,
            "auto_id_prefix" => s.broker.auto_id_prefix = one()?.into(),
            "user" => s.user = Some(one()?.into()),
            "connection_messages" => s.broker.connection_messages = boolean(key, one()?)?,
            "max_topic_alias" => s.broker.topic_alias_max = number(key, one()?)?,
            "retain_available" => s.broker.retain_available = boolean(key, one()?)?,
            "persistent_client_expiration" => {
                s.broker.persistent_client_expiration = Some(duration(one()?)?)
            }
            "outbound_topic_aliases" => s.broker.outbound_topic_aliases = boolean(key, one()?)?,
            "max_outgoing_bytes" => s.broker.max_outgoing = number(key, one()?)?,
            "slow_subscriber_timeout" => {
                s.broker.slow_subscriber_timeout = Duration::from_secs(number(key, one()?)?)
            }
            "connect_timeout" => {
                s.broker.connect_timeout = Duration::from_secs(number(key, one()?)?)
            }
            "persistence" => s.persistence.enabled = boolean(key, one()?)?,
            "persistence_location" => s.persistence.location = one()?.into(),
            "persistence_file" => s.persistence.file = one()?.into(),
            "autosave_interval" => s.persistence.autosave_interval = number(key, one()?)?,
            "autosave_on_changes" => s.persistence.autosave_on_changes = boolean(key, one()?)?,
            "persistence_mode" => {
                s.persistence.mode = match one()? {
                    "snapshot" => persist::Mode::Snapshot,
                    "journal" => persist::Mode::Journal,
                    v => return Err(format!("`{key}` takes snapshot or journal, not `{v}`")),
                }
            }
            "persistence_damaged" => {
                s.persistence.on_damage = match one()? {
                    "refuse" => persist::OnDamage::Refuse,
                    "start_empty" => persist::OnDamage::StartEmpty,
                    v => return Err(format!("`{key}` takes refuse or start_empty, not `{v}`")),
                }
            }
            "sys_interval" => s.sys_interval = Duration::from_secs(number(key, one()?)?),
            "memory_limit" => s.memory_limit = number(key, one()?)?,
            "log_type" => {
                let v = one()?;
                let types = LogTypes::parse(v).ok_or_else(|| {
                    format!(
                        "`log_type` takes error, warning, notice, information, debug, \
                         subscribe, unsubscribe, websockets, all or none, not `{v}`"
                    )
                })?;
                if !self.log_type_set || types == LogTypes::NONE {
                    s.log.types = LogTypes::NONE;
                }
                self.log_type_set = true;
                s.log.types = s.log.types.with(types);
            }
            "log_dest" => {
                if !self.log_dest_set {
                    s.log.clear_dests();
                }
                self.log_dest_set = true;
                let (dest, path) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                let path = path.trim();
                match (dest, path.is_empty()) {
                    ("none", true) => s.log.clear_dests(),
                    ("stderr", true) => s.log.stderr = true,
                    ("stdout", true) => s.log.stdout = true,
                    ("syslog", true) => s.log.syslog = true,
                    ("file", true) => return Err("`log_dest file` takes a path".into()),
                    ("file", false) if s.log.file.is_some() => {
                        return Err("only one `log_dest file` (as in mosquitto)".into());
                    }
                    // The rest of the line, spaces and all (as mosquitto).
                    ("file", false) => s.log.file = Some(path.into()),
                    ("topic" | "dlt" | "android", _) => {
                        return Err(format!("`log_dest {dest}` is not supported by roost"));
                    }
                    _ => {
                        return Err(format!(
                            "`log_dest` takes stderr, stdout, syslog, file PATH or none, not `{rest}`"
                        ));
                    }
                }
            }
            "log_facility" => {
                let v: i32 = number(key, one()?)?;
                if !(0..=7).contains(&v) {
                    return Err("`log_facility` takes 0 to 7 (local0 to local7)".into());
                }
                s.log.facility = (16 + v) << 3;
            }
            "log_timestamp" => s.log.timestamp = boolean(key, one()?)?,
            "pid_file" => {
                if s.pid_file.is_some() {
                    return Err("duplicate `pid_file`".into());
                }
                s.pid_file = Some(one()?.into());
            }
            _ if tls::Keys::takes(key) => self.block().tls.apply(key, one()?, at)?,
            _ => {
                if args.is_empty() {
                    return Err(format!("`{key}` takes a value"));
                }
                match no_effect(key) {
                    Some(why) => s
                        .warnings
                        .push(format!("{at}: `{key}` has no effect: {why}")),
                    None if is_mosquitto_key(key) => {
                        return Err(format!(
                            "`{key}` is a mosquitto key roost does not support yet"
                        ));
                    }
                    None => return Err(format!("unknown key `{key}`")),
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Settings, String> {
        let per_listener = self.per_listener_settings;
        let default = &self.blocks[0];
        let default_used =
            default.port.is_some() || default.host.is_some() || self.blocks.len() == 1;
        let listener_key = [
            ("socket_domain", default.domain.as_ref().map(|(_, at)| at)),
            ("protocol", default.protocol.as_ref().map(|(_, at)| at)),
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
        if per_listener && !default_used {
            if let Some((key, at)) = default.first_set() {
                return Err(format!(
                    "{at}: `{key}` comes before any `listener` line: with \
                     `per_listener_settings true` it belongs to the default listener \
                     (`port`, `bind_address`), which is not configured"
                ));
            }
        }
        self.s.security = if per_listener {
            self.blocks.iter().map(security).collect()
        } else {
            vec![merged_security(&self.blocks)?]
        };
        let configured = self
            .blocks
            .iter()
            .any(|b| b.port.is_some() || b.host.is_some());
        for s in &mut self.s.security {
            s.listeners_configured = configured;
        }
        self.s.broker.auth = self
            .s
            .security
            .iter()
            .map(|s| broker::Auth {
                allow_anonymous: s.allows_anonymous(),
                access: None,
            })
            .collect();
        let mut listeners = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            let explicit = b.port.is_some() || b.host.is_some();
            let domain = b.domain.as_ref().map(|(d, _)| *d);
            let protocol = b.protocol.as_ref().map_or(Protocol::Mqtt, |(p, _)| *p);
            if i == 0 && !explicit {
                // No `port`/`bind_address`: used only when no listener is
                // configured; its `socket_domain` then narrows localhost,
                // its `protocol` applies and its TLS keys make it a TLS
                // listener.
                let tls = b.tls.finish()?;
                let keys = domain.is_some() || b.protocol.is_some() || tls.is_some();
                if self.blocks.len() == 1 && keys {
                    listeners.push(Listener {
                        addrs: host_addrs(Some(Host::Localhost), domain, DEFAULT_PORT),
                        auth: 0,
                        protocol,
                        tls,
                    });
                }
                continue;
            }
            let addrs = host_addrs(b.host, domain, b.port.unwrap_or(DEFAULT_PORT));
            if let (true, Some((_, at))) = (addrs.is_empty(), &b.domain) {
                return Err(format!(
                    "{at}: `socket_domain` leaves its listener no address"
                ));
            }
            let auth = if per_listener { i as u8 } else { 0 };
            listeners.push(Listener {
                addrs,
                auth,
                protocol,
                tls: b.tls.finish()?,
            });
        }
        for l in &listeners {
            let s = &self.s.security[usize::from(l.auth)];
            let certified = l.tls.as_ref().is_some_and(|t| t.use_identity_as_username);
            if !s.allows_anonymous() && s.password_file.is_none() && !certified {
                self.s.warnings.push(format!(
                    "listener {}: no client can connect: anonymous clients are \
                     refused (mosquitto 2's default once a listener is configured) and \
                     there is no `password_file`; set `allow_anonymous true` or a \
                     password file",
                    l.addrs
                        .first()
                        .map_or("(no address)".into(), ToString::to_string)
                ));
            }
        }
        self.s.listeners = listeners;
        let hostname = hostname();
        for (b, at) in self.s.bridges.iter_mut().zip(&self.bridges_at) {
            bridge::config::finish(b, &hostname).map_err(|e| format!("{at}: {e}"))?;
        }
        Ok(self.s)
    }
}

fn security(b: &Block) -> Security {
    Security {
        password_file: b.password_file.as_ref().map(|(p, _)| p.clone()),
        acl_file: b.acl_file.as_ref().map(|(p, _)| p.clone()),
        allow_anonymous: b.allow_anonymous.as_ref().map(|(v, _)| *v),
        listeners_configured: false,
    }
}

/// Without `per_listener_settings` the keys of every block are global:
/// a file named twice is a mistake, `allow_anonymous` counts as last set.
fn merged_security(blocks: &[Block]) -> Result<Security, String> {
    let mut merged = Block::default();
    for b in blocks {
        for (key, mine, theirs) in [
            ("password_file", &mut merged.password_file, &b.password_file),
            ("acl_file", &mut merged.acl_file, &b.acl_file),
        ] {
            match (&*mine, theirs) {
                (Some((_, first)), Some((_, at))) => {
                    return Err(format!("{at}: duplicate `{key}` (first at {first})"));
                }
                (None, Some(v)) => *mine = Some(v.clone()),
                _ => {}
            }
        }
        if b.allow_anonymous.is_some() {
            merged.allow_anonymous = b.allow_anonymous.clone();
        }
    }
    Ok(security(&merged))
}

/// The sockets of a listener on `host` (None: every interface).
fn host_addrs(host: Option<Host>, domain: Option<Domain>, port: u16) -> Vec<SocketAddr> {
    let ips: Vec<IpAddr> = match host {
        Some(Host::Ip(ip)) => vec![ip],
        Some(Host::Localhost) => vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()],
        None => vec![Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()],
    };
    ips.into_iter()
        .filter(|ip| match domain {
            Some(Domain::V4) => ip.is_ipv4(),
            Some(Domain::V6) => ip.is_ipv6(),
            None => true,
        })
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

/// mosquitto's order for `include_dir` files: by letter ignoring case,
/// and for the same letter upper case first (`A.conf`, `a.conf`,
/// `B.conf`).
fn include_order(a: &str, b: &str) -> Ordering {
    for (x, y) in a.bytes().zip(b.bytes()) {
        let order = x
            .to_ascii_uppercase()
            .cmp(&y.to_ascii_uppercase())
            .then(x.cmp(&y));
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// MQTT's largest payload: the largest remaining length.
const MAX_PAYLOAD: u32 = 268_435_455;

/// mosquitto's `persistent_client_expiration` syntax: a number and a unit,
/// s (mosquitto 2.1), h, d, w, m (30 days) or y (365 days). In seconds.
fn duration(v: &str) -> Result<u32, String> {
    let bad = || {
        format!(
            "`persistent_client_expiration` takes a number and a unit \
             (s, h, d, w, m or y, e.g. 14d), not `{v}`"
        )
    };
    let unit = match v.chars().last().ok_or_else(bad)? {
        's' => 1,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'm' => 30 * 86_400,
        'y' => 365 * 86_400,
        _ => return Err(bad()),
    };
    let n: u32 = v[..v.len() - 1].parse().map_err(|_| bad())?;
    match n.checked_mul(unit) {
        Some(0) | None => Err(bad()),
        Some(secs) => Ok(secs),
    }
}

/// mosquitto keys roost accepts but that change nothing in it, and why.
fn no_effect(key: &str) -> Option<&'static str> {
    Some(match key {
        "log_timestamp_format" => "roost's log timestamps are RFC 3339, UTC",
        "set_tcp_nodelay" => "roost always sets TCP_NODELAY",
        "allow_duplicate_messages" => {
            "roost sends a message once per client however many of its subscriptions match"
        }
        "retry_interval" => {
            "as in mosquitto 2, unacknowledged messages are sent again when a client reconnects"
        }
        "store_clean_interval" => "obsolete; mosquitto 2 ignores it too",
        _ => return None,
    })
}

/// Every other key mosquitto 2 knows: TLS (bridges' too), WebSockets,
/// plugins and the rest roost does not do yet.
fn is_mosquitto_key(key: &str) -> bool {
    const KEYS: &[&str] = &[
        // General
        "allow_zero_length_clientid",
        "auth_plugin",
        "auth_plugin_deny_special_chars",
        "check_retain_source",
        "clientid_prefixes",
        "enable_control_api",
        "global_max_clients",
        "global_max_connections",
        "global_plugin",
        "max_inflight_bytes",
        "plugin",
        "psk_file",
        "queue_qos0_messages",
        "retain_expiry_interval",
        "retained_persistence",
        "upgrade_outgoing_qos",
        "websockets_log_level",
        // Listeners
        "accept_protocol_versions",
        "bind_interface",
        "enable_proxy_protocol",
        "http_dir",
        "listener_allow_anonymous",
        "listener_auto_id_prefix",
        "max_qos",
        "max_topic_alias_broker",
        "mount_point",
        "mptcp",
        "packet_buffer_size",
        "proxy_protocol_v2_require_tls",
        "use_username_as_clientid",
        "websockets_origin",
        // TLS: ciphers, CRLs and PSK
        "ciphers",
        "ciphers_tls1.3",
        "crlfile",
        "dhparamfile",
        "disable_client_cert_date_checks",
        "psk_hint",
        "tls_engine",
        "tls_engine_kpass_sha1",
        "tls_keyform",
        "use_subject_as_username",
        // Bridges
        "bridge_bind_address",
        "bridge_ciphers",
        "bridge_ciphers_tls1.3",
        "bridge_identity",
        "bridge_max_topic_alias",
        "bridge_mptcp",
        "bridge_psk",
        "bridge_receive_maximum",
        "bridge_reload_type",
        "bridge_require_ocsp",
        "bridge_session_expiry_interval",
        "bridge_tcp_keepalive",
        "bridge_tcp_user_timeout",
        "bridge_tls_use_os_certs",
    ];
    KEYS.contains(&key) || key.starts_with("auth_opt_") || key.starts_with("plugin_opt_")
}

/// This machine's name, for bridges' default client ids (as mosquitto).
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the name is cut at NUL.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match (ok, std::str::from_utf8(&buf[..end])) {
        (true, Ok(name)) if !name.is_empty() => name.into(),
        _ => "roost".into(),
    }
}

pub(crate) fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("`{key}`: `{v}` is not a valid number here"))
}

pub(crate) fn boolean(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{key}` takes true or false, not `{v}`")),
    }
}

fn host(v: &str) -> Result<Host, String> {
    if v == "localhost" {
        return Ok(Host::Localhost);
    }
    v.parse()
        .map(Host::Ip)
        .map_err(|_| format!("`{v}` is not an IP address (or localhost)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
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
    fn errors_name_file_and_line() {
        let e = parse("listener 1883\nbridge_psk /x\n", "/etc/roost.conf").unwrap_err();
        assert_eq!(
            e,
            "/etc/roost.conf:2: `bridge_psk` is a mosquitto key roost does not support yet"
        );
        let e = parse("\nplugin_opt_x 1\n", "a.conf").unwrap_err();
        assert!(e.contains("does not support yet"), "{e}");
        let e = parse("\nlistenr 1883\n", "a.conf").unwrap_err();
        assert_eq!(e, "a.conf:2: unknown key `listenr`");
        let e = parse("\n\nmax_queued_messages lots\n", "a.conf").unwrap_err();
        assert!(e.starts_with("a.conf:3: "), "{e}");
        let e = parse("allow_anonymous yes\n", "a.conf").unwrap_err();
        assert!(e.starts_with("a.conf:1: "), "{e}");
        assert!(parse("listener 1 127.0.0.1\nprotocol mqtt\n", "a.conf").is_ok());
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

    #[test]
    fn cosmetic_keys_are_warnings() {
        let s = parse("user mosquitto\nset_tcp_nodelay true\n", "a.conf").unwrap();
        assert_eq!(s.user.as_deref(), Some("mosquitto"));
        assert_eq!(s.warnings.len(), 1);
        assert!(
            s.warnings[0].starts_with("a.conf:2: `set_tcp_nodelay` has no effect"),
            "{:?}",
            s.warnings
        );
        // A value is still required, as for any key.
        assert!(parse("set_tcp_nodelay\n", "a.conf").is_err());
        assert!(parse("user\n", "a.conf").is_err());
    }

    #[test]
    fn anonymous_clients_as_mosquitto_2_lets_them_in() {
        // No listener configured: localhost only, anonymous clients in.
        for text in ["", "log_type all\n", "socket_domain ipv4\n"] {
            let s = parse(text, "t.conf").unwrap();
            assert!(s.broker.auth[0].allow_anonymous, "{text:?}");
            assert!(s.check().is_ok() && s.warnings.is_empty(), "{text:?}");
        }
        // A listener, on loopback or not: refused unless allowed.
        for text in [
            "listener 1883\n",
            "listener 1883 127.0.0.1\n",
            "port 1883\n",
        ] {
            let s = parse(text, "t.conf").unwrap();
            assert!(!s.broker.auth[0].allow_anonymous, "{text:?}");
            assert!(s.check().is_ok());
            assert!(s.warnings[0].contains("no client can connect"), "{text:?}");
        }
        let s = parse("listener 1883\nallow_anonymous true\n", "t.conf").unwrap();
        assert!(s.broker.auth[0].allow_anonymous && s.warnings.is_empty());
        // Only --bind opens localhost's rule to the network: refused.
        let mut s = Settings::default();
        s.replace_listeners("0.0.0.0:1883".parse().unwrap());
        assert!(s.check().unwrap_err().contains("allow_anonymous"));
    }

    #[test]
    fn password_file_closes_the_door_to_anonymous_clients() {
        let s = parse("listener 1883\npassword_file /etc/roost/pw\n", "t.conf").unwrap();
        assert!(s.check().is_ok());
        assert!(!s.broker.auth[0].allow_anonymous);
        assert_eq!(s.security[0].password_file, Some("/etc/roost/pw".into()));
        let s = parse(
            "allow_anonymous true\npassword_file pw\nacl_file acl\n",
            "t.conf",
        )
        .unwrap();
        assert!(s.broker.auth[0].allow_anonymous);
        assert_eq!(s.security[0].acl_file, Some("acl".into()));
    }

    #[test]
    fn repeated_keys_as_mosquitto_allows_them() {
        // Numbers and switches: the last one counts.
        let s = parse("max_queued_messages 1\nmax_queued_messages 2\n", "t.conf").unwrap();
        assert_eq!(s.broker.max_queued, 2);
        // Files: a second one is a mistake (mosquitto: "Duplicate").
        let e = parse("password_file a\nlistener 1\npassword_file b\n", "t.conf").unwrap_err();
        assert_eq!(e, "t.conf:3: duplicate `password_file` (first at t.conf:1)");
        let e = parse("pid_file a\npid_file b\n", "t.conf").unwrap_err();
        assert!(e.starts_with("t.conf:2: duplicate"), "{e}");
    }

    #[test]
    fn per_listener_settings_give_each_listener_its_rules() {
        let text = "per_listener_settings true\n\
                    listener 1883 127.0.0.1\nallow_anonymous true\n\
                    listener 8883\npassword_file /pw\nacl_file /acl\n";
        let s = parse(text, "t.conf").unwrap();
        let auth: Vec<u8> = s.listeners.iter().map(|l| l.auth).collect();
        assert_eq!(auth, [1, 2]);
        assert_eq!(s.security[1].allow_anonymous, Some(true));
        assert_eq!(s.security[1].password_file, None);
        assert_eq!(s.security[2].password_file, Some("/pw".into()));
        assert_eq!(s.security[2].acl_file, Some("/acl".into()));
        assert!(s.broker.auth[1].allow_anonymous);
        assert!(!s.broker.auth[2].allow_anonymous);
        assert!(s.check().is_ok());
        // Without it the same lines are global, and every listener shares them.
        let s = parse(&text.replace("true\n", "false\n"), "t.conf").unwrap();
        assert!(s.listeners.iter().all(|l| l.auth == 0));
        assert_eq!(s.security.len(), 1);
        assert_eq!(s.security[0].password_file, Some("/pw".into()));
        // mosquitto 2's rule holds per listener.
        let s = parse(
            "per_listener_settings true\nlistener 1 127.0.0.1\nallow_anonymous true\nlistener 2\n",
            "t.conf",
        )
        .unwrap();
        assert!(!s.broker.auth[2].allow_anonymous);
        assert_eq!(s.warnings.len(), 1);
        assert!(
            s.warnings[0].starts_with("listener 0.0.0.0:2:"),
            "{:?}",
            s.warnings
        );
        // A key no listener gets is an error, not silently dropped.
        let e = parse(
            "per_listener_settings true\npassword_file /pw\nlistener 1\n",
            "t.conf",
        )
        .unwrap_err();
        assert!(
            e.starts_with("t.conf:2: `password_file` comes before any `listener`"),
            "{e}"
        );
        // -p/--bind keep the first listener's rules.
        let mut s = parse(text, "t.conf").unwrap();
        s.replace_listeners("127.0.0.1:0".parse().unwrap());
        assert_eq!(s.listeners[0].auth, 1);
    }

    #[test]
    fn persistent_client_expiration_takes_mosquittos_units() {
        let pce = |v: &str| {
            parse(&format!("persistent_client_expiration {v}\n"), "t.conf")
                .map(|s| s.broker.persistent_client_expiration)
        };
        assert_eq!(pce("2s"), Ok(Some(2)));
        assert_eq!(pce("2h"), Ok(Some(7200)));
        assert_eq!(pce("14d"), Ok(Some(14 * 86_400)));
        assert_eq!(pce("1w"), Ok(Some(7 * 86_400)));
        assert_eq!(pce("1m"), Ok(Some(30 * 86_400)));
        assert_eq!(pce("1y"), Ok(Some(365 * 86_400)));
        for bad in ["14", "d", "0d", "-1d", "1.5d", "200y", "1x"] {
            assert!(pce(bad).unwrap_err().contains("e.g. 14d"), "{bad}");
        }
        assert_eq!(
            parse("", "t.conf")
                .unwrap()
                .broker
                .persistent_client_expiration,
            None
        );
    }

    #[test]
    fn log_settings() {
        let s = parse("", "t.conf").unwrap();
        assert_eq!(s.log, LogConfig::default());
        let s = parse(
            "log_dest syslog\nlog_dest file /var/log/roost log\nlog_type error\n\
             log_type subscribe\nlog_facility 3\nlog_timestamp false\n",
            "t.conf",
        )
        .unwrap();
        assert!(!s.log.stderr, "the first log_dest replaces the default");
        assert!(s.log.syslog);
        assert_eq!(s.log.file, Some("/var/log/roost log".into()));
        let want = LogTypes::parse("error")
            .unwrap()
            .with(LogTypes::parse("subscribe").unwrap());
        assert_eq!(s.log.types, want);
        assert_eq!(s.log.facility, libc::LOG_LOCAL3);
        assert!(!s.log.timestamp);
        let s = parse("log_type all\nlog_type none\nlog_dest none\n", "t.conf").unwrap();
        assert_eq!(s.log.types, LogTypes::NONE);
        assert!(!s.log.stderr && !s.log.syslog && s.log.file.is_none());
        for bad in [
            "log_dest file",
            "log_dest file a\nlog_dest file b",
            "log_dest topic",
            "log_dest stderr x",
            "log_type chatty",
            "log_facility 8",
        ] {
            let e = parse(bad, "t.conf").unwrap_err();
            assert!(e.starts_with("t.conf:"), "{bad}: {e}");
        }
    }

    #[test]
    fn include_dir_reads_conf_files_in_mosquittos_order() {
        let dir = std::env::temp_dir().join(format!("roost-include-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in [
            ("b.conf", "max_queued_messages 4\n"),
            ("B.conf", "max_queued_messages 3\n"),
            ("a.conf", "max_queued_messages 2\nmax_inflight_messages 7\n"),
            ("A.conf", "max_queued_messages 1\n"),
            ("notes.txt", "not a config\n"),
            (".conf", "neither\n"),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let main = format!("max_inflight_messages 1\ninclude_dir {}\n", dir.display());
        let s = parse(&main, "main.conf").unwrap();
        // A.conf, a.conf, B.conf, b.conf: b.conf is read last.
        assert_eq!(s.broker.max_queued, 4);
        assert_eq!(
            s.broker.max_inflight, 7,
            "included after the main file's line"
        );
        assert_eq!(include_order("a.conf", "B.conf"), Ordering::Less);
        assert_eq!(include_order("A.conf", "a.conf"), Ordering::Less);
        assert_eq!(include_order("00.conf", "01.conf"), Ordering::Less);
        // Errors name the included file and its line.
        std::fs::write(dir.join("c.conf"), "# more\nlistener 1883\nbogus 1\n").unwrap();
        let e = parse(&main, "main.conf").unwrap_err();
        assert_eq!(
            e,
            format!("{}:3: unknown key `bogus`", dir.join("c.conf").display())
        );
        std::fs::write(
            dir.join("c.conf"),
            format!("include_dir {}\n", dir.display()),
        )
        .unwrap();
        let e = parse(&main, "main.conf").unwrap_err();
        assert!(
            e.contains("c.conf:1: `include_dir` is only read in the main"),
            "{e}"
        );
        let e = parse("include_dir /nonexistent/roost\n", "main.conf").unwrap_err();
        assert!(
            e.starts_with("main.conf:1: include_dir /nonexistent/roost: "),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn persistence_keys() {
        let s = parse("", "t.conf").unwrap();
        assert!(!s.persistence.enabled);
        assert_eq!(s.persistence.autosave_interval, 1800);
        let s = parse(
            "persistence true\npersistence_location /var/lib/roost/\npersistence_file r.db\n\
             autosave_interval 100\nautosave_on_changes true\npersistence_damaged start_empty\n",
            "t.conf",
        )
        .unwrap();
        let p = &s.persistence;
        assert!(p.enabled && p.autosave_on_changes);
        assert_eq!(p.path(), Path::new("/var/lib/roost/r.db"));
        assert_eq!(p.autosave_interval, 100);
        assert_eq!(p.on_damage, persist::OnDamage::StartEmpty);
        let e = parse("persistence_damaged ignore\n", "t.conf").unwrap_err();
        assert!(e.starts_with("t.conf:1: "), "{e}");
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
}
