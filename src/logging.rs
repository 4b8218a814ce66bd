//! Logging as mosquitto.conf sets it up, on top of the `log` crate:
//! `log_type` picks which messages are kept, `log_dest` where they go
//! (stderr, stdout, a file, syslog). RUST_LOG, when set, decides what is
//! kept instead of `log_type` (env_logger's syntax, e.g. `roost=trace`),
//! and so does `-v` (everything) when RUST_LOG is not set; `log_dest`
//! always applies. SIGHUP ([`reload`]) reads the log settings again and
//! reopens the log file, so logrotate can move it away.
//!
//! When stderr is the journal (systemd sets `JOURNAL_STREAM` to its device
//! and inode), lines to stderr go without a timestamp (the journal has its
//! own) and start with the syslog priority (`<4>` for a warning), which
//! journald takes as the line's priority, as sd-daemon(3) describes.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use env_logger::Target;
use log::{Level, LevelFilter, Log, Metadata, Record};

/// Targets of the lines `log_type subscribe` and `unsubscribe` keep.
pub const SUBSCRIBE: &str = "roost::subscribe";
pub const UNSUBSCRIBE: &str = "roost::unsubscribe";

/// mosquitto's `log_type`s as a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogTypes(u8);

const ERROR: u8 = 1;
const WARNING: u8 = 2;
const NOTICE: u8 = 4;
const INFORMATION: u8 = 8;
const DEBUG: u8 = 16;
const SUBSCRIBE_BIT: u8 = 32;
const UNSUBSCRIBE_BIT: u8 = 64;
/// Accepted as mosquitto does; it selects libwebsockets' own messages,
/// which roost, with WebSockets of its own, does not have.
const WEBSOCKETS: u8 = 128;

impl LogTypes {
    pub const NONE: LogTypes = LogTypes(0);
    pub const ALL: LogTypes = LogTypes(u8::MAX);
    /// mosquitto's default: error, warning, notice and information.
    pub const DEFAULT: LogTypes = LogTypes(ERROR | WARNING | NOTICE | INFORMATION);

    pub fn parse(word: &str) -> Option<LogTypes> {
        Some(LogTypes(match word {
            "error" => ERROR,
            "warning" => WARNING,
            "notice" => NOTICE,
            "information" => INFORMATION,
            "debug" => DEBUG,
            "subscribe" => SUBSCRIBE_BIT,
            "unsubscribe" => UNSUBSCRIBE_BIT,
            "websockets" => WEBSOCKETS,
            "all" => u8::MAX,
            "none" => 0,
            _ => return None,
        }))
    }

    pub fn with(self, other: LogTypes) -> LogTypes {
        LogTypes(self.0 | other.0)
    }

    /// Whether a record is of a kept type. roost logs mosquitto's notices
    /// and information both at info level, so either type keeps it; debug
    /// keeps trace too, but only roost's own: dependencies' (mio's trace of
    /// every poll) are for RUST_LOG to ask for.
    fn allows(self, m: &Metadata) -> bool {
        let ours = m.target() == "roost" || m.target().starts_with("roost::");
        if m.level() >= Level::Debug && !ours {
            return false;
        }
        let bits = match m.target() {
            SUBSCRIBE => SUBSCRIBE_BIT,
            UNSUBSCRIBE => UNSUBSCRIBE_BIT,
            _ => match m.level() {
                Level::Error => ERROR,
                Level::Warn => WARNING,
                Level::Info => NOTICE | INFORMATION,
                Level::Debug | Level::Trace => DEBUG,
            },
        };
        self.0 & bits != 0
    }

    /// The most verbose level a kept record can have.
    fn max_level(self) -> LevelFilter {
        let has = |bits| self.0 & bits != 0;
        if has(DEBUG) {
            LevelFilter::Trace
        } else if has(SUBSCRIBE_BIT | UNSUBSCRIBE_BIT) {
            // Those lines are logged at debug level.
            LevelFilter::Debug
        } else if has(NOTICE | INFORMATION) {
            LevelFilter::Info
        } else if has(WARNING) {
            LevelFilter::Warn
        } else if has(ERROR) {
            LevelFilter::Error
        } else {
            LevelFilter::Off
        }
    }
}

