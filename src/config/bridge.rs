//! Bridges: a `connection NAME` line starts a section, and the keys of
//! this table apply to the section they follow: mosquitto's bridge
//! syntax, so an existing bridge configuration carries over. What they
//! set is `crate::bridge`'s to carry out.

use std::time::Duration;

use super::keys::{
    Key, Kind,
    Reload::{File, Restart},
    Scope,
    Value::{self, Text, Word, Words},
};
use super::reader::{Line, number};
use super::{DEFAULT_PORT, Parser};
use crate::bridge::{Bridge, Direction, Restart as Backoff, StartType, TopicRule};
use crate::broker::topic::valid_filter;
use crate::protocol::{QoS, Version};
use crate::tls;

/// mosquitto cannot reload bridges either; a bridge's TLS files are read
/// again for its next connection.
pub(super) const KEYS: &[Key] = &[
    Key::set(
        "connection",
        Scope::Bridge,
        Restart,
        "starts a bridge to another broker, named NAME",
        |p, l| {
            let b = new(l.value)?;
            if p.s.bridges.iter().any(|other| other.name == b.name) {
                return Err(format!("a bridge named `{}` exists already", b.name));
            }
            p.s.bridges.push(b);
            p.bridges_at.push(l.at.into());
            Ok(())
        },
    ),
    key(
        "address",
        Words,
        "the remote broker's addresses, tried in turn",
        addresses,
    ),
    key("addresses", Words, "the same as `address`", addresses),
    key(
        "round_robin",
        Word,
        "how the bridge moves between addresses",
        |b, l| {
            b.round_robin = l.flag()?;
            Ok(())
        },
    ),
    key(
        "topic",
        Words,
        "what is forwarded, which way, at which QoS, renamed how",
        |b, l| {
            // As mosquitto: a word from the third on that starts with `#`
            // ends the rule.
            b.topics.push(topic(&comment_ends(l.words(), 2))?);
            Ok(())
        },
    ),
    key(
        "bridge_protocol_version",
        Text,
        "the MQTT version spoken to the remote",
        |b, l| {
            b.version = match l.value {
                "mqttv31" => Version::V31,
                "mqttv311" => Version::V311,
                "mqttv50" => Version::V5,
                v => {
                    return Err(format!(
                        "`{}` takes mqttv31, mqttv311 or mqttv50, not `{v}`",
                        l.key
                    ));
                }
            };
            Ok(())
        },
    ),
    key(
        "cleansession",
        Word,
        "whether the remote forgets the bridge's session",
        |b, l| {
            b.clean_session = l.flag()?;
            Ok(())
        },
    ),
    key(
        "local_cleansession",
        Word,
        "whether the bridge's session here keeps nothing for the remote while it is away",
        |b, l| {
            b.local_clean_session = l.flag()?;
            Ok(())
        },
    ),
    key(
        "bridge_attempt_unsubscribe",
        Word,
        "whether the bridge unsubscribes at the remote from its `out` topics",
        |b, l| {
            b.attempt_unsubscribe = l.flag()?;
            Ok(())
        },
    ),
    key(
        "remote_clientid",
        Text,
        "the bridge's client id at the remote",
        remote_clientid,
    ),
    key(
        "clientid",
        Text,
        "the same as `remote_clientid`",
        remote_clientid,
    ),
    key(
        "local_clientid",
        Text,
        "the id of the bridge's session here",
        |b, l| {
            b.local_clientid = client_id(l.key, l.value)?;
            Ok(())
        },
    ),
    key(
        "remote_username",
        Text,
        "the user name the bridge logs in to the remote with",
        remote_username,
    ),
    key(
        "username",
        Text,
        "the same as `remote_username`",
        remote_username,
    ),
    key(
        "remote_password",
        Text,
        "the password the bridge logs in to the remote with",
        remote_password,
    ),
    key(
        "password",
        Text,
        "the same as `remote_password`",
        remote_password,
    ),
    key(
        "keepalive_interval",
        Word,
        "the keep-alive of the bridge's connection",
        |b, l| {
            let v: u16 = l.number()?;
            if v < 5 {
                return Err(format!(
                    "`{}` is at least 5 seconds (as in mosquitto)",
                    l.key
                ));
            }
            b.keepalive = v;
            Ok(())
        },
    ),
    key(
        "try_private",
        Word,
        "whether the bridge says it is one (3.x)",
        |b, l| {
            b.try_private = l.flag()?;
            Ok(())
        },
    ),
    key(
        "notifications",
        Word,
        "whether the bridge publishes its state",
        |b, l| {
            b.notifications = l.flag()?;
            Ok(())
        },
    ),
    key(
        "notifications_local_only",
        Word,
        "its state published here only",
        |b, l| {
            b.notifications_local_only = l.flag()?;
            Ok(())
        },
    ),
    key(
        "notification_topic",
        Text,
        "where the bridge publishes its state",
        |b, l| {
            let t = l.value;
            if !valid_filter(t) || t.contains(['+', '#']) {
                return Err(format!("`{}`: `{t}` is not a valid topic", l.key));
            }
            b.notification_topic = t.into();
            Ok(())
        },
    ),
    key(
        "restart_timeout",
        Words,
        "how long the bridge waits before trying again",
        |b, l| {
            let secs = |v: &str| number::<u64>(l.key, v).map(Duration::from_secs);
            b.restart = match l.words()[..] {
                [base] => Backoff {
                    base: secs(base)?,
                    cap: None,
                },
                [base, cap] => Backoff {
                    base: secs(base)?,
                    cap: Some(secs(cap)?),
                },
                _ => return Err(format!("`{}` takes BASE or BASE CAP (seconds)", l.key)),
            };
            if b.restart.base.is_zero() || b.restart.cap.is_some_and(|c| c < b.restart.base) {
                return Err(format!(
                    "`{}`: BASE must be over 0 and CAP at least BASE",
                    l.key
                ));
            }
            Ok(())
        },
    ),
    key(
        "start_type",
        Word,
        "when the bridge connects: always, when needed, once",
        |b, l| {
            b.start_type = match l.value {
                "automatic" => StartType::Automatic,
                "lazy" => StartType::Lazy,
                "once" => StartType::Once,
                v => {
                    return Err(format!(
                        "`{}` takes automatic, lazy or once, not `{v}`",
                        l.key
                    ));
                }
            };
            Ok(())
        },
    ),
    key(
        "threshold",
        Word,
        "messages waiting before a lazy bridge connects",
        |b, l| {
            b.threshold = l.number()?;
            if b.threshold == 0 {
                return Err(format!("`{}` is at least 1", l.key));
            }
            Ok(())
        },
    ),
    key(
        "idle_timeout",
        Word,
        "how long a lazy bridge stays with nothing to send",
        |b, l| {
            b.idle_timeout = Duration::from_secs(l.number()?);
            Ok(())
        },
    ),
    key(
        "bridge_max_packet_size",
        Word,
        "the largest message forwarded to the remote",
        |b, l| {
            b.max_packet_size = l.number()?;
            Ok(())
        },
    ),
    key(
        "bridge_outgoing_retain",
        Word,
        "whether the retain flag is forwarded",
        |b, l| {
            b.outgoing_retain = l.flag()?;
            Ok(())
        },
    ),
    key(
        "bridge_cafile",
        Text,
        "TLS to the remote: the CAs its certificate is checked against",
        |b, l| {
            tls(b, l)?.cafile = Some(l.value.into());
            Ok(())
        },
    ),
    key(
        "bridge_capath",
        Text,
        "a directory of CA certificates, as `bridge_cafile`",
        |b, l| {
            tls(b, l)?.capath = Some(l.value.into());
            Ok(())
        },
    ),
    key(
        "bridge_certfile",
        Text,
        "the bridge's own certificate (PEM)",
        |b, l| {
            tls(b, l)?.certfile = Some(l.value.into());
            Ok(())
        },
    ),
    key(
        "bridge_keyfile",
        Text,
        "the bridge's own private key (PEM)",
        |b, l| {
            tls(b, l)?.keyfile = Some(l.value.into());
            Ok(())
        },
    ),
    key(
        "bridge_insecure",
        Word,
        "whether a remote certificate not naming the host is accepted",
        |b, l| {
            tls(b, l)?.insecure = l.flag()?;
            Ok(())
        },
    ),
    key(
        "bridge_alpn",
        Text,
        "the protocol offered by ALPN",
        |b, l| {
            tls(b, l)?.alpn = Some(l.value.into());
            Ok(())
        },
    ),
    key(
        "bridge_tls_version",
        Text,
        "the oldest TLS version accepted",
        |b, l| {
            let version = match l.value {
                "tlsv1.2" => tls::Version::Tls12,
                "tlsv1.3" => tls::Version::Tls13,
                v => {
                    return Err(format!(
                        "`{}` takes tlsv1.2 or tlsv1.3 (roost speaks no older TLS), not `{v}`",
                        l.key
                    ));
                }
            };
            tls(b, l)?.min_version = Some(version);
            Ok(())
        },
    ),
    Key::set(
        "local_username",
        Scope::Bridge,
        Restart,
        "accepted, without effect: bridges pass local access control",
        local_credentials,
    )
    .text(),
    Key::set(
        "local_password",
        Scope::Bridge,
        Restart,
        "accepted, without effect: bridges pass local access control",
        local_credentials,
    )
    .text(),
];

