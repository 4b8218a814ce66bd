//! A listener's TLS keys, mosquitto's names and meanings: with `certfile`
//! and `keyfile` its clients speak MQTT over TLS. Like `socket_domain`,
//! they belong to the listener they follow (the default listener before
//! any `listener` line), whatever `per_listener_settings` says.

use std::path::PathBuf;

use super::keys::{
    Key,
    Reload::{File, Restart},
    Scope::Listener,
};
use super::reader::Line;
use super::{Located, Parser, boolean};
use crate::tls::{Server as Tls, Version};

pub(super) const KEYS: &[Key] = &[
    Key::set(
        "certfile",
        Listener,
        File,
        "TLS on the listener: its certificate chain (PEM)",
        apply,
    )
    .text(),
    Key::set(
        "keyfile",
        Listener,
        File,
        "TLS on the listener: its private key (PEM)",
        apply,
    )
    .text(),
    Key::set(
        "cafile",
        Listener,
        File,
        "the CA certificates client certificates are checked against (PEM)",
        apply,
    )
    .text(),
    Key::set(
        "capath",
        Listener,
        File,
        "a directory of CA certificates, as `cafile`",
        apply,
    )
    .text(),
    Key::set(
        "require_certificate",
        Listener,
        Restart,
        "whether a client must present a certificate the CAs signed",
        apply,
    ),
    Key::set(
        "use_identity_as_username",
        Listener,
        Restart,
        "the client certificate's CN as the user name",
        apply,
    ),
    Key::set(
        "tls_version",
        Listener,
        Restart,
        "the oldest TLS version accepted",
        apply,
    )
    .text(),
];

fn apply(p: &mut Parser, l: &Line) -> Result<(), String> {
    p.block().tls.apply(l.key, l.value, l.at)
}

/// The TLS keys of one block as written, each with where it was set.
#[derive(Debug, Default)]
pub(super) struct Keys {
    certfile: Option<Located<PathBuf>>,
    keyfile: Option<Located<PathBuf>>,
    cafile: Option<Located<PathBuf>>,
    capath: Option<Located<PathBuf>>,
    require_certificate: Option<Located<bool>>,
    use_identity_as_username: Option<Located<bool>>,
    tls_version: Option<Located<Version>>,
}

impl Keys {
    pub(super) fn apply(&mut self, key: &str, value: &str, at: &str) -> Result<(), String> {
        let path = |slot: &mut Option<Located<PathBuf>>| match slot {
            // As mosquitto: a file named twice is a mistake.
            Some((_, first)) => Err(format!("duplicate `{key}` (first at {first})")),
            None => {
                *slot = Some((PathBuf::from(value), at.into()));
                Ok(())
            }
        };
        match key {
            "certfile" => path(&mut self.certfile)?,
            "keyfile" => path(&mut self.keyfile)?,
            "cafile" => path(&mut self.cafile)?,
            "capath" => path(&mut self.capath)?,
            "require_certificate" => {
                self.require_certificate = Some((boolean(key, value)?, at.into()))
            }
            "use_identity_as_username" => {
                self.use_identity_as_username = Some((boolean(key, value)?, at.into()))
            }
            "tls_version" => {
                let version = match value {
                    "tlsv1.2" => Version::Tls12,
                    "tlsv1.3" => Version::Tls13,
                    "tlsv1.1" | "tlsv1" => {
                        return Err(format!(
                            "`tls_version {value}`: roost speaks TLS 1.2 and 1.3 only"
                        ));
                    }
                    v => return Err(format!("`tls_version` takes tlsv1.2 or tlsv1.3, not `{v}`")),
                };
                self.tls_version = Some((version, at.into()));
            }
            _ => unreachable!("`KEYS` lists the keys"),
        }
        Ok(())
    }

    /// A key set (and where), for the error when its listener does not
    /// exist or is not a TLS one. Switches set to false ask for nothing.
    pub(super) fn first_set(&self) -> Option<(&'static str, &str)> {
        fn at<T>(v: &Option<Located<T>>) -> Option<&str> {
            v.as_ref().map(|(_, at)| at.as_str())
        }
        fn on(v: &Option<Located<bool>>) -> Option<&str> {
            v.as_ref().filter(|(on, _)| *on).map(|(_, at)| at.as_str())
        }
        [
            ("certfile", at(&self.certfile)),
            ("keyfile", at(&self.keyfile)),
            ("cafile", at(&self.cafile)),
            ("capath", at(&self.capath)),
            ("require_certificate", on(&self.require_certificate)),
            (
                "use_identity_as_username",
                on(&self.use_identity_as_username),
            ),
            ("tls_version", at(&self.tls_version)),
        ]
        .into_iter()
        .find_map(|(key, at)| at.map(|at| (key, at)))
    }

