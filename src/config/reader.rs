//! Reading config files: lines, `include_dir`, and handing each line to
//! its key in the table. Errors read `FILE:LINE: what is wrong`.
//!
//! A line means what it means to mosquitto 2.0, which reads it with
//! fgets and strtok_r: a line whose first character is `#` is a comment,
//! and so is an empty one; `\r` and `\n` at its end are cut, and so is
//! all from a NUL byte on; the key and the words of the value are
//! separated by spaces (a tab is part of a word, so `key<TAB>value` is an
//! unknown key, and a `#` after leading spaces is not a comment but a
//! key); a line of spaces is skipped. How a value is cut from the rest is
//! the key's [`Value`]. A file that starts with a UTF-8 byte order mark is
//! refused, as mosquitto refuses its first line.

use std::cmp::Ordering;
use std::path::Path;

use super::keys::{self, Key, Kind, Scope, Value};
use super::{Parser, Written};

/// One `key value` line, as its key's parser sees it.
pub(super) struct Line<'a> {
    pub key: &'a str,
    /// The value, cut as the key's [`Value`] says; never empty.
    pub value: &'a str,
    /// `FILE:LINE`, for values that remember where they were set.
    pub at: &'a str,
}

impl<'a> Line<'a> {
    /// The value's words, as mosquitto separates them: by spaces.
    pub fn words(&self) -> Vec<&'a str> {
        self.value.split(' ').filter(|w| !w.is_empty()).collect()
    }

    pub fn flag(&self) -> Result<bool, String> {
        boolean(self.key, self.value)
    }

    pub fn number<T: std::str::FromStr>(&self) -> Result<T, String> {
        number(self.key, self.value)
    }
}

/// The first word of `text` and what follows it, without the spaces
/// between (strtok_r with " ").
pub(super) fn cut(text: &str) -> (&str, &str) {
    let text = text.trim_start_matches(' ');
    let (word, after) = text.split_once(' ').unwrap_or((text, ""));
    (word, after.trim_start_matches(' '))
}

/// What C's isspace calls blank, which mosquitto trims from a text value.
fn blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

const BOM: &[u8] = b"\xef\xbb\xbf";

impl Parser {
    pub(super) fn file(&mut self, path: &Path, main: bool) -> Result<(), String> {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.bytes(&text, &path.display().to_string(), main)
    }

    pub(super) fn text(&mut self, text: &str, file: &str, main: bool) -> Result<(), String> {
        self.bytes(text.as_bytes(), file, main)
    }

    fn bytes(&mut self, text: &[u8], file: &str, main: bool) -> Result<(), String> {
        if text.starts_with(BOM) {
            return Err(format!(
                "{file}:1: the file starts with a byte order mark, which mosquitto \
                 refuses too: save it as UTF-8 without one"
            ));
        }
        for (n, raw) in text.split(|&b| b == b'\n').enumerate() {
            let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
            if raw.first().is_none_or(|&b| b == b'#') {
                continue;
            }
            let at = format!("{file}:{}", n + 1);
            let line = std::str::from_utf8(raw)
                .map_err(|_| format!("{at}: the line is not valid UTF-8"))?
                .trim_end_matches(['\r', '\n']);
            let (key, rest) = cut(line);
            if key.is_empty() {
                continue;
            }
            self.line(key, rest, &at, main)?;
        }
        Ok(())
    }

    /// The line of `key`, whose value is in `rest`.
    fn line(&mut self, key: &str, rest: &str, at: &str, main: bool) -> Result<(), String> {
        let Some(entry) = keys::find(key) else {
            return Err(format!("{at}: {}", unknown(key)));
        };
        let (value, after) = match entry.value {
            Value::Word => cut(rest),
            Value::Text => (rest.trim_matches(blank), ""),
            Value::Words => (rest, ""),
        };
        if value.is_empty() {
            return Err(format!("{at}: `{key}` takes a value"));
        }
        self.ignored(at, key, after);
        if entry.value == Value::Text && (value.contains(" #") || value.contains("\t#")) {
            self.s.warnings.push(format!(
                "{at}: `{key}` is `{value}`: a `#` after a value is part of it, \
                 as in mosquitto (comments go on lines of their own)"
            ));
        }
        let line = Line { key, value, at };
        match entry.kind {
            // Errors in the files it reads name those files.
            Kind::Include if !main => {
                return Err(format!(
                    "{at}: `include_dir` is only read in the main config file (as in mosquitto)"
                ));
            }
            Kind::Include => {
                self.record(entry, value);
                return self.include_dir(Path::new(value), at);
            }
            Kind::Set(apply) => apply(self, &line),
            Kind::Section(apply) => match self.s.bridges.last_mut() {
                Some(b) => apply(b, &line),
                None => Err(super::bridge::outside(key)),
            },
            Kind::Other { same, warn } => self.other(entry.doc, same, warn, &line),
        }
        .map_err(|msg| format!("{at}: {msg}"))?;
        self.record(entry, value);
        Ok(())
    }

