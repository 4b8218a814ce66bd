//! mosquitto's keys that roost does not read: those that change nothing
//! in roost (accepted with a warning saying why) and those it does not
//! do (refused, so that nobody believes they took effect).

use super::keys::{Key, Kind, Reload::Applied, Scope, Value};

/// Keys found by their prefix: plugin options, `auth_opt_NAME VALUE`.
pub(super) const PREFIXED: &[&str] = &["auth_opt_", "plugin_opt_"];

pub(super) const KEYS: &[Key] = &[
    // Changing nothing in roost.
    no_effect(
        "log_timestamp_format",
        "roost's log timestamps are RFC 3339, UTC",
    )
    .text(),
    no_effect("set_tcp_nodelay", "roost always sets TCP_NODELAY"),
    no_effect(
        "allow_duplicate_messages",
        "roost sends a message once per client however many of its subscriptions match",
    ),
    no_effect(
        "retry_interval",
        "as in mosquitto 2, unacknowledged messages are sent again when a client reconnects",
    ),
    no_effect(
        "store_clean_interval",
        "obsolete; mosquitto 2 ignores it too",
    ),
    // General.
    not_done(
        "allow_zero_length_clientid",
        Scope::Security,
        "roost gives every client without an id one",
    ),
    not_done("auth_plugin", Scope::Security, "roost loads no plugins"),
    not_done("plugin", Scope::Security, "roost loads no plugins"),
    not_done("global_plugin", Scope::Global, "roost loads no plugins"),
    not_done("auth_opt_", Scope::Security, "roost loads no plugins"),
    not_done("plugin_opt_", Scope::Security, "roost loads no plugins"),
    not_done(
        "auth_plugin_deny_special_chars",
        Scope::Security,
        "roost loads no plugins",
    ),
    not_done(
        "check_retain_source",
        Scope::Global,
        "roost does not check a retained message's publisher again before sending it",
    ),
    not_done(
        "clientid_prefixes",
        Scope::Global,
        "deprecated in mosquitto; use an ACL",
    ),
    not_done(
        "enable_control_api",
        Scope::Global,
        "mosquitto 2.1's control API is not in roost",
    ),
    not_done(
        "global_max_clients",
        Scope::Global,
        "mosquitto 2.1; roost's `max_connections` counts all listeners",
    ),
    not_done(
        "global_max_connections",
        Scope::Global,
        "mosquitto 2.1; roost's `max_connections` counts all listeners",
    ),
    not_done(
        "max_inflight_bytes",
        Scope::Global,
        "roost bounds what waits for a client with `max_outgoing_bytes` instead",
    ),
    not_done("psk_file", Scope::Security, "roost has no TLS-PSK"),
    not_done(
        "queue_qos0_messages",
        Scope::Global,
        "roost queues no QoS 0 messages for offline clients",
    ),
    not_done(
        "retain_expiry_interval",
        Scope::Global,
        "mosquitto 2.1; roost keeps retained messages until replaced or expired by the publisher",
    ),
    not_done("retained_persistence", Scope::Global, "use `persistence`"),
    not_done(
        "upgrade_outgoing_qos",
        Scope::Global,
        "roost sends a message at most at the QoS it was published with",
    ),
    not_done(
        "websockets_log_level",
        Scope::Global,
        "roost's WebSockets are its own, without libwebsockets' log",
    ),
    // Listeners.
    not_done(
        "accept_protocol_versions",
        Scope::Listener,
        "mosquitto 2.1; roost accepts MQTT 3.1, 3.1.1 and 5.0 on every listener",
    ),
    not_done(
        "bind_interface",
        Scope::Listener,
        "roost binds addresses, not interfaces",
    ),
    not_done(
        "enable_proxy_protocol",
        Scope::Listener,
        "roost does not read the PROXY protocol",
    ),
    not_done("http_dir", Scope::Listener, "roost serves no HTTP files"),
    not_done(
        "listener_allow_anonymous",
        Scope::Listener,
        "mosquitto 2.1; use `per_listener_settings` and `allow_anonymous`",
    ),
    not_done(
        "listener_auto_id_prefix",
        Scope::Listener,
        "mosquitto 2.1; roost's `auto_id_prefix` serves every listener",
    ),
    not_done(
        "max_qos",
        Scope::Listener,
        "roost takes every QoS on every listener",
    ),
    not_done(
        "max_topic_alias_broker",
        Scope::Listener,
        "mosquitto 2.1; see `outbound_topic_aliases`",
    ),
    not_done(
        "mount_point",
        Scope::Listener,
        "roost does not put listeners' clients under a topic prefix",
    ),
    not_done("mptcp", Scope::Listener, "roost opens TCP sockets only"),
    not_done(
        "packet_buffer_size",
        Scope::Listener,
        "roost's buffers are sized by the loop",
    ),
    not_done(
        "proxy_protocol_v2_require_tls",
        Scope::Listener,
        "roost does not read the PROXY protocol",
    ),
    not_done(
        "use_username_as_clientid",
        Scope::Listener,
        "roost keeps the client's own id",
    ),
    not_done(
        "websockets_origin",
        Scope::Listener,
        "roost does not check WebSocket origins",
    ),
    // TLS: ciphers, CRLs, engines and PSK.
    not_done(
        "ciphers",
        Scope::Listener,
        "roost offers rustls's cipher suites, all current",
    ),
    not_done(
        "ciphers_tls1.3",
        Scope::Listener,
        "roost offers rustls's cipher suites, all current",
    ),
    not_done(
        "crlfile",
        Scope::Listener,
        "roost does not read certificate revocation lists",
    ),
    not_done(
        "dhparamfile",
        Scope::Listener,
        "rustls has no DHE cipher suites",
    ),
    not_done(
        "disable_client_cert_date_checks",
        Scope::Listener,
        "roost checks the dates of client certificates",
    ),
    not_done("psk_hint", Scope::Listener, "roost has no TLS-PSK"),
    not_done(
        "tls_engine",
        Scope::Listener,
        "roost reads keys from PEM files only",
    ),
    not_done(
        "tls_engine_kpass_sha1",
        Scope::Listener,
        "roost reads keys from PEM files only",
    ),
    not_done(
        "tls_keyform",
        Scope::Listener,
        "roost reads keys from PEM files only",
    ),
    not_done(
        "use_subject_as_username",
        Scope::Listener,
        "roost takes the certificate's CN only (`use_identity_as_username`)",
    ),
    // Bridges.
    not_done(
        "bridge_bind_address",
        Scope::Bridge,
        "roost's bridges connect from the address the system picks",
    ),
    not_done(
        "bridge_ciphers",
        Scope::Bridge,
        "roost offers rustls's cipher suites, all current",
    ),
    not_done(
        "bridge_ciphers_tls1.3",
        Scope::Bridge,
        "roost offers rustls's cipher suites, all current",
    ),
    not_done("bridge_identity", Scope::Bridge, "roost has no TLS-PSK"),
    not_done(
        "bridge_max_topic_alias",
        Scope::Bridge,
        "mosquitto 2.1; roost's bridges use no topic aliases",
    ),
    not_done(
        "bridge_mptcp",
        Scope::Bridge,
        "roost opens TCP sockets only",
    ),
    not_done("bridge_psk", Scope::Bridge, "roost has no TLS-PSK"),
    not_done(
        "bridge_receive_maximum",
        Scope::Bridge,
        "mosquitto 2.1; roost's bridges take the remote's default",
    ),
    not_done(
        "bridge_reload_type",
        Scope::Bridge,
        "mosquitto 2.1; roost reloads no bridges",
    ),
    not_done(
        "bridge_require_ocsp",
        Scope::Bridge,
        "roost does not check OCSP",
    ),
    not_done(
        "bridge_session_expiry_interval",
        Scope::Bridge,
        "mosquitto 2.1; see `cleansession`",
    ),
    not_done(
        "bridge_tcp_keepalive",
        Scope::Bridge,
        "mosquitto 2.1; roost's bridges use MQTT's keep-alive",
    ),
    not_done(
        "bridge_tcp_user_timeout",
        Scope::Bridge,
        "mosquitto 2.1; roost's bridges use MQTT's keep-alive",
    ),
    not_done(
        "bridge_tls_use_os_certs",
        Scope::Bridge,
        "mosquitto 2.1; name the CAs with `bridge_cafile` or `bridge_capath`",
    ),
];

/// A key that changes nothing in roost, whatever its value.
const fn no_effect(name: &'static str, why: &'static str) -> Key {
    Key {
        name,
        scope: Scope::Global,
        reload: Applied,
        doc: why,
        mosquitto: true,
        value: Value::Word,
        kind: Kind::Other { warn: true },
    }
}

/// A key asking for something roost does not do.
const fn not_done(name: &'static str, scope: Scope, why: &'static str) -> Key {
    Key {
        name,
        scope,
        reload: Applied,
        doc: why,
        mosquitto: true,
        value: Value::Word,
        kind: Kind::Other { warn: false },
    }
}
