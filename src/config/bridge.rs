//! Bridges: a `connection NAME` line starts a section, and the keys of
//! this table apply to the section they follow. `crate::bridge::config`
//! reads their values.

use super::Parser;
use super::keys::{
    Key,
    Reload::{File, Restart},
    Scope::Bridge,
    Value::{self, Text, Word, Words},
};
use super::reader::Line;
use crate::bridge;

/// mosquitto cannot reload bridges either.
pub(super) const KEYS: &[Key] = &[
    Key::set(
        "connection",
        Bridge,
        Restart,
        "starts a bridge to another broker, named NAME",
        |p, l| {
            let b = bridge::config::new(l.value)?;
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
    ),
    key("addresses", Words, "the same as `address`"),
    key(
        "round_robin",
        Word,
        "how the bridge moves between addresses",
    ),
    key(
        "topic",
        Words,
        "what is forwarded, which way, at which QoS, renamed how",
    ),
    key(
        "bridge_protocol_version",
        Text,
        "the MQTT version spoken to the remote",
    ),
    key(
        "cleansession",
        Word,
        "whether the remote forgets the bridge's session",
    ),
    key(
        "local_cleansession",
        Word,
        "whether the bridge's session here keeps nothing for the remote while it is away",
    ),
    key(
        "bridge_attempt_unsubscribe",
        Word,
        "whether the bridge unsubscribes at the remote from its `out` topics",
    ),
    key(
        "remote_clientid",
        Text,
        "the bridge's client id at the remote",
    ),
    key("clientid", Text, "the same as `remote_clientid`"),
    key(
        "local_clientid",
        Text,
        "the id of the bridge's session here",
    ),
    key(
        "remote_username",
        Text,
        "the user name the bridge logs in to the remote with",
    ),
    key("username", Text, "the same as `remote_username`"),
    key(
        "remote_password",
        Text,
        "the password the bridge logs in to the remote with",
    ),
    key("password", Text, "the same as `remote_password`"),
    key(
        "keepalive_interval",
        Word,
        "the keep-alive of the bridge's connection",
    ),
    key(
        "try_private",
        Word,
        "whether the bridge says it is one (3.x)",
    ),
    key(
        "notifications",
        Word,
        "whether the bridge publishes its state",
    ),
    key(
        "notifications_local_only",
        Word,
        "its state published here only",
    ),
    key(
        "notification_topic",
        Text,
        "where the bridge publishes its state",
    ),
    key(
        "restart_timeout",
        Words,
        "how long the bridge waits before trying again",
    ),
    key(
        "start_type",
        Word,
        "when the bridge connects: always, when needed, once",
    ),
    key(
        "threshold",
        Word,
        "messages waiting before a lazy bridge connects",
    ),
    key(
        "idle_timeout",
        Word,
        "how long a lazy bridge stays with nothing to send",
    ),
    key(
        "bridge_max_packet_size",
        Word,
        "the largest message forwarded to the remote",
    ),
    key(
        "bridge_outgoing_retain",
        Word,
        "whether the retain flag is forwarded",
    ),
    key(
        "bridge_cafile",
        Text,
        "TLS to the remote: the CAs its certificate is checked against",
    ),
    key(
        "bridge_capath",
        Text,
        "a directory of CA certificates, as `bridge_cafile`",
    ),
    key(
        "bridge_certfile",
        Text,
        "the bridge's own certificate (PEM)",
    ),
    key("bridge_keyfile", Text, "the bridge's own private key (PEM)"),
    key(
        "bridge_insecure",
        Word,
        "whether a remote certificate not naming the host is accepted",
    ),
    key("bridge_alpn", Text, "the protocol offered by ALPN"),
    key(
        "bridge_tls_version",
        Text,
        "the oldest TLS version accepted",
    ),
    key(
        "local_username",
        Text,
        "accepted, without effect: bridges pass local access control",
    ),
    key(
        "local_password",
        Text,
        "accepted, without effect: bridges pass local access control",
    ),
];

/// A key of the section the line follows, its value cut as `value`.
const fn key(name: &'static str, value: Value, doc: &'static str) -> Key {
    // SIGHUP reads a bridge's TLS files again, for its next connection.
    let reload = match name.as_bytes() {
        b"bridge_cafile" | b"bridge_capath" | b"bridge_certfile" | b"bridge_keyfile" => File,
        _ => Restart,
    };
    Key {
        value,
        reload,
        ..Key::set(name, Bridge, Restart, doc, section_line)
    }
}

fn section_line(p: &mut Parser, l: &Line) -> Result<(), String> {
    let Some(b) = p.s.bridges.last_mut() else {
        return Err(format!(
            "`{}` belongs to a bridge: put it after a `connection` line",
            l.key
        ));
    };
    let words;
    let value = match l.key {
        // As mosquitto: a word from the third on that starts with `#`
        // ends the rule, and so does one anywhere in an address list.
        "topic" => {
            words = comment_ends(l.words(), 2).join(" ");
            &words
        }
        "address" | "addresses" => {
            words = comment_ends(l.words(), 0).join(" ");
            &words
        }
        _ => l.value,
    };
    if let Some(warning) = bridge::config::apply(b, l.key, value)? {
        p.s.warnings.push(format!("{}: {warning}", l.at));
    }
    Ok(())
}

/// `words` up to the first one from `from` on that starts with `#`.
fn comment_ends(mut words: Vec<&str>, from: usize) -> Vec<&str> {
    if let Some(i) = words.iter().skip(from).position(|w| w.starts_with('#')) {
        words.truncate(from + i);
    }
    words
}

/// Each section's defaults that depend on other keys, and its checks.
pub(super) fn finish(bridges: &mut [bridge::Bridge], at: &[String]) -> Result<(), String> {
    let hostname = hostname();
    for (b, at) in bridges.iter_mut().zip(at) {
        bridge::config::finish(b, &hostname).map_err(|e| format!("{at}: {e}"))?;
    }
    Ok(())
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
    #[test]
    fn the_table_has_every_key_bridge_config_reads() {
        let mut table: Vec<&str> = super::KEYS[1..].iter().map(|k| k.name).collect();
        table.sort_unstable();
        assert_eq!(table, crate::bridge::config::KEYS);
    }
}