    /// Remembers a line read, for a reload to tell what changed: its key,
    /// the listener or bridge it belongs to, and its value (without a
    /// comment after the words of a rule).
    fn record(&mut self, entry: &'static Key, value: &str) {
        let block = self.blocks.len() - 1;
        let place = match entry.scope {
            _ if matches!(entry.name, "listener" | "connection") => String::new(),
            Scope::Listener => self.blocks[block].place(block),
            Scope::Security if self.per_listener_settings => self.blocks[block].place(block),
            Scope::Global | Scope::Security => String::new(),
            Scope::Bridge => self
                .s
                .bridges
                .last()
                .map_or_else(String::new, |b| format!("bridge {}", b.name)),
        };
        let value = match entry.name {
            "listener" => self.blocks[block].address(),
            _ if entry.value == Value::Words => {
                let words: Vec<&str> = value.split(' ').filter(|w| !w.is_empty()).collect();
                let end = (1..words.len())
                    .find(|&i| words[i].starts_with('#'))
                    .unwrap_or(words.len());
                words[..end].join(" ")
            }
            _ => value.to_string(),
        };
        self.s.written.push(Written {
            place,
            key: entry.name,
            value,
        });
    }

    /// Text after a value that mosquitto ignores: a `#` comment, or with a
    /// warning anything else.
    pub(super) fn ignored(&mut self, at: &str, key: &str, after: &str) {
        if !after.is_empty() && !after.starts_with('#') {
            self.s.warnings.push(format!(
                "{at}: `{after}` after the value of `{key}` is ignored, as by mosquitto"
            ));
        }
    }

    /// A mosquitto key roost does not read: accepted at a value roost
    /// behaves as, else refused or with `warn` accepted with a warning.
    fn other(&mut self, why: &str, same: &[&str], warn: bool, l: &Line) -> Result<(), String> {
        let (key, value) = (l.key, l.value);
        // A switch in either spelling (`1`, `true`).
        let switch = !same.is_empty() && same.iter().all(|v| matches!(*v, "true" | "false"));
        let value = match switch {
            true if l.flag()? => "true",
            true => "false",
            false => value,
        };
        if same.contains(&value) {
            return Ok(());
        }
        match (warn, same.first()) {
            (true, None) => self
                .s
                .warnings
                .push(format!("{}: `{key}` has no effect: {why}", l.at)),
            (true, Some(_)) => self
                .s
                .warnings
                .push(format!("{}: `{key} {value}` has no effect: {why}", l.at)),
            (false, None) => {
                return Err(format!(
                    "`{key}` is a mosquitto key roost does not support: {why}"
                ));
            }
            (false, Some(same)) => {
                return Err(format!(
                    "`{key} {value}` is not supported by roost: {why} \
                     (`{key} {same}` is accepted)"
                ));
            }
        }
        Ok(())
    }

