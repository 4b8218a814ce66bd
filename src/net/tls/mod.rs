//! MQTT over TLS (rustls): a listener's configuration, reloaded on
//! SIGHUP, and each connection's TLS state. The handshake runs inside the
//! loop like any other input: bytes read from the socket go in, the
//! answers go out with the connection's output, and the broker's connect
//! timeout bounds a handshake that stalls.

mod files;
mod x509;

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

use crate::config;

/// A TLS listener: its settings and the rustls configuration new
/// connections start with.
pub struct Acceptor {
    settings: config::Tls,
    config: Arc<ServerConfig>,
}

impl Acceptor {
    /// Reads the listener's certificate, key and CA files.
    pub fn load(settings: &config::Tls) -> Result<Acceptor, String> {
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
            conn,
            sealed: 0,
            identity_as_username: self.settings.use_identity_as_username,
        })
    }
}

/// One connection's TLS state.
pub struct Tls {
    conn: ServerConnection,
    /// How much of the front of the connection's output is TLS records;
    /// what follows is MQTT the broker encoded since, sealed at the next
    /// flush (so packets of one loop iteration share records).
    sealed: usize,
    identity_as_username: bool,
}

impl Tls {
    /// Takes `raw` bytes from the socket: the MQTT bytes they carry are
    /// appended to `mqtt`, and what TLS answers (handshake messages,
    /// alerts) to `out`, the connection's output. An error ends the
    /// connection; the alert saying why is in `out`.
    pub fn receive(
        &mut self,
        mut raw: &[u8],
        mqtt: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), rustls::Error> {
        // Never handed an empty slice: rustls takes that for end of file.
        while !raw.is_empty() {
            if let Err(e) = self.conn.read_tls(&mut raw) {
                // Only a buffer-full: what came cannot be TLS.
                return Err(rustls::Error::General(e.to_string()));
            }
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    self.seal(out);
                    return Err(e);
                }
            };
            let n = state.plaintext_bytes_to_read();
            let start = mqtt.len();
            mqtt.resize(start + n, 0);
            self.conn
                .reader()
                .read_exact(&mut mqtt[start..])
                .expect("rustls said this much is there");
        }
        self.seal(out);
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
    pub fn written(&mut self, n: usize) {
        self.sealed -= n;
    }

    /// Seals what is left to send and adds TLS's close_notify after it.
    pub fn close(&mut self, out: &mut Vec<u8>) {
        self.seal(out);
        self.conn.send_close_notify();
        self.seal(out);
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
