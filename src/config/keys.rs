//! The table of keys: every key roost reads, and every other mosquitto key
//! it knows of, defined once with where it applies, what SIGHUP does with
//! it and a line saying what it is. Parsing looks keys up here, the reload
//! says what changed by it, and tests/docs.rs holds the manual's key tables
//! to it.

use super::Parser;
use super::reader::Line;

/// One config key.
pub struct Key {
    pub name: &'static str,
    pub scope: Scope,
    pub reload: Reload,
    /// What it is, in one line (for keys roost does not read: why).
    pub doc: &'static str,
    /// Whether mosquitto knows the key too.
    pub mosquitto: bool,
    pub(super) value: Value,
    pub(super) kind: Kind,
}

/// How a value is cut from its line: as mosquitto 2.0 cuts it, so that a
/// line means the same to both. Words are separated by spaces (tabs are
/// part of a word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value {
    /// The first word. The rest of the line is ignored, as by mosquitto:
    /// a `#` comment silently, other text with a warning.
    Word,
    /// The rest of the line, spaces and `#` included, without the blanks
    /// around it: file names, user names, passwords.
    Text,
    /// The rest of the line, whose words the key's parser takes.
    Words,
}

/// Where a key applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The broker as a whole, wherever the line stands.
    Global,
    /// The listener it follows (before any `listener` line, the default
    /// listener).
    Listener,
    /// Every listener, or with `per_listener_settings true` the listener
    /// it follows.
    Security,
    /// The `connection` section it follows.
    Bridge,
}

/// What SIGHUP does with a changed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Read again and applied.
    Applied,
    /// Logged as needing a restart; the value in force stays. (A file
    /// it names is read again all the same: a certificate, a CA.)
    Restart,
    /// The file it names is read again; a new name needs a restart.
    File,
}

/// What roost makes of a key, for the manual's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// roost reads it.
    Read,
    /// A mosquitto key roost does not read: accepted at one of `same`,
    /// where roost behaves as asked already; at other values accepted with
    /// a warning (`warn`) or refused.
    Other {
        same: &'static [&'static str],
        warn: bool,
    },
}

pub(super) type Apply = fn(&mut Parser, &Line) -> Result<(), String>;

pub(super) enum Kind {
    /// roost reads the value.
    Set(Apply),
    /// roost reads the value into the bridge section the line follows.
    Section(fn(&mut crate::bridge::Bridge, &Line) -> Result<(), String>),
    /// `include_dir`, which the reader follows.
    Include,
    /// A mosquitto key roost does not implement. At one of `same` roost
    /// behaves as asked already, and the line is accepted; at any other
    /// value it is refused, or with `warn` (where what it asks changes only
    /// how roost looks or performs) accepted with a warning, saying `doc`.
    Other {
        same: &'static [&'static str],
        warn: bool,
    },
}

/// Every key: roost's own and mosquitto's, those roost reads and those it
/// does not.
pub fn keys() -> impl Iterator<Item = &'static Key> {
    [
        super::process::KEYS,
        super::listeners::KEYS,
        super::security::KEYS,
        super::tls::KEYS,
        super::limits::KEYS,
        super::persist::KEYS,
        super::log::KEYS,
        super::bridge::KEYS,
        super::mosquitto::KEYS,
    ]
    .into_iter()
    .flatten()
}

/// The key named `name`; mosquitto's plugin options (`auth_opt_NAME`,
/// `plugin_opt_NAME`) are found by their prefix.
pub fn find(name: &str) -> Option<&'static Key> {
    let name = super::mosquitto::PREFIXED
        .iter()
        .find(|p| name.starts_with(*p))
        .copied()
        .unwrap_or(name);
    keys().find(|k| k.name == name)
}

impl Key {
    /// A key roost reads.
    pub(super) const fn set(
        name: &'static str,
        scope: Scope,
        reload: Reload,
        doc: &'static str,
        apply: Apply,
    ) -> Key {
        Key {
            name,
            scope,
            reload,
            doc,
            mosquitto: true,
            value: Value::Word,
            kind: Kind::Set(apply),
        }
    }

    /// One whose value is the rest of the line ([`Value::Text`]).
    pub(super) const fn text(self) -> Key {
        Key {
            value: Value::Text,
            ..self
        }
    }

    /// One whose parser takes the words of the line ([`Value::Words`]).
    pub(super) const fn words(self) -> Key {
        Key {
            value: Value::Words,
            ..self
        }
    }

    /// A mosquitto key roost does not read whose other values are
    /// accepted with a warning rather than refused.
    pub(super) const fn warns(self) -> Key {
        match self.kind {
            Kind::Other { same, .. } => Key {
                kind: Kind::Other { same, warn: true },
                ..self
            },
            _ => self,
        }
    }

    /// A key of roost's own, that mosquitto does not know.
    pub(super) const fn own(self) -> Key {
        Key {
            mosquitto: false,
            ..self
        }
    }

    /// What roost makes of the key.
    pub fn support(&self) -> Support {
        match self.kind {
            Kind::Set(_) | Kind::Section(_) | Kind::Include => Support::Read,
            Kind::Other { same, warn } => Support::Other { same, warn },
        }
    }

    /// Whether roost accepts the key at some value.
    pub fn accepted(&self) -> bool {
        match self.support() {
            Support::Read => true,
            Support::Other { same, warn } => warn || !same.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_defined_once() {
        let mut names: Vec<&str> = keys().map(|k| k.name).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a key is in the table twice");
        assert!(keys().all(|k| !k.doc.is_empty() && !k.doc.ends_with('.')));
    }

    #[test]
    fn plugin_options_are_found_by_their_prefix() {
        assert_eq!(find("auth_opt_db_host").map(|k| k.name), Some("auth_opt_"));
        assert_eq!(find("listener").map(|k| k.name), Some("listener"));
        assert!(find("listenr").is_none());
    }
}
