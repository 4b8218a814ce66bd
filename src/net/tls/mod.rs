//! MQTT over TLS (rustls): a listener's configuration and a bridge's,
//! reloaded on SIGHUP, and each connection's TLS state, server side for
//! clients and client side for bridges. The handshake runs inside the
//! loop like any other input: bytes read from the socket go in, the
//! answers go out with the connection's output, and the broker's connect
//! timeout (a bridge's `keepalive_interval`) bounds a handshake that
//! stalls.

mod files;
mod x509;

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::tls::{Client, Server};

/// `e` in words an admin can act on: the certificate errors that certificates
/// made by older recipes (mosquitto-tls(7)) run into say what is wrong and
/// how to make one rustls accepts. Verification is not relaxed for them.
pub fn explain(e: &rustls::Error) -> String {
    let detail = format!("{e:?}");
    let hint = if detail.contains("UnsupportedCertVersion") {
        "the certificate is X.509 version 1, which is not accepted; make a \
         version 3 one: `openssl x509 -req ... -extfile v3.ext`, with v3.ext \
         holding `basicConstraints=CA:FALSE` and `subjectAltName=DNS:<host>` \
         (docs/tls.md)"
    } else if detail.contains("NotValidForName") {
        "the certificate does not name the host connected to in its \
         subjectAltName (a CN alone is not checked); make one with \
         `subjectAltName=DNS:<host>` (or IP:<address>) (docs/tls.md)"
    } else if detail.contains("UnknownIssuer") {
        "the certificate is not signed by a CA in cafile or capath"
    } else {
        return e.to_string();
    };
    format!("{e}: {hint}")
}

/// A TLS listener: its settings and the rustls configuration new
/// connections start with.
pub struct Acceptor {
    settings: Server,
    config: Arc<ServerConfig>,
}

impl Acceptor {
    /// Reads the listener's certificate, key and CA files.
    pub fn load(settings: &Server) -> Result<Acceptor, String> {
        Ok(Acceptor {
            config: files::server_config(settings)?,
            settings: settings.clone(),
        })
    }

    /// SIGHUP: the files again (a renewed certificate), for new
    /// connections; connections already open keep theirs. Files that no
    /// longer read leave the configuration in force.
    pub fn reload(&mut self) {
        match files::server_config(&self.settings) {
            Ok(config) => {
                self.config = config;
                log::info!(
                    "reload: TLS certificate {} read again",
                    self.settings.certfile.display()
                );
            }
            Err(e) => log::error!("reload: {e}; keeping the TLS certificate in force"),
        }
    }

    pub fn start(&self) -> Result<Tls, rustls::Error> {
        let mut conn = ServerConnection::new(self.config.clone())?;
        // What rustls encrypts goes straight on to the connection's
        // output, which `max_outgoing_bytes` bounds; no second bound here.
        conn.set_buffer_limit(None);
        Ok(Tls {
            conn: Connection::Server(conn),
            sealed: 0,
            identity_as_username: self.settings.use_identity_as_username,
        })
    }
}

/// A bridge's TLS: the rustls configuration its connections start with.
pub struct Connector {
    settings: Client,
    config: Arc<ClientConfig>,
}

impl Connector {
    /// Reads the bridge's CA, certificate and key files.
    pub fn load(settings: &Client) -> Result<Connector, String> {
        Ok(Connector {
            config: files::client_config(settings)?,
            settings: settings.clone(),
        })
    }

    /// SIGHUP: the files again, for the next connection; files that no
    /// longer read leave the configuration in force.
    pub fn reload(&mut self, bridge: &str) {
        match files::client_config(&self.settings) {
            Ok(config) => self.config = config,
            Err(e) => log::error!("reload: bridge {bridge}: {e}; keeping its TLS files in force"),
        }
    }

    /// The TLS state of a connection to `host` (an `address` host: a name
    /// or an IP address, which the remote's certificate must name).
    pub fn start(&self, host: &str) -> Result<Tls, rustls::Error> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| rustls::Error::General(format!("`{host}` is not a server name")))?;
        let mut conn = ClientConnection::new(self.config.clone(), name)?;
        conn.set_buffer_limit(None);
        Ok(Tls {
            conn: Connection::Client(conn),
            sealed: 0,
            identity_as_username: false,
        })
    }
}

/// One connection's TLS state.
pub struct Tls {
    conn: Connection,
    /// How much of the front of the connection's output is TLS records;
    /// what follows is MQTT the broker encoded since, sealed at the next
    /// flush (so packets of one loop iteration share records).
    sealed: usize,
    identity_as_username: bool,
}

impl Tls {
    /// Takes `raw` bytes from the socket: the plaintext they carry is
    /// appended to `plain`; what TLS answers (handshake messages, alerts)
    /// waits in rustls for the next [`Tls::seal`]. An error ends the
    /// connection; the alert saying why is sealed next.
    pub fn read(&mut self, mut raw: &[u8], plain: &mut Vec<u8>) -> Result<(), rustls::Error> {
        // Never handed an empty slice: rustls takes that for end of file.
        while !raw.is_empty() {
            match self.conn.read_tls(&mut raw) {
                // After the client's close_notify: nothing more counts.
                Ok(0) => break,
                Ok(_) => {}
                // Only a buffer-full: what came cannot be TLS.
                Err(e) => return Err(rustls::Error::General(e.to_string())),
            }
            let n = self.conn.process_new_packets()?.plaintext_bytes_to_read();
            let start = plain.len();
            plain.resize(start + n, 0);
            self.conn
                .reader()
                .read_exact(&mut plain[start..])
                .expect("rustls said this much is there");
        }
        Ok(())
    }

