//! Subscriptions by topic filter. Exact filters (most of a gateway's: one
//! device, one topic) live in one flat hash map, so a publish costs one
//! lookup however many there are; filters with `+` or `#` live in a small
//! trie walked level by level, so its cost grows with topic depth, not with
//! the number of wildcard subscriptions.

use std::collections::HashMap;
use std::rc::Rc;

use super::one_or_many::OneOrMany;
use crate::protocol::SubOptions;

/// The subscriptions to one filter (or trie position).
pub type Subs = OneOrMany<Sub>;

/// One session's subscription to one filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sub {
    pub session: usize,
    pub options: SubOptions,
    /// v5 Subscription Identifier, 0 when none.
    pub id: u32,
}

/// The most levels a topic or filter may have, as in mosquitto: every
/// level of a filter costs a trie node of about 100 bytes, so without a
/// bound one SUBSCRIBE of deep filters would cost 50 times its size.
pub const MAX_LEVELS: usize = 200;

/// Whether `topic` has more than [`MAX_LEVELS`] levels.
pub fn too_deep(topic: &str) -> bool {
    topic.bytes().filter(|&b| b == b'/').count() >= MAX_LEVELS
}

/// Whether `filter` is a valid topic filter ([MQTT-4.7.1-2], [MQTT-4.7.1-3],
/// [MQTT-4.7.3-1]): non-empty, `#` only as the whole last level, `+` only as
/// a whole level; and no deeper than [`MAX_LEVELS`].
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || too_deep(filter) {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let wild = level.contains(['+', '#']);
        if wild && level.len() != 1 {
            return false;
        }
        if level == "#" && levels.peek().is_some() {
            return false;
        }
    }
    true
}

/// Splits a shared subscription `$share/{group}/{filter}` into its group
/// and filter. None for an ordinary filter; Err(()) for a malformed one: the
/// group name is non-empty without `/`, `+` or `#`, and a valid filter
/// follows ([MQTT-4.8.2-1], [MQTT-4.8.2-2]).
pub fn parse_shared(filter: &str) -> Option<Result<(&str, &str), ()>> {
    let rest = filter.strip_prefix("$share/")?;
    Some(match rest.split_once('/') {
        Some((group, inner))
            if !group.is_empty() && !group.contains(['+', '#']) && valid_filter(inner) =>
        {
            Ok((group, inner))
        }
        _ => Err(()),
    })
}

fn is_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

/// Whether `topic` matches `filter`; topics starting with `$` are not
/// matched by a leading wildcard ([MQTT-4.7.2-1]).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[derive(Default)]
struct Node {
    children: HashMap<Box<str>, usize>,
    plus: Option<usize>,
    /// Subscriptions whose filter ends at this node.
    here: Subs,
    /// Subscriptions whose filter is this node's path followed by `#`.
    hash: Subs,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.here.is_empty()
            && self.hash.is_empty()
    }
}

/// Freed trie nodes past which, if they are the most, the trie is
/// compacted.
const COMPACT_AT: usize = 1024;

pub struct TopicTable {
    exact: HashMap<Rc<str>, Subs>,
    /// Trie nodes; index 0 is the root. Freed slots are reused.
    nodes: Vec<Node>,
    free: Vec<usize>,
}

impl Default for TopicTable {
    fn default() -> Self {
        TopicTable {
            exact: HashMap::new(),
            nodes: vec![Node::default()],
            free: Vec::new(),
        }
    }
}

/// Replaces the subscription of `sub.session` in `list`, or adds it.
/// Returns true when it was new.
pub(super) fn upsert(list: &mut Subs, sub: Sub) -> bool {
    match list.iter_mut().find(|s| s.session == sub.session) {
        Some(existing) => {
            *existing = sub;
            false
        }
        None => {
            list.push(sub);
            true
        }
    }
}

/// Removes the subscription of `session` from `list`; true if it had one.
pub(super) fn remove_from(list: &mut Subs, session: usize) -> bool {
    let before = list.len();
    list.retain(|s| s.session != session);
    list.len() != before
}

impl TopicTable {
    /// Adds or replaces a subscription ([MQTT-3.8.4-3]). `filter` must be
    /// valid. Returns true when the session had no subscription to it yet.
    pub fn subscribe(&mut self, filter: &Rc<str>, sub: Sub) -> bool {
        if !is_wildcard(filter) {
            return upsert(self.exact.entry(filter.clone()).or_default(), sub);
        }
        let mut node = 0;
        for level in filter.split('/') {
            if level == "#" {
                return upsert(&mut self.nodes[node].hash, sub);
            }
            node = self.child_or_insert(node, level);
        }
        upsert(&mut self.nodes[node].here, sub)
    }