/// The log settings of the config file.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub types: LogTypes,
    pub stderr: bool,
    pub stdout: bool,
    pub syslog: bool,
    pub file: Option<PathBuf>,
    /// syslog facility: daemon, or local0..7 by `log_facility`.
    pub facility: libc::c_int,
    /// `log_timestamp`: lines start with the time (not syslog's: it adds its own).
    pub timestamp: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            types: LogTypes::DEFAULT,
            stderr: true,
            stdout: false,
            syslog: false,
            file: None,
            facility: libc::LOG_DAEMON,
            timestamp: true,
        }
    }
}

impl LogConfig {
    pub fn clear_dests(&mut self) {
        self.stderr = false;
        self.stdout = false;
        self.syslog = false;
        self.file = None;
    }
}

struct Logger {
    /// RUST_LOG's filter, when set: it then decides alone. Only its
    /// filter is used; its output goes nowhere.
    env: Option<env_logger::Logger>,
    /// `-v`: every type is kept, whatever `log_type` says.
    verbose: bool,
    /// `log_type`, read on every record, so not behind the lock.
    types: AtomicU8,
    outputs: Mutex<Outputs>,
}

struct Outputs {
    config: LogConfig,
    /// stderr and stdout, formatted by env_logger as before `log_dest` existed.
    console: Vec<env_logger::Logger>,
    /// `log_dest stderr` with stderr connected to the journal: written by
    /// [`journal_line`] instead of env_logger.
    journal: bool,
    file: Option<env_logger::Logger>,
    syslog: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up logging from the config. Errors name the log file that does
/// not open.
pub fn init(config: &LogConfig, verbose: bool) -> Result<(), String> {
    let env = std::env::var_os("RUST_LOG").is_some().then(|| {
        env_logger::Builder::from_env("RUST_LOG")
            .target(Target::Pipe(Box::new(std::io::sink())))
            .build()
    });
    let file = match &config.file {
        Some(path) => Some(open_file(path, config.timestamp)?),
        None => None,
    };
    let logger = Logger {
        env,
        verbose,
        types: AtomicU8::new(0),
        outputs: Mutex::new(Outputs {
            config: LogConfig::default(),
            console: Vec::new(),
            journal: false,
            file: None,
            syslog: false,
        }),
    };
    logger.install(config, file);
    if LOGGER.set(logger).is_err() {
        return Err("logging is already set up".into());
    }
    let logger = LOGGER.get().expect("just set");
    log::set_logger(logger).map_err(|e| e.to_string())?;
    logger.set_max_level();
    Ok(())
}

/// SIGHUP: takes the log settings of the config file read again (None
/// without a config file, or when it no longer reads: the settings in
/// force stay) and reopens the log file. A file that does not open is
/// logged and the one opened before is kept; success is not logged here,
/// but by the reload as a whole.
pub fn reload(config: Option<&LogConfig>) {
    let Some(logger) = LOGGER.get() else {
        return;
    };
    let config = match config {
        Some(config) => config.clone(),
        None => logger.outputs().config.clone(),
    };
    let file = config
        .file
        .as_deref()
        .map(|path| open_file(path, config.timestamp));
    let file = match file {
        Some(Ok(file)) => Some(file),
        Some(Err(e)) => {
            log::error!("reload: {e}; still writing to the log file opened before");
            logger.outputs().file.take()
        }
        None => None,
    };
    logger.install(&config, file);
    logger.set_max_level();
}

impl Logger {
    fn outputs(&self) -> MutexGuard<'_, Outputs> {
        self.outputs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn install(&self, config: &LogConfig, file: Option<env_logger::Logger>) {
        let types = if self.verbose {
            LogTypes::ALL
        } else {
            config.types
        };
        self.types.store(types.0, Ordering::Relaxed);
        let mut console = Vec::new();
        let journal = config.stderr && stderr_is_journal();
        if config.stderr && !journal {
            console.push(writer(Target::Stderr, config.timestamp));
        }
        if config.stdout {
            console.push(writer(Target::Stdout, config.timestamp));
        }
        let mut out = self.outputs();
        let facility_changed = config.facility != out.config.facility;
        if out.syslog && (!config.syslog || facility_changed) {
            // SAFETY: closelog takes no arguments and is always safe.
            unsafe { libc::closelog() };
        }
        if config.syslog && (!out.syslog || facility_changed) {
            // SAFETY: the ident is a static C string, as openlog(3) requires.
            unsafe { libc::openlog(c"roost".as_ptr(), libc::LOG_PID, config.facility) };
        }
        *out = Outputs {
            config: config.clone(),
            console,
            journal,
            file,
            syslog: config.syslog,
        };
    }

