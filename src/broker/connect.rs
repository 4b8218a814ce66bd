//! CONNECT and DISCONNECT: authentication, client ids, session take-over
//! and resumption, keep-alive and the will.

use std::rc::Rc;
use std::time::Instant;

use super::publish::payload_format_ok;
use super::session::{Awaiting, Outgoing, Role, Session};
use super::topic::too_deep;
use super::{
    Action, Aliases, Broker, ConnId, Credentials, Gone, Listener, OutAliases, Slot, connack, reason,
};
use crate::protocol::{Ack, Connect, Packet, Property, QoS, ReasonOnly, Version};
use std::collections::HashMap;

/// Where a CONNECT comes from, as the loop knows it.
#[derive(Debug, Default)]
pub struct Origin {
    /// The client's address (for a Unix socket its path), for the log.
    pub peer: Option<String>,
    /// For a client of a TLS listener with `use_identity_as_username`
    /// (mosquitto's rule), its certificate's CN, which stands for user name
    /// and password whatever CONNECT says; `Some(None)` without a
    /// certificate, which is refused.
    pub identity: Option<Option<String>>,
}

impl Broker {
    /// Like [`Broker::packet`] for a CONNECT, with what the loop knows of
    /// where it comes from.
    pub fn connect(
        &mut self,
        id: ConnId,
        mut c: Box<Connect>,
        origin: Origin,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let first = self.conns.get(id).is_some_and(|c| c.session.is_none());
        if !first {
            return self.packet(id, Packet::Connect(c), now, out);
        }
        if let Some(identity) = origin.identity.clone() {
            c.username = identity;
            c.password = None;
        }
        self.on_connect(id, *c, &origin, now, out);
    }

