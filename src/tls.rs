//! What TLS a listener or a bridge is set up with: plain data, which
//! `config` reads from the file and `net::tls` loads. Here, not in either,
//! so that `config` and `bridge` (whose settings hold a [`Client`]) need
//! not know each other.

use std::path::PathBuf;

/// A TLS listener's files and rules, checked for consistency; the files
/// are read when the listener opens (and again on SIGHUP).
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// PEM: the server's certificate (chain) and its private key.
    pub certfile: PathBuf,
    pub keyfile: PathBuf,
    /// PEM CA certificates that client certificates are checked against:
    /// `cafile`, and every `*.pem` file in `capath`. Without either, no
    /// client certificate is asked for.
    pub cafile: Option<PathBuf>,
    pub capath: Option<PathBuf>,
    /// A client without a valid certificate fails the handshake.
    pub require_certificate: bool,
    /// The client certificate's CN is the user name, in place of the
    /// CONNECT's user name and password (the password file is not used).
    pub use_identity_as_username: bool,
    pub min_version: Version,
}

/// A bridge's TLS settings (mosquitto's `bridge_*` TLS keys).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Client {
    /// PEM CA certificates the remote's certificate is checked against.
    pub cafile: Option<PathBuf>,
    pub capath: Option<PathBuf>,
    /// PEM: the bridge's own certificate and key, for a remote that asks.
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    /// `bridge_insecure`: the certificate need not name the host.
    pub insecure: bool,
    /// `bridge_alpn`: the protocol offered in the handshake.
    pub alpn: Option<String>,
    /// `bridge_tls_version`: the oldest version accepted.
    pub min_version: Option<Version>,
}

/// `tls_version`, `bridge_tls_version`: the oldest TLS version accepted
/// (mosquitto 2's meaning).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Version {
    Tls12,
    Tls13,
}
