//! The password hashes of mosquitto_passwd, so a gateway's existing password
//! file keeps working: `$7$ITERATIONS$SALT$HASH` (PBKDF2-HMAC-SHA512,
//! mosquitto 2) and `$6$SALT$HASH` (SHA-512 of password then salt, older
//! files). Salt and hash are standard base64 with padding.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

/// Salt bytes in new entries, as mosquitto_passwd writes them.
pub const SALT_LEN: usize = 12;
/// PBKDF2 rounds of new entries: mosquitto 2's default, so the files stay
/// interchangeable and a Pi's CONNECT costs well under a millisecond.
pub const DEFAULT_ITERATIONS: u32 = 101;

const HASH_LEN: usize = 64;

#[derive(Clone, PartialEq, Eq, Hash)]
pub enum PasswordHash {
    /// `$6$`: SHA-512 over the password followed by the salt.
    Sha512 { salt: Vec<u8>, hash: [u8; HASH_LEN] },
    /// `$7$`: PBKDF2-HMAC-SHA512 with a 64-byte key.
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: [u8; HASH_LEN],
    },
}

impl PasswordHash {
    /// A new `$7$` entry for `password` with mosquitto 2's parameters.
    pub fn new(password: &[u8], salt: [u8; SALT_LEN]) -> PasswordHash {
        PasswordHash::Pbkdf2 {
            iterations: DEFAULT_ITERATIONS,
            hash: pbkdf2(password, &salt, DEFAULT_ITERATIONS),
            salt: salt.to_vec(),
        }
    }

    /// Parses the part after `user:`.
    pub fn parse(text: &str) -> Result<PasswordHash, String> {
        let fields: Vec<&str> = text.split('$').collect();
        match fields.as_slice() {
            ["", "6", salt, hash] => Ok(PasswordHash::Sha512 {
                salt: decode(salt, "salt")?,
                hash: digest_bytes(hash)?,
            }),
            ["", "7", iterations, salt, hash] => {
                let iterations = iterations
                    .parse()
                    .ok()
                    .filter(|&n: &u32| n > 0)
                    .ok_or_else(|| format!("bad iteration count `{iterations}`"))?;
                Ok(PasswordHash::Pbkdf2 {
                    iterations,
                    salt: decode(salt, "salt")?,
                    hash: digest_bytes(hash)?,
                })
            }
            _ => Err(
                "not a mosquitto_passwd hash ($6$ or $7$); plain text passwords \
                      must be hashed with `roost passwd` or `mosquitto_passwd -U`"
                    .into(),
            ),
        }
    }

    /// Whether `password` is the one hashed here. The comparison takes the
    /// same time wherever the first differing byte is.
    pub fn verify(&self, password: &[u8]) -> bool {
        let stored = match self {
            PasswordHash::Sha512 { hash, .. } | PasswordHash::Pbkdf2 { hash, .. } => hash,
        };
        self.digest(password).ct_eq(stored).into()
    }

    /// What checking a password against this entry costs, in hash rounds:
    /// unknown users are checked against the costliest entry.
    pub fn work(&self) -> u32 {
        match self {
            PasswordHash::Sha512 { .. } => 1,
            PasswordHash::Pbkdf2 { iterations, .. } => *iterations,
        }
    }

    fn digest(&self, password: &[u8]) -> [u8; HASH_LEN] {
        match self {
            PasswordHash::Sha512 { salt, .. } => {
                let mut h = Sha512::new();
                h.update(password);
                h.update(salt);
                h.finalize().into()
            }
            PasswordHash::Pbkdf2 {
                iterations, salt, ..
            } => pbkdf2(password, salt, *iterations),
        }
    }
}

fn pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> [u8; HASH_LEN] {
    let mut out = [0; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
    out
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            PasswordHash::Sha512 { salt, hash } => {
                write!(f, "$6${}${}", BASE64.encode(salt), BASE64.encode(hash))
            }
            PasswordHash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => write!(
                f,
                "$7${iterations}${}${}",
                BASE64.encode(salt),
                BASE64.encode(hash)
            ),
        }
    }
}

/// Hashes stay out of logs and debug output.
impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            PasswordHash::Sha512 { .. } => f.write_str("PasswordHash($6$)"),
            PasswordHash::Pbkdf2 { iterations, .. } => {
                write!(f, "PasswordHash($7$, {iterations} iterations)")
            }
        }
    }
}

fn decode(text: &str, what: &str) -> Result<Vec<u8>, String> {
    BASE64
        .decode(text)
        .map_err(|e| format!("{what} is not valid base64: {e}"))
}

fn digest_bytes(text: &str) -> Result<[u8; HASH_LEN], String> {
    decode(text, "hash")?
        .try_into()
        .map_err(|v: Vec<u8>| format!("hash has {} bytes, not {HASH_LEN}", v.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by mosquitto_passwd 2.0.11 (`-b -c pw alice secret`).
    const MOSQUITTO_7: &str = "$7$101$CvdIpMOWHhlIn4mi$JKRIeT5KftuPVYZqugVD/EslNZdgArH/\
                               PZvgb0L15JQrgfD/OqRmQcOrIQ52jNs3Nj/299WAf/+3/S38C9fGMg==";

    #[test]
    fn verifies_a_mosquitto_2_hash() {
        let h = PasswordHash::parse(MOSQUITTO_7).unwrap();
        assert!(h.verify(b"secret"));
        assert!(!h.verify(b"Secret"));
        assert!(!h.verify(b""));
        assert_eq!(h.work(), 101);
        assert_eq!(h.to_string(), MOSQUITTO_7, "written back unchanged");
    }

    #[test]
    fn verifies_a_salted_sha512_hash() {
        let salt = b"0123456789ab";
        let mut h = Sha512::new();
        h.update(b"hunter2");
        h.update(salt);
        let line = format!("$6${}${}", BASE64.encode(salt), BASE64.encode(h.finalize()));
        let parsed = PasswordHash::parse(&line).unwrap();
        assert!(parsed.verify(b"hunter2"));
        assert!(!parsed.verify(b"hunter3"));
        assert_eq!(parsed.to_string(), line);
    }

    #[test]
    fn new_entries_are_pbkdf2_with_101_iterations() {
        let h = PasswordHash::new(b"pw", *b"saltsaltsalt");
        let text = h.to_string();
        assert!(text.starts_with("$7$101$c2FsdHNhbHRzYWx0$"), "{text}");
        let back = PasswordHash::parse(&text).unwrap();
        assert!(back.verify(b"pw"));
        assert!(!back.verify(b"pW"));
    }

    #[test]
    fn rejects_what_is_not_a_hash() {
        for bad in [
            "secret",
            "$5$abc$def",
            "$7$0$c2FsdA==$",
            "$7$x$c2FsdA==$c2FsdA==",
            "$6$not base64$c2FsdA==",
            "$6$c2FsdA==$c2FsdA==",
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad}");
        }
    }
}