    /// Encrypts the MQTT bytes at the end of `out` (those after its sealed
    /// front) and anything rustls has to send, in place.
    pub fn seal(&mut self, out: &mut Vec<u8>) {
        if out.len() > self.sealed {
            self.conn
                .writer()
                .write_all(&out[self.sealed..])
                .expect("rustls takes everything: no buffer limit");
            out.truncate(self.sealed);
        }
        while self.conn.wants_write() {
            self.conn
                .write_tls(out)
                .expect("writing to a Vec cannot fail");
        }
        self.sealed = out.len();
    }

    /// `n` bytes from the front of the output went to the socket.
    pub fn drained(&mut self, n: usize) {
        self.sealed -= n;
    }

    /// Seals what is left to send and adds TLS's close_notify after it.
    pub fn close(&mut self, out: &mut Vec<u8>) {
        self.seal(out);
        self.conn.send_close_notify();
        self.seal(out);
    }

    pub fn handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// `Some` on a listener with `use_identity_as_username`: the CN of the
    /// client's (verified) certificate, None inside when it has none.
    pub fn identity(&self) -> Option<Option<String>> {
        self.identity_as_username.then(|| {
            let cert = self.conn.peer_certificates()?.first()?;
            x509::common_name(cert)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    /// A connection of a listener with a self-signed certificate, and a
    /// rustls client that trusts it.
    fn pair() -> (Tls, ClientConnection) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = made.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], PrivateKeyDer::Pkcs8(key))
            .unwrap();
        let acceptor = Acceptor {
            settings: Server {
                certfile: "unused".into(),
                keyfile: "unused".into(),
                cafile: None,
                capath: None,
                require_certificate: false,
                use_identity_as_username: false,
                min_version: crate::tls::Version::Tls12,
            },
            config: Arc::new(server),
        };
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = "localhost".try_into().unwrap();
        let client = ClientConnection::new(Arc::new(client), name).unwrap();
        (acceptor.start().unwrap(), client)
    }

    /// What the client has to send.
    fn from_client(client: &mut ClientConnection) -> Vec<u8> {
        let mut bytes = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut bytes).unwrap();
        }
        bytes
    }

    /// Hands the server's output to the client, as a socket would, and
    /// returns the plaintext the client got.
    fn to_client(tls: &mut Tls, out: &mut Vec<u8>, client: &mut ClientConnection) -> Vec<u8> {
        tls.seal(out);
        let mut wire = &out[..];
        while !wire.is_empty() {
            client.read_tls(&mut wire).unwrap();
            client.process_new_packets().unwrap();
        }
        tls.drained(out.len());
        out.clear();
        let mut plain = Vec::new();
        let _ = client.reader().read_to_end(&mut plain);
        plain
    }

    /// Runs the handshake to its end.
    fn handshake(tls: &mut Tls, client: &mut ClientConnection) {
        let (mut mqtt, mut out) = (Vec::new(), Vec::new());
        while client.is_handshaking() {
            tls.read(&from_client(client), &mut mqtt).unwrap();
            to_client(tls, &mut out, client);
        }
        assert!(mqtt.is_empty());
    }

    #[test]
    fn mqtt_bytes_pass_both_ways_and_are_sealed_after_earlier_records() {
        let (mut tls, mut client) = pair();
        handshake(&mut tls, &mut client);
        client.writer().write_all(b"CONNECT").unwrap();
        let (mut mqtt, mut out) = (Vec::new(), Vec::new());
        tls.read(&from_client(&mut client), &mut mqtt).unwrap();
        assert_eq!(mqtt, b"CONNECT");
        // The broker's packets go into the output as plain MQTT; a flush
        // seals them behind what was sealed before and is still unsent.
        out.extend_from_slice(b"CONNACK");
        tls.seal(&mut out);
        let sealed = out.len();
        assert!(!out.windows(7).any(|w| w == b"CONNACK"), "encrypted");
        out.extend_from_slice(b"PUBLISH");
        assert_eq!(
            to_client(&mut tls, &mut out, &mut client),
            b"CONNACKPUBLISH"
        );
        assert!(sealed > 0 && tls.sealed == 0);
    }

    #[test]
    fn bytes_after_the_clients_close_notify_are_ignored() {
        let (mut tls, mut client) = pair();
        handshake(&mut tls, &mut client);
        client.send_close_notify();
        let mut bytes = from_client(&mut client);
        // More than rustls reads at once, so the loop comes back for it.
        bytes.extend_from_slice(&[0x17; 10_000]);
        // In a thread: a regression would loop forever.
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut mqtt = Vec::new();
            let ok = tls.read(&bytes, &mut mqtt).is_ok();
            done.send(ok && mqtt.is_empty()).unwrap();
        });
        let timeout = std::time::Duration::from_secs(10);
        assert_eq!(result.recv_timeout(timeout), Ok(true));
    }

    #[test]
    fn plain_mqtt_is_refused_with_an_alert() {
        let (mut tls, _) = pair();
        let (mut mqtt, mut out) = (Vec::new(), Vec::new());
        let connect = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd";
        assert!(tls.read(connect, &mut mqtt).is_err());
        tls.seal(&mut out);
        const ALERT: u8 = 21;
        assert_eq!(out.first(), Some(&ALERT));
    }
}
