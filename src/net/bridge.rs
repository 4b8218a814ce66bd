//! The sockets of roost's bridges (`crate::bridge`): each `connection`
//! section is an outbound connection in the same slab as the clients, run
//! by its [`Link`]. Until CONNACK its packets are handled here; after it
//! the broker core treats it as the bridge session's connection
//! (`broker/bridge.rs`) and this file only renames topics on the way and
//! answers what a client answers (SUBACK, PINGRESP).

use std::borrow::Cow;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::Server;
use super::conn::Connection;
use super::stream::Stream;
use super::transport::Transport;
use crate::bridge::{Bridge, Link, Step};
use crate::broker::{Delivery, Remote, RemoteFilters};
use crate::protocol::{self, ConnAck, Packet, Publish, QoS, ReasonOnly, Version, reason};

/// One bridge and its connection, when it has one.
pub struct BridgeConn {
    pub config: Bridge,
    link: Link,
    /// With `bridge_cafile`/`bridge_capath`: its TLS configuration.
    #[cfg(feature = "tls")]
    tls: Option<super::tls::Connector>,
    conn: Option<usize>,
    /// A bare TCP connection checking whether the main address answers.
    probe: Option<usize>,
    /// The main address as last looked up: probes use it, so that a name
    /// server that does not answer holds the loop only at reconnects.
    main: Option<SocketAddr>,
    /// The address connected to, for logs.
    peer: String,
    /// State "1" was published locally: "0" is due when it ends.
    announced: bool,
}

/// Name lookups block the loop: glibc's default is 5 s per try, and two
/// tries per name server. Unless the environment says otherwise, one
/// try of 2 s per server bounds how long clients wait on a lookup.
fn bound_lookups(bridges: &[Bridge]) {
    let named = bridges
        .iter()
        .flat_map(|b| &b.addresses)
        .any(|(host, _)| host.parse::<std::net::IpAddr>().is_err());
    if named && std::env::var_os("RES_OPTIONS").is_none() {
        // SAFETY: called at start-up, before the loop; roost has one thread.
        unsafe { std::env::set_var("RES_OPTIONS", "timeout:2 attempts:1") };
    }
}

/// The bridges of the config, their TLS files read (an error names the
/// bridge, the key and the file).
pub fn new(bridges: &[Bridge], now: Instant) -> Result<Vec<BridgeConn>, String> {
    bound_lookups(bridges);
    bridges
        .iter()
        .map(|b| {
            Ok(BridgeConn {
                link: Link::new(b, now),
                #[cfg(feature = "tls")]
                tls: match &b.tls {
                    Some(tls) => Some(
                        super::tls::Connector::load(tls)
                            .map_err(|e| format!("bridge {}: {e}", b.name))?,
                    ),
                    None => None,
                },
                config: b.clone(),
                conn: None,
                probe: None,
                main: None,
                peer: String::new(),
                announced: false,
            })
        })
        .collect()
}

impl Server {
    /// The bridge whose connection `id` is, if any. Called per packet and
    /// per delivery: nothing but a length check without bridges.
    #[inline]
    pub(super) fn bridge_of(&self, id: usize) -> Option<usize> {
        if self.bridges.is_empty() {
            return None;
        }
        self.bridges.iter().position(|b| b.conn == Some(id))
    }

    /// The bridges' sessions, with their `out` subscriptions, before the
    /// first client comes: messages for a remote not yet reached wait.
    pub(super) fn add_bridge_sessions(&mut self, now: Instant) {
        for b in &self.bridges {
            let c = &b.config;
            self.broker.add_bridge(
                &c.local_clientid,
                &c.local_subscriptions(),
                !c.local_clean_session,
                now,
                &mut self.actions,
            );
        }
        self.execute(now);
    }

    /// When the next bridge has something to do.
    pub(super) fn bridges_deadline(&self) -> Option<Instant> {
        self.bridges
            .iter()
            .filter_map(|b| b.link.next_deadline(&b.config))
            .min()
    }

    /// Runs each bridge's due steps.
    pub(super) fn drive_bridges(&mut self, now: Instant) {
        if self.stop_by.is_some() {
            return;
        }
        for i in 0..self.bridges.len() {
            let b = &mut self.bridges[i];
            let backlog = self.broker.bridge_backlog(&b.config.local_clientid);
            let Some(step) = b.link.poll(&b.config, backlog, now) else {
                continue;
            };
            let name = b.config.name.clone();
            match (step, b.conn) {
                (Step::Connect(address), _) => self.bridge_connect(i, address, now),
                (Step::Ping, Some(id)) => self.send(id, Packet::PingReq, now),
                (Step::Drop(why), Some(id)) => {
                    log::warn!("bridge {name}: {why}, closing");
                    self.bridge_drop(id, now);
                }
                (Step::Probe, Some(_)) => self.bridge_probe(i),
                (Step::Disconnect, Some(id)) => {
                    log::info!("bridge {name}: idle, disconnecting (start_type lazy)");
                    self.bridges[i].link.idle();
                    self.bridge_leave(i, id, now);
                }
                // A step for a connection already gone: the link has been
                // told (`bridge_down`).
                (_, None) => {}
            }
        }
    }

