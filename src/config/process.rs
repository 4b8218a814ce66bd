//! The process: the main file's `include_dir`, the pid file, the user
//! roost becomes, and the files it writes, which start-up and
//! `--check-config` check it can write.

use std::path::{Path, PathBuf};

use super::Settings;
use super::keys::{Key, Kind, Reload, Scope::Global, Value};

pub(super) const KEYS: &[Key] = &[
    Key {
        name: "include_dir",
        scope: Global,
        reload: Reload::Applied,
        doc: "read every `*.conf` file of a directory here",
        mosquitto: true,
        value: Value::Text,
        kind: Kind::Include,
    },
    Key::set(
        "pid_file",
        Global,
        Reload::Restart,
        "where roost writes its process id",
        |p, l| {
            if p.s.pid_file.is_some() {
                return Err("duplicate `pid_file`".into());
            }
            p.s.pid_file = Some(l.value.into());
            Ok(())
        },
    )
    .text(),
    Key::set(
        "user",
        Global,
        Reload::Restart,
        "the user a roost started as root becomes",
        |p, l| {
            p.s.user = Some(l.value.into());
            Ok(())
        },
    )
    .text(),
];

impl Settings {
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
