//! The ACL file (`acl_file`), in mosquitto's format:
//!
//! ```text
//! # Before any `user` line: rules for anonymous clients.
//! topic read public/#
//! # Rules for alice, up to the next `user` line.
//! user alice
//! topic readwrite home/#
//! topic deny home/secret
//! # For every client; %u is the user name, %c the client id.
//! pattern write devices/%u/%c/#
//! ```
//!
//! Access is `read`, `write`, `readwrite` (the default) or `deny`. As in
//! mosquitto, what no rule grants is refused and a matching `deny` wins.
//! `#` starts a comment only at the start of a line: topics may contain it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use crate::broker::topic::{matches, valid_filter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rights {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Rights {
    fn grants(self, op: Op) -> bool {
        matches!(
            (self, op),
            (Rights::ReadWrite, _) | (Rights::Read, Op::Read) | (Rights::Write, Op::Write)
        )
    }
}

#[derive(Debug)]
struct Rule {
    rights: Rights,
    filter: Box<str>,
}

#[derive(Debug, Default)]
pub struct Acl {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    /// `pattern` rules, for every client, with `%c` and `%u` unexpanded.
    patterns: Vec<Rule>,
}

impl Acl {
    pub fn load(path: &Path) -> Result<Acl, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Acl::parse(&text, &path.display().to_string())
    }

    /// Parses `text`; errors read `FILE:LINE: what is wrong`.
    pub fn parse(text: &str, file: &str) -> Result<Acl, String> {
        let mut acl = Acl::default();
        let mut user: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let at = |msg: String| format!("{file}:{}: {msg}", n + 1);
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
            let rest = rest.trim();
            match key {
                "user" if !rest.is_empty() => {
                    acl.users.entry(rest.to_owned()).or_default();
                    user = Some(rest.to_owned());
                }
                "user" => return Err(at("`user` needs a user name".into())),
                "topic" | "pattern" => {
                    let rule = rule(rest).map_err(at)?;
                    let rules = match (key, &user) {
                        ("pattern", _) => &mut acl.patterns,
                        (_, Some(name)) => acl.users.get_mut(name).expect("added at `user`"),
                        (_, None) => &mut acl.anonymous,
                    };
                    rules.push(rule);
                }
                _ => return Err(at(format!("unknown ACL keyword `{key}`"))),
            }
        }
        Ok(acl)
    }

    /// Whether the client may `op` on `topic`.
    pub fn allows(&self, client_id: &str, username: Option<&str>, op: Op, topic: &str) -> bool {
        let mut granted = false;
        for (rights, filter) in self.rules(client_id, username) {
            if matches(&filter, topic) {
                if rights == Rights::Deny {
                    return false;
                }
                granted |= rights.grants(op);
            }
        }
        granted
    }

    /// The rules that apply to a client: those of its user (or of
    /// anonymous clients), then the patterns, expanded for it.
    fn rules<'a>(
        &'a self,
        client_id: &'a str,
        username: Option<&'a str>,
    ) -> impl Iterator<Item = (Rights, Cow<'a, str>)> {
        let own = match username {
            Some(name) => self.users.get(name),
            None => Some(&self.anonymous),
        };
        let own = own
            .into_iter()
            .flatten()
            .map(|r| (r.rights, Cow::Borrowed(&*r.filter)));
        let patterns = self.patterns.iter().filter_map(move |r| {
            expand(&r.filter, client_id, username).map(|filter| (r.rights, filter))
        });
        own.chain(patterns)
    }
}

/// `[read|write|readwrite|deny] FILTER`; after an access word the filter
/// may contain spaces. As in mosquitto, a first word of several that is
/// not an access word is an error (`topic readwrit home/#` would
/// otherwise grant `readwrit home/#`).
fn rule(text: &str) -> Result<Rule, String> {
    let (first, rest) = match text.split_once([' ', '\t']) {
        Some((first, rest)) if !rest.trim().is_empty() => (first, rest.trim()),
        _ => return parsed(Rights::ReadWrite, text),
    };
    let rights = match first {
        "read" => Rights::Read,
        "write" => Rights::Write,
        "readwrite" => Rights::ReadWrite,
        "deny" => Rights::Deny,
        _ => {
            return Err(format!(
                "`{first}` is not an access type: read, write, readwrite or deny"
            ));
        }
    };
    parsed(rights, rest)
}

fn parsed(rights: Rights, filter: &str) -> Result<Rule, String> {
    if filter.is_empty() {
        return Err("a rule needs a topic".into());
    }
    if !valid_filter(filter) {
        return Err(format!("`{filter}` is not a valid topic filter"));
    }
    Ok(Rule {
        rights,
        filter: filter.into(),
    })
}

