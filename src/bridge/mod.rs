//! roost's bridges: outbound MQTT client connections to other brokers,
//! living in the same loop as the clients (`net/bridge.rs` holds the
//! sockets). This module is the part without IO: a bridge's settings
//! (mosquitto's `connection` sections, read by `config::bridge`), how topics are
//! renamed on the way out and in, and the packets a bridge sends as a
//! client. What a bridge forwards waits in a broker session of its own
//! while the remote is away (`broker/bridge.rs`).

mod link;

use std::time::Duration;

use crate::broker::topic::matches;
use crate::protocol::{Connect, Property, QoS, SubOptions, Version, Will};
pub use link::{Link, Step};

/// One `connection` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Bridge {
    /// The section's name (`connection NAME`), for logs.
    pub name: String,
    /// `address`: tried in turn, `host[:port]`.
    pub addresses: Vec<(String, u16)>,
    /// `round_robin`: after a failure, stay on the next address that works
    /// (true) or go back to the first at the next attempt (false).
    pub round_robin: bool,
    pub topics: Vec<TopicRule>,
    /// `bridge_protocol_version`.
    pub version: Version,
    /// `cleansession`: the remote forgets the bridge's session when it goes.
    pub clean_session: bool,
    /// `local_cleansession`: the bridge's session here keeps nothing for
    /// the remote while it is away (false, roost's default: it queues).
    pub local_clean_session: bool,
    /// `bridge_attempt_unsubscribe`: at each connect, unsubscribe at the
    /// remote from the `out` rules' topics, which an older config may
    /// have subscribed to.
    pub attempt_unsubscribe: bool,
    pub local_clientid: String,
    pub remote_clientid: String,
    pub remote_username: Option<String>,
    pub remote_password: Option<String>,
    /// `keepalive_interval`, seconds; also how long connecting may take.
    pub keepalive: u16,
    /// `try_private`: mark the connection as a bridge (3.x).
    pub try_private: bool,
    /// `notifications`: the state, retained, at `notification_topic`
    /// (locally, and remotely unless `notifications_local_only`).
    pub notifications: bool,
    pub notifications_local_only: bool,
    pub notification_topic: String,
    pub restart: Restart,
    pub start_type: StartType,
    /// `idle_timeout`: a lazy bridge disconnects after this long without
    /// a message either way.
    pub idle_timeout: Duration,
    /// `threshold`: messages waiting before a lazy bridge connects.
    pub threshold: usize,
    /// `bridge_max_packet_size`: the largest packet sent to the remote
    /// (0: what the remote says, or no limit).
    pub max_packet_size: u32,
    /// `bridge_outgoing_retain`: whether the retain flag goes out.
    pub outgoing_retain: bool,
    /// TLS to the remote: on with `bridge_cafile` or `bridge_capath`.
    pub tls: Option<crate::tls::Client>,
}

/// `restart_timeout BASE [CAP]`: a constant wait, or a back-off from BASE
/// to CAP with "decorrelated jitter" (as mosquitto).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Restart {
    pub base: Duration,
    pub cap: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartType {
    /// Connect at start, and again after every failure.
    Automatic,
    /// Connect once `threshold` messages wait; leave after `idle_timeout`.
    Lazy,
    /// Connect at start; never again once that connection ends.
    Once,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Out,
    In,
    Both,
}

/// `topic PATTERN [DIRECTION [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]`: the
/// local topic is LOCAL_PREFIX + PATTERN, the remote one REMOTE_PREFIX +
/// PATTERN.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicRule {
    pub pattern: String,
    pub direction: Direction,
    pub qos: QoS,
    pub local_prefix: String,
    pub remote_prefix: String,
}

impl TopicRule {
    pub fn local_filter(&self) -> String {
        format!("{}{}", self.local_prefix, self.pattern)
    }

    pub fn remote_filter(&self) -> String {
        format!("{}{}", self.remote_prefix, self.pattern)
    }

    fn sends(&self) -> bool {
        self.direction != Direction::In
    }

    fn receives(&self) -> bool {
        self.direction != Direction::Out
    }
}