    /// CONNECT; with `origin.identity` the user name comes from the
    /// client's certificate, which authenticates it.
    pub(super) fn on_connect(
        &mut self,
        id: ConnId,
        c: Connect,
        origin: &Origin,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.stats.connects_received += 1;
        let certified = origin.identity.is_some();
        let from = match &origin.peer {
            Some(peer) => format!(" from {peer}"),
            None => String::new(),
        };
        let v5 = c.version == Version::V5;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.version = c.version;
        // Known before any answer, a refusing CONNACK included.
        conn.max_packet = crate::property!(c.properties, MaximumPacketSize).unwrap_or(u32::MAX);
        let via = conn.listener;
        let Listener { auth, max_qos } = self.listener(via);

        if v5
            && c.properties
                .iter()
                .any(|p| matches!(p, Property::AuthenticationMethod(_)))
        {
            // No enhanced authentication: [MQTT-4.12.0-1] allows 0x8C.
            return self.refuse(id, reason::BAD_AUTHENTICATION_METHOD, out);
        }

        if v5
            && c.will
                .as_ref()
                .is_some_and(|w| !payload_format_ok(&w.properties, &w.payload))
        {
            return self.refuse(id, reason::PAYLOAD_FORMAT_INVALID, out);
        }

        if let Some(will) = &c.will {
            if too_deep(&will.topic) {
                // As a PUBLISH to it would be.
                if v5 {
                    return self.refuse(id, reason::TOPIC_NAME_INVALID, out);
                }
                return self.drop_conn(id, None, now, out);
            }
            if will.qos > max_qos {
                // As mosquitto: v5 CONNACK 0x9B with the Maximum QoS; a
                // 3.x client is closed without CONNACK.
                if v5 {
                    return self.refuse_with(
                        id,
                        reason::QOS_NOT_SUPPORTED,
                        vec![Property::MaximumQoS(max_qos as u8)],
                        out,
                    );
                }
                return self.drop_conn(id, None, now, out);
            }
            if will.retain && !self.config.retain_available {
                // [MQTT-3.2.2-13]; a 3.x client is closed without CONNACK,
                // as mosquitto does.
                if v5 {
                    return self.refuse(id, reason::RETAIN_NOT_SUPPORTED, out);
                }
                return self.drop_conn(id, None, now, out);
            }
            let limit = self.config.message_size_limit;
            if limit > 0 && will.payload.len() > limit as usize {
                // As mosquitto 2.
                let code = if v5 {
                    reason::PACKET_TOO_LARGE
                } else {
                    reason::V3_NOT_AUTHORIZED
                };
                return self.refuse(id, code, out);
            }
        }

        let mut keep_alive = c.keep_alive;
        let mut server_keep_alive = None;
        let max_ka = self.config.max_keepalive;
        if max_ka > 0 && (keep_alive == 0 || keep_alive > max_ka) {
            if !v5 && keep_alive > max_ka {
                // 3.x has no way to tell the client: refuse, as mosquitto
                // does. Keep-alive 0 it takes as it comes, as mosquitto
                // 2.0.11 does.
                return self.refuse(id, reason::V3_IDENTIFIER_REJECTED, out);
            }
            if v5 {
                keep_alive = max_ka;
                server_keep_alive = Some(max_ka);
            }
        }

        let mut assigned = None;
        let client_id: Rc<str> = if c.client_id.is_empty() {
            // 3.1 requires an id; 3.1.1 only allows none with a clean
            // session ([MQTT-3.1.3-8]); 5.0 assigns one ([MQTT-3.1.3-6]).
            if !v5 && (c.version == Version::V31 || !c.clean_start) {
                return self.refuse(id, reason::V3_IDENTIFIER_REJECTED, out);
            }
            // Random, so that no client can guess another's and take over
            // its session.
            let generated = match crate::random::client_id(&self.config.auto_id_prefix) {
                Ok(generated) => generated,
                Err(e) => {
                    log::error!("cannot make a client id: getrandom: {e}");
                    let code = if v5 {
                        reason::IMPLEMENTATION_SPECIFIC
                    } else {
                        reason::V3_IDENTIFIER_REJECTED
                    };
                    return self.refuse(id, code, out);
                }
            };
            assigned = Some(generated.clone());
            generated.into()
        } else {
            c.client_id.into()
        };

        let creds = Credentials {
            client_id: &client_id,
            username: c.username.as_deref(),
            password: c.password.as_deref(),
        };
        // Without access control every client counts as anonymous.
        let rules = &self.config.auth[usize::from(auth)];
        let allowed = match (&rules.access, creds.username) {
            _ if certified => creds.username.is_some(),
            (Some(access), Some(_)) => access.authenticate(&creds),
            _ => rules.allow_anonymous,
        };
        let keep_username = rules.access.is_some();
        if !allowed {
            let who = match creds.username {
                Some(user) => format!("user {user:?}"),
                None if certified => "no client certificate with a CN".into(),
                None => "anonymous".into(),
            };
            log::warn!("Client {client_id}{from} refused: not authorised ({who}).");
            // 3.1.1 clients get 0x05 whatever was wrong, as from mosquitto;
            // v5 ones learn whether it was the password (or certificate).
            let code = match (v5, creds.username.is_some() || certified) {
                (true, true) => reason::BAD_USERNAME_OR_PASSWORD,
                (true, false) => reason::NOT_AUTHORIZED,
                (false, _) => reason::V3_NOT_AUTHORIZED,
            };
            return self.refuse(id, code, out);
        }

        let expiry = if v5 {
            crate::property!(c.properties, SessionExpiryInterval).unwrap_or(0)
        } else if c.clean_start {
            0
        } else {
            u32::MAX
        };

        let bridge_id = self.by_client_id.get(&client_id);
        if bridge_id.is_some_and(|&s| self.sessions[s].role == Role::Bridge) {
            log::info!("client {client_id}: refused, the id is a bridge's");
            let code = if v5 {
                reason::CLIENT_ID_NOT_VALID
            } else {
                reason::V3_IDENTIFIER_REJECTED
            };
            return self.refuse(id, code, out);
        }

        // Take-over: the older connection of this client id goes
        // ([MQTT-3.1.4-3]); it did not DISCONNECT, so its will is due.
        let old_conn = self
            .by_client_id
            .get(&client_id)
            .and_then(|&s| self.sessions[s].conn());
        if let Some(old) = old_conn {
            self.drop_conn(old, Some(reason::SESSION_TAKEN_OVER), now, out);
        }
        let existing = self.by_client_id.get(&client_id).copied();
        let (s, present) = match existing {
            Some(s) if !c.clean_start => (s, true),
            Some(s) => {
                self.end_session(s, now, out);
                (self.new_session(client_id.clone()), false)
            }
            None => (self.new_session(client_id.clone()), false),
        };

        let receive_max = crate::property!(c.properties, ReceiveMaximum).unwrap_or(u16::MAX);
        self.attach(s, id, receive_max);
        let session = &mut self.sessions[s];
        session.expiry = expiry;
        session.role = if c.bridge {
            Role::RemoteBridge
        } else {
            Role::Client
        };
        // Set on every connect: a session resumed by another user is read
        // for with that user's rights.
        session.username = c
            .username
            .as_deref()
            .filter(|_| keep_username)
            .map(Box::from);
        session.auth = auth;
        session.certified = certified;

        let conn = self.conns.get_mut(id).expect("checked above");
        conn.will = c.will.map(Box::new);
        let alias_max = crate::property!(c.properties, TopicAliasMaximum).unwrap_or(0);
        if self.config.outbound_topic_aliases && alias_max > 0 {
            conn.aliases = Some(Box::new(Aliases {
                inbound: Vec::new(),
                outbound: Some(OutAliases {
                    max: alias_max,
                    map: HashMap::new(),
                }),
            }));
        }
        conn.keep_alive = keep_alive;
        conn.deadline = conn.idle_limit().map(|limit| now + limit);
        if let Some(deadline) = conn.deadline {
            self.arm(id, deadline);
        }
        if self.config.connection_messages {
            let user = match &c.username {
                Some(user) => format!(", u'{user}'"),
                None => String::new(),
            };
            log::info!(
                "New client connected{from} as {client_id} (p{}, c{}, k{keep_alive}{user}).",
                c.version as u8,
                u8::from(c.clean_start),
            );
        }

        let mut props = Vec::new();
        if v5 {
            if let Some(assigned) = assigned {
                props.push(Property::AssignedClientIdentifier(assigned));
            }
            if let Some(ka) = server_keep_alive {
                props.push(Property::ServerKeepAlive(ka));
            }
            if self.config.topic_alias_max > 0 {
                props.push(Property::TopicAliasMaximum(self.config.topic_alias_max));
            }
            // Left out for MQTT's own limit, as by mosquitto.
            if self.config.max_packet_size < super::MAX_PACKET_SIZE {
                props.push(Property::MaximumPacketSize(self.config.max_packet_size));
            }
            // The window roost grants inbound QoS 2 flows (enforced: 0x93).
            props.push(Property::ReceiveMaximum(self.config.max_inflight));
            // `max_qos` below 2; 2 cannot be sent (see below).
            if max_qos < QoS::ExactlyOnce {
                props.push(Property::MaximumQoS(max_qos as u8));
            }
            // True by default too, but said outright: some clients read a
            // missing property as "not available". (Maximum QoS 2 cannot be
            // sent: the property only takes 0 or 1.)
            props.extend([
                Property::RetainAvailable(u8::from(self.config.retain_available)),
                Property::WildcardSubscriptionAvailable(1),
                Property::SubscriptionIdentifierAvailable(1),
                Property::SharedSubscriptionAvailable(1),
            ]);
        }
        out.push(Action::Send(id, connack(present, reason::SUCCESS, props)));
        if present {
            self.resume(s, id, now, out);
        }
    }