    fn set_max_level(&self) {
        log::set_max_level(match &self.env {
            Some(env) => env.filter(),
            None => LogTypes(self.types.load(Ordering::Relaxed)).max_level(),
        });
    }
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        match &self.env {
            Some(env) => env.enabled(m),
            None => LogTypes(self.types.load(Ordering::Relaxed)).allows(m),
        }
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) || self.env.as_ref().is_some_and(|e| !e.matches(record))
        {
            return;
        }
        let out = self.outputs();
        if out.journal {
            use std::io::Write;
            // One write per record, so lines of two records never mix.
            let _ = std::io::stderr().write_all(journal_line(record).as_bytes());
        }
        for w in out.console.iter().chain(&out.file) {
            w.log(record);
        }
        if out.syslog {
            let msg = syslog_message(record);
            // SAFETY: a constant "%s" format and a NUL-terminated message.
            unsafe {
                libc::syslog(
                    syslog_priority(record.level()),
                    c"%s".as_ptr(),
                    msg.as_ptr(),
                )
            };
        }
    }

    fn flush(&self) {}
}

/// Whether stderr is the journal's stream: `JOURNAL_STREAM` (`DEV:INODE`,
/// set by systemd for `StandardError=journal`) names stderr's file.
pub fn stderr_is_journal() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    // SAFETY: fstat writes only into `st`, which is plain data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(libc::STDERR_FILENO, &mut st) } != 0 {
        return false;
    }
    journal_stream_is(var.to_str().unwrap_or(""), st.st_dev, st.st_ino)
}

fn journal_stream_is(var: &str, dev: libc::dev_t, ino: libc::ino_t) -> bool {
    var.split_once(':').is_some_and(|(d, i)| {
        d.parse::<libc::dev_t>() == Ok(dev) && i.parse::<libc::ino_t>() == Ok(ino)
    })
}

/// Whether the logger writes to stderr (so an error logged there needs no
/// second line on stderr); false before [`init`].
pub fn logs_to_stderr() -> bool {
    LOGGER
        .get()
        .is_some_and(|l| l.outputs().config.stderr && log::max_level() >= LevelFilter::Error)
}

/// A record as the journal takes it from stderr: `<PRIORITY>target: message`,
/// every line of a multi-line message with the priority.
fn journal_line(record: &Record) -> String {
    let prio = syslog_priority(record.level());
    let text = record.args().to_string();
    let mut out = String::with_capacity(text.len() + 32);
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            out.push_str(&format!("<{prio}>{}: {line}\n", record.target()));
        } else {
            out.push_str(&format!("<{prio}>  {line}\n"));
        }
    }
    if text.is_empty() {
        out.push_str(&format!("<{prio}>{}:\n", record.target()));
    }
    out
}

/// env_logger's format to `target`; the filtering is done before it.
fn writer(target: Target, timestamp: bool) -> env_logger::Logger {
    let mut b = env_logger::Builder::new();
    b.filter_level(LevelFilter::Trace).target(target);
    if let Ok(style) = std::env::var("RUST_LOG_STYLE") {
        b.parse_write_style(&style);
    }
    if !timestamp {
        b.format_timestamp(None);
    }
    b.build()
}

/// The log file, appended to: each line is one write, so a file renamed by
/// logrotate loses nothing until the reopen.
fn open_file(path: &Path, timestamp: bool) -> Result<env_logger::Logger, String> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("log_dest file {}: {e}", path.display()))?;
    Ok(writer(Target::Pipe(Box::new(file)), timestamp))
}