    /// The subscription of `session` to `filter`, if it has one.
    pub fn get(&self, filter: &str, session: usize) -> Option<Sub> {
        let find = |list: &[Sub]| list.iter().find(|s| s.session == session).copied();
        if !is_wildcard(filter) {
            return find(self.exact.get(filter)?);
        }
        let mut node = &self.nodes[0];
        for level in filter.split('/') {
            if level == "#" {
                return find(&node.hash);
            }
            let child = if level == "+" {
                node.plus
            } else {
                node.children.get(level).copied()
            };
            node = &self.nodes[child?];
        }
        find(&node.here)
    }

    fn child_or_insert(&mut self, node: usize, level: &str) -> usize {
        let existing = if level == "+" {
            self.nodes[node].plus
        } else {
            self.nodes[node].children.get(level).copied()
        };
        if let Some(child) = existing {
            return child;
        }
        let child = match self.free.pop() {
            Some(i) => i,
            None => {
                self.nodes.push(Node::default());
                self.nodes.len() - 1
            }
        };
        if level == "+" {
            self.nodes[node].plus = Some(child);
        } else {
            self.nodes[node].children.insert(level.into(), child);
        }
        child
    }

    /// Removes a session's subscription to `filter`; true if there was one.
    /// The room a burst of subscriptions took is given back as they go.
    pub fn unsubscribe(&mut self, filter: &str, session: usize) -> bool {
        if !is_wildcard(filter) {
            let Some(list) = self.exact.get_mut(filter) else {
                return false;
            };
            let removed = remove_from(list, session);
            if list.is_empty() {
                self.exact.remove(filter);
                if self.exact.len() < self.exact.capacity() / 4 {
                    self.exact.shrink_to(self.exact.len() * 2);
                }
            }
            return removed;
        }
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = self.remove_path(0, &levels, session);
        if self.free.len() > COMPACT_AT && self.free.len() > self.nodes.len() / 2 {
            self.compact();
        }
        removed
    }

    /// Renumbers the live nodes into a vector of their own size: freed
    /// slots are otherwise kept for reuse, and a burst of deep filters
    /// would hold its memory for good.
    fn compact(&mut self) {
        fn take(old: &mut [Node], i: usize, new: &mut Vec<Node>) -> usize {
            let at = new.len();
            new.push(Node::default());
            let mut node = std::mem::take(&mut old[i]);
            for child in node.children.values_mut() {
                *child = take(old, *child, new);
            }
            node.plus = node.plus.map(|plus| take(old, plus, new));
            new[at] = node;
            at
        }
        let mut nodes = Vec::with_capacity(self.nodes.len() - self.free.len());
        take(&mut self.nodes, 0, &mut nodes);
        self.nodes = nodes;
        self.free = Vec::new();
    }

    /// Removes along the trie path, freeing nodes left empty.
    fn remove_path(&mut self, node: usize, levels: &[&str], session: usize) -> bool {
        let Some((&level, rest)) = levels.split_first() else {
            return remove_from(&mut self.nodes[node].here, session);
        };
        if level == "#" {
            return remove_from(&mut self.nodes[node].hash, session);
        }
        let child = if level == "+" {
            self.nodes[node].plus
        } else {
            self.nodes[node].children.get(level).copied()
        };
        let Some(child) = child else {
            return false;
        };
        let removed = self.remove_path(child, rest, session);
        if self.nodes[child].is_empty() {
            if level == "+" {
                self.nodes[node].plus = None;
            } else {
                self.nodes[node].children.remove(level);
            }
            self.nodes[child] = Node::default();
            self.free.push(child);
        }
        removed
    }

    /// Appends every subscription matching `topic` to `out` (a session may
    /// appear more than once when several of its filters match).
    pub fn matches(&self, topic: &str, out: &mut Vec<Sub>) {
        if let Some(list) = self.exact.get(topic) {
            out.extend_from_slice(list);
        }
        if !self.nodes[0].is_empty() {
            self.walk(0, Some(topic), topic.starts_with('$'), out);
        }
    }

