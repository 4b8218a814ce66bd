//! Reading config files: lines, `include_dir`, and handing each line to
//! its key in the table. Errors read `FILE:LINE: what is wrong`.

use std::cmp::Ordering;
use std::path::Path;

use super::Parser;
use super::keys::{self, Kind};

/// One `key value` line, as its key's parser sees it.
pub(super) struct Line<'a> {
    pub key: &'a str,
    /// What follows the key, trimmed.
    pub rest: &'a str,
    /// `FILE:LINE`, for values that remember where they were set.
    pub at: &'a str,
}

impl<'a> Line<'a> {
    /// The value's words.
    pub fn words(&self) -> Vec<&'a str> {
        self.rest.split_whitespace().collect()
    }

    /// The value, one word.
    pub fn word(&self) -> Result<&'a str, String> {
        match self.words()[..] {
            [v] => Ok(v),
            _ => Err(format!("`{}` takes one value", self.key)),
        }
    }

    /// A file name, user name or other text.
    pub fn text(&self) -> Result<&'a str, String> {
        self.word()
    }

    pub fn flag(&self) -> Result<bool, String> {
        boolean(self.key, self.word()?)
    }

    pub fn number<T: std::str::FromStr>(&self) -> Result<T, String> {
        number(self.key, self.word()?)
    }
}

impl Parser {
    pub(super) fn file(&mut self, path: &Path, main: bool) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.text(&text, &path.display().to_string(), main)
    }

    pub(super) fn text(&mut self, text: &str, file: &str, main: bool) -> Result<(), String> {
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let at = format!("{file}:{}", n + 1);
            let line = Line {
                key,
                rest: rest.trim(),
                at: &at,
            };
            let Some(entry) = keys::find(key) else {
                return Err(format!("{at}: unknown key `{key}`"));
            };
            match entry.kind {
                // Errors in the files it reads name those files.
                Kind::Include if !main => {
                    return Err(format!(
                        "{at}: `include_dir` is only read in the main config file (as in mosquitto)"
                    ));
                }
                Kind::Include => self.include_dir(Path::new(line.rest), &at)?,
                Kind::Set(apply) => apply(self, &line).map_err(|msg| format!("{at}: {msg}"))?,
                Kind::Other { warn } => self
                    .other(entry.doc, warn, &line)
                    .map_err(|msg| format!("{at}: {msg}"))?,
            }
        }
        Ok(())
    }

    /// A mosquitto key roost does not read.
    fn other(&mut self, why: &str, warn: bool, line: &Line) -> Result<(), String> {
        let key = line.key;
        if line.rest.is_empty() {
            return Err(format!("`{key}` takes a value"));
        }
        if !warn {
            return Err(format!(
                "`{key}` is a mosquitto key roost does not support yet"
            ));
        }
        self.s
            .warnings
            .push(format!("{}: `{key}` has no effect: {why}", line.at));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

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