/// A key of the bridge section the line follows, its value cut as
/// `value`, read into the section by `apply`.
const fn key(
    name: &'static str,
    value: Value,
    doc: &'static str,
    apply: fn(&mut Bridge, &Line) -> Result<(), String>,
) -> Key {
    // SIGHUP reads a bridge's TLS files again, for its next connection.
    let reload = match name.as_bytes() {
        b"bridge_cafile" | b"bridge_capath" | b"bridge_certfile" | b"bridge_keyfile" => File,
        _ => Restart,
    };
    Key {
        name,
        scope: Scope::Bridge,
        reload,
        doc,
        mosquitto: true,
        value,
        kind: Kind::Section(apply),
    }
}

fn addresses(b: &mut Bridge, l: &Line) -> Result<(), String> {
    // As mosquitto: a word that starts with `#` ends the list.
    for a in comment_ends(l.words(), 0) {
        b.addresses.push(address(a)?);
    }
    Ok(())
}

fn remote_clientid(b: &mut Bridge, l: &Line) -> Result<(), String> {
    b.remote_clientid = client_id(l.key, l.value)?;
    Ok(())
}

/// As mosquitto reads a string: the rest of the line, spaces and all (an
/// Azure SAS token is `SharedAccessSignature sr=...`).
fn remote_username(b: &mut Bridge, l: &Line) -> Result<(), String> {
    b.remote_username = Some(l.value.into());
    Ok(())
}