    /// Matches the levels left in `rest` (None once all are consumed)
    /// below `node`, without allocating: this runs for every publish.
    fn walk(&self, node: usize, rest: Option<&str>, dollar: bool, out: &mut Vec<Sub>) {
        let n = &self.nodes[node];
        // A leading wildcard never matches a `$` topic ([MQTT-4.7.2-1]).
        let wild_ok = !(dollar && node == 0);
        if wild_ok {
            out.extend_from_slice(&n.hash);
        }
        let Some(rest) = rest else {
            out.extend_from_slice(&n.here);
            return;
        };
        let (level, tail) = match rest.split_once('/') {
            Some((level, tail)) => (level, Some(tail)),
            None => (rest, None),
        };
        if let Some(&child) = n.children.get(level) {
            self.walk(child, tail, dollar, out);
        }
        if let (Some(plus), true) = (n.plus, wild_ok) {
            self.walk(plus, tail, dollar, out);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let exact: usize = self.exact.values().map(|subs| subs.len()).sum();
        let wild: usize = self.nodes.iter().map(|n| n.here.len() + n.hash.len()).sum();
        exact + wild
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::QoS;

    fn sub(session: usize) -> Sub {
        Sub {
            session,
            options: SubOptions {
                qos: QoS::AtMostOnce,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
            },
            id: 0,
        }
    }

    fn sessions(table: &TopicTable, topic: &str) -> Vec<usize> {
        let mut out = Vec::new();
        table.matches(topic, &mut out);
        let mut ids: Vec<usize> = out.iter().map(|s| s.session).collect();
        ids.sort();
        ids
    }

    #[test]
    fn filter_validity() {
        // [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.3-1]
        for ok in [
            "#", "+", "a/b", "a/+/c", "a/#", "+/+", "/", "a//b", "$SYS/#",
        ] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+", "a/b+/c", "##", "a/#b"] {
            assert!(!valid_filter(bad), "{bad}");
        }
    }

    #[test]
    fn shared_subscription_syntax() {
        // [MQTT-4.8.2-1] [MQTT-4.8.2-2]
        assert_eq!(parse_shared("a/b"), None);
        assert_eq!(parse_shared("$share/g/a/+"), Some(Ok(("g", "a/+"))));
        assert_eq!(parse_shared("$share/g/#"), Some(Ok(("g", "#"))));
        for bad in [
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/#/a",
            "$share/g/a#",
        ] {
            assert_eq!(parse_shared(bad), Some(Err(())), "{bad}");
        }
    }

    #[test]
    fn wildcard_matching_follows_the_spec_examples() {
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        // [MQTT-4.7.2-1]
        assert!(!matches("#", "$SYS/uptime"));
        assert!(!matches("+/uptime", "$SYS/uptime"));
        assert!(matches("$SYS/#", "$SYS/uptime"));
    }

    #[test]
    fn table_agrees_with_matches() {
        let filters = [
            "a/b", "a/+", "a/#", "#", "+/b", "+/+/c", "a/b/c", "$SYS/#", "+/#", "/", "a",
        ];
        let topics = ["a/b", "a", "a/b/c", "x/b", "$SYS/a", "/", "a/", "q/r/c"];
        let mut t = TopicTable::default();
        for (i, f) in filters.iter().enumerate() {
            t.subscribe(&Rc::from(*f), sub(i));
        }
        for topic in topics {
            let expected: Vec<usize> = (0..filters.len())
                .filter(|&i| matches(filters[i], topic))
                .collect();
            assert_eq!(sessions(&t, topic), expected, "topic {topic}");
        }
    }

    #[test]
    fn unsubscribe_prunes_the_trie() {
        let mut t = TopicTable::default();
        assert!(t.subscribe(&Rc::from("a/+/c"), sub(1)));
        assert!(
            !t.subscribe(&Rc::from("a/+/c"), sub(1)),
            "resubscribe replaces"
        );
        assert!(t.subscribe(&Rc::from("a/b"), sub(2)));
        assert_eq!(t.len(), 2);
        assert!(t.unsubscribe("a/+/c", 1));
        assert!(!t.unsubscribe("a/+/c", 1));
        assert!(t.unsubscribe("a/b", 2));
        assert!(t.nodes[0].is_empty());
        assert!(t.exact.is_empty());
        assert_eq!(t.len(), 0);
        // freed nodes are reused
        t.subscribe(&Rc::from("x/+"), sub(3));
        assert_eq!(t.nodes.len(), 4, "root plus the three freed by a/+/c");
        assert_eq!(sessions(&t, "x/y"), vec![3]);
    }

    #[test]
    fn a_trie_mostly_freed_is_compacted() {
        let mut t = TopicTable::default();
        let deep = |i: usize| -> Rc<str> { format!("{i}/{}+", "l/".repeat(50)).into() };
        t.subscribe(&Rc::from("keep/+/x"), sub(1));
        for i in 0..100 {
            t.subscribe(&deep(i), sub(2));
        }
        let grown = t.nodes.len();
        assert!(grown > 5000);
        for i in 0..100 {
            assert!(t.unsubscribe(&deep(i), 2));
        }
        // Up to `COMPACT_AT` freed ones may wait for the next compaction.
        let left = t.nodes.capacity();
        assert!(left < 2 * COMPACT_AT, "{left} left of {grown}");
        assert_eq!(sessions(&t, "keep/y/x"), vec![1], "the live ones kept");
    }
}