    /// Opens a connection to the bridge's address number `address` and
    /// queues CONNECT; it goes once the socket is connected.
    fn bridge_connect(&mut self, i: usize, address: usize, now: Instant) {
        let b = &self.bridges[i];
        let (host, port) = &b.config.addresses[address];
        let name = &b.config.name;
        let limits = (self.settings.broker.max_inflight, self.max_packet as u32);
        let connect = Packet::Connect(Box::new(b.config.connect_packet(b.link.private(), limits)));
        let version = b.config.version;
        let addr = match (host.as_str(), *port)
            .to_socket_addrs()
            .map(|mut a| a.next())
        {
            Ok(Some(addr)) => addr,
            Ok(None) => return self.bridge_failed(i, &format!("{host} has no address"), now),
            Err(e) => return self.bridge_failed(i, &format!("cannot resolve {host}: {e}"), now),
        };
        log::info!("bridge {name}: connecting to {host}:{port} ({addr})");
        self.bridges[i].peer = format!("{host}:{port}");
        if address == 0 {
            self.bridges[i].main = Some(addr);
        }
        let transport = match self.bridge_transport(i, address) {
            Ok(transport) => transport,
            Err(e) => return self.bridge_failed(i, &e, now),
        };
        match self.open(addr, version, transport) {
            Ok(id) => {
                self.bridges[i].conn = Some(id);
                self.send(id, connect, now);
            }
            Err(e) => self.bridge_failed(i, &format!("connecting to {addr}: {e}"), now),
        }
    }