/// A pattern with `%c` and `%u` replaced. None when it names the user
/// and the client has none, or when a value would add wildcards: client
/// `a/#` must not be given `devices/a/#`. A value with `/` spans levels,
/// as in mosquitto: client `shelly/plug1` gets `devices/shelly/plug1/#`
/// (and so a part of what client `shelly` would get).
fn expand<'a>(pattern: &'a str, client_id: &str, username: Option<&str>) -> Option<Cow<'a, str>> {
    let safe = |v: &str| !v.contains(['+', '#']);
    let mut out = Cow::Borrowed(pattern);
    if pattern.contains("%c") {
        out = Cow::Owned(out.replace("%c", Some(client_id).filter(|c| safe(c))?));
    }
    if pattern.contains("%u") {
        out = Cow::Owned(out.replace("%u", username.filter(|u| safe(u))?));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACL: &str = "\
# anonymous clients
topic read public/#

user alice
topic readwrite home/#
topic deny home/secret
topic write  sensors/alice temp
user bob
topic read home/+/temperature
pattern read clients/%c/in
pattern write clients/%u/out/#
";

    fn acl() -> Acl {
        Acl::parse(ACL, "acl").unwrap()
    }

    #[test]
    fn users_get_their_own_rules() {
        let a = acl();
        let alice = |op, t| a.allows("c1", Some("alice"), op, t);
        assert!(alice(Op::Read, "home/kitchen"));
        assert!(alice(Op::Write, "home/kitchen"));
        assert!(!alice(Op::Read, "home/secret"), "deny wins over readwrite");
        assert!(!alice(Op::Write, "home/secret"));
        assert!(alice(Op::Write, "sensors/alice temp"), "spaces in topics");
        assert!(!alice(Op::Read, "sensors/alice temp"));
        assert!(
            !alice(Op::Read, "public/news"),
            "anonymous rules are not alice's"
        );
        let bob = |op, t| a.allows("c2", Some("bob"), op, t);
        assert!(bob(Op::Read, "home/kitchen/temperature"));
        assert!(!bob(Op::Write, "home/kitchen/temperature"));
        assert!(!bob(Op::Read, "home/kitchen"));
        assert!(!a.allows("c3", Some("carol"), Op::Read, "public/news"));
    }

    #[test]
    fn lines_before_any_user_are_for_anonymous_clients() {
        let a = acl();
        assert!(a.allows("c", None, Op::Read, "public/news"));
        assert!(!a.allows("c", None, Op::Write, "public/news"));
        assert!(!a.allows("c", None, Op::Read, "home/kitchen"));
    }

    #[test]
    fn patterns_expand_client_id_and_user_name() {
        let a = acl();
        assert!(a.allows("dev7", Some("bob"), Op::Read, "clients/dev7/in"));
        assert!(a.allows("dev7", None, Op::Read, "clients/dev7/in"));
        assert!(!a.allows("dev7", Some("bob"), Op::Read, "clients/dev8/in"));
        assert!(a.allows("dev7", Some("bob"), Op::Write, "clients/bob/out/x"));
        assert!(!a.allows("dev7", Some("bob"), Op::Write, "clients/alice/out/x"));
        assert!(
            !a.allows("dev7", None, Op::Write, "clients//out/x"),
            "no user, no %u"
        );
        // Wildcards smuggled in through an id grant nothing; levels span
        // levels, as in mosquitto.
        assert!(!a.allows("+", Some("bob"), Op::Read, "clients/x/in"));
        assert!(!a.allows("dev7", Some("#"), Op::Write, "clients/x/out/y"));
        assert!(a.allows(
            "shelly/plug1",
            Some("bob"),
            Op::Read,
            "clients/shelly/plug1/in"
        ));
        assert!(!a.allows("shelly/plug1", Some("bob"), Op::Read, "clients/shelly/in"));
    }

    #[test]
    fn a_misspelled_access_word_is_an_error() {
        let e = Acl::parse("topic readwrit home/#\n", "acl").unwrap_err();
        assert!(
            e.contains("acl:1") && e.contains("`readwrit` is not an access type"),
            "{e}"
        );
        let a = Acl::parse("topic home/#\n", "acl").unwrap();
        assert!(
            a.allows("c", None, Op::Write, "home/x"),
            "readwrite by default"
        );
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let e = Acl::parse("user a\ntopic read a/#/b\n", "acl").unwrap_err();
        assert_eq!(e, "acl:2: `a/#/b` is not a valid topic filter");
        let e = Acl::parse("\ntopics read a\n", "acl").unwrap_err();
        assert_eq!(e, "acl:2: unknown ACL keyword `topics`");
        let e = Acl::parse("user\n", "acl").unwrap_err();
        assert_eq!(e, "acl:1: `user` needs a user name");
        let e = Acl::parse("topic\n", "acl").unwrap_err();
        assert_eq!(e, "acl:1: a rule needs a topic");
    }

    #[test]
    fn a_lone_word_is_a_topic_with_readwrite() {
        let a = Acl::parse("topic read\n", "acl").unwrap();
        assert!(a.allows("c", None, Op::Write, "read"));
    }
}