fn remote_password(b: &mut Bridge, l: &Line) -> Result<(), String> {
    b.remote_password = Some(l.value.into());
    Ok(())
}

fn local_credentials(p: &mut Parser, l: &Line) -> Result<(), String> {
    if p.s.bridges.is_empty() {
        return Err(outside(l.key));
    }
    p.s.warnings.push(format!(
        "{}: `{}` has no effect: roost's bridges pass local access control, \
         as mosquitto's do without a plugin",
        l.at, l.key
    ));
    Ok(())
}

/// The error for a bridge key before any `connection` line.
pub(super) fn outside(key: &str) -> String {
    format!("`{key}` belongs to a bridge: put it after a `connection` line")
}

/// The section's TLS settings, begun by its first TLS key.
fn tls<'a>(b: &'a mut Bridge, l: &Line) -> Result<&'a mut tls::Client, String> {
    if !cfg!(feature = "tls") {
        return Err(format!(
            "`{}`: this roost was built without TLS (cargo feature `tls`)",
            l.key
        ));
    }
    Ok(b.tls.get_or_insert_with(Default::default))
}

/// `words` up to the first one from `from` on that starts with `#`.
fn comment_ends(mut words: Vec<&str>, from: usize) -> Vec<&str> {
    if let Some(i) = words.iter().skip(from).position(|w| w.starts_with('#')) {
        words.truncate(from + i);
    }
    words
}