impl Bridge {
    /// The local subscriptions of the bridge's session: what it forwards.
    /// No Local, so what came in from the remote does not go back; Retain
    /// As Published, so the retain flag can go out; retained messages only
    /// for a new subscription, not at every start.
    pub fn local_subscriptions(&self) -> Vec<(String, SubOptions)> {
        self.subscriptions(TopicRule::sends, TopicRule::local_filter, 1)
    }

    /// What the bridge subscribes to at the remote. No Local (for 5.0;
    /// `try_private` does it for 3.x) keeps `both` rules from looping.
    pub fn remote_subscriptions(&self) -> Vec<(String, SubOptions)> {
        self.subscriptions(TopicRule::receives, TopicRule::remote_filter, 0)
    }

    /// What the bridge unsubscribes from at the remote at each connect
    /// (`bridge_attempt_unsubscribe`, as mosquitto): the remote topics of
    /// `out` rules, but for those an `in` or `both` rule subscribes to.
    pub fn remote_unsubscriptions(&self) -> Vec<String> {
        if !self.attempt_unsubscribe {
            return Vec::new();
        }
        let subscribed = self.remote_subscriptions();
        let mut filters: Vec<String> = Vec::new();
        for rule in self.topics.iter().filter(|r| !r.receives()) {
            let filter = rule.remote_filter();
            if !subscribed.iter().any(|(f, _)| *f == filter) && !filters.contains(&filter) {
                filters.push(filter);
            }
        }
        filters
    }

    fn subscriptions(
        &self,
        wanted: fn(&TopicRule) -> bool,
        filter: fn(&TopicRule) -> String,
        retain_handling: u8,
    ) -> Vec<(String, SubOptions)> {
        let mut subs: Vec<(String, SubOptions)> = Vec::new();
        for rule in self.topics.iter().filter(|r| wanted(r)) {
            let options = SubOptions {
                qos: rule.qos,
                no_local: true,
                retain_as_published: true,
                retain_handling,
            };
            let filter = filter(rule);
            // The same filter twice is one subscription, at the higher QoS.
            match subs.iter_mut().find(|(f, _)| *f == filter) {
                Some((_, o)) => o.qos = o.qos.max(rule.qos),
                None => subs.push((filter, options)),
            }
        }
        subs
    }

    /// The name a local message has at the remote: by the first `out` or
    /// `both` rule it matches (the topic as it is when none does).
    pub fn remote_topic<'a>(&self, local: &'a str) -> std::borrow::Cow<'a, str> {
        rename(&self.topics, TopicRule::sends, local, |r| {
            (&r.local_prefix, &r.remote_prefix, r.local_filter())
        })
    }

    /// The local name of a message from the remote, by the first `in` or
    /// `both` rule it matches.
    pub fn local_topic<'a>(&self, remote: &'a str) -> std::borrow::Cow<'a, str> {
        rename(&self.topics, TopicRule::receives, remote, |r| {
            (&r.remote_prefix, &r.local_prefix, r.remote_filter())
        })
    }

    /// The CONNECT for the remote; `private` adds mosquitto's bridge bit.
    /// A 5.0 remote is told what this broker takes (`local`: its Receive
    /// Maximum and Maximum Packet Size), or it could send more in flight,
    /// or larger, than the bridge may accept, and lose the connection
    /// over it at every attempt.
    pub fn connect_packet(&self, private: bool, local: (u16, u32)) -> Connect {
        let v5 = self.version == Version::V5;
        let will = (self.notifications && !self.notifications_local_only).then(|| Will {
            topic: self.notification_topic.clone(),
            payload: b"0".to_vec(),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Vec::new(),
        });
        let mut properties = Vec::new();
        if v5 {
            properties.push(Property::ReceiveMaximum(local.0));
            properties.push(Property::MaximumPacketSize(local.1));
            if !self.clean_session {
                // Kept as long as it can be, as a 3.x session is.
                properties.push(Property::SessionExpiryInterval(u32::MAX));
            }
        }
        Connect {
            version: self.version,
            clean_start: self.clean_session,
            bridge: private,
            keep_alive: self.keepalive,
            client_id: self.remote_clientid.clone(),
            will,
            username: self.remote_username.clone(),
            password: self.remote_password.clone().map(String::into_bytes),
            properties,
        }
    }
}

