//! Shared subscriptions (`$share/{group}/{filter}`): each matching message
//! goes to one member of the group, round-robin, preferring members that are
//! online. A member's session that ends hands its unacknowledged group
//! messages to another member, as MQTT 5.0 section 4.8.2 recommends.

use std::rc::Rc;
use std::time::Instant;

use super::message::Message;
use super::session::{Outgoing, one_id};
use super::topic::{Sub, Subs, remove_from, upsert};
use super::{Action, Broker, ConnId};

pub(super) struct Group {
    /// The whole `$share/{group}/{filter}` string: the group's identity.
    pub key: Rc<str>,
    /// The filter part, as entered in the shared topic table.
    pub filter: Rc<str>,
    pub members: Subs,
    /// Where the round-robin continues.
    pub next: usize,
}

impl Broker {
    /// Adds session `sub.session` to the group `key` (created on first
    /// use). Returns true when it was not a member yet.
    pub(super) fn join_group(&mut self, key: &str, filter: &str, sub: Sub) -> bool {
        let g = match self.group_ids.get(key) {
            Some(&g) => g,
            None => {
                let key: Rc<str> = key.into();
                let filter: Rc<str> = filter.into();
                let g = self.groups.insert(Group {
                    key: key.clone(),
                    filter: filter.clone(),
                    members: Subs::default(),
                    next: 0,
                });
                self.group_ids.insert(key, g);
                let entry = Sub { session: g, ..sub };
                self.shared.subscribe(&filter, entry);
                g
            }
        };
        upsert(&mut self.groups[g].members, sub)
    }

    /// Removes session `s` from group `key`; the group goes with its last
    /// member. Returns true when `s` was a member.
    pub(super) fn leave_group(&mut self, key: &str, s: usize) -> bool {
        let Some(&g) = self.group_ids.get(key) else {
            return false;
        };
        let group = &mut self.groups[g];
        let left = remove_from(&mut group.members, s);
        if group.members.is_empty() {
            let group = self.groups.remove(g);
            self.shared.unsubscribe(&group.filter, g);
            self.group_ids.remove(&group.key);
        }
        left
    }

    /// Sends `msg` to one member of group `g`: the next online one in turn,
    /// or, with none online, the next one (its session queues QoS 1/2).
    /// `publisher` is the connection it came from (see `deliver`).
    pub(super) fn deliver_shared(
        &mut self,
        g: usize,
        msg: Rc<Message>,
        publisher: Option<ConnId>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(group) = self.groups.get_mut(g) else {
            return;
        };
        let n = group.members.len();
        let online = (0..n)
            .map(|i| (group.next + i) % n)
            .find(|&i| self.sessions[group.members[i].session].conn.is_some());
        let pick = online.unwrap_or(group.next % n);
        group.next = (pick + 1) % n;
        let member = group.members[pick];
        let o = Outgoing::new(
            msg.clone(),
            msg.qos.min(member.options.qos),
            msg.retain && member.options.retain_as_published,
            one_id(member.id),
            Some(group.key.clone()),
        );
        self.deliver(member.session, o, publisher, now, out);
    }

    /// Group messages a ending session had not had acknowledged go to the
    /// other members of their groups.
    pub(super) fn reroute_shared(
        &mut self,
        pending: Vec<Outgoing>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        for o in pending {
            let Some(key) = o.share() else { continue };
            if let Some(&g) = self.group_ids.get(key) {
                self.deliver_shared(g, o.msg, None, now, out);
            }
        }
    }
}