/// A `connection NAME` section with mosquitto's defaults; the ids and the
/// notification topic, which depend on other keys, are set by [`complete`].
fn new(name: &str) -> Result<Bridge, String> {
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err("`connection` takes one name".into());
    }
    Ok(Bridge {
        name: name.into(),
        addresses: Vec::new(),
        round_robin: false,
        topics: Vec::new(),
        version: Version::V311,
        clean_session: false,
        local_clean_session: false,
        attempt_unsubscribe: true,
        local_clientid: String::new(),
        remote_clientid: String::new(),
        remote_username: None,
        remote_password: None,
        keepalive: 60,
        try_private: true,
        notifications: true,
        notifications_local_only: false,
        notification_topic: String::new(),
        restart: Backoff {
            base: Duration::from_secs(5),
            cap: Some(Duration::from_secs(30)),
        },
        start_type: StartType::Automatic,
        idle_timeout: Duration::from_secs(60),
        threshold: 10,
        max_packet_size: 0,
        outgoing_retain: true,
        tls: None,
    })
}

/// Each section's defaults that depend on other keys, and its checks.
pub(super) fn finish(bridges: &mut [Bridge], at: &[String]) -> Result<(), String> {
    let hostname = hostname();
    for (b, at) in bridges.iter_mut().zip(at) {
        complete(b, &hostname).map_err(|e| format!("{at}: {e}"))?;
    }
    Ok(())
}

/// Fills in the defaults that depend on other keys and checks the section
/// is complete.
fn complete(b: &mut Bridge, hostname: &str) -> Result<(), String> {
    let name = &b.name;
    if b.addresses.is_empty() {
        return Err(format!("bridge `{name}` has no `address`"));
    }
    if b.topics.is_empty() {
        return Err(format!("bridge `{name}` has no `topic`"));
    }
    if b.remote_clientid.is_empty() {
        b.remote_clientid = format!("{hostname}.{name}");
    }
    if b.local_clientid.is_empty() {
        b.local_clientid = format!("local.{}", b.remote_clientid);
    }
    if b.local_clientid == b.remote_clientid {
        return Err(format!(
            "bridge `{name}`: `local_clientid` and `remote_clientid` must differ"
        ));
    }
    if let Some(tls) = &b.tls {
        // As mosquitto: a CA turns TLS on; the other keys refine it.
        if tls.cafile.is_none() && tls.capath.is_none() {
            return Err(format!(
                "bridge `{name}`: TLS keys need `bridge_cafile` or `bridge_capath`, \
                 the CAs the remote's certificate is checked against"
            ));
        }
        if tls.certfile.is_some() != tls.keyfile.is_some() {
            return Err(format!(
                "bridge `{name}`: `bridge_certfile` and `bridge_keyfile` go together"
            ));
        }
    }
    if b.notification_topic.is_empty() {
        b.notification_topic = format!("$SYS/broker/connection/{}/state", b.remote_clientid);
    }
    Ok(())
}

/// `host`, `host:port`, `[v6]:port` or a bare IPv6 address; port 1883
/// when none is given.
fn address(v: &str) -> Result<(String, u16), String> {
    let bad = || format!("`address`: `{v}` is not HOST[:PORT]");
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else if v.matches(':').count() == 1 {
        let (host, port) = v.split_once(':').expect("one colon");
        (host, Some(port))
    } else {
        (v, None)
    };
    let port = match port {
        Some(p) => p.parse().ok().filter(|&p| p != 0).ok_or_else(bad)?,
        None => DEFAULT_PORT,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.into(), port))
}

