//! What roost.service lets roost write. Under `ProtectSystem=strict` (and
//! `DynamicUser=yes`, which implies it) the service sees a read-only file
//! system but for its state, logs, runtime and cache directories, a
//! private /tmp, and `ReadWritePaths=`. At start-up inside that sandbox a
//! path outside them fails the write check of [`Settings::check_paths`];
//! `--check-config` run by hand, outside the sandbox, reads the installed
//! unit and its drop-ins instead, so the same path is refused before a
//! restart finds it.

use std::path::{Path, PathBuf};

use super::Settings;

const UNIT: &str = "roost.service";
/// Where unit files and drop-ins are looked for, most important first.
const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The sandbox roost.service sets up, as far as writing files goes.
#[derive(Debug, Default, PartialEq)]
pub struct Sandbox {
    /// `ProtectSystem=strict`, or implied by `DynamicUser=yes`.
    strict: bool,
    /// The `-c`/`--config` file of `ExecStart=`.
    config: Option<PathBuf>,
    /// Directories the service may write, whatever `strict` says.
    writable: Vec<PathBuf>,
}

impl Sandbox {
    /// roost.service as installed here, with its drop-ins; None when no
    /// unit file is installed.
    pub fn installed() -> Option<Sandbox> {
        let unit = UNIT_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(UNIT))
            .find(|p| p.is_file())?;
        let mut texts = vec![std::fs::read_to_string(&unit).ok()?];
        // Drop-ins apply in file name order across the directories; one in
        // a more important directory hides a same-named one elsewhere.
        let mut dropins: Vec<(std::ffi::OsString, PathBuf)> = Vec::new();
        for dir in UNIT_DIRS {
            let Ok(entries) = std::fs::read_dir(Path::new(dir).join(format!("{UNIT}.d"))) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                if Path::new(&name).extension().is_some_and(|x| x == "conf")
                    && !dropins.iter().any(|(n, _)| *n == name)
                {
                    dropins.push((name, e.path()));
                }
            }
        }
        dropins.sort();
        texts.extend(
            dropins
                .iter()
                .filter_map(|(_, p)| std::fs::read_to_string(p).ok()),
        );
        Some(Sandbox::parse(&texts))
    }

    /// The unit file's text, then each drop-in's.
    fn parse(texts: &[String]) -> Sandbox {
        let mut s = Sandbox::default();
        let (mut protect, mut dynamic_user, mut private_tmp) = (false, false, false);
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut rw: Vec<PathBuf> = Vec::new();
        for line in texts.iter().flat_map(|t| t.lines()).map(str::trim) {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let yes = matches!(value, "yes" | "true" | "on" | "1");
            match key {
                "ExecStart" if value.is_empty() => s.config = None,
                "ExecStart" => {
                    let words: Vec<&str> = value.split_whitespace().collect();
                    s.config = words
                        .windows(2)
                        .find(|w| w[0] == "-c" || w[0] == "--config")
                        .map(|w| PathBuf::from(w[1]));
                }
                "ProtectSystem" => protect = value == "strict",
                "DynamicUser" => dynamic_user = yes,
                "PrivateTmp" => private_tmp = yes,
                "ReadWritePaths" if value.is_empty() => rw.clear(),
                "ReadWritePaths" => rw.extend(
                    value
                        .split_whitespace()
                        .map(|p| PathBuf::from(p.trim_start_matches(['-', '+']))),
                ),
                "StateDirectory" | "LogsDirectory" | "RuntimeDirectory" | "CacheDirectory" => {
                    let base = match key {
                        "StateDirectory" => "/var/lib",
                        "LogsDirectory" => "/var/log",
                        "RuntimeDirectory" => "/run",
                        _ => "/var/cache",
                    };
                    if value.is_empty() {
                        dirs.retain(|d| !d.starts_with(base));
                    }
                    for name in value.split_whitespace() {
                        let name = name.split(':').next().unwrap_or(name);
                        dirs.push(Path::new(base).join(name));
                    }
                }
                _ => {}
            }
        }
        s.strict = protect || dynamic_user;
        if private_tmp || dynamic_user {
            dirs.push("/tmp".into());
            dirs.push("/var/tmp".into());
        }
        dirs.extend(rw);
        s.writable = dirs;
        s
    }

    /// Whether the unit runs roost with config file `config`.
    pub fn runs(&self, config: &Path) -> bool {
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        self.config
            .as_deref()
            .is_some_and(|c| canon(c) == canon(config))
    }

    /// The files roost would write that the sandbox would not let it: an
    /// error naming the first, and where it may write.
    pub fn check(&self, settings: &Settings) -> Result<(), String> {
        if !self.strict {
            return Ok(());
        }
        for (key, path) in settings.written_paths() {
            // The service starts in /: a relative path is under it.
            let path = Path::new("/").join(path.strip_prefix(".").unwrap_or(path));
            if self.writable.iter().any(|dir| path.starts_with(dir)) {
                continue;
            }
            let dirs: Vec<String> = self
                .writable
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            return Err(format!(
                "{key} {}: {UNIT} runs roost with ProtectSystem=strict, so it may write only \
                 under {}; use one of those, or allow the path with a drop-in \
                 (`systemctl edit roost`: ReadWritePaths=...)",
                path.display(),
                dirs.join(", ")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT_TEXT: &str = "[Service]\nExecStart=/usr/bin/roost -c /etc/roost/roost.conf\n\
        DynamicUser=yes\nStateDirectory=roost\nConfigurationDirectory=roost\n\
        ProtectSystem=strict\nPrivateTmp=yes\n";

    fn settings(text: &str) -> Settings {
        crate::config::parse(text, "t.conf").unwrap()
    }

    #[test]
    fn the_shipped_unit_lets_roost_write_its_state_directory_only() {
        let unit = Sandbox::parse(&[UNIT_TEXT.into()]);
        assert!(unit.runs(Path::new("/etc/roost/roost.conf")));
        assert!(!unit.runs(Path::new("/tmp/other.conf")));
        let ok = settings("persistence true\npersistence_location /var/lib/roost/\n");
        unit.check(&ok).unwrap();
        for (text, key) in [
            (
                "persistence true\npersistence_location /srv/roost\n",
                "persistence_location /srv/roost",
            ),
            ("persistence true\n", "persistence_location /:"),
            ("pid_file /run/roost.pid\n", "pid_file /run/roost.pid"),
            (
                "log_dest file /var/log/roost/roost.log\n",
                "log_dest file /var/log/roost/roost.log",
            ),
        ] {
            let e = unit.check(&settings(text)).unwrap_err();
            assert!(e.starts_with(key), "{e}");
            assert!(
                e.contains("only under /var/lib/roost, /tmp, /var/tmp"),
                "{e}"
            );
        }
    }

    #[test]
    fn drop_ins_add_and_reset() {
        let dropin = "[Service]\nLogsDirectory=roost\nReadWritePaths=-/srv/mqtt\n".to_string();
        let unit = Sandbox::parse(&[UNIT_TEXT.into(), dropin]);
        unit.check(&settings("log_dest file /var/log/roost/roost.log\n"))
            .unwrap();
        unit.check(&settings(
            "persistence true\npersistence_location /srv/mqtt/db\n",
        ))
        .unwrap();
        let off = "[Service]\nExecStart=\nExecStart=/opt/roost -c /opt/r.conf\nProtectSystem=full\nDynamicUser=no\n";
        let unit = Sandbox::parse(&[UNIT_TEXT.into(), off.into()]);
        assert!(unit.runs(Path::new("/opt/r.conf")));
        unit.check(&settings("pid_file /run/roost.pid\n")).unwrap();
    }
}
