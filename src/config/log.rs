//! Logging: what is logged and where (`crate::logging` does the logging).

use super::Parser;
use super::keys::{
    Key,
    Reload::{Applied, Restart},
    Scope::Global,
};
use super::reader::Line;
use crate::logging::LogTypes;

pub(super) const KEYS: &[Key] = &[
    Key::set(
        "log_dest",
        Global,
        Applied,
        "where the log goes: stderr, stdout, syslog, a file, or nowhere",
        log_dest,
    ),
    Key::set(
        "log_type",
        Global,
        Applied,
        "which kinds of lines are logged",
        |p, l| {
            let v = l.word()?;
            let types = LogTypes::parse(v).ok_or_else(|| {
                format!(
                    "`log_type` takes error, warning, notice, information, debug, \
                     subscribe, unsubscribe, websockets, all or none, not `{v}`"
                )
            })?;
            let log = &mut p.s.log;
            if !p.log_type_set || types == LogTypes::NONE {
                log.types = LogTypes::NONE;
            }
            p.log_type_set = true;
            log.types = log.types.with(types);
            Ok(())
        },
    ),
    Key::set(
        "log_facility",
        Global,
        Applied,
        "the syslog facility, local0 to local7",
        |p, l| {
            let v: i32 = l.number()?;
            if !(0..=7).contains(&v) {
                return Err("`log_facility` takes 0 to 7 (local0 to local7)".into());
            }
            p.s.log.facility = (16 + v) << 3;
            Ok(())
        },
    ),
    Key::set(
        "log_timestamp",
        Global,
        Applied,
        "whether log lines start with the time",
        |p, l| {
            p.s.log.timestamp = l.flag()?;
            Ok(())
        },
    ),
    Key::set(
        "connection_messages",
        Global,
        Restart,
        "whether clients connecting and going are logged",
        |p, l| {
            p.s.broker.connection_messages = l.flag()?;
            Ok(())
        },
    ),
];

/// The first `log_dest` line replaces the default (stderr); later ones
/// add to it.
fn log_dest(p: &mut Parser, l: &Line) -> Result<(), String> {
    let log = &mut p.s.log;
    if !p.log_dest_set {
        log.clear_dests();
    }
    p.log_dest_set = true;
    let rest = l.rest;
    let (dest, path) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let path = path.trim();
    match (dest, path.is_empty()) {
        ("none", true) => log.clear_dests(),
        ("stderr", true) => log.stderr = true,
        ("stdout", true) => log.stdout = true,
        ("syslog", true) => log.syslog = true,
        ("file", true) => return Err("`log_dest file` takes a path".into()),
        ("file", false) if log.file.is_some() => {
            return Err("only one `log_dest file` (as in mosquitto)".into());
        }
        // The rest of the line, spaces and all (as mosquitto).
        ("file", false) => log.file = Some(path.into()),
        ("topic" | "dlt" | "android", _) => {
            return Err(format!("`log_dest {dest}` is not supported by roost"));
        }
        _ => {
            return Err(format!(
                "`log_dest` takes stderr, stdout, syslog, file PATH or none, not `{rest}`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use crate::logging::{LogConfig, LogTypes};

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
}
