//! The only place with sockets: one `mio::Poll`, the listeners, a
//! `Slab` of connections. It moves bytes, cuts them into packets for the
//! broker core, and carries out the core's actions. Everything it decides
//! itself is about buffers: back-pressure, drops, closing politely.

mod bridge;
mod conn;
mod listen;
mod signals;
mod stream;
mod sys;
mod systemd;
#[cfg(feature = "tls")]
mod tls;
mod transport;
mod unix;
mod ws;

use std::collections::{HashSet, VecDeque};
use std::io::{self, Read};
use std::time::{Duration, Instant, SystemTime};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::broker::{Action, Broker, Delivery, Origin};
use crate::config::Settings;
use crate::persist::Store;
use crate::protocol::{self, Packet, QoS};
use conn::{Connection, Spare, pause};
use signals::Signals;
use stream::{Listening, Stream};
use systemd::Notifier;
use transport::{End, Kind};

const SIGNAL: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER - i`; connections count up from 0.
const LISTENER: usize = usize::MAX - 1;
/// One read buffer serves every socket: the loop is single-threaded.
const READ_BUF: usize = 64 * 1024;
/// Reads per readiness event before other sockets get a turn.
const READ_BUDGET: usize = 16;
/// Packets handed to the broker per read turn before other sockets get
/// theirs: one read of small packets (PINGREQs) is 30,000 of them.
const PACKET_BUDGET: usize = 1024;
/// How long a closing connection may take to drain before it is dropped.
const LINGER: Duration = Duration::from_secs(2);
/// How long shutdown waits for clients to take their DISCONNECT and go.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// How often the loop checks whether freed heap should go back to the
/// system (`mem::Trim`).
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Pause after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub struct Server {
    poll: Poll,
    /// Each socket with the index of its listener in `kinds`.
    listeners: Vec<(Listening, usize)>,
    /// Per configured listener (the broker's `Config::listeners` in the
    /// same order): the layers its connections start with (TLS,
    /// WebSockets).
    kinds: Vec<Kind>,
    conns: Slab<Connection>,
    broker: Broker,
    actions: Vec<Action>,
    read_buf: Box<[u8]>,
    /// What TLS decrypted of a read (see [`Transport::read`]).
    scratch: Vec<u8>,
    /// Connections with output to flush at the end of this iteration.
    dirty: Vec<usize>,
    /// Connections with input left over: after their read or packet
    /// budget, or read again once the broker stopped holding them.
    unread: Vec<usize>,
    /// Packets the connection being read may still hand over this turn.
    packets_left: usize,
    /// Closing connections by deadline; all linger alike, so oldest first.
    closing: VecDeque<(Instant, usize)>,
    spare: Spare,
    signals: Signals,
    max_connections: usize,
    max_outgoing: usize,
    max_packet: usize,
    accept_paused_until: Option<Instant>,
    /// A refused connection was logged since the last one admitted.
    refusal_logged: bool,
    /// Set by SIGINT/SIGTERM: when to give up on draining and exit.
    stop_by: Option<Instant>,
    /// READY/STATUS/STOPPING and the watchdog; inert outside systemd.
    systemd: Notifier,
    /// When `$SYS` is next published.
    sys: sys::Schedule,
    /// Where the password and ACL files are, for a reload; `memory_limit`.
    settings: Settings,
    /// The snapshot file, with `persistence true`.
    store: Option<Store>,
    /// Acks and QoS 2 PUBLISHes waiting for the journal's commit (only
    /// `Send` and `Publish`).
    held: Vec<Action>,
    /// Connections with a PUBLISH in `held`: their later QoS 1/2 PUBLISHes
    /// wait behind it, so those messages keep their order. QoS 0 ones pass:
    /// order is kept per QoS level (MQTT 5.0 section 4.6), and while the
    /// disk is full they would pile up here, past `max_outgoing_bytes`.
    held_publish: HashSet<usize>,
    /// The `connection` sections: outbound connections to other brokers.
    bridges: Vec<bridge::BridgeConn>,
    /// Freed heap handed back to the system, checked every `TRIM_EVERY`.
    trim: crate::mem::Trim,
    next_trim: Instant,
}

impl Server {
    /// Loads the persisted state, binds every listener and prepares the
    /// loop.
    pub fn bind(settings: &Settings) -> io::Result<Server> {
        // State first: a damaged snapshot stops start-up before any port
        // is taken.
        let now = Instant::now();
        let configured = settings.listen_on();
        let mut broker = Broker::new(crate::broker::Config {
            listeners: configured
                .iter()
                .map(|l| crate::broker::Listener {
                    auth: l.auth,
                    max_qos: l.max_qos,
                })
                .collect(),
            ..settings.broker.clone()
        });
        broker.set_memory_limit(settings.memory_limit);
        let store = match &settings.persistence {
            p if p.enabled => {
                let mut store = Store::new(p, now);
                let fit = crate::persist::import::Fit::new(settings);
                store
                    .load(&mut broker, now, SystemTime::now(), &fit)
                    .map_err(io::Error::other)?;
                Some(store)
            }
            _ => None,
        };
        // Certificates next: a file that does not read stops start-up
        // before any port is taken, too.
        let kinds = load_kinds(settings, &configured).map_err(io::Error::other)?;
        // Before the listeners are said to be open: a SIGHUP sent as soon
        // as they are must find it ready, not kill the process.
        let signals = Signals::new()?;
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        for (mut listener, index) in listen::open(settings, &configured)? {
            let token = Token(LISTENER - listeners.len());
            poll.registry()
                .register(&mut listener, token, Interest::READABLE)?;
            let (tls, scheme) = kinds[index].describe();
            log::info!("{tls}listening on {scheme}{}", listener.local()?);
            listeners.push((listener, index));
        }
        poll.registry()
            .register(&mut SourceFd(&signals.raw_fd()), SIGNAL, Interest::READABLE)?;
        let mut server = Server {
            poll,
            listeners,
            kinds,
            conns: Slab::new(),
            broker,
            actions: Vec::new(),
            read_buf: vec![0; READ_BUF].into_boxed_slice(),
            scratch: Vec::new(),
            dirty: Vec::new(),
            unread: Vec::new(),
            packets_left: 0,
            closing: VecDeque::new(),
            spare: Spare::default(),
            signals,
            max_connections: settings.max_connections.unwrap_or(usize::MAX),
            max_outgoing: settings.broker.max_outgoing,
            max_packet: settings.broker.max_packet_size as usize,
            accept_paused_until: None,
            refusal_logged: false,
            stop_by: None,
            systemd: Notifier::from_env(now),
            sys: sys::Schedule::new(settings.sys_interval, now),
            settings: settings.clone(),
            store,
            held: Vec::new(),
            held_publish: HashSet::new(),
            bridges: bridge::new(&settings.bridges, now).map_err(io::Error::other)?,
            trim: crate::mem::Trim::default(),
            next_trim: now,
        };
        server.add_bridge_sessions(now);
        Ok(server)
    }

    /// Runs until SIGINT or SIGTERM, then closes every connection.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        // Listeners are bound (connections already queue in their
        // backlog) and the persisted state is loaded.
        self.systemd.ready(0);
        loop {
            let timeout = self.timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    SIGNAL => self.on_signals(),
                    Token(t) if t > LISTENER - self.listeners.len() && t <= LISTENER => {
                        self.accept(LISTENER - t, now)
                    }
                    Token(id) => {
                        if let Some(i) = self.probe_of(id) {
                            self.bridge_probed(i, id, now);
                            continue;
                        }
                        if event.is_writable() {
                            self.flush(id, now);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(id, now);
                        }
                    }
                }
            }
            for id in std::mem::take(&mut self.unread) {
                self.read(id, now);
            }
            self.broker.tick(now, &mut self.actions);
            if self.sys.due(now) {
                self.broker
                    .publish_sys(now, sys::memory(), &mut self.actions);
            }
            self.execute(now);
            self.drive_bridges(now);
            self.commit(now);
            self.flush_dirty(now);
            self.expire(now);
            if let Some(store) = &mut self.store {
                store.autosave(&mut self.broker, now);
            }
            self.systemd.tick(now, || self.broker.clients());
            if self.next_trim <= now {
                self.trim.now_and_then();
                self.next_trim = now + TRIM_EVERY;
            }
            if self.accept_paused_until.is_some_and(|t| t <= now) {
                self.accept_paused_until = None;
                for i in 0..self.listeners.len() {
                    self.accept(i, now);
                }
            }
            if let Some(stop_by) = self.stop_by {
                if self.conns.is_empty() || stop_by <= now {
                    log::info!("stopped");
                    return Ok(());
                }
            }
        }
    }

    /// Until the next thing the loop must do without being woken.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        if !self.unread.is_empty() || !self.dirty.is_empty() {
            return Some(Duration::ZERO);
        }
        let closing = self.closing.front().map(|(at, _)| *at);
        [
            self.broker.next_deadline(),
            self.accept_paused_until,
            closing,
            self.stop_by,
            self.systemd.next_deadline(),
            self.store.as_ref().and_then(Store::next_deadline),
            self.sys.next_deadline(),
            self.bridges_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(now))
    }

    fn on_signals(&mut self) {
        while let Some(signal) = self.signals.next() {
            if signal == libc::SIGHUP {
                self.reload();
                continue;
            }
            if signal == libc::SIGUSR1 {
                match &mut self.store {
                    Some(store) => {
                        store.save(&mut self.broker, Instant::now());
                    }
                    None => log::info!("SIGUSR1: persistence is off, nothing to save"),
                }
                continue;
            }
            if self.stop_by.is_some() {
                continue;
            }
            log::info!("signal {signal}: shutting down");
            self.systemd.stopping();
            self.stop_by = Some(Instant::now() + SHUTDOWN_GRACE);
            for (mut listener, _) in self.listeners.drain(..) {
                let _ = self.poll.registry().deregister(&mut listener);
            }
            for path in self.settings.unix_sockets() {
                unix::remove(&path);
            }
            self.stop_bridges(Instant::now());
            self.broker.shutdown(&mut self.actions);
            if let Some(store) = &mut self.store {
                store.save(&mut self.broker, Instant::now());
            }
        }
    }

    /// SIGHUP (`systemctl reload roost`): the log settings, `sys_interval`,
    /// `memory_limit`, password and ACL files are read again, connections
    /// stay. Framed by RELOADING=1 and READY=1 so systemd shows the unit as
    /// reloading meanwhile. A file that no longer reads keeps the rules in
    /// force rather than opening the door.
    /// SIGHUP: the config file read again (see `config::reload`), the
    /// password, ACL, certificate and log files opened again.
    fn reload(&mut self) {
        self.systemd.reloading();
        let now = Instant::now();
        let fresh = self
            .settings
            .config_file
            .as_deref()
            .map(crate::config::load)
            .transpose();
        let reloaded = match fresh {
            Ok(fresh) => fresh.map(|fresh| self.settings.reload(fresh)),
            Err(e) => {
                log::error!("reload: {e}; keeping the settings in force");
                None
            }
        };
        // First, so that what follows goes to the reopened log file.
        crate::logging::reload(reloaded.as_ref().map(|r| &r.settings.log));
        if let Some(reloaded) = reloaded {
            for change in &reloaded.changes {
                if change.ends_with("needs a restart") {
                    log::warn!("reload: {change}");
                } else {
                    log::info!("reload: {change}");
                }
            }
            for warning in &reloaded.warnings {
                log::warn!("reload: {warning}");
            }
            self.apply(reloaded.settings, now);
        }
        match self.settings.load_access() {
            Ok(access) => {
                let mut closed = 0;
                for (auth, access) in access.into_iter().enumerate() {
                    let rules = crate::broker::Auth {
                        allow_anonymous: self.settings.security[auth].allows_anonymous(),
                        access,
                    };
                    closed += self.broker.set_access(auth, rules, now, &mut self.actions);
                }
                self.execute(now);
                log::info!(
                    "reload: password and ACL files read again; {closed} client(s) no longer allowed in closed"
                );
            }
            Err(e) => log::error!("reload: {e}; keeping the rules in force"),
        }
        for kind in &mut self.kinds {
            kind.reload();
        }
        self.reload_bridges();
        self.systemd.ready(self.broker.clients());
    }

    /// The settings in force after a reload, taken up by what keeps a
    /// copy of them: the broker, `$SYS`'s schedule, the persistence file's
    /// saves, the connections' output bound.
    fn apply(&mut self, settings: Settings, now: Instant) {
        if settings.sys_interval != self.settings.sys_interval {
            self.sys = sys::Schedule::new(settings.sys_interval, now);
        }
        self.broker.set_memory_limit(settings.memory_limit);
        self.broker.reconfigure(&settings.broker, now);
        self.max_outgoing = settings.broker.max_outgoing;
        self.max_packet = settings.broker.max_packet_size as usize;
        if let Some(store) = &mut self.store {
            store.set_autosave(&settings.persistence, now);
        }
        self.settings = settings;
    }

    fn accept(&mut self, listener: usize, now: Instant) {
        while self.accept_paused_until.is_none() && self.stop_by.is_none() {
            let Some(&(ref l, index)) = self.listeners.get(listener) else {
                return;
            };
            match l.accept() {
                Ok(stream) => {
                    self.broker.stats.sockets_accepted += 1;
                    self.admit(stream, index, now)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: waiting is the only cure, and
                    // retrying at once would spin the loop.
                    log::warn!("accept failed: {e}; pausing new connections");
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                }
            }
        }
    }

    /// A new connection on a socket of listener `index`.
    fn admit(&mut self, mut stream: Stream, index: usize, now: Instant) {
        let full = self.conns.len() >= self.max_connections;
        if full || self.broker.over_memory_limit() {
            if !self.refusal_logged {
                let why = if full {
                    format!("max_connections ({}) reached", self.max_connections)
                } else {
                    "heap over memory_limit".into()
                };
                log::warn!("{why}, refusing {}", stream.peer().unwrap_or_default());
                self.refusal_logged = true;
            }
            return;
        }
        self.refusal_logged = false;
        let kind = &self.kinds[index];
        let transport = match kind.start() {
            Ok(transport) => transport,
            Err(e) => return log::warn!("cannot serve {}: {e}", stream.peer().unwrap_or_default()),
        };
        let entry = self.conns.vacant_entry();
        let id = entry.key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(id), interest)
        {
            log::warn!("cannot register {}: {e}", stream.peer().unwrap_or_default());
            return;
        }
        log::debug!("connection {id} from {}", stream.peer().unwrap_or_default());
        entry.insert(Connection::new(stream, transport));
        // At most 256 listeners (`config::listeners`).
        self.broker.connected(id, index as u8, now);
    }

    /// Reads what connection `id` has (within its budget), decoding and
    /// handing over each whole packet.
    ///
    /// It reads until WouldBlock even after a short read. Stopping at a
    /// short read saves a system call per wakeup, but in two alternating
    /// roost-against-roost runs of the latency bench it made the QoS 1 p99
    /// 13% and 31% worse (broker and clients on different CPUs): no clear
    /// gain for the one target still in doubt.
    fn read(&mut self, id: usize, now: Instant) {
        // Packets left over from the last turn (past its budget, or while
        // the connection was held) come first.
        self.packets_left = PACKET_BUDGET;
        self.received(id, &[], now);
        let mut buf = std::mem::take(&mut self.read_buf);
        let mut budget = READ_BUDGET;
        while let Some(c) = self.conns.get_mut(id) {
            if c.paused != 0 {
                break;
            }
            if c.unsent() >= self.max_outgoing {
                // Its answers pile up: one read at most past the bound.
                c.paused |= pause::OUTPUT;
                break;
            }
            if budget == 0 || self.packets_left == 0 {
                // More may be waiting: come back after the others.
                self.unread.push(id);
                break;
            }
            budget -= 1;
            let read = c.stream.read(&mut buf);
            if let Ok(n) = read {
                self.broker.stats.bytes_received += n as u64;
            }
            match read {
                Ok(0) => self.lost(id, now, None),
                // A closing connection's input is read and discarded.
                Ok(_) if c.closing().is_some() => {}
                Ok(n) if c.has_transport() => {
                    self.received_through_transport(id, &mut buf[..n], now)
                }
                Ok(n) => self.received(id, &buf[..n], now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.lost(id, now, Some(e)),
            }
        }
        self.read_buf = buf;
    }

    /// `buf`, read from a connection with a transport: its MQTT bytes go
    /// on to `received`, its answers out to the peer. When the transport
    /// ends the connection (a refused handshake, a close, a TLS error) the
    /// broker hears the connection is gone, as if the socket had closed.
    fn received_through_transport(&mut self, id: usize, buf: &mut [u8], now: Instant) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        let inbound = c.filter_input(buf, &mut scratch, &mut self.spare);
        if c.unsent() > 0 {
            mark_dirty(&mut self.dirty, c, id);
        }
        if !inbound.mqtt.is_empty() {
            self.received(id, inbound.mqtt, now);
        }
        let end = inbound.end;
        scratch.clear();
        self.scratch = scratch;
        let Some(why) = end else {
            return;
        };
        if self.conns.get(id).is_some_and(|c| c.closing().is_none()) {
            match (self.bridge_of(id), &why) {
                // A bridge's TLS failing is its connection failing: said once.
                (Some(i), _) => log::warn!("bridge {}: {why}", self.bridges[i].config.name),
                #[cfg(feature = "tls")]
                (None, End::Tls(_)) => match self.conns[id].stream.peer() {
                    Some(peer) => log::warn!("connection from {peer}: {why}"),
                    None => log::warn!("connection {id}: {why}"),
                },
                (None, End::WebSocket(_)) => log::debug!("connection {id}: {why}"),
            }
            self.broker.closed(id, now, &mut self.actions);
            self.execute(now);
            self.close(id, now);
        }
    }

    /// Decodes packets from `data` (after any leftover of connection `id`)
    /// and hands them to the broker one by one.
    fn received(&mut self, id: usize, data: &[u8], now: Instant) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let mut pending = c.take_inbuf();
        let bytes: &[u8] = if pending.is_empty() {
            data
        } else {
            pending.extend_from_slice(data);
            &pending
        };
        let mut pos = 0;
        let alive = loop {
            let Some(c) = self.conns.get_mut(id) else {
                break false;
            };
            if c.closing().is_some() {
                break false;
            }
            let publish = bytes.get(pos).is_some_and(|b| b >> 4 == 3);
            if publish && c.paused & pause::HELD != 0 || self.packets_left == 0 {
                // Kept for when the broker lets it go, or for the next turn.
                break true;
            }
            let max = self.broker.max_inbound(bytes.len() - pos);
            match protocol::decode(&bytes[pos..], c.version, max) {
                Ok(Some((packet, used))) => {
                    pos += used;
                    self.packets_left -= 1;
                    let mut origin = None;
                    if let Packet::Connect(connect) = &packet {
                        c.version = connect.version;
                        origin = Some(Origin {
                            peer: c.stream.peer(),
                            identity: c.identity(),
                        });
                    }
                    self.broker.stats.packets_received += 1;
                    let room = self.max_outgoing.saturating_sub(c.unsent());
                    self.broker.output_room(id, room);
                    match (self.bridge_of(id), packet, origin) {
                        (Some(i), packet, _) => self.bridge_packet(i, id, packet, now),
                        (None, Packet::Connect(connect), Some(origin)) => {
                            let actions = &mut self.actions;
                            self.broker.connect(id, connect, origin, now, actions);
                        }
                        (None, packet, _) => self.broker.packet(id, packet, now, &mut self.actions),
                    }
                    self.execute(now);
                }
                Ok(None) => break true,
                Err(e) => {
                    match self.bridge_of(id) {
                        Some(i) => self.bridge_garbled(i, id, &e, now),
                        None => self.broker.decode_error(id, &e, now, &mut self.actions),
                    }
                    self.execute(now);
                    break false;
                }
            }
        };
        // Keep the tail of a partial packet (at most `max_inbound` bytes:
        // the decoder refuses larger ones from their header).
        if let (true, Some(c)) = (alive, self.conns.get_mut(id)) {
            let tail = if pending.is_empty() {
                data[pos..].to_vec()
            } else {
                pending.drain(..pos);
                pending
            };
            c.keep_inbuf(tail, &mut self.spare);
        }
    }

    /// Carries out what the broker asked for.
    fn execute(&mut self, now: Instant) {
        let mut actions = std::mem::take(&mut self.actions);
        for action in actions.drain(..) {
            self.perform(action, now);
        }
        self.actions = actions;
    }

    /// Carries out one action, or holds it for [`Server::commit`].
    fn perform(&mut self, action: Action, now: Instant) {
        match action {
            Action::Send(id, packet) => self.send(id, packet, now),
            Action::SendAfterCommit(id, packet) => self.held.push(Action::Send(id, packet)),
            Action::Publish(id, d)
                if d.qos != QoS::AtMostOnce && self.held_publish.contains(&id) =>
            {
                self.held.push(Action::Publish(id, d));
            }
            Action::Publish(id, d) => self.publish(id, &d, now),
            Action::PublishAfterCommit(id, d) => {
                self.held_publish.insert(id);
                self.held.push(Action::Publish(id, d));
            }
            Action::Close(id) => self.close(id, now),
            Action::Hold(id) => {
                if let Some(c) = self.conns.get_mut(id) {
                    c.paused |= pause::HELD;
                }
            }
            Action::Resume(id) => {
                if let Some(c) = self.conns.get_mut(id) {
                    c.paused &= !pause::HELD;
                    self.unread.push(id);
                }
            }
        }
    }

    /// Journal mode: makes this iteration's changes durable with one
    /// fsync, then lets go what waited for that: the acks that promised
    /// it, and QoS 2 PUBLISHes whose packet id it stores. While the journal
    /// cannot be written they wait (and the broker refuses new QoS 1/2
    /// messages).
    fn commit(&mut self, now: Instant) {
        let Some(store) = &mut self.store else {
            return;
        };
        if !store.commit(&mut self.broker, now) {
            return;
        }
        self.held_publish.clear();
        for action in std::mem::take(&mut self.held) {
            self.perform(action, now);
        }
    }

    /// Encodes `packet` for connection `id` within the Maximum Packet Size
    /// the client asked for ([MQTT-3.1.2-24]). The broker has left out the
    /// Reason Strings that would not fit and skips the PUBLISH that would
    /// not; any other packet too large (a CONNACK or SUBACK for a client
    /// with a tiny limit) is not sent, and the connection is closed, as by
    /// mosquitto.
    fn send(&mut self, id: usize, packet: Packet, now: Instant) {
        let limit = self.broker.max_packet(id);
        let Some((version, out)) = self.outbuf(id) else {
            return;
        };
        let start = out.len();
        protocol::encode(&packet, version, out);
        let len = out.len() - start;
        if len > limit {
            out.truncate(start);
            log::info!(
                "connection {id}: a {len}-byte packet exceeds its Maximum Packet Size of \
                 {limit}, closing"
            );
            self.broker.closed(id, now, &mut self.actions);
            self.execute(now);
            return self.close(id, now);
        }
        self.broker.stats.packets_sent += 1;
    }

    /// The protocol level and output buffer of a live connection, marked
    /// for flushing. Runs for every packet sent: left out of line, as the
    /// compiler chose once the buffer moved into `Connection`'s box, it
    /// cost 2% more instructions in a QoS 0 fan-out (callgrind).
    #[inline(always)]
    fn outbuf(&mut self, id: usize) -> Option<(protocol::Version, &mut Vec<u8>)> {
        let c = self.conns.get_mut(id)?;
        if c.closing().is_some() {
            return None;
        }
        mark_dirty(&mut self.dirty, c, id);
        Some((c.version, c.outbuf(&mut self.spare)))
    }

    fn publish(&mut self, id: usize, d: &Delivery, now: Instant) {
        let bridge = self.bridge_of(id).map(|i| self.bridge_outgoing(i, d, now));
        let mut p = d.as_publish();
        if let Some((topic, retain)) = &bridge {
            p.topic = topic;
            p.retain &= retain;
        }
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.closing().is_some() {
            return;
        }
        mark_dirty(&mut self.dirty, c, id);
        let version = c.version;
        let len = protocol::publish_len(&p, version);
        // Room for one message over the bound, and acknowledgements.
        let ceiling = self.max_outgoing + self.max_outgoing / 8;
        if c.shares(p.payload.len()) {
            let buf = c.outbuf_for(len - p.payload.len(), ceiling, &mut self.spare);
            protocol::encode_publish_head(&p, version, buf);
            c.share_payload(&d.msg, &mut self.spare);
        } else {
            let buf = c.outbuf_for(len, ceiling, &mut self.spare);
            protocol::encode_publish(&p, version, buf);
        }
        self.broker.stats.packets_sent += 1;
        self.broker.stats.publish_sent += 1;
        self.broker.stats.publish_bytes_sent += p.payload.len() as u64;
        if !c.full && c.unsent() >= self.max_outgoing {
            // Further messages wait in its session's queue (see `flush`).
            c.full = true;
            self.broker.output_full(id);
        }
    }

    fn flush_dirty(&mut self, now: Instant) {
        for id in std::mem::take(&mut self.dirty) {
            if let Some(c) = self.conns.get_mut(id) {
                c.dirty = false;
                self.flush(id, now);
            }
        }
    }

    /// Writes what connection `id` has queued; finishes a close once all
    /// is out. Once the output is down to half its bound, the broker
    /// fills it again from the session's queue, and a connection paused
    /// for its output is read from again.
    fn flush(&mut self, id: usize, now: Instant) {
        loop {
            let Some(c) = self.conns.get_mut(id) else {
                return;
            };
            match c.flush(&mut self.broker.stats.bytes_sent) {
                Ok(true) => {
                    if c.closing().is_some() {
                        let _ = c.stream.shutdown(std::net::Shutdown::Write);
                    }
                    c.release(&mut self.spare);
                }
                Ok(false) => {}
                Err(e) => return self.lost(id, now, Some(e)),
            }
            if !c.full || c.closing().is_some() || c.unsent() > self.max_outgoing / 2 {
                break;
            }
            c.full = false;
            let room = self.max_outgoing - c.unsent();
            self.broker.output_ready(id, room, now, &mut self.actions);
            self.execute(now);
        }
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let over = c.unsent() >= self.max_outgoing;
        if c.paused & pause::OUTPUT != 0 && !over {
            c.paused &= !pause::OUTPUT;
            self.read(id, now);
        } else if over {
            c.paused |= pause::OUTPUT;
        }
    }

    /// The broker is done with connection `id`: send what is queued, then
    /// close. The socket lingers (reading and discarding) until the peer
    /// closes or `LINGER` passes, so the last packet is not lost to a reset.
    fn close(&mut self, id: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.closing().is_some() {
            return;
        }
        c.close_by(now + LINGER, &mut self.spare);
        self.closing.push_back((now + LINGER, id));
        // Its slot may be reused: an ack still held must not reach the next.
        self.held.retain(|a| a.conn() != id);
        self.held_publish.remove(&id);
        // Read (and discarded) until the peer goes.
        c.paused = 0;
        if !c.dirty {
            self.flush(id, now);
        }
        if let Some(i) = self.bridge_of(id) {
            self.bridge_down(i, false, now);
        }
    }

    /// The peer went away or the socket failed.
    fn lost(&mut self, id: usize, now: Instant, err: Option<io::Error>) {
        let Some(mut c) = self.conns.try_remove(id) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.held.retain(|a| a.conn() != id);
        self.held_publish.remove(&id);
        if let Some(i) = self.bridge_of(id) {
            // Closed by the peer with all our bytes sent: for a bridge
            // not yet answered, it took the whole CONNECT (TLS included).
            let by_peer = err
                .as_ref()
                .is_none_or(|e| e.kind() == io::ErrorKind::ConnectionReset);
            let unanswered = by_peer && c.closing().is_none() && c.unsent() == 0;
            self.bridge_down(i, unanswered && !c.handshaking(), now);
        }
        if c.closing().is_none() {
            match err {
                Some(e) => log::debug!("connection {id}: {e}"),
                None => log::debug!("connection {id}: closed by peer"),
            }
            self.broker.closed(id, now, &mut self.actions);
            self.execute(now);
        }
    }

    /// Drops closing connections whose linger time is up.
    fn expire(&mut self, now: Instant) {
        // Peers that close promptly leave their entries behind until the
        // deadline; sweep once they outnumber the connections there are.
        if self.closing.len() > self.conns.len() + 64 {
            let conns = &self.conns;
            self.closing
                .retain(|(at, id)| conns.get(*id).is_some_and(|c| c.closing() == Some(*at)));
            self.closing.shrink_to(self.closing.len() * 2);
        }
        while let Some(&(at, id)) = self.closing.front() {
            if at > now {
                return;
            }
            self.closing.pop_front();
            // The slot may since hold another connection.
            if self.conns.get(id).is_some_and(|c| c.closing() == Some(at)) {
                let mut c = self.conns.remove(id);
                let _ = self.poll.registry().deregister(&mut c.stream);
            }
        }
    }
}

/// Lists connection `id` for a flush at the end of the loop iteration.
#[inline(always)]
fn mark_dirty(dirty: &mut Vec<usize>, c: &mut Connection, id: usize) {
    if !c.dirty {
        c.dirty = true;
        dirty.push(id);
    }
}

/// The layers each listener's connections start with; reads their
/// certificate files. Errors name the file.
fn load_kinds(
    settings: &Settings,
    listeners: &[crate::config::Listener],
) -> Result<Vec<Kind>, String> {
    listeners.iter().map(|l| Kind::load(l, settings)).collect()
}

/// `--check-config`: whether every listener can be opened as far as can
/// be told without binding (`listen::check`), and every listener's and
/// bridge's certificate files read.
pub fn check_transports(settings: &Settings) -> Result<(), String> {
    listen::check(&settings.listen_on())?;
    load_kinds(settings, &settings.listen_on())?;
    bridge::new(&settings.bridges, Instant::now()).map(drop)
}