    /// The listener's TLS settings; None for plain TCP. Keys that would
    /// do nothing are errors, not silently ignored: but for switches set
    /// to false, and `tls_version`, which gets a warning (as mosquitto,
    /// which ignores them on a listener without TLS).
    pub(super) fn finish(&self, warnings: &mut Vec<String>) -> Result<Option<Tls>, String> {
        if let (false, Some((key, at))) = (cfg!(feature = "tls"), self.first_set()) {
            return Err(format!(
                "{at}: `{key}`: this roost was built without TLS (cargo feature `tls`)"
            ));
        }
        let (certfile, keyfile) = match (&self.certfile, &self.keyfile) {
            (Some((cert, _)), Some((key, _))) => (cert.clone(), key.clone()),
            (Some((_, at)), None) | (None, Some((_, at))) => {
                return Err(format!(
                    "{at}: `certfile` and `keyfile` go together: a TLS listener needs both"
                ));
            }
            (None, None) => {
                return match self.first_set() {
                    Some(("tls_version", at)) => {
                        warnings.push(format!(
                            "{at}: `tls_version` has no effect: the listener has no \
                             `certfile` and `keyfile`, so no TLS"
                        ));
                        Ok(None)
                    }
                    Some((key, at)) => Err(format!(
                        "{at}: `{key}` needs `certfile` and `keyfile` on the same listener \
                         (TLS is off without them)"
                    )),
                    None => Ok(None),
                };
            }
        };
        let has_ca = self.cafile.is_some() || self.capath.is_some();
        for (key, set) in [
            ("require_certificate", &self.require_certificate),
            ("use_identity_as_username", &self.use_identity_as_username),
        ] {
            if let (Some((true, at)), false) = (set, has_ca) {
                return Err(format!(
                    "{at}: `{key} true` needs `cafile` or `capath`, to check client certificates"
                ));
            }
        }
        let flag = |v: &Option<Located<bool>>| v.as_ref().is_some_and(|(v, _)| *v);
        Ok(Some(Tls {
            certfile,
            keyfile,
            cafile: self.cafile.as_ref().map(|(p, _)| p.clone()),
            capath: self.capath.as_ref().map(|(p, _)| p.clone()),
            require_certificate: flag(&self.require_certificate),
            use_identity_as_username: flag(&self.use_identity_as_username),
            min_version: self
                .tls_version
                .as_ref()
                .map_or(Version::Tls12, |(v, _)| *v),
        }))
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn tls_keys_belong_to_the_listener_they_follow() {
        let s = parse(
            "listener 1883 127.0.0.1\nlistener 8883\ncertfile /c.pem\nkeyfile /k.pem\n\
             cafile /ca.pem\nrequire_certificate true\nuse_identity_as_username true\n\
             tls_version tlsv1.3\nallow_anonymous false\n",
            "t.conf",
        )
        .unwrap();
        assert_eq!(s.listeners[0].tls, None);
        let tls = s.listeners[1].tls.as_ref().unwrap();
        assert_eq!(tls.certfile, PathBuf::from("/c.pem"));
        assert_eq!(tls.keyfile, PathBuf::from("/k.pem"));
        assert_eq!(tls.cafile, Some(PathBuf::from("/ca.pem")));
        assert_eq!(tls.capath, None);
        assert!(tls.require_certificate && tls.use_identity_as_username);
        assert_eq!(tls.min_version, Version::Tls13);
        // Defaults: no client certificates, TLS 1.2 and 1.3.
        let s = parse("listener 8883\ncertfile c\nkeyfile k\n", "t.conf").unwrap();
        let tls = s.listeners[0].tls.as_ref().unwrap();
        assert!(!tls.require_certificate && !tls.use_identity_as_username);
        assert_eq!(tls.min_version, Version::Tls12);
        // The default listener takes them too; -p keeps them.
        let mut s = parse("certfile c\nkeyfile k\n", "t.conf").unwrap();
        assert!(s.listen_on()[0].tls.is_some());
        s.replace_listeners("127.0.0.1:0".parse().unwrap());
        assert!(s.listeners[0].tls.is_some());
    }

    #[test]
    fn tls_keys_that_would_do_nothing_are_errors() {
        let bad = [
            (
                "listener 1\ncertfile c\n",
                "t.conf:2: `certfile` and `keyfile` go together",
            ),
            (
                "listener 1\nkeyfile k\n",
                "t.conf:2: `certfile` and `keyfile` go together",
            ),
            (
                "listener 1\ncafile ca\n",
                "t.conf:2: `cafile` needs `certfile` and `keyfile` on the same listener",
            ),
            (
                "listener 1\ncertfile c\nkeyfile k\nrequire_certificate true\n",
                "t.conf:4: `require_certificate true` needs `cafile` or `capath`",
            ),
            (
                "listener 1\ncertfile c\nkeyfile k\nuse_identity_as_username true\n",
                "t.conf:4: `use_identity_as_username true` needs `cafile` or `capath`",
            ),
            (
                "listener 1\ncertfile c\ncertfile d\n",
                "t.conf:3: duplicate `certfile` (first at t.conf:2)",
            ),
            (
                "listener 1\ntls_version tlsv1.1\n",
                "roost speaks TLS 1.2 and 1.3 only",
            ),
            (
                "listener 1\ntls_version 1.2\n",
                "takes tlsv1.2 or tlsv1.3, not `1.2`",
            ),
            (
                "listener 1\nrequire_certificate yes\n",
                "takes true or false",
            ),
            (
                "certfile c\nkeyfile k\nlistener 1\n",
                "t.conf:1: `certfile` comes before any `listener` line",
            ),
        ];
        for (text, want) in bad {
            let e = parse(text, "t.conf").unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
