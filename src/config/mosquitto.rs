//! mosquitto's keys that roost does not read. Each is accepted at the
//! values roost behaves as already (`queue_qos0_messages false`); at
//! others it is refused, so that nobody believes it took effect, or
//! where it would change only how roost looks or performs accepted with
//! a warning saying why. The keys mosquitto 2.1 added are refused too.

use super::keys::{Key, Kind, Reload::Applied, Scope, Value};

/// Keys found by their prefix: plugin options, `auth_opt_NAME VALUE`.
pub(super) const PREFIXED: &[&str] = &["auth_opt_", "plugin_opt_"];

pub(super) const KEYS: &[Key] = &[
    // General.
    other(
        "allow_duplicate_messages",
        Scope::Global,
        &["true", "false"],
        "roost sends a message once per client however many of its subscriptions match, \
         which either value allows",
    ),
    other(
        "allow_zero_length_clientid",
        Scope::Security,
        &["true"],
        "roost gives every client that connects without an id one",
    ),
    other(
        "auth_plugin",
        Scope::Security,
        &[],
        "roost loads no plugins",
    ),
    other("plugin", Scope::Security, &[], "roost loads no plugins"),
    other("auth_opt_", Scope::Security, &[], "roost loads no plugins"),
    other(
        "plugin_opt_",
        Scope::Security,
        &[],
        "roost loads no plugins",
    ),
    other(
        "auth_plugin_deny_special_chars",
        Scope::Security,
        &[],
        "roost loads no plugins",
    ),
    other(
        "check_retain_source",
        Scope::Global,
        &["false"],
        "roost does not check a retained message's publisher's rights again before \
         sending it; the reader's are checked",
    )
    .warns(),
    other(
        "clientid_prefixes",
        Scope::Global,
        &[],
        "deprecated in mosquitto; give clients rights by an ACL instead",
    ),
    other(
        "log_timestamp_format",
        Scope::Global,
        &[],
        "roost's log timestamps are RFC 3339, UTC",
    )
    .text()
    .warns(),
    other(
        "max_inflight_bytes",
        Scope::Global,
        &["0"],
        "roost bounds what waits for a client by `max_outgoing_bytes` instead",
    )
    .warns(),
    other("psk_file", Scope::Security, &[], "roost has no TLS-PSK").text(),
    other(
        "queue_qos0_messages",
        Scope::Global,
        &["false"],
        "roost queues no QoS 0 messages for clients that are away",
    ),
    other(
        "retry_interval",
        Scope::Global,
        &[],
        "as in mosquitto 2, unacknowledged messages are sent again when a client reconnects",
    )
    .warns(),
    other(
        "set_tcp_nodelay",
        Scope::Global,
        &["true"],
        "roost always sets TCP_NODELAY",
    )
    .warns(),
    other(
        "store_clean_interval",
        Scope::Global,
        &[],
        "mosquitto 1.x; obsolete, and mosquitto 2.0 refuses it",
    )
    .warns(),
    other(
        "upgrade_outgoing_qos",
        Scope::Global,
        &["false"],
        "roost sends a message at most at the QoS it was published with, as MQTT says",
    ),
    other(
        "websockets_log_level",
        Scope::Global,
        &["0"],
        "roost's WebSockets are its own, without libwebsockets' log",
    )
    .warns(),
    // Listeners.
    other(
        "http_dir",
        Scope::Listener,
        &[],
        "roost serves no HTTP files",
    )
    .text(),
    other(
        "mount_point",
        Scope::Listener,
        &[],
        "roost does not put a listener's clients under a topic prefix",
    )
    .text(),
    other(
        "use_username_as_clientid",
        Scope::Listener,
        &["false"],
        "roost keeps the client's own id",
    ),
    // TLS: ciphers, CRLs, engines and PSK.
    other(
        "ciphers",
        Scope::Listener,
        &[],
        "roost offers rustls's cipher suites, all of them current",
    )
    .text(),
    other(
        "ciphers_tls1.3",
        Scope::Listener,
        &[],
        "roost offers rustls's cipher suites, all of them current",
    )
    .text(),
    other(
        "crlfile",
        Scope::Listener,
        &[],
        "roost reads no certificate revocation lists",
    )
    .text(),
    other(
        "dhparamfile",
        Scope::Listener,
        &[],
        "rustls has no DHE cipher suites; its ECDHE ones are forward secret without \
         DH parameters",
    )
    .text()
    .warns(),
    other("psk_hint", Scope::Listener, &[], "roost has no TLS-PSK").text(),
    other(
        "tls_engine",
        Scope::Listener,
        &[],
        "roost reads keys from PEM files only",
    )
    .text(),
    other(
        "tls_engine_kpass_sha1",
        Scope::Listener,
        &[],
        "roost reads keys from PEM files only",
    )
    .text(),
    other(
        "tls_keyform",
        Scope::Listener,
        &["pem"],
        "roost reads keys from PEM files only",
    )
    .text(),
    other(
        "use_subject_as_username",
        Scope::Listener,
        &["false"],
        "roost takes the certificate's CN only (`use_identity_as_username`)",
    ),
    // Bridges.
    other(
        "bridge_bind_address",
        Scope::Bridge,
        &[],
        "roost's bridges connect from the address the system picks",
    )
    .text(),
    other(
        "bridge_identity",
        Scope::Bridge,
        &[],
        "roost has no TLS-PSK",
    )
    .text(),
    other("bridge_psk", Scope::Bridge, &[], "roost has no TLS-PSK").text(),
    other(
        "bridge_require_ocsp",
        Scope::Bridge,
        &["false"],
        "roost does not ask the remote for OCSP",
    ),
    // mosquitto 2.1's (which 2.0 refuses too).
    other(
        "global_plugin",
        Scope::Global,
        &[],
        "mosquitto 2.1; roost loads no plugins",
    ),
    other(
        "enable_control_api",
        Scope::Global,
        &[],
        "mosquitto 2.1; mosquitto's control API is not in roost",
    ),
    other(
        "global_max_clients",
        Scope::Global,
        &[],
        "mosquitto 2.1; see `max_connections`, which counts all listeners",
    ),
    other(
        "global_max_connections",
        Scope::Global,
        &[],
        "mosquitto 2.1; see `max_connections`, which counts all listeners",
    ),
    other(
        "retain_expiry_interval",
        Scope::Global,
        &[],
        "mosquitto 2.1; roost keeps a retained message until it is replaced or its own expiry interval ends",
    ),
    other(
        "accept_protocol_versions",
        Scope::Listener,
        &[],
        "mosquitto 2.1; roost takes MQTT 3.1, 3.1.1 and 5.0 on every listener",
    ),
    other(
        "enable_proxy_protocol",
        Scope::Listener,
        &[],
        "mosquitto 2.1; roost does not read the PROXY protocol",
    ),
    other(
        "listener_allow_anonymous",
        Scope::Listener,
        &[],
        "mosquitto 2.1; see `per_listener_settings` and `allow_anonymous`",
    ),
    other(
        "listener_auto_id_prefix",
        Scope::Listener,
        &[],
        "mosquitto 2.1; roost's `auto_id_prefix` serves every listener",
    ),
    other(
        "max_topic_alias_broker",
        Scope::Listener,
        &[],
        "mosquitto 2.1; see `outbound_topic_aliases`",
    ),
    other(
        "mptcp",
        Scope::Listener,
        &[],
        "mosquitto 2.1; roost opens TCP sockets only",
    ),
    other(
        "packet_buffer_size",
        Scope::Listener,
        &[],
        "mosquitto 2.1; roost sizes its buffers itself",
    ),
    other(
        "proxy_protocol_v2_require_tls",
        Scope::Listener,
        &[],
        "mosquitto 2.1; roost does not read the PROXY protocol",
    ),
    other(
        "websockets_origin",
        Scope::Listener,
        &[],
        "mosquitto 2.1; roost does not check WebSocket origins",
    ),
    other(
        "disable_client_cert_date_checks",
        Scope::Listener,
        &[],
        "mosquitto 2.1; roost checks the dates of client certificates",
    ),
    other(
        "bridge_ciphers",
        Scope::Bridge,
        &[],
        "mosquitto 2.1; roost offers rustls's cipher suites, all of them current",
    ),
    other(
        "bridge_ciphers_tls1.3",
        Scope::Bridge,
        &[],
        "mosquitto 2.1; roost offers rustls's cipher suites, all of them current",
    ),
    other(
        "bridge_max_topic_alias",
        Scope::Bridge,
        &[],
        "mosquitto 2.1; roost's bridges set up no topic aliases",
    ),
    other(
        "bridge_mptcp",
        Scope::Bridge,
        &[],
        "mosquitto 2.1; roost opens TCP sockets only",
    ),
    other(
        "bridge_receive_maximum",
        Scope::Bridge,
        &[],
        "mosquitto 2.1; roost's bridges take the remote's default",
    ),
    other(
        "bridge_reload_type",
        Scope::Bridge,
        &[],
        "mosquitto 2.1; roost reloads no bridges",
    ),
    other(
        "bridge_session_expiry_interval",
        Scope::Bridge,
        &[],
        "mosquitto 2.1; see `cleansession`",
    ),
    other(
        "bridge_tcp_keepalive",
        Scope::Bridge,
        &[],
        "mosquitto 2.1; roost's bridges use MQTT's keep-alive",
    ),
    other(
        "bridge_tcp_user_timeout",
        Scope::Bridge,
        &[],
        "mosquitto 2.1; roost's bridges use MQTT's keep-alive",
    ),
    other(
        "bridge_tls_use_os_certs",
        Scope::Bridge,
        &[],
        "mosquitto 2.1; name the CAs with `bridge_cafile` or `bridge_capath`",
    ),
];

/// A mosquitto key roost does not read: accepted at `same`, refused at
/// other values (or with [`Key::warns`] accepted with a warning).
const fn other(
    name: &'static str,
    scope: Scope,
    same: &'static [&'static str],
    why: &'static str,
) -> Key {
    Key {
        name,
        scope,
        reload: Applied,
        doc: why,
        mosquitto: true,
        value: Value::Word,
        kind: Kind::Other { same, warn: false },
    }
}
