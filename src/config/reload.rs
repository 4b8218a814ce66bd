//! SIGHUP: the file read again. Every key mosquitto reads again is read
//! again; what the key table says SIGHUP applies takes effect, and the
//! rest keeps its value until a restart. One log line per changed key
//! says which: `max_queued_messages 100 -> 1000`, `listener 1884 added:
//! needs a restart`.

use super::keys::{self, Reload, Scope};
use super::{Security, Settings, Written};

/// What a reload makes of the file read again.
pub struct Reloaded {
    /// The settings in force from now on: the file's for the keys SIGHUP
    /// applies, those in force before for the others.
    pub settings: Settings,
    /// What changed, one line per key.
    pub changes: Vec<String>,
    /// The file's warnings it did not have before.
    pub warnings: Vec<String>,
}

impl Settings {
    /// The settings in force once `fresh` (the file read again) is
    /// applied to these, and what changed.
    pub fn reload(&self, fresh: Settings) -> Reloaded {
        // Listeners are not bound again, so their rules can only change in
        // place: the same number of listeners (or one shared set), each
        // configured as it was.
        let security = fresh.security.len() == self.security.len();
        let changes = changes(&self.written, &fresh.written, security);
        let mut s = self.clone();
        s.log = fresh.log;
        s.sys_interval = fresh.sys_interval;
        s.memory_limit = fresh.memory_limit;
        s.persistence.autosave_interval = fresh.persistence.autosave_interval;
        s.persistence.autosave_on_changes = fresh.persistence.autosave_on_changes;
        if security {
            for (rules, fresh) in s.security.iter_mut().zip(fresh.security) {
                *rules = Security {
                    listeners_configured: rules.listeners_configured,
                    ..fresh
                };
            }
        }
        let b = &mut s.broker;
        let f = fresh.broker;
        b.max_inflight = f.max_inflight;
        b.max_queued = f.max_queued;
        b.max_queued_bytes = f.max_queued_bytes;
        b.max_outgoing = f.max_outgoing;
        b.slow_subscriber_timeout = f.slow_subscriber_timeout;
        b.max_packet_size = f.max_packet_size;
        b.message_size_limit = f.message_size_limit;
        b.max_keepalive = f.max_keepalive;
        b.connect_timeout = f.connect_timeout;
        b.auto_id_prefix = f.auto_id_prefix;
        b.connection_messages = f.connection_messages;
        b.outbound_topic_aliases = f.outbound_topic_aliases;
        b.retain_available = f.retain_available;
        b.persistent_client_expiration = f.persistent_client_expiration;
        let warnings = fresh
            .warnings
            .iter()
            .filter(|w| !self.warnings.contains(w))
            .cloned()
            .collect();
        s.warnings = fresh.warnings;
        s.written = fresh.written;
        Reloaded {
            settings: s,
            changes,
            warnings,
        }
    }
}

