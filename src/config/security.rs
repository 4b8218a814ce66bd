//! Who may connect: the password and ACL files and `allow_anonymous`,
//! shared by every listener or, with `per_listener_settings`, each
//! listener's own. (A listener's TLS keys are in `tls`.)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;

use super::keys::{
    Key,
    Reload::{Applied, Restart},
    Scope::{Global, Security as Shared},
};
use super::listeners::{Address, Block};
use super::reader::Line;
use super::{Located, Parser, Settings};
use crate::{auth, broker};

pub(super) const KEYS: &[Key] = &[
    Key::set(
        "allow_anonymous",
        Shared,
        Applied,
        "whether clients without a user name are let in",
        |p, l| {
            let v = l.flag()?;
            p.block().allow_anonymous = Some((v, l.at.into()));
            Ok(())
        },
    ),
    Key::set(
        "password_file",
        Shared,
        Applied,
        "users and their password hashes, in mosquitto_passwd's format",
        |p, l| file(p, l, |b| &mut b.password_file),
    )
    .text(),
    Key::set(
        "acl_file",
        Shared,
        Applied,
        "who may publish and read which topics, in mosquitto's format",
        |p, l| file(p, l, |b| &mut b.acl_file),
    )
    .text(),
    Key::set(
        "auto_id_prefix",
        Global,
        Applied,
        "how the client ids roost gives clients that bring none begin",
        |p, l| {
            p.s.broker.auto_id_prefix = l.value.into();
            Ok(())
        },
    )
    .text(),
    Key::set(
        "per_listener_settings",
        Global,
        Restart,
        "each listener with its own password file, ACL file and allow_anonymous",
        |p, l| {
            p.per_listener_settings = l.flag()?;
            Ok(())
        },
    ),
];

/// `password_file` or `acl_file` into the current block; a second one is
/// a mistake (mosquitto: "Duplicate").
fn file(
    p: &mut Parser,
    l: &Line,
    slot: fn(&mut Block) -> &mut Option<Located<PathBuf>>,
) -> Result<(), String> {
    let path = (PathBuf::from(l.value), l.at.to_string());
    let slot = slot(p.block());
    if let Some((_, first)) = slot {
        return Err(format!("duplicate `{}` (first at {first})", l.key));
    }
    *slot = Some(path);
    Ok(())
}

/// The settings mosquitto makes per listener with `per_listener_settings`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Security {
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
    /// `allow_anonymous` as set.
    pub allow_anonymous: Option<bool>,
    /// Whether the config has a listener (`listener`, `port` or
    /// `bind_address`); without one roost serves localhost only.
    pub listeners_configured: bool,
}

impl Security {
    /// mosquitto 2's rule: unless `allow_anonymous` says otherwise,
    /// anonymous clients are let in only when no listener is configured
    /// (localhost only), whatever the listener's address.
    pub fn allows_anonymous(&self) -> bool {
        self.allow_anonymous.unwrap_or(!self.listeners_configured)
    }
}

impl Settings {
    /// Reads the password and ACL files of each entry of `security`.
    /// Called at start-up and again to reload them (see
    /// [`broker::Broker::set_access`]).
    pub fn load_access(&self) -> Result<Vec<Option<Rc<dyn broker::Access>>>, String> {
        self.security
            .iter()
            .map(|s| auth::load(s.password_file.as_deref(), s.acl_file.as_deref()))
            .collect()
    }

    /// Refuses an open door: anonymous clients on a socket reachable from
    /// the network only when the config says so explicitly. (Only `--bind`
    /// or a socket from systemd can open one without a listener line.)
    pub fn check(&self) -> Result<(), String> {
        for l in self.listen_on() {
            // A host name or Unix socket comes from a `listener` line,
            // which makes anonymous clients need `allow_anonymous` anyway.
            if let Address::Ip(addrs) = &l.address {
                for &addr in addrs {
                    self.check_listener(l.auth, addr)?;
                }
            }
        }
        Ok(())
    }

