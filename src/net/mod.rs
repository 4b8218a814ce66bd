//! The only place with sockets: one `mio::Poll`, the listeners, a
//! `Slab` of connections. It moves bytes, cuts them into packets for the
//! broker core, and carries out the core's actions. Everything it decides
//! itself is about buffers: back-pressure, drops, closing politely.

mod conn;
mod signals;
mod systemd;

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::broker::{Action, Broker, Delivery};
use crate::config::Settings;
use crate::protocol::{self, Packet, QoS};
use conn::Connection;
use signals::Signals;
use systemd::{Listen, Notifier};

const SIGNAL: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER - i`; connections count up from 0.
const LISTENER: usize = usize::MAX - 1;
/// One read buffer serves every socket: the loop is single-threaded.
const READ_BUF: usize = 64 * 1024;
/// Reads per readiness event before other sockets get a turn.
const READ_BUDGET: usize = 16;
/// How long a closing connection may take to drain before it is dropped.
const LINGER: Duration = Duration::from_secs(2);
/// How long shutdown waits for clients to take their DISCONNECT and go.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Pause after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Spare output buffers kept for reuse, and the largest kept.
const SPARE_BUFFERS: usize = 64;
const SPARE_CAPACITY: usize = 64 * 1024;

pub struct Server {
    poll: Poll,
    listeners: Vec<TcpListener>,
    conns: Slab<Connection>,
    broker: Broker,
    actions: Vec<Action>,
    read_buf: Box<[u8]>,
    /// Connections with output to flush at the end of this iteration.
    dirty: Vec<usize>,
    /// Connections with input left over after their read budget.
    unread: Vec<usize>,
    /// Closing connections by deadline; all linger alike, so oldest first.
    closing: VecDeque<(Instant, usize)>,
    spare: Vec<Vec<u8>>,
    signals: Signals,
    max_connections: usize,
    max_outgoing: usize,
    max_packet: usize,
    accept_paused_until: Option<Instant>,
    full_logged: bool,
    /// Set by SIGINT/SIGTERM: when to give up on draining and exit.
    stop_by: Option<Instant>,
    /// READY/STATUS/STOPPING and the watchdog; inert outside systemd.
    systemd: Notifier,
    /// Where the password and ACL files are, for a reload.
    settings: Settings,
}

impl Server {
    /// Binds every listener and prepares the loop.
    pub fn bind(settings: &Settings) -> io::Result<Server> {
        let poll = Poll::new()?;
        let passed = systemd::listen_fds()?;
        if !passed.is_empty() {
            log::info!("socket activation: {} socket(s) from systemd", passed.len());
        }
        let plan = if passed.is_empty() {
            settings
                .listen_addrs()
                .into_iter()
                .map(Listen::Bind)
                .collect()
        } else {
            systemd::plan(&settings.listeners, passed)
        };
        let mut listeners = Vec::new();
        for (i, listen) in plan.into_iter().enumerate() {
            let mut listener = match listen {
                Listen::Passed(l) => {
                    let addr = l.local_addr()?;
                    settings
                        .check_listeners(&[addr])
                        .map_err(io::Error::other)?;
                    TcpListener::from_std(l)
                }
                Listen::Bind(addr) => TcpListener::bind(addr).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
                })?,
            };
            poll.registry()
                .register(&mut listener, Token(LISTENER - i), Interest::READABLE)?;
            log::info!("listening on {}", listener.local_addr()?);
            listeners.push(listener);
        }
        let signals = Signals::new()?;
        poll.registry()
            .register(&mut SourceFd(&signals.raw_fd()), SIGNAL, Interest::READABLE)?;
        Ok(Server {
            poll,
            listeners,
            conns: Slab::new(),
            broker: Broker::new(settings.broker.clone()),
            actions: Vec::new(),
            read_buf: vec![0; READ_BUF].into_boxed_slice(),
            dirty: Vec::new(),
            unread: Vec::new(),
            closing: VecDeque::new(),
            spare: Vec::new(),
            signals,
            max_connections: settings.max_connections.unwrap_or(usize::MAX),
            max_outgoing: settings.max_outgoing_bytes,
            max_packet: settings.broker.max_packet_size as usize,
            accept_paused_until: None,
            full_logged: false,
            stop_by: None,
            systemd: Notifier::from_env(Instant::now()),
            settings: settings.clone(),
        })
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Runs until SIGINT or SIGTERM, then closes every connection.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        // Listeners are bound (connections already queue in their
        // backlog) and there is no state to load yet.
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
            self.execute(now);
            self.flush_dirty(now);
            self.expire(now);
            self.systemd.tick(now, || self.broker.clients());
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
        if !self.unread.is_empty() {
            return Some(Duration::ZERO);
        }
        let closing = self.closing.front().map(|(at, _)| *at);
        [
            self.broker.next_deadline(),
            self.accept_paused_until,
            closing,
            self.stop_by,
            self.systemd.next_deadline(),
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
            if self.stop_by.is_some() {
                continue;
            }
            log::info!("signal {signal}: shutting down");
            self.systemd.stopping();
            self.stop_by = Some(Instant::now() + SHUTDOWN_GRACE);
            for mut listener in self.listeners.drain(..) {
                let _ = self.poll.registry().deregister(&mut listener);
            }
            self.broker.shutdown(&mut self.actions);
        }
    }

    /// SIGHUP (`systemctl reload roost`): the password and ACL files are
    /// read again, connections stay. Framed by RELOADING=1 and READY=1 so
    /// systemd shows the unit as reloading meanwhile. A file that no longer
    /// reads keeps the rules in force rather than opening the door.
    fn reload(&mut self) {
        self.systemd.reloading();
        match self.settings.load_access() {
            Ok(access) => {
                self.broker.set_access(access);
                log::info!("reload: password and ACL files read again");
            }
            Err(e) => log::error!("reload: {e}; keeping the rules in force"),
        }
        self.systemd.ready(self.broker.clients());
    }

    fn accept(&mut self, listener: usize, now: Instant) {
        while self.accept_paused_until.is_none() && self.stop_by.is_none() {
            let Some(l) = self.listeners.get(listener) else {
                return;
            };
            match l.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, now),
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

    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Instant) {
        if self.conns.len() >= self.max_connections {
            if !self.full_logged {
                log::warn!(
                    "max_connections ({}) reached, refusing {peer}",
                    self.max_connections
                );
                self.full_logged = true;
            }
            return;
        }
        self.full_logged = false;
        let entry = self.conns.vacant_entry();
        let id = entry.key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(id), interest)
        {
            log::warn!("cannot register {peer}: {e}");
            return;
        }
        let _ = stream.set_nodelay(true);
        entry.insert(Connection::new(stream));
        self.broker.connected(id, now);
        log::debug!("connection {id} from {peer}");
    }

    /// Reads what connection `id` has (within its budget), decoding and
    /// handing over each whole packet.
    fn read(&mut self, id: usize, now: Instant) {
        let mut buf = std::mem::take(&mut self.read_buf);
        let mut budget = READ_BUDGET;
        while let Some(c) = self.conns.get_mut(id) {
            if c.read_paused {
                break;
            }
            if budget == 0 {
                // More may be waiting: come back after the others.
                self.unread.push(id);
                break;
            }
            budget -= 1;
            match c.stream.read(&mut buf) {
                Ok(0) => self.lost(id, now, None),
                // A closing connection's input is read and discarded.
                Ok(_) if c.closing.is_some() => {}
                Ok(n) => self.received(id, &buf[..n], now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.lost(id, now, Some(e)),
            }
        }
        self.read_buf = buf;
    }

    /// Decodes packets from `data` (after any leftover of connection `id`)
    /// and hands them to the broker one by one.
    fn received(&mut self, id: usize, data: &[u8], now: Instant) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let mut pending = std::mem::take(&mut c.inbuf);
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
            if c.closing.is_some() {
                break false;
            }
            match protocol::decode(&bytes[pos..], c.version, self.max_packet) {
                Ok(Some((packet, used))) => {
                    pos += used;
                    if let Packet::Connect(connect) = &packet {
                        c.version = connect.version;
                    }
                    self.broker.packet(id, packet, now, &mut self.actions);
                    self.execute(now);
                }
                Ok(None) => break true,
                Err(e) => {
                    self.broker.decode_error(id, &e, now, &mut self.actions);
                    self.execute(now);
                    break false;
                }
            }
        };
        // Keep the tail of a partial packet (at most `max_packet` bytes:
        // the decoder refuses larger ones from their header).
        if let (true, Some(c)) = (alive, self.conns.get_mut(id)) {
            if pending.is_empty() {
                c.inbuf.extend_from_slice(&data[pos..]);
            } else if pos < pending.len() {
                pending.drain(..pos);
                c.inbuf = pending;
            }
        }
    }

    /// Carries out what the broker asked for.
    fn execute(&mut self, now: Instant) {
        let mut actions = std::mem::take(&mut self.actions);
        for action in actions.drain(..) {
            match action {
                Action::Send(id, packet) => {
                    if let Some((version, out)) = self.outbuf(id) {
                        protocol::encode(&packet, version, out);
                    }
                }
                Action::Publish(id, d) => self.publish(id, &d),
                Action::Close(id) => self.close(id, now),
            }
        }
        self.actions = actions;
    }

    /// The protocol level and output buffer of a live connection, marked
    /// for flushing.
    fn outbuf(&mut self, id: usize) -> Option<(protocol::Version, &mut Vec<u8>)> {
        let c = self.conns.get_mut(id)?;
        if c.closing.is_some() {
            return None;
        }
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(id);
        }
        if c.outbuf.capacity() == 0 {
            if let Some(buf) = self.spare.pop() {
                c.outbuf = buf;
            }
        }
        Some((c.version, &mut c.outbuf))
    }

    fn publish(&mut self, id: usize, d: &Delivery) {
        let max_outgoing = self.max_outgoing;
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        // A subscriber that does not keep up loses QoS 0 first; QoS 1/2
        // are bounded by its in-flight window instead.
        if d.qos == QoS::AtMostOnce && c.outbuf.len() >= max_outgoing && !d.defines_alias() {
            self.broker.stats.messages_dropped += 1;
            if !c.drop_logged {
                c.drop_logged = true;
                log::warn!("connection {id}: not reading, dropping QoS 0 messages");
            }
            return;
        }
        if let Some((version, out)) = self.outbuf(id) {
            protocol::encode_publish(&d.as_publish(), version, out);
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
    /// is out, and resumes reading once it is under its bound again.
    fn flush(&mut self, id: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        match c.flush() {
            Ok(true) => {
                let buf = std::mem::take(&mut c.outbuf);
                if buf.capacity() <= SPARE_CAPACITY && self.spare.len() < SPARE_BUFFERS {
                    self.spare.push(buf);
                }
                c.drop_logged = false;
                if c.closing.is_some() {
                    let _ = c.stream.shutdown(std::net::Shutdown::Write);
                }
            }
            Ok(false) => {}
            Err(e) => return self.lost(id, now, Some(e)),
        }
        if c.read_paused && c.outbuf.len() < self.max_outgoing {
            c.read_paused = false;
            self.read(id, now);
        } else if !c.read_paused && c.outbuf.len() >= self.max_outgoing {
            c.read_paused = true;
        }
    }

    /// The broker is done with connection `id`: send what is queued, then
    /// close. The socket lingers (reading and discarding) until the peer
    /// closes or `LINGER` passes, so the last packet is not lost to a reset.
    fn close(&mut self, id: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        c.closing = Some(now + LINGER);
        self.closing.push_back((now + LINGER, id));
        c.read_paused = false;
        c.inbuf = Vec::new();
        if !c.dirty {
            self.flush(id, now);
        }
    }

    /// The peer went away or the socket failed.
    fn lost(&mut self, id: usize, now: Instant, err: Option<io::Error>) {
        let Some(mut c) = self.conns.try_remove(id) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        if c.closing.is_none() {
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
                .retain(|(at, id)| conns.get(*id).is_some_and(|c| c.closing == Some(*at)));
            self.closing.shrink_to(self.closing.len() * 2);
        }
        while let Some(&(at, id)) = self.closing.front() {
            if at > now {
                return;
            }
            self.closing.pop_front();
            // The slot may since hold another connection.
            if self.conns.get(id).is_some_and(|c| c.closing == Some(at)) {
                let mut c = self.conns.remove(id);
                let _ = self.poll.registry().deregister(&mut c.stream);
            }
        }
    }
}
