//! The password file (`password_file`): `user:hash` lines as
//! mosquitto_passwd writes them; blank lines and `#` comments are skipped.

use std::collections::HashMap;
use std::path::Path;

use super::hash::PasswordHash;

#[derive(Debug)]
pub struct PasswordFile {
    users: HashMap<String, PasswordHash>,
    /// Checked for names not in the file, so that an unknown user costs
    /// the same hashing as a known one and timing tells no names.
    dummy: PasswordHash,
}

impl PasswordFile {
    pub fn load(path: &Path) -> Result<PasswordFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        PasswordFile::parse(&text, &path.display().to_string())
    }

    /// Parses `text`; errors read `FILE:LINE: what is wrong`.
    pub fn parse(text: &str, file: &str) -> Result<PasswordFile, String> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let at = |msg: String| format!("{file}:{}: {msg}", n + 1);
            let Some(parsed) = entry(line) else {
                continue;
            };
            let (user, hash) = parsed.map_err(at)?;
            let hash = PasswordHash::parse(hash).map_err(at)?;
            if users.insert(user.to_owned(), hash).is_some() {
                return Err(at(format!("user `{user}` is listed twice")));
            }
        }
        let dummy = users
            .values()
            .max_by_key(|h| h.work())
            .cloned()
            .unwrap_or_else(|| PasswordHash::new(b"", [0; super::hash::SALT_LEN]));
        Ok(PasswordFile { users, dummy })
    }

    /// `user`'s entry as a number that changes when it does; None for a
    /// user not in the file.
    pub fn fingerprint(&self, user: &str) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.users.get(user)?.hash(&mut hasher);
        Some(hasher.finish())
    }

    /// Whether `user` exists and `password` is theirs. A client that gives
    /// a user name without a password is refused, as by mosquitto.
    pub fn check(&self, user: &str, password: Option<&[u8]>) -> bool {
        let known = self.users.get(user);
        let matched = known
            .unwrap_or(&self.dummy)
            .verify(password.unwrap_or_default());
        matched && known.is_some() && password.is_some()
    }
}

/// Splits a line into user name and hash; None for blank and comment
/// lines. Shared with `roost passwd`, which edits the file line by line.
pub fn entry(line: &str) -> Option<Result<(&str, &str), String>> {
    let line = line.trim_end_matches('\r');
    if line.trim().is_empty() || line.starts_with('#') {
        return None;
    }
    Some(match line.split_once(':') {
        Some((user, hash)) if !user.is_empty() => Ok((user, hash.trim_end())),
        _ => Err("expected `user:hash`".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> PasswordFile {
        let alice = PasswordHash::new(b"secret", *b"abcdefghijkl");
        let bob = PasswordHash::new(b"builder", *b"mnopqrstuvwx");
        PasswordFile::parse(&format!("# users\nalice:{alice}\n\r\nbob:{bob}\r\n"), "pw").unwrap()
    }

    #[test]
    fn checks_users_and_passwords() {
        let f = file();
        assert!(f.check("alice", Some(b"secret")));
        assert!(f.check("bob", Some(b"builder")));
        assert!(!f.check("alice", Some(b"builder")));
        assert!(!f.check("alice", None));
        assert!(!f.check("carol", Some(b"secret")));
        assert!(!f.check("", Some(b"")));
    }

    #[test]
    fn unknown_users_cost_as_much_as_known_ones() {
        assert_eq!(file().dummy.work(), 101);
        let empty = PasswordFile::parse("", "pw").unwrap();
        assert!(!empty.check("anyone", Some(b"")));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = PasswordFile::parse("# c\nalice\n", "/etc/pw").unwrap_err();
        assert_eq!(e, "/etc/pw:2: expected `user:hash`");
        let e = PasswordFile::parse("alice:secret\n", "pw").unwrap_err();
        assert!(e.starts_with("pw:1: not a mosquitto_passwd hash"), "{e}");
        let h = PasswordHash::new(b"x", [1; 12]);
        let e = PasswordFile::parse(&format!("a:{h}\na:{h}\n"), "pw").unwrap_err();
        assert_eq!(e, "pw:2: user `a` is listed twice");
    }
}