    /// `check` for one socket of a listener whose rules are `auth`; also
    /// for sockets whose address is only known at start-up (passed by
    /// systemd).
    pub fn check_listener(&self, auth: u8, addr: SocketAddr) -> Result<(), String> {
        let s = &self.security[usize::from(auth)];
        if !s.allows_anonymous() || s.allow_anonymous.is_some() || addr.ip().is_loopback() {
            return Ok(());
        }
        Err(format!(
            "listener {addr} is reachable from the network: set `password_file`, \
             or `allow_anonymous true` to accept clients without a password there"
        ))
    }
}

/// The rules of each listener block with `per_listener_settings`, else
/// the one set every listener shares.
pub(super) fn finish(blocks: &[Block], per_listener: bool) -> Result<Vec<Security>, String> {
    let default = &blocks[0];
    let default_used = default.configured() || blocks.len() == 1;
    if per_listener && !default_used {
        if let Some((key, at)) = first_set(default) {
            return Err(format!(
                "{at}: `{key}` comes before any `listener` line: with \
                 `per_listener_settings true` it belongs to the default listener \
                 (`port`, `bind_address`), which is not configured"
            ));
        }
    }
    let mut security = if per_listener {
        blocks.iter().map(block_security).collect()
    } else {
        vec![merged(blocks)?]
    };
    let configured = blocks.iter().any(Block::configured);
    for s in &mut security {
        s.listeners_configured = configured;
    }
    Ok(security)
}

/// The first key set that only a listener would use, for the error when
/// this block's listener does not exist.
fn first_set(b: &Block) -> Option<(&'static str, &str)> {
    let at = [
        ("password_file", b.password_file.as_ref().map(|(_, at)| at)),
        ("acl_file", b.acl_file.as_ref().map(|(_, at)| at)),
        (
            "allow_anonymous",
            b.allow_anonymous.as_ref().map(|(_, at)| at),
        ),
    ];
    at.into_iter()
        .find_map(|(key, at)| at.map(|at| (key, at.as_str())))
}

fn block_security(b: &Block) -> Security {
    Security {
        password_file: b.password_file.as_ref().map(|(p, _)| p.clone()),
        acl_file: b.acl_file.as_ref().map(|(p, _)| p.clone()),
        allow_anonymous: b.allow_anonymous.as_ref().map(|(v, _)| *v),
        listeners_configured: false,
    }
}

/// Without `per_listener_settings` the keys of every block are global:
/// a file named twice is a mistake, `allow_anonymous` counts as last set.
fn merged(blocks: &[Block]) -> Result<Security, String> {
    let mut merged = Block::default();
    for b in blocks {
        for (key, mine, theirs) in [
            ("password_file", &mut merged.password_file, &b.password_file),
            ("acl_file", &mut merged.acl_file, &b.acl_file),
        ] {
            match (&*mine, theirs) {
                (Some((_, first)), Some((_, at))) => {
                    return Err(format!("{at}: duplicate `{key}` (first at {first})"));
                }
                (None, Some(v)) => *mine = Some(v.clone()),
                _ => {}
            }
        }
        if b.allow_anonymous.is_some() {
            merged.allow_anonymous = b.allow_anonymous.clone();
        }
    }
    Ok(block_security(&merged))
}

