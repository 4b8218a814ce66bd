//! Logging: what is logged and where (`crate::logging` does the logging).

use super::Parser;
use super::keys::{Key, Reload::Applied, Scope::Global};
use super::reader::{Line, cut};
use crate::logging::LogTypes;

pub(super) const KEYS: &[Key] = &[
    Key::set(
        "log_dest",
        Global,
        Applied,
        "where the log goes: stderr, stdout, syslog, a file, or nowhere",
        log_dest,
    )
    .words(),
    Key::set(
        "log_type",
        Global,
        Applied,
        "which kinds of lines are logged",
        |p, l| {
            let v = l.value;
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
        Applied,
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
    if !p.log_dest_set {
        p.s.log.clear_dests();
    }
    p.log_dest_set = true;
    let (dest, after) = cut(l.value);
    // `file` takes the rest of the line, spaces and all (as mosquitto);
    // the others ignore it, as mosquitto does.
    if dest != "file" {
        p.ignored(l.at, l.key, after);
    }
    let log = &mut p.s.log;
    match dest {
        "none" => log.clear_dests(),
        "stderr" => log.stderr = true,
        "stdout" => log.stdout = true,
        "syslog" => log.syslog = true,
        "file" if after.trim().is_empty() => return Err("`log_dest file` takes a path".into()),
        "file" if log.file.is_some() => {
            return Err("only one `log_dest file` (as in mosquitto)".into());
        }
        "file" => log.file = Some(after.trim().into()),
        "topic" | "dlt" | "android" => {
            return Err(format!("`log_dest {dest}` is not supported by roost"));
        }
        _ => {
            return Err(format!(
                "`log_dest` takes stderr, stdout, syslog, file PATH or none, not `{dest}`"
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
            "log_type chatty",
            "log_facility 8",
        ] {
            let e = parse(bad, "t.conf").unwrap_err();
            assert!(e.starts_with("t.conf:"), "{bad}: {e}");
        }
        // As mosquitto: a destination's first word counts.
        let s = parse(
            "log_dest stdout stderr
",
            "t.conf",
        )
        .unwrap();
        assert!(s.log.stdout && !s.log.stderr);
        assert!(s.warnings[0].contains("`stderr` after the value of `log_dest` is ignored"));
    }
}