/// `topic PATTERN [DIRECTION [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]`; `""`
/// stands for an empty pattern or prefix.
fn topic(args: &[&str]) -> Result<TopicRule, String> {
    let text = |v: &str| if v == "\"\"" { String::new() } else { v.into() };
    let (pattern, rest) = args
        .split_first()
        .ok_or("`topic` takes PATTERN [in|out|both [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]")?;
    let direction = match rest.first().copied().unwrap_or("out") {
        "out" => Direction::Out,
        "in" => Direction::In,
        "both" => Direction::Both,
        v => return Err(format!("`topic`: direction is in, out or both, not `{v}`")),
    };
    let qos = match rest.get(1) {
        Some(v) => v
            .parse()
            .ok()
            .and_then(QoS::from_u8)
            .ok_or_else(|| format!("`topic`: QoS is 0, 1 or 2, not `{v}`"))?,
        None => QoS::AtMostOnce,
    };
    let (local_prefix, remote_prefix) = match rest.get(2..) {
        None | Some([]) => (String::new(), String::new()),
        Some([l, r]) => (text(l), text(r)),
        Some(_) => return Err("`topic` takes both prefixes or neither".into()),
    };
    let rule = TopicRule {
        pattern: text(pattern),
        direction,
        qos,
        local_prefix,
        remote_prefix,
    };
    for prefix in [&rule.local_prefix, &rule.remote_prefix] {
        if prefix.contains(['+', '#']) {
            return Err(format!("`topic`: prefix `{prefix}` has a wildcard"));
        }
    }
    for filter in [rule.local_filter(), rule.remote_filter()] {
        if !valid_filter(&filter) || filter.starts_with("$share/") {
            return Err(format!("`topic`: `{filter}` is not a valid topic filter"));
        }
    }
    Ok(rule)
}

fn client_id(key: &str, v: &str) -> Result<String, String> {
    if v.len() > 65535 {
        return Err(format!("`{key}` is too long"));
    }
    Ok(v.into())
}