fn syslog_priority(level: Level) -> libc::c_int {
    match level {
        Level::Error => libc::LOG_ERR,
        Level::Warn => libc::LOG_WARNING,
        Level::Info => libc::LOG_INFO,
        Level::Debug | Level::Trace => libc::LOG_DEBUG,
    }
}

/// The message alone: syslog adds time, `roost[PID]:` and the priority.
fn syslog_message(record: &Record) -> CString {
    let text = record.args().to_string().replace('\0', "\\0");
    CString::new(text).expect("NULs replaced")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(level: Level, target: &str) -> Metadata<'_> {
        Metadata::builder().level(level).target(target).build()
    }

    #[test]
    fn types_keep_their_levels_and_targets() {
        let t = |words: &[&str]| {
            words
                .iter()
                .fold(LogTypes::NONE, |t, w| t.with(LogTypes::parse(w).unwrap()))
        };
        let default = LogTypes::DEFAULT;
        assert!(default.allows(&meta(Level::Info, "roost::net")));
        assert!(default.allows(&meta(Level::Error, "roost::net")));
        assert!(!default.allows(&meta(Level::Debug, "roost::net")));
        assert!(!default.allows(&meta(Level::Debug, SUBSCRIBE)));
        assert_eq!(default.max_level(), LevelFilter::Info);

        let errors = t(&["error"]);
        assert!(!errors.allows(&meta(Level::Warn, "roost")));
        assert_eq!(errors.max_level(), LevelFilter::Error);
        // Only the subscribe lines, not every debug line.
        let subs = t(&["warning", "subscribe"]);
        assert!(subs.allows(&meta(Level::Debug, SUBSCRIBE)));
        assert!(!subs.allows(&meta(Level::Debug, UNSUBSCRIBE)));
        assert!(!subs.allows(&meta(Level::Debug, "roost::broker")));
        assert!(!subs.allows(&meta(Level::Info, "roost::net")));
        assert_eq!(subs.max_level(), LevelFilter::Debug);
        assert!(t(&["notice"]).allows(&meta(Level::Info, "roost")));
        assert!(t(&["debug"]).allows(&meta(Level::Trace, "roost")));
        let all = t(&["all"]);
        assert!(all.allows(&meta(Level::Debug, "roost::net::conn")));
        assert!(!all.allows(&meta(Level::Trace, "mio::poll")));
        assert!(!all.allows(&meta(Level::Debug, "rustls::client")));
        assert!(all.allows(&meta(Level::Warn, "rustls::conn")));
        assert_eq!(t(&["none"]).max_level(), LevelFilter::Off);
        assert_eq!(LogTypes::parse("verbose"), None);
    }

    #[test]
    fn syslog_gets_the_message_and_a_priority() {
        assert_eq!(syslog_priority(Level::Error), libc::LOG_ERR);
        assert_eq!(syslog_priority(Level::Warn), libc::LOG_WARNING);
        assert_eq!(syslog_priority(Level::Info), libc::LOG_INFO);
        assert_eq!(syslog_priority(Level::Trace), libc::LOG_DEBUG);
        let msg = syslog_message(
            &Record::builder()
                .args(format_args!("listening on {}", "[::]:1883\0"))
                .level(Level::Info)
                .build(),
        );
        assert_eq!(msg.to_str().unwrap(), "listening on [::]:1883\\0");
    }

    #[test]
    fn journal_lines_carry_the_priority_and_no_timestamp() {
        let line = |level, text: &str| {
            journal_line(
                &Record::builder()
                    .args(format_args!("{text}"))
                    .level(level)
                    .target("roost::net")
                    .build(),
            )
        };
        assert_eq!(
            line(Level::Warn, "slow client"),
            "<4>roost::net: slow client\n"
        );
        assert_eq!(line(Level::Info, "a\nb"), "<6>roost::net: a\n<6>  b\n");
        assert_eq!(line(Level::Error, ""), "<3>roost::net:\n");
    }

    #[test]
    fn journal_stream_names_device_and_inode() {
        assert!(journal_stream_is("8:1234", 8, 1234));
        assert!(!journal_stream_is("8:1235", 8, 1234));
        assert!(!journal_stream_is("8", 8, 1234));
        assert!(!journal_stream_is("", 8, 1234));
    }
}