/// Warnings for listeners no client can connect to: anonymous clients
/// refused, and neither a password file nor certificates to log in with.
pub(super) fn unreachable_listeners(s: &Settings) -> Vec<String> {
    let mut warnings = Vec::new();
    for l in &s.listeners {
        let rules = &s.security[usize::from(l.auth)];
        let certified = l.tls.as_ref().is_some_and(|t| t.use_identity_as_username);
        if !rules.allows_anonymous() && rules.password_file.is_none() && !certified {
            warnings.push(format!(
                "listener {}: no client can connect: anonymous clients are \
                 refused (mosquitto 2's default once a listener is configured) and \
                 there is no `password_file`; set `allow_anonymous true` or a \
                 password file",
                l.address
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn anonymous_clients_as_mosquitto_2_lets_them_in() {
        // No listener configured: localhost only, anonymous clients in.
        for text in ["", "log_type all\n", "socket_domain ipv4\n"] {
            let s = parse(text, "t.conf").unwrap();
            assert!(s.broker.auth[0].allow_anonymous, "{text:?}");
            assert!(s.check().is_ok() && s.warnings.is_empty(), "{text:?}");
        }
        // A listener, on loopback or not: refused unless allowed.
        for text in [
            "listener 1883\n",
            "listener 1883 127.0.0.1\n",
            "port 1883\n",
        ] {
            let s = parse(text, "t.conf").unwrap();
            assert!(!s.broker.auth[0].allow_anonymous, "{text:?}");
            assert!(s.check().is_ok());
            assert!(s.warnings[0].contains("no client can connect"), "{text:?}");
        }
        let s = parse("listener 1883\nallow_anonymous true\n", "t.conf").unwrap();
        assert!(s.broker.auth[0].allow_anonymous && s.warnings.is_empty());
        // Only --bind opens localhost's rule to the network: refused.
        let mut s = Settings::default();
        s.replace_listeners("0.0.0.0:1883".parse().unwrap());
        assert!(s.check().unwrap_err().contains("allow_anonymous"));
    }

    #[test]
    fn password_file_closes_the_door_to_anonymous_clients() {
        let s = parse("listener 1883\npassword_file /etc/roost/pw\n", "t.conf").unwrap();
        assert!(s.check().is_ok());
        assert!(!s.broker.auth[0].allow_anonymous);
        assert_eq!(s.security[0].password_file, Some("/etc/roost/pw".into()));
        let s = parse(
            "allow_anonymous true\npassword_file pw\nacl_file acl\n",
            "t.conf",
        )
        .unwrap();
        assert!(s.broker.auth[0].allow_anonymous);
        assert_eq!(s.security[0].acl_file, Some("acl".into()));
    }

    #[test]
    fn per_listener_settings_give_each_listener_its_rules() {
        let text = "per_listener_settings true\n\
                    listener 1883 127.0.0.1\nallow_anonymous true\n\
                    listener 8883\npassword_file /pw\nacl_file /acl\n";
        let s = parse(text, "t.conf").unwrap();
        let auth: Vec<u8> = s.listeners.iter().map(|l| l.auth).collect();
        assert_eq!(auth, [1, 2]);
        assert_eq!(s.security[1].allow_anonymous, Some(true));
        assert_eq!(s.security[1].password_file, None);
        assert_eq!(s.security[2].password_file, Some("/pw".into()));
        assert_eq!(s.security[2].acl_file, Some("/acl".into()));
        assert!(s.broker.auth[1].allow_anonymous);
        assert!(!s.broker.auth[2].allow_anonymous);
        assert!(s.check().is_ok());
        // Without it the same lines are global, and every listener shares them.
        let s = parse(&text.replace("true\n", "false\n"), "t.conf").unwrap();
        assert!(s.listeners.iter().all(|l| l.auth == 0));
        assert_eq!(s.security.len(), 1);
        assert_eq!(s.security[0].password_file, Some("/pw".into()));
        // mosquitto 2's rule holds per listener.
        let s = parse(
            "per_listener_settings true\nlistener 1 127.0.0.1\nallow_anonymous true\nlistener 2\n",
            "t.conf",
        )
        .unwrap();
        assert!(!s.broker.auth[2].allow_anonymous);
        assert_eq!(s.warnings.len(), 1);
        assert!(
            s.warnings[0].starts_with("listener 0.0.0.0:2:"),
            "{:?}",
            s.warnings
        );
        // A key no listener gets is an error, not silently dropped.
        let e = parse(
            "per_listener_settings true\npassword_file /pw\nlistener 1\n",
            "t.conf",
        )
        .unwrap_err();
        assert!(
            e.starts_with("t.conf:2: `password_file` comes before any `listener`"),
            "{e}"
        );
        // -p/--bind keep the first listener's rules.
        let mut s = parse(text, "t.conf").unwrap();
        s.replace_listeners("127.0.0.1:0".parse().unwrap());
        assert_eq!(s.listeners[0].auth, 1);
    }
}