/// The lines of `new` that differ from `old`, by key and place: a
/// listener or bridge added or removed, or a key's values before and
/// after, with whether the change needs a restart (for the password and
/// ACL keys, unless `security` says their listeners are as they were).
fn changes(old: &[Written], new: &[Written], security: bool) -> Vec<String> {
    // (place, key) in the order first met, new file first.
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for w in new.iter().chain(old) {
        if !groups.contains(&(&w.place, w.key)) {
            groups.push((&w.place, w.key));
        }
    }
    let values = |lines: &[Written], place: &str, key: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|w| w.place == place && w.key == key)
            .map(|w| w.value.clone())
            .collect()
    };
    let restart = ": needs a restart";
    let mut lines = Vec::new();
    // Places that came or went: their own keys need no line more.
    let mut gone = Vec::new();
    for (place, key) in groups {
        let (before, after) = (values(old, place, key), values(new, place, key));
        if before == after || gone.iter().any(|g| g == place) {
            continue;
        }
        let what = match key {
            "listener" => Some("listener"),
            "connection" => Some("bridge"),
            _ => None,
        };
        if let Some(what) = what {
            for v in after.iter().filter(|v| !before.contains(v)) {
                lines.push(format!("{what} {v} added{restart}"));
                gone.push(format!("{what} {v}"));
            }
            for v in before.iter().filter(|v| !after.contains(v)) {
                lines.push(format!("{what} {v} removed{restart}"));
                gone.push(format!("{what} {v}"));
            }
            continue;
        }
        let show = |v: &[String]| match v {
            [] => "(unset)".to_string(),
            // Not written to the log.
            _ if key.ends_with("password") => "(a password)".to_string(),
            v => v.join(", "),
        };
        let place = match place {
            "" => String::new(),
            p => format!("{p}: "),
        };
        let rule = match keys::find(key).map(|k| (k.reload, k.scope)) {
            Some((Reload::Applied, Scope::Security)) if !security => restart,
            Some((Reload::Applied, _)) => "",
            _ => restart,
        };
        lines.push(format!(
            "{place}{key} {} -> {}{rule}",
            show(&before),
            show(&after)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Support, keys, parse};

    /// A value other than the default for every key roost reads at the
    /// level of the whole broker, or of the (default) listener.
    fn sample(key: &str) -> Option<&'static str> {
        Some(match key {
            "max_inflight_messages" => "5",
            "max_queued_messages" => "7",
            "max_queued_bytes" => "1000",
            "max_outgoing_bytes" => "4096",
            "slow_subscriber_timeout" => "3",
            "max_packet_size" => "1000",
            "message_size_limit" => "500",
            "max_keepalive" => "30",
            "max_topic_alias" => "3",
            "outbound_topic_aliases" => "true",
            "retain_available" => "false",
            "persistent_client_expiration" => "2h",
            "sys_interval" => "3",
            "memory_limit" => "1000000",
            "connect_timeout" => "3",
            "auto_id_prefix" => "x-",
            "connection_messages" => "false",
            "log_dest" => "stdout",
            "log_type" => "debug",
            "log_facility" => "3",
            "log_timestamp" => "false",
            "persistence" => "true",
            "retained_persistence" => "true",
            "persistence_location" => "/var/lib/roost",
            "persistence_file" => "other.db",
            "autosave_interval" => "60",
            "autosave_on_changes" => "true",
            "persistence_mode" => "journal",
            "persistence_damaged" => "start_empty",
            "pid_file" => "/run/roost.pid",
            "user" => "roost",
            "allow_anonymous" => "false",
            "password_file" => "/etc/roost/passwd",
            "acl_file" => "/etc/roost/acl",
            "max_connections" => "10",
            "websockets_headers_size" => "8192",
            "port" => "1884",
            "bind_address" => "127.0.0.2",
            "socket_domain" => "ipv4",
            "protocol" => "websockets",
            "max_qos" => "1",
            "maximum_qos" => "0",
            _ => return None,
        })
    }

    /// The settings, without what a reload does not compare.
    fn in_force(s: &Settings) -> String {
        let s = Settings {
            warnings: Vec::new(),
            written: Vec::new(),
            ..s.clone()
        };
        format!("{s:?}")
    }

    #[test]
    fn a_reload_applies_what_the_table_says_and_keeps_the_rest() {
        let old = parse("", "t").unwrap();
        let mut checked = 0;
        for key in keys().filter(|k| k.support() == Support::Read) {
            let Some(value) = sample(key.name) else {
                // Those a line alone cannot show: the next test's.
                let elsewhere = ["listener", "include_dir", "per_listener_settings"];
                assert!(
                    key.scope != crate::config::Scope::Global || elsewhere.contains(&key.name),
                    "add a sample value for `{}`",
                    key.name
                );
                continue;
            };
            let fresh = parse(&format!("{} {value}\n", key.name), "t").unwrap();
            assert_ne!(in_force(&fresh), in_force(&old), "{} {value}", key.name);
            let r = old.reload(fresh);
            let applied = in_force(&r.settings) != in_force(&old);
            assert_eq!(
                applied,
                key.reload == Reload::Applied,
                "`{} {value}`: the table says {:?}",
                key.name,
                key.reload
            );
            let rule = if applied { "" } else { ": needs a restart" };
            let line = format!("{} (unset) -> {value}{rule}", key.name);
            assert!(
                r.changes.iter().any(|l| l.ends_with(&line)),
                "{}: {:?}",
                key.name,
                r.changes
            );
            checked += 1;
        }
        assert!(checked > 40, "{checked}");
    }

    #[test]
    fn listeners_and_bridges_added_or_removed_are_one_line_each() {
        let text = "listener 1883\nallow_anonymous true\nmax_qos 1\nlistener 1884 127.0.0.1\n\
                    protocol websockets\nconnection cloud\naddress h\ntopic a/#\n\
                    remote_password secret\n";
        let old = parse(text, "t").unwrap();
        let new = text
            .replace(
                "listener 1884 127.0.0.1\nprotocol websockets\n",
                "listener 1885\n",
            )
            .replace("max_qos 1", "max_qos 0")
            .replace("remote_password secret", "remote_password other\ntopic b/#")
            + "log_type all\nlog_type debug\n";
        let r = old.reload(parse(&new, "t").unwrap());
        assert_eq!(
            r.changes,
            [
                "listener 1885 added: needs a restart",
                "listener 1884 127.0.0.1 removed: needs a restart",
                "listener 1883: max_qos 1 -> 0: needs a restart",
                "bridge cloud: topic a/# -> a/#, b/#: needs a restart",
                "bridge cloud: remote_password (a password) -> (a password): needs a restart",
                "log_type (unset) -> all, debug",
            ]
        );
        // The listeners stay as they were bound.
        assert_eq!(r.settings.listeners, old.listeners);
        assert!(old.reload(parse(text, "t").unwrap()).changes.is_empty());
        // Two listeners' rules of their own: a restart's to change.
        let two = "listener 1\npassword_file /a\nlistener 2\n";
        let old = parse(two, "t").unwrap();
        let r = old.reload(parse(&format!("per_listener_settings true\n{two}"), "t").unwrap());
        assert_eq!(r.settings.security, old.security);
        assert_eq!(
            r.changes,
            [
                "per_listener_settings (unset) -> true: needs a restart",
                "listener 1: password_file (unset) -> /a: needs a restart",
                "password_file /a -> (unset): needs a restart",
            ]
        );
    }
}
