//! The keys of a `connection` section, in mosquitto's bridge syntax, so
//! an existing bridge configuration carries over. `crate::config` hands
//! every line with one of [`KEYS`] to the section it follows.

use std::time::Duration;

use super::{Bridge, Direction, Restart, StartType, TopicRule};
use crate::broker::topic::valid_filter;
use crate::config::{boolean, number};
use crate::protocol::{QoS, Version};

/// The bridge keys roost reads. mosquitto's others (PSK, ciphers, ...) are
/// refused as not supported, like any mosquitto key roost lacks.
pub const KEYS: &[&str] = &[
    "address",
    "addresses",
    "bridge_alpn",
    "bridge_attempt_unsubscribe",
    "bridge_cafile",
    "bridge_capath",
    "bridge_certfile",
    "bridge_insecure",
    "bridge_keyfile",
    "bridge_max_packet_size",
    "bridge_outgoing_retain",
    "bridge_protocol_version",
    "bridge_tls_version",
    "cleansession",
    "clientid",
    "idle_timeout",
    "keepalive_interval",
    "local_cleansession",
    "local_clientid",
    "local_password",
    "local_username",
    "notification_topic",
    "notifications",
    "notifications_local_only",
    "password",
    "remote_clientid",
    "remote_password",
    "remote_username",
    "restart_timeout",
    "round_robin",
    "start_type",
    "threshold",
    "topic",
    "try_private",
    "username",
];

/// A `connection NAME` section with mosquitto's defaults; the ids and the
/// notification topic, which depend on other keys, are set by [`finish`].
pub fn new(name: &str) -> Result<Bridge, String> {
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
        restart: Restart {
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

/// Applies one line of the section, `rest` being what follows the key.
/// Returns a warning for keys that change nothing in roost.
pub fn apply(b: &mut Bridge, key: &str, rest: &str) -> Result<Option<String>, String> {
    let args: Vec<&str> = rest.split_whitespace().collect();
    let args = &args[..];
    let one = || match args {
        [v] => Ok(*v),
        _ => Err(format!("`{key}` takes one value")),
    };
    // As mosquitto reads a string: the rest of the line, spaces and all
    // (an Azure SAS token is `SharedAccessSignature sr=...`).
    let line = || match rest {
        "" => Err(format!("`{key}` takes a value")),
        v => Ok(v),
    };
    let flag = || one().and_then(|v| boolean(key, v));
    match key {
        "address" | "addresses" => {
            if args.is_empty() {
                return Err(format!("`{key}` takes HOST[:PORT] ..."));
            }
            for a in args {
                b.addresses.push(address(a)?);
            }
        }
        "round_robin" => b.round_robin = flag()?,
        "topic" => b.topics.push(topic(args)?),
        "bridge_protocol_version" => {
            b.version = match one()? {
                "mqttv31" => Version::V31,
                "mqttv311" => Version::V311,
                "mqttv50" => Version::V5,
                v => {
                    return Err(format!(
                        "`{key}` takes mqttv31, mqttv311 or mqttv50, not `{v}`"
                    ));
                }
            }
        }
        "cleansession" => b.clean_session = flag()?,
        "local_cleansession" => b.local_clean_session = flag()?,
        "bridge_attempt_unsubscribe" => b.attempt_unsubscribe = flag()?,
        "local_clientid" => b.local_clientid = client_id(key, one()?)?,
        "remote_clientid" | "clientid" => b.remote_clientid = client_id(key, one()?)?,
        "remote_username" | "username" => b.remote_username = Some(line()?.into()),
        "remote_password" | "password" => b.remote_password = Some(line()?.into()),
        "keepalive_interval" => {
            let v: u16 = number(key, one()?)?;
            if v < 5 {
                return Err(format!("`{key}` is at least 5 seconds (as in mosquitto)"));
            }
            b.keepalive = v;
        }
        "try_private" => b.try_private = flag()?,
        "notifications" => b.notifications = flag()?,
        "notifications_local_only" => b.notifications_local_only = flag()?,
        "notification_topic" => {
            let t = one()?;
            if !valid_filter(t) || t.contains(['+', '#']) {
                return Err(format!("`{key}`: `{t}` is not a valid topic"));
            }
            b.notification_topic = t.into();
        }
        "restart_timeout" => {
            let secs = |v: &str| number::<u64>(key, v).map(Duration::from_secs);
            b.restart = match args {
                [base] => Restart {
                    base: secs(base)?,
                    cap: None,
                },
                [base, cap] => Restart {
                    base: secs(base)?,
                    cap: Some(secs(cap)?),
                },
                _ => return Err(format!("`{key}` takes BASE or BASE CAP (seconds)")),
            };
            if b.restart.base.is_zero() || b.restart.cap.is_some_and(|c| c < b.restart.base) {
                return Err(format!(
                    "`{key}`: BASE must be over 0 and CAP at least BASE"
                ));
            }
        }
        "start_type" => {
            b.start_type = match one()? {
                "automatic" => StartType::Automatic,
                "lazy" => StartType::Lazy,
                "once" => StartType::Once,
                v => {
                    return Err(format!("`{key}` takes automatic, lazy or once, not `{v}`"));
                }
            }
        }
        "idle_timeout" => b.idle_timeout = Duration::from_secs(number(key, one()?)?),
        "threshold" => {
            b.threshold = number(key, one()?)?;
            if b.threshold == 0 {
                return Err(format!("`{key}` is at least 1"));
            }
        }
        "bridge_max_packet_size" => b.max_packet_size = number(key, one()?)?,
        "bridge_outgoing_retain" => b.outgoing_retain = flag()?,
        "bridge_cafile" | "bridge_capath" | "bridge_certfile" | "bridge_keyfile"
        | "bridge_insecure" | "bridge_alpn" | "bridge_tls_version" => {
            if !cfg!(feature = "tls") {
                return Err(format!(
                    "`{key}`: this roost was built without TLS (cargo feature `tls`)"
                ));
            }
            let tls = b.tls.get_or_insert_with(Default::default);
            let v = one()?;
            match key {
                "bridge_cafile" => tls.cafile = Some(v.into()),
                "bridge_capath" => tls.capath = Some(v.into()),
                "bridge_certfile" => tls.certfile = Some(v.into()),
                "bridge_keyfile" => tls.keyfile = Some(v.into()),
                "bridge_insecure" => tls.insecure = boolean(key, v)?,
                "bridge_alpn" => tls.alpn = Some(v.into()),
                _ => {
                    tls.min_version = Some(match v {
                        "tlsv1.2" => crate::config::TlsVersion::Tls12,
                        "tlsv1.3" => crate::config::TlsVersion::Tls13,
                        v => {
                            return Err(format!(
                                "`{key}` takes tlsv1.2 or tlsv1.3 (roost speaks no older TLS), not `{v}`"
                            ));
                        }
                    })
                }
            }
        }
        "local_username" | "local_password" => {
            line()?;
            return Ok(Some(format!(
                "`{key}` has no effect: roost's bridges pass local access control, \
                 as mosquitto's do without a plugin"
            )));
        }
        _ => unreachable!("`{key}` is in KEYS"),
    }
    Ok(None)
}

/// Fills in the defaults that depend on other keys and checks the section
/// is complete.
pub fn finish(b: &mut Bridge, hostname: &str) -> Result<(), String> {
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
        None => crate::config::DEFAULT_PORT,
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
        assert_eq!(tls.min_version, Some(crate::config::TlsVersion::Tls13));
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
