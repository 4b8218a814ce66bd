//! `roost passwd`: adds, changes and deletes users in a password file, as
//! mosquitto_passwd does, so either tool can manage either broker's file.
//! New entries are `$7$` with 101 iterations and a random 12-byte salt;
//! other lines are kept as they are; the file is replaced atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::hash::{PasswordHash, SALT_LEN};
use super::password_file::entry;

pub const USAGE: &str = "\
Usage: roost passwd [-c] FILE USER          ask for USER's password (twice)
       roost passwd [-c] -b FILE USER PASS  set it from the command line
       roost passwd -D FILE USER            delete USER

  -c  create FILE, or overwrite it if it exists
  -b  batch mode: the password is the last argument (visible to `ps`)
  -D  delete the user

Without a terminal the password is read from two lines of standard input.";

pub fn run(args: &[String]) -> Result<(), String> {
    let (mut create, mut batch, mut delete) = (false, false, false);
    // Options come first, as for mosquitto_passwd: a password given with
    // -b may start with `-`.
    let first = args
        .iter()
        .position(|a| !a.starts_with('-'))
        .unwrap_or(args.len());
    for flag in &args[..first] {
        match flag.as_str() {
            "-c" => create = true,
            "-b" => batch = true,
            "-D" => delete = true,
            _ => return Err(format!("unknown option `{flag}`")),
        }
    }
    let rest: Vec<&str> = args[first..].iter().map(String::as_str).collect();
    let wanted = if batch { 3 } else { 2 };
    if rest.len() != wanted || (delete && (create || batch)) {
        return Err(format!("wrong arguments\n{USAGE}"));
    }
    let (path, user) = (Path::new(rest[0]), rest[1]);
    if user.is_empty() || user.contains(':') || user.contains(char::is_control) {
        return Err("a user name must be non-empty, without `:` or control characters".into());
    }
    let text = if create {
        String::new()
    } else {
        fs::read_to_string(path).map_err(|e| format!("{}: {e} (-c creates it)", path.display()))?
    };
    let text = if delete {
        remove_user(&text, user).ok_or_else(|| format!("user `{user}` not found"))?
    } else {
        let password = match rest.get(2) {
            Some(p) => (*p).to_owned(),
            None => ask_password()?,
        };
        if password.is_empty() {
            return Err("the password must not be empty".into());
        }
        let hash = PasswordHash::new(password.as_bytes(), random_salt()?);
        set_user(&text, user, &hash)
    };
    write_atomically(path, &text).map_err(|e| format!("{}: {e}", path.display()))
}

fn is_user(line: &str, user: &str) -> bool {
    entry(line)
        .and_then(Result::ok)
        .is_some_and(|(name, _)| name == user)
}

/// `text` with `user`'s line replaced by `user:hash`, or that line added.
fn set_user(text: &str, user: &str, hash: &PasswordHash) -> String {
    let new_line = format!("{user}:{hash}");
    let mut out = String::new();
    let mut done = false;
    for line in text.lines() {
        if is_user(line, user) {
            if done {
                // A second line for the user would shadow or clash.
                continue;
            }
            done = true;
            out.push_str(&new_line);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !done {
        out.push_str(&new_line);
        out.push('\n');
    }
    out
}

/// `text` without `user`'s lines; None when there were none.
fn remove_user(text: &str, user: &str) -> Option<String> {
    let kept: Vec<&str> = text.lines().filter(|l| !is_user(l, user)).collect();
    if kept.len() == text.lines().count() {
        return None;
    }
    Some(kept.iter().map(|l| format!("{l}\n")).collect())
}

/// Reads the password twice: from the terminal without echo, or from two
/// lines of standard input when it is not a terminal (scripts, tests).
fn ask_password() -> Result<String, String> {
    // SAFETY: isatty only inspects file descriptor 0.
    let tty = unsafe { libc::isatty(0) } == 1;
    let ask = |prompt: &str| -> Result<String, String> {
        let _echo = if tty {
            eprint!("{prompt}");
            Some(EchoOff::new().map_err(|e| format!("terminal: {e}"))?)
        } else {
            None
        };
        let mut line = String::new();
        let n = io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("reading the password: {e}"))?;
        if n == 0 {
            return Err("no password given".into());
        }
        Ok(line.trim_end_matches(['\n', '\r']).to_owned())
    };
    let first = ask("Password: ")?;
    let again = ask("Reenter password: ")?;
    if first != again {
        return Err("passwords do not match".into());
    }
    Ok(first)
}

/// The terminal on standard input stops echoing (but for the newline)
/// until this is dropped.
struct EchoOff(libc::termios);

impl EchoOff {
    fn new() -> io::Result<EchoOff> {
        // SAFETY: termios is plain data, filled in by tcgetattr before use.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a valid termios pointer.
        if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let saved = t;
        t.c_lflag = (t.c_lflag & !libc::ECHO) | libc::ECHONL;
        // SAFETY: as above.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EchoOff(saved))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings tcgetattr returned.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.0) };
    }
}

fn random_salt() -> Result<[u8; SALT_LEN], String> {
    let mut salt = [0; SALT_LEN];
    crate::random::fill(&mut salt).map_err(|e| format!("getrandom: {e}"))?;
    Ok(salt)
}

/// Writes a temporary file beside `path` and renames it over `path`, so
/// a broker reading the file never sees half of it and a crash leaves
/// the old one. Mode and owner of an existing file are kept; a new file
/// is readable by its owner only, as it holds password hashes.
fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let old = fs::metadata(path).ok();
    let mode = old
        .as_ref()
        .map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        // The umask may have narrowed the mode asked for at open.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        if let Some(m) = &old {
            // Best effort: only root may give the file to someone else,
            // and a file kept by its current user needs no change.
            let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
        }
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(p: &str) -> PasswordHash {
        PasswordHash::new(p.as_bytes(), [7; SALT_LEN])
    }

    #[test]
    fn set_replaces_or_appends_and_keeps_other_lines() {
        let text = format!("# users\nalice:{}\nbob:{}\n", hash("a"), hash("b"));
        let changed = set_user(&text, "alice", &hash("new"));
        assert_eq!(
            changed,
            format!("# users\nalice:{}\nbob:{}\n", hash("new"), hash("b"))
        );
        let added = set_user("# users", "carol", &hash("c"));
        assert_eq!(added, format!("# users\ncarol:{}\n", hash("c")));
        let dup = set_user(
            &format!("a:{0}\nb:{0}\na:{0}\n", hash("x")),
            "a",
            &hash("y"),
        );
        assert_eq!(dup, format!("a:{}\nb:{}\n", hash("y"), hash("x")));
    }

    #[test]
    fn remove_deletes_only_that_user() {
        let text = format!("alice:{}\n# keep\nbob:{}\n", hash("a"), hash("b"));
        assert_eq!(
            remove_user(&text, "alice").unwrap(),
            format!("# keep\nbob:{}\n", hash("b"))
        );
        assert_eq!(remove_user(&text, "ali"), None);
    }

    #[test]
    fn writes_atomically_keeping_the_mode() {
        let dir = std::env::temp_dir().join(format!("roost-passwd-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pw");
        write_atomically(&path, "a\n").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&path, "b\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "b\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temporary left");
        fs::remove_dir_all(&dir).unwrap();
    }
}