    /// Reads every `*.conf` file in `dir`, in mosquitto's order.
    fn include_dir(&mut self, dir: &Path, at: &str) -> Result<(), String> {
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

/// The error for a key not in the table, with what mosquitto would make
/// of a line some editors write.
fn unknown(key: &str) -> String {
    if key.starts_with('#') {
        return "a `#` starts a comment only as the first character of the line \
                (as in mosquitto): remove the spaces before it"
            .into();
    }
    if key.contains('\t') {
        return format!(
            "unknown key `{}`: key and value are separated by spaces, not tabs \
             (as in mosquitto)",
            key.escape_debug()
        );
    }
    format!("unknown key `{key}`")
}

/// A number, with the blanks around it that C's atoi skips (mosquitto's
/// reading); anything else in it is an error, where atoi would read 0.
pub(crate) fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.trim_matches(blank)
        .parse()
        .map_err(|_| format!("`{key}`: `{}` is not a valid number here", v.escape_debug()))
}

/// A switch: true or false, or as mosquitto also reads them 1 or 0.
pub(crate) fn boolean(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!(
            "`{key}` takes true or false, not `{}`",
            v.escape_debug()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("listener 1883\nbridge_psk /x\n", "/etc/roost.conf").unwrap_err();
        assert_eq!(
            e,
            "/etc/roost.conf:2: `bridge_psk` is a mosquitto key roost does not support: \
             roost has no TLS-PSK"
        );
        let e = parse("\nplugin_opt_x 1\n", "a.conf").unwrap_err();
        assert!(
            e.contains("does not support: roost loads no plugins"),
            "{e}"
        );
        let e = parse("\nlistenr 1883\n", "a.conf").unwrap_err();
        assert_eq!(e, "a.conf:2: unknown key `listenr`");
        let e = parse("\n\nmax_queued_messages lots\n", "a.conf").unwrap_err();
        assert!(e.starts_with("a.conf:3: "), "{e}");
        let e = parse("allow_anonymous yes\n", "a.conf").unwrap_err();
        assert!(e.starts_with("a.conf:1: "), "{e}");
        assert!(parse("listener 1 127.0.0.1\nprotocol mqtt\n", "a.conf").is_ok());
    }

    /// The bytes of a file as roost reads them.
    fn read(bytes: &[u8]) -> Result<crate::config::Settings, String> {
        let mut p = Parser::default();
        p.bytes(bytes, "t.conf", true)?;
        p.finish()
    }

    #[test]
    fn lines_are_read_as_mosquitto_reads_them() {
        // A comment or value after a switch or number: ignored, text
        // other than a comment with a warning.
        let s = parse(
            "allow_anonymous true  # x
max_queued_messages 5 # y
",
            "t",
        )
        .unwrap();
        assert_eq!(s.security[0].allow_anonymous, Some(true));
        assert_eq!(s.broker.max_queued, 5);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        let s = parse(
            "allow_anonymous true false
",
            "t",
        )
        .unwrap();
        assert_eq!(s.security[0].allow_anonymous, Some(true));
        assert_eq!(
            s.warnings,
            ["t:1: `false` after the value of `allow_anonymous` is ignored, as by mosquitto"]
        );
        // Leading spaces, runs of spaces, a line of spaces, CRLF, a NUL,
        // a last line without a newline; 1 and 0 as switches.
        let s = read(b"  listener 1883   127.0.0.1 \r\n   \r\n\nallow_anonymous 1\0junk\r\nretain_available 0").unwrap();
        assert_eq!(
            s.listen_addrs().unwrap(),
            ["127.0.0.1:1883".parse().unwrap()]
        );
        assert!(s.broker.auth[0].allow_anonymous && !s.broker.retain_available);
        // A comment line may hold any bytes; other lines must be UTF-8.
        assert!(read(b"# caf\xe9\nlistener 1\n").is_ok());
        let e = read(b"\npid_file /tmp/caf\xe9\n").unwrap_err();
        assert_eq!(e, "t.conf:2: the line is not valid UTF-8");
        // Text values take the rest of the line, blanks trimmed, `#` kept
        // (with a warning).
        let s = parse("pid_file \t /run/my roost.pid \t\n", "t").unwrap();
        assert_eq!(s.pid_file, Some("/run/my roost.pid".into()));
        let s = parse("password_file /etc/pw # x\n", "t").unwrap();
        assert_eq!(s.security[0].password_file, Some("/etc/pw # x".into()));
        assert!(s.warnings[0].contains("a `#` after a value is part of it"));
        // Numbers: the blanks atoi skips, nothing else.
        assert_eq!(
            parse("max_queued_messages 7\t\n", "t")
                .unwrap()
                .broker
                .max_queued,
            7
        );
        assert!(parse("max_queued_messages 7x\n", "t").is_err());
        // `listener`: an address starting with `#` is a comment.
        let s = parse("listener 1883 # all\n", "t").unwrap();
        assert_eq!(s.listen_addrs().unwrap().len(), 2);
    }

    #[test]
    fn lines_mosquitto_refuses_are_refused() {
        for (text, want) in [
            (
                &b"\xef\xbb\xbflistener 1883\n"[..],
                "t.conf:1: the file starts with a byte order mark",
            ),
            (
                b"\xef\xbb\xbf# comment\n",
                "t.conf:1: the file starts with a byte order mark",
            ),
            (
                b"listener 1\n  # indented\n",
                "t.conf:2: a `#` starts a comment only as the first",
            ),
            (
                b"allow_anonymous\ttrue\n",
                "t.conf:1: unknown key `allow_anonymous\\ttrue`: key and value are separated by spaces",
            ),
            (
                b"\tallow_anonymous true\n",
                "t.conf:1: unknown key `\\tallow_anonymous`",
            ),
            (b"\t\n", "t.conf:1: unknown key `\\t`"),
            (
                b"allow_anonymous true\t# x\n",
                "`allow_anonymous` takes true or false, not `true\\t#`",
            ),
            (
                b"allow_anonymous\n",
                "t.conf:1: `allow_anonymous` takes a value",
            ),
            (b"pid_file   \n", "t.conf:1: `pid_file` takes a value"),
            (b"ALLOW_ANONYMOUS true\n", "unknown key `ALLOW_ANONYMOUS`"),
            (b"allow_anonymous TRUE\n", "takes true or false"),
        ] {
            let e = read(text).unwrap_err();
            assert!(e.contains(want), "{:?}: {e}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn mosquitto_keys_at_values_roost_behaves_as_are_accepted() {
        for text in [
            "queue_qos0_messages false",
            "allow_zero_length_clientid true",
            "max_qos 2",
            "maximum_qos 2",
            "use_username_as_clientid 0",
            "use_subject_as_username false",
            "allow_duplicate_messages true",
            "allow_duplicate_messages false",
            "check_retain_source false",
            "max_inflight_bytes 0",
            "set_tcp_nodelay true",
            "tls_keyform pem",
            "websockets_log_level 0",
            "upgrade_outgoing_qos false",
            "listener 1\nrequire_certificate false\nuse_identity_as_username false",
            "require_certificate false\nlistener 1",
        ] {
            let s = parse(&format!("{text}\nallow_anonymous true\n"), "a.conf")
                .unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(s.warnings.is_empty(), "{text:?}: {:?}", s.warnings);
        }
        // Values asking for what roost does not do: refused, saying why.
        for (text, want) in [
            (
                "queue_qos0_messages true",
                "`queue_qos0_messages true` is not supported by roost: roost queues no \
                 QoS 0 messages for clients that are away (`queue_qos0_messages false` \
                 is accepted)",
            ),
            (
                "use_username_as_clientid true",
                "`use_username_as_clientid true` is not supported by roost",
            ),
            (
                "allow_zero_length_clientid 0",
                "`allow_zero_length_clientid false`",
            ),
            ("upgrade_outgoing_qos yes", "takes true or false, not `yes`"),
            (
                "crlfile /crl.pem",
                "`crlfile` is a mosquitto key roost does not support",
            ),
            ("enable_control_api true", "mosquitto 2.1"),
        ] {
            let e = parse(text, "a.conf").unwrap_err();
            assert!(
                e.starts_with("a.conf:1: ") && e.contains(want),
                "{text:?}: {e}"
            );
        }
        // Or where it changes only how roost looks or performs, warned of.
        for (text, want) in [
            (
                "set_tcp_nodelay false",
                "`set_tcp_nodelay false` has no effect",
            ),
            (
                "check_retain_source true",
                "`check_retain_source true` has no effect",
            ),
            ("max_inflight_bytes 1000", "max_outgoing_bytes"),
            (
                "log_timestamp_format %Y-%m-%d",
                "`log_timestamp_format` has no effect",
            ),
            ("dhparamfile /etc/dh.pem", "forward secret"),
            (
                "listener 1\ntls_version tlsv1.2",
                "no `certfile` and `keyfile`",
            ),
        ] {
            let s = parse(&format!("{text}\nallow_anonymous true\n"), "a.conf").unwrap();
            assert_eq!(s.warnings.len(), 1, "{text:?}: {:?}", s.warnings);
            assert!(s.warnings[0].contains(want), "{text:?}: {:?}", s.warnings);
        }
        // A value is still required, as for any key.
        assert!(parse("set_tcp_nodelay\n", "a.conf").is_err());
        assert!(parse("user\n", "a.conf").is_err());
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
}
