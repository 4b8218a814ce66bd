//! SIGHUP with real signals against the real binary: the config file is
//! read again, the keys SIGHUP applies take effect for the clients that
//! come (and the queues that fill) from then on, the others wait for a
//! restart, and the log says which, one line per changed key. A file that
//! no longer reads changes nothing. Every wait is bounded (`wait_until`).

mod common;
#[path = "common/wire.rs"]
mod wire;

use std::path::Path;

use common::{Roost, TempDir, wait_until};
use wire::{
    Client, Connack, Connect, P_RETAIN_AVAILABLE, P_SERVER_KEEP_ALIVE, PUBACK, PropValue, Publish,
    find_prop,
};

const BASE: &str = "listener 0 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100\n\
                    max_connections 10\n";

/// Sends SIGHUP and waits (bounded) for the reload's last line; returns
/// the reload lines logged since `from`.
fn reload(r: &Roost, from: usize) -> Vec<String> {
    assert_eq!(unsafe { libc::kill(r.pid() as i32, libc::SIGHUP) }, 0);
    let done = |l: &String| l.contains("reload: password and ACL files read again");
    assert!(
        wait_until(|| r.log()[from..].iter().any(done)),
        "no reload logged: {:?}",
        r.log()
    );
    r.log()[from..]
        .iter()
        .filter_map(|l| l.split("reload: ").nth(1).map(String::from))
        .collect()
}

fn prop(ack: &Connack, id: u8) -> Option<u32> {
    match find_prop(&ack.props, id) {
        Some(PropValue::Int(v)) => Some(*v),
        _ => None,
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn sighup_applies_what_it_can_and_says_what_needs_a_restart() {
    let dir = TempDir::new("roost-reload");
    let conf = dir.path.join("roost.conf");
    write(&conf, BASE);
    let r = Roost::spawn(&["-c", conf.to_str().unwrap()], None);
    let addr = r.addr();
    let (_c, ack) = Client::connect(&addr, &Connect::v5("before"));
    assert_eq!(prop(&ack, P_RETAIN_AVAILABLE), Some(1));
    assert_eq!(prop(&ack, P_SERVER_KEEP_ALIVE), None);

    // Keys SIGHUP applies, and some that need a restart.
    let second = format!(
        "{}message_size_limit 10\nretain_available false\nmax_keepalive 30\n\
         listener 0 127.0.0.2\nprotocol websockets\n",
        BASE.replace("max_queued_messages 100", "max_queued_messages 1000")
            .replace("max_connections 10", "max_connections 1")
    );
    write(&conf, &second);
    let from = r.log().len();
    let lines = reload(&r, from);
    for want in [
        "max_queued_messages 100 -> 1000",
        "max_connections 10 -> 1: needs a restart",
        "message_size_limit (unset) -> 10",
        "retain_available (unset) -> false",
        "max_keepalive (unset) -> 30",
        "listener 0 127.0.0.2 added: needs a restart",
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "{want:?} not in {lines:#?}"
        );
    }
    // The added listener's own keys are not listed apart.
    assert!(!lines.iter().any(|l| l.contains("protocol")), "{lines:#?}");
    assert!(
        r.log().iter().any(|l| l.contains("WARN")
            && l.ends_with("reload: listener 0 127.0.0.2 added: needs a restart")),
        "a restart is asked for at warning"
    );

    // Applied: new clients meet the new rules.
    let (mut c, ack) = Client::connect(&addr, &Connect::v5("after"));
    assert_eq!(prop(&ack, P_RETAIN_AVAILABLE), Some(0));
    assert_eq!(prop(&ack, P_SERVER_KEEP_ALIVE), Some(30));
    c.send(
        &Publish::new("big", b"more than ten bytes")
            .qos(1, 1)
            .encode(true),
    );
    let ack = c.expect_kind(PUBACK);
    assert_eq!(ack.ack_reason(), 0x95, "payload over message_size_limit");
    // Not applied: max_connections stays 10.
    let _others: Vec<Client> = (0..3)
        .map(|i| Client::v4(&addr, &format!("more-{i}")))
        .collect();

    // A file that no longer reads changes nothing.
    write(&conf, "listener 0 127.0.0.1\nmax_queued_messages lots\n");
    let from = r.log().len();
    let lines = reload(&r, from);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("roost.conf:2: ") && l.ends_with("keeping the settings in force")),
        "{lines:#?}"
    );
    let (_c, ack) = Client::connect(&addr, &Connect::v5("still"));
    assert_eq!(prop(&ack, P_RETAIN_AVAILABLE), Some(0));

    // The file in force again: nothing changed, nothing said.
    write(&conf, &second);
    let from = r.log().len();
    let lines = reload(&r, from);
    assert_eq!(lines.len(), 1, "{lines:#?}");
}
