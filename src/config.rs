//! Settings from a mosquitto.conf-style file: `key value` lines, `#`
//! comments, `include_dir` for a directory of more such files. A key roost
//! does not know is an error naming file and line, never silently ignored:
//! a gateway owner must not believe a setting of their old mosquitto.conf
//! took effect when it did not. A mosquitto key roost does not read is
//! accepted at a value roost behaves as anyway (`queue_qos0_messages
//! false`), and where it only changes how mosquitto looks (not what it
//! does) with a warning.
//!
//! Every key is defined once, in the table of [`keys`], by the module of
//! its concern: `process` (the file, the pid file, the user), `listeners`,
//! `security` (passwords and ACLs) and `tls`, `limits`, `persist`, `log`,
//! `bridge`, and `mosquitto` for mosquitto's keys roost does not read.
//! `reader` reads the lines and hands each to its key; `reload` says what
//! a SIGHUP applies.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::broker;
use crate::logging::LogConfig;

mod bridge;
mod keys;
mod limits;
mod listeners;
mod log;
mod mosquitto;
mod persist;
mod process;
mod reader;
mod reload;
mod security;
pub mod service;
mod tls;

pub use keys::{Key, Reload, Scope, Support, find, keys};
pub use listeners::{Address, DEFAULT_PORT, Domain, Listener, Protocol};
pub(crate) use reader::{boolean, number};
pub use reload::Reloaded;
pub use security::Security;

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
    pub persistence: crate::persist::Config,
    /// The `connection` sections.
    pub bridges: Vec<crate::bridge::Bridge>,
    /// Every line read, for a reload to tell what changed.
    pub written: Vec<Written>,
}

/// A line as read: its key, the listener or bridge it belongs to (empty
/// for the broker as a whole) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub place: String,
    pub key: &'static str,
    pub value: String,
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
            websockets_headers_size: listeners::DEFAULT_HEADERS_SIZE,
            broker: broker::Config::default(),
            persistence: crate::persist::Config::default(),
            bridges: Vec::new(),
            written: Vec::new(),
        }
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

/// A value and the `FILE:LINE` that set it.
type Located<T> = (T, String);

/// The settings as the lines set them, before the checks that need the
/// whole file.
struct Parser {
    s: Settings,
    /// Block 0 is the default listener; each `listener` line opens the next.
    blocks: Vec<listeners::Block>,
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
            blocks: vec![listeners::Block::default()],
            per_listener_settings: false,
            log_type_set: false,
            log_dest_set: false,
            bridges_at: Vec::new(),
        }
    }
}

impl Parser {
    /// The block the current line belongs to.
    fn block(&mut self) -> &mut listeners::Block {
        self.blocks.last_mut().expect("block 0 always exists")
    }

    fn finish(mut self) -> Result<Settings, String> {
        listeners::check_default(&self.blocks)?;
        self.s.security = security::finish(&self.blocks, self.per_listener_settings)?;
        self.s.broker.auth = self
            .s
            .security
            .iter()
            .map(|s| broker::Auth {
                allow_anonymous: s.allows_anonymous(),
                access: None,
            })
            .collect();
        self.s.listeners = listeners::finish(
            &self.blocks,
            self.per_listener_settings,
            &mut self.s.warnings,
        )?;
        let warnings = security::unreachable_listeners(&self.s);
        self.s.warnings.extend(warnings);
        bridge::finish(&mut self.s.bridges, &self.bridges_at)?;
        Ok(self.s)
    }
}