    /// The layers of a connection to bridge `i`'s address number
    /// `address`: TLS when configured, else none.
    fn bridge_transport(&self, i: usize, address: usize) -> Result<Option<Box<Transport>>, String> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.bridges[i].tls {
            let host = &self.bridges[i].config.addresses[address].0;
            return tls
                .start(host)
                .map(|tls| Some(Transport::client(tls)))
                .map_err(|e| format!("TLS: {e}"));
        }
        let _ = (i, address);
        Ok(None)
    }

    /// SIGHUP: the bridges' TLS files again, for their next connection.
    pub(super) fn reload_bridges(&mut self) {
        #[cfg(feature = "tls")]
        for b in &mut self.bridges {
            if let Some(tls) = &mut b.tls {
                tls.reload(&b.config.name);
            }
        }
    }

    /// Opens a bare TCP connection to the main address as last looked up
    /// (a `Step::Probe`; none before a lookup succeeded); one still
    /// pending from the last probe is given up.
    fn bridge_probe(&mut self, i: usize) {
        self.drop_probe(i);
        let b = &self.bridges[i];
        if let Some(addr) = b.main {
            let version = b.config.version;
            self.bridges[i].probe = self.open(addr, version, None).ok();
        }
    }

    /// The bridge whose probe connection `id` is, if any.
    pub(super) fn probe_of(&self, id: usize) -> Option<usize> {
        if self.bridges.is_empty() {
            return None;
        }
        self.bridges.iter().position(|b| b.probe == Some(id))
    }

    /// An event on bridge `i`'s probe `id`: once it is connected, the
    /// bridge leaves its connection for the main address; if it failed,
    /// the next probe will tell.
    pub(super) fn bridge_probed(&mut self, i: usize, id: usize, now: Instant) {
        // Bridges connect over TCP.
        let Some(Stream::Tcp(stream)) = self.conns.get(id).map(|c| &c.stream) else {
            return;
        };
        let connected = match (stream.take_error(), stream.peer_addr()) {
            (Ok(None), Ok(_)) => true,
            (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => return,
            _ => false,
        };
        self.drop_probe(i);
        let b = &mut self.bridges[i];
        if let (true, Some(conn)) = (connected, b.conn) {
            let (host, port) = &b.config.addresses[0];
            log::info!(
                "bridge {}: the main address {host}:{port} answers again, moving back to it",
                b.config.name
            );
            b.link.back_to_main(now);
            self.bridge_leave(i, conn, now);
        }
    }

    fn drop_probe(&mut self, i: usize) {
        if let Some(id) = self.bridges[i].probe.take() {
            let mut c = self.conns.remove(id);
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    fn open(
        &mut self,
        addr: SocketAddr,
        version: Version,
        transport: Option<Box<Transport>>,
    ) -> io::Result<usize> {
        let mut stream = TcpStream::connect(addr)?;
        let entry = self.conns.vacant_entry();
        let id = entry.key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll
            .registry()
            .register(&mut stream, Token(id), interest)?;
        let _ = stream.set_nodelay(true);
        let mut c = Connection::new(Stream::Tcp(stream), transport);
        c.version = version;
        entry.insert(c);
        Ok(id)
    }

    /// A packet from bridge `i`'s remote broker.
    pub(super) fn bridge_packet(&mut self, i: usize, id: usize, packet: Packet, now: Instant) {
        let b = &mut self.bridges[i];
        b.link.heard(now);
        if !b.link.is_up() {
            return match packet {
                Packet::ConnAck(ack) => self.bridge_connack(i, id, ack, now),
                _ => {
                    log::warn!("bridge {}: expected CONNACK, closing", b.config.name);
                    self.bridge_drop(id, now);
                }
            };
        }
        match packet {
            Packet::Publish(mut p) => {
                b.link.active(now);
                if let Cow::Owned(local) = b.config.local_topic(&p.topic) {
                    p.topic = local;
                }
                self.broker
                    .packet(id, Packet::Publish(p), now, &mut self.actions);
            }
            p
            @ (Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_)) => {
                self.broker.packet(id, p, now, &mut self.actions);
            }
            Packet::SubAck(ack) => {
                let subs = b.config.remote_subscriptions();
                for (code, (filter, _)) in ack.codes.iter().zip(subs) {
                    if *code >= 0x80 {
                        log::warn!(
                            "bridge {}: the remote refused the subscription to {filter} ({code:#04x})",
                            b.config.name
                        );
                    }
                }
            }
            Packet::PingResp => {}
            // `bridge_attempt_unsubscribe` asks for topics the bridge may
            // never have subscribed to: a refusal (a v5 remote's 0x11, no
            // subscription existed) is expected.
            Packet::UnsubAck(ack) => log::debug!("bridge {}: {ack:?}", b.config.name),
            Packet::Disconnect(d) => {
                log::warn!(
                    "bridge {}: the remote disconnected ({})",
                    b.config.name,
                    reason::describe(d.reason).unwrap_or("no reason given")
                );
                self.bridge_drop(id, now);
            }
            other => {
                log::warn!(
                    "bridge {}: the remote sent a packet only a client sends, closing",
                    b.config.name
                );
                log::debug!("bridge {}: {other:?}", b.config.name);
                self.bridge_drop(id, now);
            }
        }
        self.execute(now);
    }

    fn bridge_connack(&mut self, i: usize, id: usize, ack: ConnAck, now: Instant) {
        let b = &mut self.bridges[i];
        let name = b.config.name.clone();
        if ack.code != reason::SUCCESS {
            let why = match b.config.version {
                Version::V5 => reason::describe(ack.code).unwrap_or("refused"),
                _ => v3_refusal(ack.code),
            };
            log::warn!(
                "bridge {name}: {} refused the connection: {why} ({:#04x})",
                b.peer,
                ack.code
            );
            if ack.code == reason::V3_UNACCEPTABLE_PROTOCOL_VERSION && b.link.private_refused() {
                log::info!("bridge {name}: trying again without try_private");
            }
            return self.bridge_drop(id, now);
        }
        log::info!("bridge {name}: connected to {}", b.peer);
        if b.link.up(&b.config, now) {
            log::warn!(
                "bridge {name}: {} closes connections that carry mosquitto's bridge flag \
                 (try_private) without an answer, and took this one without it: going on \
                 without it. Set `try_private false` in this bridge's section to connect \
                 without the first attempt and this warning.",
                b.peer
            );
        }
        let c = &b.config;
        // The broker checks sizes with local names: leave room for the
        // longest renaming, or a message too large for the remote would
        // cost the connection at every attempt.
        let growth = c
            .topics
            .iter()
            .map(|r| r.remote_prefix.len().saturating_sub(r.local_prefix.len()));
        let growth = u32::try_from(growth.max().unwrap_or(0)).unwrap_or(u32::MAX);
        let limit = |own: u32| {
            let own = match c.max_packet_size {
                0 => own,
                max => own.min(max),
            };
            own.saturating_sub(growth)
        };
        let remote = Remote {
            version: c.version,
            receive_max: crate::property!(ack.properties, ReceiveMaximum).unwrap_or(u16::MAX),
            max_packet: limit(
                crate::property!(ack.properties, MaximumPacketSize).unwrap_or(u32::MAX),
            ),
        };
        let filters = RemoteFilters {
            subscribe: c.remote_subscriptions(),
            unsubscribe: c.remote_unsubscriptions(),
        };
        let client_id = c.local_clientid.clone();
        self.broker
            .bridge_connected(id, &client_id, remote, filters, now, &mut self.actions);
        self.announce(i, true, now);
        self.execute(now);
    }

    /// How a delivery to bridge `i`'s remote goes out: its topic under the
    /// remote name, and whether the retain flag may stay
    /// (`bridge_outgoing_retain`).
    pub(super) fn bridge_outgoing<'a>(
        &mut self,
        i: usize,
        d: &'a Delivery,
        now: Instant,
    ) -> (Cow<'a, str>, bool) {
        let b = &mut self.bridges[i];
        b.link.active(now);
        (
            b.config.remote_topic(&d.msg.topic),
            b.config.outgoing_retain,
        )
    }

    /// Publishes bridge `i`'s state: locally (retained, as the broker),
    /// and to the remote when it goes up (its will says "0" if it drops).
    fn announce(&mut self, i: usize, up: bool, now: Instant) {
        let b = &mut self.bridges[i];
        if !b.config.notifications || b.announced == up {
            return;
        }
        b.announced = up;
        let topic = b.config.notification_topic.clone();
        let payload = if up { "1" } else { "0" };
        if !b.config.notifications_local_only {
            if let Some(id) = b.conn {
                self.send(id, notification(&topic, payload), now);
            }
        }
        self.broker
            .publish_retained(&topic, payload.into(), now, &mut self.actions);
    }

    /// Leaves the remote on purpose (lazy idle, shutdown): state "0",
    /// DISCONNECT (which discards the will), close.
    pub(super) fn bridge_leave(&mut self, i: usize, id: usize, now: Instant) {
        self.announce(i, false, now);
        self.broker.closed(id, now, &mut self.actions);
        let normal = ReasonOnly {
            reason: reason::SUCCESS,
            properties: Vec::new(),
        };
        self.send(id, Packet::Disconnect(normal), now);
        self.execute(now);
        self.close(id, now);
    }

    /// The remote sent bytes that do not decode.
    pub(super) fn bridge_garbled(
        &mut self,
        i: usize,
        id: usize,
        e: &protocol::DecodeError,
        now: Instant,
    ) {
        log::warn!(
            "bridge {}: bad packet from the remote ({e}), closing",
            self.bridges[i].config.name
        );
        self.bridge_drop(id, now);
    }

    /// Gives up on a bridge connection: the session waits for the next.
    fn bridge_drop(&mut self, id: usize, now: Instant) {
        self.broker.closed(id, now, &mut self.actions);
        self.execute(now);
        self.close(id, now);
    }

    /// Bridge `i`'s connection is closing or gone (whoever closed it).
    /// `unanswered`: the remote closed it, without a word, after it had
    /// all of the CONNECT, which may be its way to refuse the private bit.
    pub(super) fn bridge_down(&mut self, i: usize, unanswered: bool, now: Instant) {
        self.bridges[i].conn = None;
        self.announce(i, false, now);
        self.execute(now);
        let b = &mut self.bridges[i];
        if self.stop_by.is_some() || !b.link.is_active() {
            return;
        }
        if unanswered && b.link.closed_unanswered(now) {
            log::info!(
                "bridge {}: {} closed the connection on CONNECT without an answer; \
                 trying again now without mosquitto's bridge flag (try_private)",
                b.config.name,
                b.peer
            );
            return;
        }
        self.bridge_failed(i, &format!("lost {}", self.bridges[i].peer), now);
    }

    fn bridge_failed(&mut self, i: usize, why: &str, now: Instant) {
        let b = &mut self.bridges[i];
        match b.link.failed(&b.config, now) {
            Some(wait) => log::warn!(
                "bridge {}: {why}; trying again in {:.1} s",
                b.config.name,
                wait.as_secs_f32()
            ),
            None => log::warn!(
                "bridge {}: {why}; not restarted (start_type once)",
                b.config.name
            ),
        }
    }

    /// Shutdown: every connected bridge leaves its remote politely.
    pub(super) fn stop_bridges(&mut self, now: Instant) {
        for i in 0..self.bridges.len() {
            self.drop_probe(i);
            if let (Some(id), true) = (self.bridges[i].conn, self.bridges[i].link.is_up()) {
                self.bridge_leave(i, id, now);
            }
        }
    }
}

fn notification(topic: &str, payload: &str) -> Packet {
    // QoS 0: a QoS 1 id would be taken from the session's, whose acks the
    // broker reads; the will covers a connection that drops.
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: topic.into(),
        packet_id: 0,
        properties: Vec::new(),
        payload: payload.as_bytes().to_vec(),
    })
}

fn v3_refusal(code: u8) -> &'static str {
    match code {
        1 => "unacceptable protocol version",
        2 => "identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorised",
        _ => "refused",
    }
}