/// This machine's name, for bridges' default client ids (as mosquitto).
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the name is cut at NUL.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match (ok, std::str::from_utf8(&buf[..end])) {
        (true, Ok(name)) if !name.is_empty() => name.into(),
        _ => "roost".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Bridge>, String> {
        crate::config::parse(text, "t").map(|s| s.bridges)
    }

    #[test]
    fn defaults_follow_mosquitto() {
        let b = &parse("connection cloud\naddress broker.example\ntopic sensors/#\n").unwrap()[0];
        assert_eq!(b.addresses, vec![("broker.example".into(), 1883)]);
        assert!(b.remote_clientid.ends_with(".cloud"));
        assert_eq!(b.local_clientid, format!("local.{}", b.remote_clientid));
        assert_eq!(b.topics[0].direction, Direction::Out);
        assert_eq!(b.topics[0].qos, QoS::AtMostOnce);
        assert_eq!(
            (b.keepalive, b.try_private, b.clean_session),
            (60, true, false)
        );
        // roost keeps what waits for the remote whatever `cleansession`
        // says; mosquitto's local_cleansession follows it.
        assert!(!b.local_clean_session && b.attempt_unsubscribe);
        assert_eq!(b.start_type, StartType::Automatic);
        assert_eq!(b.version, Version::V311);
    }

    #[test]
    fn every_key() {
        let text = "\
connection gw
addresses 10.0.0.1:1884 [::1]:1885 host
round_robin true
topic # both 2 \"\" site1/
bridge_protocol_version mqttv50
cleansession true
local_clientid here
remote_clientid there
remote_username u
remote_password p
local_cleansession true
bridge_attempt_unsubscribe false
keepalive_interval 5
try_private false
notifications false
notification_topic gw/state
restart_timeout 1 8
start_type lazy
idle_timeout 3
threshold 2
bridge_max_packet_size 1000
bridge_outgoing_retain false
";
        let b = &parse(text).unwrap()[0];
        assert_eq!(b.addresses.len(), 3);
        assert_eq!(b.addresses[1], ("::1".into(), 1885));
        assert_eq!(b.topics[0].remote_prefix, "site1/");
        assert_eq!(b.local_clientid, "here");
        assert_eq!(b.restart.cap, Some(Duration::from_secs(8)));
        assert_eq!((b.threshold, b.max_packet_size), (2, 1000));
        assert!(b.round_robin && b.clean_session && !b.outgoing_retain && !b.try_private);
        assert!(b.local_clean_session && !b.attempt_unsubscribe);
        assert_eq!(b.tls, None);
    }

    /// As mosquitto reads them: the rest of the line, so an Azure SAS
    /// token (`SharedAccessSignature sr=...`) is one password.
    #[test]
    fn user_names_and_passwords_take_the_rest_of_the_line() {
        let text = "connection hub\naddress h:8883\ntopic # out 1\n\
                    remote_username hub.azure-devices.net/dev1/?api-version=2021-04-12\n\
                    remote_password SharedAccessSignature sr=hub&sig=a%2Bb&se=1700000000\n";
        let b = &parse(text).unwrap()[0];
        assert_eq!(
            b.remote_username.as_deref(),
            Some("hub.azure-devices.net/dev1/?api-version=2021-04-12")
        );
        assert_eq!(
            b.remote_password.as_deref(),
            Some("SharedAccessSignature sr=hub&sig=a%2Bb&se=1700000000")
        );
    }

    /// As mosquitto reads them: file names, ids and topics take the rest
    /// of the line; a comment after a switch, a rule or an address is one.
    #[test]
    fn values_are_cut_as_mosquitto_cuts_them() {
        let text = "connection gw # the cloud\naddress h:1884 # primary\n\
                    topic a/# out 1 # forwarded\ntry_private false # rumqttd\n\
                    remote_clientid gate way\nlocal_clientid here too\n";
        let b = &parse(text).unwrap()[0];
        assert_eq!(b.name, "gw");
        assert_eq!(b.addresses, [("h".into(), 1884)]);
        assert_eq!((b.topics.len(), b.try_private), (1, false));
        assert_eq!(b.remote_clientid, "gate way");
        assert_eq!(b.local_clientid, "here too");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_keys() {
        let text = "connection gw\naddress h:8883\ntopic #\nbridge_cafile /ca.pem\n\
                    bridge_certfile /c.pem\nbridge_keyfile /c.key\nbridge_insecure true\n\
                    bridge_alpn mqtt\nbridge_tls_version tlsv1.3\n";
        let tls = parse(text).unwrap().remove(0).tls.unwrap();
        assert_eq!(tls.cafile, Some("/ca.pem".into()));
        assert_eq!(tls.keyfile, Some("/c.key".into()));
        assert!(tls.insecure);
        assert_eq!(tls.alpn.as_deref(), Some("mqtt"));
        assert_eq!(tls.min_version, Some(tls::Version::Tls13));
        let text = "connection gw\naddress h:8883\ntopic #\nbridge_capath /etc/my certs\n";
        let tls = parse(text).unwrap().remove(0).tls.unwrap();
        assert_eq!(tls.capath, Some("/etc/my certs".into()));
    }

    #[test]
    fn mistakes_are_errors_with_the_line() {
        for (text, what) in [
            ("address h\n", "t:1: `address` belongs to a bridge"),
            ("connection a\ntopic #\n", "no `address`"),
            ("connection a\naddress h\n", "no `topic`"),
            ("connection a\naddress h:0\ntopic #\n", "t:2: `address`"),
            (
                "connection a\naddress h\ntopic # sideways\n",
                "t:3: `topic`: direction",
            ),
            (
                "connection a\naddress h\ntopic # in 3\n",
                "QoS is 0, 1 or 2",
            ),
            (
                "connection a\naddress h\ntopic # in 1 a/\n",
                "both prefixes",
            ),
            ("connection a\naddress h\ntopic # in 1 a/# b/\n", "wildcard"),
            (
                "connection a\naddress h\ntopic a/#/b\n",
                "not a valid topic filter",
            ),
            (
                "connection a\naddress h\ntopic #\nbridge_psk x\n",
                "does not support",
            ),
            (
                "connection a\naddress h\ntopic #\nbridge_insecure true\n",
                "need `bridge_cafile` or `bridge_capath`",
            ),
            (
                "connection a\naddress h\ntopic #\nbridge_cafile ca\nbridge_certfile c\n",
                "`bridge_certfile` and `bridge_keyfile` go together",
            ),
            (
                "connection a\naddress h\ntopic #\nbridge_cafile ca\nbridge_tls_version tlsv1\n",
                "takes tlsv1.2 or tlsv1.3",
            ),
            (
                "connection a\naddress h\ntopic #\nkeepalive_interval 2\n",
                "at least 5",
            ),
            (
                "connection a\naddress h\ntopic #\nconnection a\naddress h\ntopic #\n",
                "t:4: a bridge named `a`",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(what), "{text:?}: {err}");
        }
    }
}