/// `topic` renamed by the first of `rules` that `applies` and whose filter
/// (from `parts`: the prefix to strip, the one to add, the filter) matches.
fn rename<'a>(
    rules: &[TopicRule],
    applies: fn(&TopicRule) -> bool,
    topic: &'a str,
    parts: impl Fn(&TopicRule) -> (&String, &String, String),
) -> std::borrow::Cow<'a, str> {
    for rule in rules.iter().filter(|r| applies(r)) {
        let (strip, add, filter) = parts(rule);
        if matches(&filter, topic) {
            let rest = topic.strip_prefix(strip.as_str()).unwrap_or(topic);
            if strip == add {
                return topic.into();
            }
            return format!("{add}{rest}").into();
        }
    }
    topic.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(rules: &str) -> Bridge {
        let text = format!("connection b\naddress 127.0.0.1\n{rules}");
        let mut s = crate::config::parse(&text, "t").unwrap();
        s.bridges.remove(0)
    }

    #[test]
    fn prefixes_rename_both_ways() {
        let b = bridge("topic # out 1 sensors/ site1/sensors/\ntopic # in 1 cmd/ site1/cmd/\n");
        assert_eq!(
            b.remote_topic("sensors/kitchen/temp"),
            "site1/sensors/kitchen/temp"
        );
        assert_eq!(b.local_topic("site1/cmd/heater"), "cmd/heater");
        assert_eq!(
            b.local_subscriptions(),
            vec![(
                "sensors/#".into(),
                SubOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: 1
                }
            )]
        );
        assert_eq!(b.remote_subscriptions()[0].0, "site1/cmd/#");
        // Not covered by a rule: the name stays.
        assert_eq!(b.local_topic("other"), "other");
    }

    #[test]
    fn the_first_matching_rule_renames() {
        let b = bridge("topic a/# out 0 \"\" x/\ntopic # out 2\n");
        assert_eq!(b.remote_topic("a/1"), "x/a/1");
        assert_eq!(b.remote_topic("b/1"), "b/1");
        // Both rules subscribe locally; `#` covers `a/#` too.
        assert_eq!(b.local_subscriptions().len(), 2);
    }

    #[test]
    fn an_empty_pattern_names_the_prefix_itself() {
        let b = bridge("topic \"\" both 1 local/state remote/state\n");
        assert_eq!(b.remote_topic("local/state"), "remote/state");
        assert_eq!(b.local_topic("remote/state"), "local/state");
        assert_eq!(b.local_subscriptions()[0].0, "local/state");
    }

    #[test]
    fn out_topics_are_unsubscribed_at_the_remote_unless_subscribed_or_asked_not_to() {
        let rules = "topic a/# out 1 \"\" r/\ntopic b/# in 1\ntopic b/# out 1\n\
                     topic c/# both 1\ntopic a/# out 0 \"\" r/\n";
        let b = bridge(rules);
        // `b/#` is subscribed by its `in` rule; `a/#` is named once.
        assert_eq!(b.remote_unsubscriptions(), ["r/a/#"]);
        let b = bridge(&format!("{rules}bridge_attempt_unsubscribe false\n"));
        assert!(b.remote_unsubscriptions().is_empty());
    }

    #[test]
    fn connect_carries_the_notification_will_and_the_private_bit() {
        let b = bridge("topic # both\nremote_clientid gw\nremote_username u\nremote_password p\n");
        let c = b.connect_packet(true, (20, 1000));
        assert!(c.bridge && !c.clean_start);
        assert_eq!(c.client_id, "gw");
        let will = c.will.unwrap();
        assert_eq!(will.topic, "$SYS/broker/connection/gw/state");
        assert!(will.retain && will.payload == b"0");
        assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
        assert!(c.properties.is_empty(), "3.1.1");
        let b = bridge("topic # both\nbridge_protocol_version mqttv50\n");
        let c = b.connect_packet(false, (20, 1000));
        assert!(c.properties.contains(&Property::ReceiveMaximum(20)));
        assert!(c.properties.contains(&Property::MaximumPacketSize(1000)));
    }
}