    /// Attaches session `s` to connection `id`, whose client accepts
    /// `receive_max` messages in flight.
    pub(super) fn attach(&mut self, s: usize, id: ConnId, receive_max: u16) {
        let generation = self.serial();
        let session = &mut self.sessions[s];
        session.conn = Some(Slot::new(id));
        session.renew(generation, &mut self.spare_flows);
        // Its login and expiry may have changed: said again in the journal.
        session.declared = false;
        // Coming back within the will delay cancels the will ([MQTT-3.1.3-9]).
        session.pending_will = None;
        session.window = self.config.max_inflight.min(receive_max).max(1);
        if let Some(conn) = self.conns.get_mut(id) {
            conn.session = Some(Slot::new(s));
        }
    }

    pub(super) fn new_session(&mut self, client_id: Rc<str>) -> usize {
        let s = self.sessions.insert(Session::new(client_id.clone()));
        self.by_client_id.insert(client_id, s);
        s
    }

    /// A client is back: what it had not acknowledged is sent again, PUBLISH
    /// with DUP set, PUBREL as it was ([MQTT-4.4.0-1]), then the queue.
    pub(super) fn resume(&mut self, s: usize, id: ConnId, now: Instant, out: &mut Vec<Action>) {
        // A queue that filled past its bound while the client was last
        // online is still full.
        let (max, max_bytes) = (self.config.max_queued, self.config.max_queued_bytes);
        let timeout = self.config.slow_subscriber_timeout;
        if !timeout.is_zero() && self.sessions[s].flow().is_full(max, max_bytes) {
            self.mark_full(s, now);
        }
        // Rights may have changed since these went out (a reload, another
        // user resuming the session): what may not be read now is dropped.
        let denied: Vec<u16> = self.sessions[s]
            .flow()
            .inflight
            .iter()
            .filter(|f| f.awaiting != Awaiting::Complete && !self.may_read(s, &f.out.msg.topic))
            .map(|f| f.packet_id)
            .collect();
        if !denied.is_empty() {
            let session = &mut self.sessions[s];
            session
                .flow_mut(&mut self.spare_flows)
                .inflight
                .retain(|f| !denied.contains(&f.packet_id));
            session.release_flow(&mut self.spare_flows);
        }
        let resend: Vec<(u16, Awaiting, Outgoing)> = self.sessions[s]
            .flow()
            .inflight
            .iter()
            .map(|f| (f.packet_id, f.awaiting, f.out.clone()))
            .collect();
        // PUBREL and QoS 2 wait for any journal record still pending (the
        // one of their own step may be), as when first sent.
        for (packet_id, awaiting, o) in resend {
            match awaiting {
                Awaiting::Complete => {
                    let rel = Packet::PubRel(Ack {
                        packet_id,
                        reason: reason::SUCCESS,
                        properties: Vec::new(),
                    });
                    out.push(self.reply(id, rel, 0));
                }
                Awaiting::Ack | Awaiting::Received => {
                    if let Some(d) = self.delivery(id, &o, packet_id, true, now) {
                        out.push(match awaiting {
                            Awaiting::Received => self.publish_after(id, d, 0),
                            _ => Action::Publish(id, d),
                        });
                    }
                }
            }
        }
        self.pump(s, now, out);
    }

    pub(super) fn on_disconnect(
        &mut self,
        id: ConnId,
        s: usize,
        d: ReasonOnly,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let new_expiry = crate::property!(d.properties, SessionExpiryInterval);
        if let Some(expiry) = new_expiry {
            if self.sessions[s].expiry == 0 && expiry != 0 {
                // [MQTT-3.14.2-2]
                return self.drop_conn(id, Some(reason::PROTOCOL_ERROR), now, out);
            }
            self.sessions[s].expiry = expiry;
            self.sessions[s].declared = false;
        }
        // A normal DISCONNECT deletes the will ([MQTT-3.1.2-10]), unless a
        // v5 client asks for it with 0x04.
        if d.reason != reason::DISCONNECT_WITH_WILL {
            if let Some(conn) = self.conns.get_mut(id) {
                conn.will = None;
            }
        }
        self.detach(id, Gone::Disconnected, now, out);
        out.push(Action::Close(id));
    }
}
