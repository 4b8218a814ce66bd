//! Limits and queues: what one client may send, hold and be sent, how long
//! sessions last; `$SYS`'s interval and the heap's limit.

use std::time::Duration;

use super::keys::{
    Key,
    Reload::{Applied, Restart},
    Scope::Global,
};
use crate::broker;

/// MQTT's largest payload: the largest remaining length.
const MAX_PAYLOAD: u32 = 268_435_455;

pub(super) const KEYS: &[Key] = &[
    Key::set(
        "max_inflight_messages",
        Global,
        Applied,
        "QoS 1 and 2 messages in flight to one client",
        |p, l| {
            // mosquitto: 0 means no limit; a u16 window is the most MQTT allows.
            let v: u16 = l.number()?;
            p.s.broker.max_inflight = if v == 0 { u16::MAX } else { v };
            Ok(())
        },
    ),
    Key::set(
        "max_queued_messages",
        Global,
        Applied,
        "messages queued per session beyond those in flight",
        |p, l| {
            p.s.broker.max_queued = l.number()?;
            Ok(())
        },
    ),
    Key::set(
        "max_queued_bytes",
        Global,
        Applied,
        "payload bytes queued per session",
        |p, l| {
            p.s.broker.max_queued_bytes = l.number()?;
            Ok(())
        },
    ),
    Key::set(
        "max_outgoing_bytes",
        Global,
        Applied,
        "encoded bytes waiting for one connection's socket",
        |p, l| {
            p.s.broker.max_outgoing = l.number()?;
            Ok(())
        },
    )
    .own(),
    Key::set(
        "slow_subscriber_timeout",
        Global,
        Applied,
        "how long a full queue of an online client holds its publishers back",
        |p, l| {
            p.s.broker.slow_subscriber_timeout = Duration::from_secs(l.number()?);
            Ok(())
        },
    )
    .own(),
    Key::set(
        "max_packet_size",
        Global,
        Applied,
        "the largest packet a client may send",
        |p, l| {
            let v: u32 = l.number()?;
            p.s.broker.max_packet_size = match v {
                // mosquitto's "no limit": MQTT's own.
                0 => broker::MAX_PACKET_SIZE,
                1..20 => return Err(format!("`{}` must be at least 20 bytes", l.key)),
                v => v.min(broker::MAX_PACKET_SIZE),
            };
            Ok(())
        },
    ),
    Key::set(
        "message_size_limit",
        Global,
        Applied,
        "the largest payload accepted",
        |p, l| {
            let v: u32 = l.number()?;
            if v > MAX_PAYLOAD {
                return Err(format!(
                    "`{}` is at most {MAX_PAYLOAD} (MQTT's largest payload)",
                    l.key
                ));
            }
            p.s.broker.message_size_limit = v;
            Ok(())
        },
    ),
    Key::set(
        "max_keepalive",
        Global,
        Applied,
        "the longest keep-alive a client may use",
        |p, l| {
            p.s.broker.max_keepalive = l.number()?;
            Ok(())
        },
    ),
    Key::set(
        "max_topic_alias",
        Global,
        Restart,
        "topic aliases a v5 client may set up",
        |p, l| {
            p.s.broker.topic_alias_max = l.number()?;
            Ok(())
        },
    ),
    Key::set(
        "outbound_topic_aliases",
        Global,
        Applied,
        "whether roost gives what it sends v5 clients topic aliases",
        |p, l| {
            p.s.broker.outbound_topic_aliases = l.flag()?;
            Ok(())
        },
    )
    .own(),
    Key::set(
        "retain_available",
        Global,
        Applied,
        "whether retained messages are accepted",
        |p, l| {
            p.s.broker.retain_available = l.flag()?;
            Ok(())
        },
    ),
    Key::set(
        "persistent_client_expiration",
        Global,
        Applied,
        "how long a session outlives its client",
        |p, l| {
            p.s.broker.persistent_client_expiration = Some(duration(l.value)?);
            Ok(())
        },
    ),
    Key::set(
        "sys_interval",
        Global,
        Applied,
        "seconds between `$SYS` updates",
        |p, l| {
            p.s.sys_interval = Duration::from_secs(l.number()?);
            Ok(())
        },
    ),
    Key::set(
        "memory_limit",
        Global,
        Applied,
        "heap bytes past which new messages and connections are refused",
        |p, l| {
            p.s.memory_limit = l.number()?;
            Ok(())
        },
    ),
];

/// mosquitto's `persistent_client_expiration` syntax: a number and a unit,
/// s (mosquitto 2.1), h, d, w, m (30 days) or y (365 days). In seconds.
fn duration(v: &str) -> Result<u32, String> {
    let bad = || {
        format!(
            "`persistent_client_expiration` takes a number and a unit \
             (s, h, d, w, m or y, e.g. 14d), not `{v}`"
        )
    };
    let unit = match v.chars().last().ok_or_else(bad)? {
        's' => 1,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'm' => 30 * 86_400,
        'y' => 365 * 86_400,
        _ => return Err(bad()),
    };
    let n: u32 = v[..v.len() - 1].parse().map_err(|_| bad())?;
    match n.checked_mul(unit) {
        Some(0) | None => Err(bad()),
        Some(secs) => Ok(secs),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use std::time::Duration;

    #[test]
    fn persistent_client_expiration_takes_mosquittos_units() {
        let pce = |v: &str| {
            parse(&format!("persistent_client_expiration {v}\n"), "t.conf")
                .map(|s| s.broker.persistent_client_expiration)
        };
        assert_eq!(pce("2s"), Ok(Some(2)));
        assert_eq!(pce("2h"), Ok(Some(7200)));
        assert_eq!(pce("14d"), Ok(Some(14 * 86_400)));
        assert_eq!(pce("1w"), Ok(Some(7 * 86_400)));
        assert_eq!(pce("1m"), Ok(Some(30 * 86_400)));
        assert_eq!(pce("1y"), Ok(Some(365 * 86_400)));
        for bad in ["14", "d", "0d", "-1d", "1.5d", "200y", "1x"] {
            assert!(pce(bad).unwrap_err().contains("e.g. 14d"), "{bad}");
        }
        assert_eq!(
            parse("", "t.conf")
                .unwrap()
                .broker
                .persistent_client_expiration,
            None
        );
    }

    #[test]
    fn sys_interval_and_memory_limit() {
        let s = parse("", "t.conf").unwrap();
        assert_eq!(s.sys_interval, Duration::from_secs(10));
        assert_eq!(s.memory_limit, 0);
        let s = parse("sys_interval 0\nmemory_limit 1048576\n", "t.conf").unwrap();
        assert_eq!(s.sys_interval, Duration::ZERO);
        assert_eq!(s.memory_limit, 1 << 20);
        for bad in [
            "sys_interval -1",
            "sys_interval 1.5",
            "memory_limit -1",
            "memory_limit 1M",
        ] {
            let e = parse(bad, "t.conf").unwrap_err();
            assert!(e.starts_with("t.conf:1: `"), "{bad}: {e}");
        }
    }
}
