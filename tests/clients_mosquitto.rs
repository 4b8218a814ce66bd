//! roost against the mosquitto command-line clients (mosquitto_sub /
//! mosquitto_pub) for MQTT 3.1, 3.1.1 and 5.
//!
//! Race-freedom: mosquitto_sub runs with `-d` under `stdbuf -oL`, and the
//! test waits for its "received SUBACK" debug line before anything is
//! published. Every wait has a deadline and every child is killed on drop.

mod common;

use common::{Proc, Roost, SIGINT, have};
use std::process::Command;

fn tools_present() -> bool {
    if !have("mosquitto_sub") || !have("mosquitto_pub") {
        eprintln!("SKIPPED: mosquitto-clients not installed");
        return false;
    }
    if !have("stdbuf") {
        eprintln!("SKIPPED: stdbuf (coreutils) not installed");
        return false;
    }
    true
}

/// Starts `mosquitto_sub -d`, line-buffered, whose output lines are
/// collected as they come.
fn mosquitto_sub(port: u16, args: &[&str]) -> Proc {
    let mut cmd = Command::new("stdbuf");
    cmd.args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .arg("-d")
        .args(args);
    Proc::spawn(cmd)
}

/// Waits for mosquitto_sub's SUBACK and returns its "Subscribed" line.
fn wait_suback(sub: &Proc) -> String {
    sub.wait_line("SUBACK", |l| l.contains("received SUBACK"));
    sub.wait_line("'Subscribed' line", |l| l.starts_with("Subscribed"))
}

/// The message lines (`-v`: "topic payload") among a subscriber's output.
fn messages(sub: &Proc) -> Vec<String> {
    sub.output()
        .into_iter()
        .filter(|l| l.starts_with("home/"))
        .collect()
}

/// Runs mosquitto_pub to completion (killed after TIMEOUT) and asserts it
/// succeeded.
fn publish(port: u16, args: &[&str]) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(args);
    let mut publisher = Proc::spawn(cmd);
    let status = publisher.wait_exit();
    assert!(
        status.success(),
        "mosquitto_pub {args:?}: {status}: {:#?}",
        publisher.output()
    );
}

/// `mosquitto_sub -t 'home/#' -v -C 1` receives what `mosquitto_pub` sends,
/// both speaking `version` at `qos`.
fn roundtrip(version: &str, qos: u8) {
    if !tools_present() {
        return;
    }
    let roost = Roost::start();
    let q = qos.to_string();
    let mut sub = mosquitto_sub(
        roost.port,
        &[
            "-V", version, "-q", &q, "-t", "home/#", "-v", "-C", "1", "-W", "10",
        ],
    );
    let granted = wait_suback(&sub);
    assert_eq!(
        granted,
        format!("Subscribed (mid: 1): {qos}"),
        "granted QoS"
    );
    publish(
        roost.port,
        &[
            "-V",
            version,
            "-q",
            &q,
            "-t",
            "home/kitchen/temp",
            "-m",
            "21.5",
        ],
    );
    let header = sub.wait_line("PUBLISH", |l| l.contains("received PUBLISH"));
    assert!(
        header.contains(&format!("(d0, q{qos}, r0, ")),
        "delivered QoS {qos}, retain 0: {header}"
    );
    assert!(header.contains("'home/kitchen/temp'"), "{header}");
    sub.wait_line("message line", |l| l == "home/kitchen/temp 21.5");
    let status = sub.wait_exit();
    assert!(status.success(), "{status}: {:#?}", sub.output());
}

macro_rules! roundtrips {
    ($($name:ident: $version:literal, $qos:literal;)*) => {
        $(
            #[test]
            fn $name() {
                roundtrip($version, $qos);
            }
        )*
    };
}

roundtrips! {
    mqttv31_qos0: "mqttv31", 0;
    mqttv31_qos1: "mqttv31", 1;
    mqttv31_qos2: "mqttv31", 2;
    mqttv311_qos0: "mqttv311", 0;
    mqttv311_qos1: "mqttv311", 1;
    mqttv311_qos2: "mqttv311", 2;
    mqttv5_qos0: "mqttv5", 0;
    mqttv5_qos1: "mqttv5", 1;
    mqttv5_qos2: "mqttv5", 2;
}

/// A retained message reaches a later subscriber (retain flag set); an
/// empty retained publish (`-r -n`) clears it.
fn retained(version: &str) {
    if !tools_present() {
        return;
    }
    let roost = Roost::start();
    // QoS 1: mosquitto_pub only exits after PUBACK, so roost has stored it.
    publish(
        roost.port,
        &[
            "-V",
            version,
            "-q",
            "1",
            "-r",
            "-t",
            "home/door",
            "-m",
            "open",
        ],
    );
    let mut sub = mosquitto_sub(
        roost.port,
        &[
            "-V", version, "-q", "1", "-t", "home/#", "-v", "-C", "1", "-W", "10",
        ],
    );
    let header = sub.wait_line("PUBLISH", |l| l.contains("received PUBLISH"));
    assert!(header.contains(", r1, "), "retain flag set: {header}");
    assert!(header.contains("'home/door'"), "{header}");
    sub.wait_line("message line", |l| l == "home/door open");
    assert!(sub.wait_exit().success());

    publish(
        roost.port,
        &["-V", version, "-q", "1", "-r", "-t", "home/door", "-n"],
    );
    let mut sub = mosquitto_sub(
        roost.port,
        &[
            "-V", version, "-q", "1", "-t", "home/#", "-v", "-C", "1", "-W", "10",
        ],
    );
    wait_suback(&sub);
    publish(
        roost.port,
        &["-V", version, "-q", "1", "-t", "home/marker", "-m", "m"],
    );
    sub.wait_line("message line", |l| l.starts_with("home/"));
    assert!(sub.wait_exit().success());
    assert_eq!(
        messages(&sub),
        ["home/marker m"],
        "cleared retained message sent"
    );
}

#[test]
fn retained_mqttv31() {
    retained("mqttv31");
}

#[test]
fn retained_mqttv311() {
    retained("mqttv311");
}

#[test]
fn retained_mqttv5() {
    retained("mqttv5");
}

/// mosquitto_sub with `--will-topic` killed with SIGKILL: its will reaches
/// another subscriber.
fn will_on_kill(version: &str) {
    if !tools_present() {
        return;
    }
    let roost = Roost::start();
    let mut watcher = mosquitto_sub(
        roost.port,
        &[
            "-V",
            version,
            "-q",
            "1",
            "-t",
            "home/will",
            "-v",
            "-C",
            "1",
            "-W",
            "10",
        ],
    );
    wait_suback(&watcher);
    let mut dying = mosquitto_sub(
        roost.port,
        &[
            "-V",
            version,
            "-t",
            "home/unused",
            "--will-topic",
            "home/will",
            "--will-payload",
            "gone",
            "--will-qos",
            "1",
        ],
    );
    // The will is registered once CONNACK is back.
    wait_suback(&dying);
    dying.kill(); // SIGKILL: no DISCONNECT

    let header = watcher.wait_line("will PUBLISH", |l| l.contains("received PUBLISH"));
    assert!(header.contains("(d0, q1, r0, "), "will QoS 1: {header}");
    watcher.wait_line("will message", |l| l == "home/will gone");
    assert!(watcher.wait_exit().success());
}

#[test]
fn will_on_sigkill_mqttv31() {
    will_on_kill("mqttv31");
}

#[test]
fn will_on_sigkill_mqttv311() {
    will_on_kill("mqttv311");
}

#[test]
fn will_on_sigkill_mqttv5() {
    will_on_kill("mqttv5");
}

/// mosquitto_sub stopped with SIGINT disconnects cleanly: no will.
#[test]
fn no_will_on_clean_exit() {
    if !tools_present() {
        return;
    }
    let roost = Roost::start();
    let mut watcher = mosquitto_sub(
        roost.port,
        &["-q", "1", "-t", "home/#", "-v", "-C", "1", "-W", "10"],
    );
    wait_suback(&watcher);
    let mut polite = mosquitto_sub(
        roost.port,
        &[
            "-t",
            "home/unused",
            "--will-topic",
            "home/will",
            "--will-payload",
            "gone",
        ],
    );
    wait_suback(&polite);
    polite.signal(SIGINT);
    polite.wait_line("DISCONNECT", |l| l.contains("sending DISCONNECT"));
    assert!(polite.wait_exit().success());

    publish(roost.port, &["-q", "1", "-t", "home/marker", "-m", "m"]);
    watcher.wait_line("message line", |l| l.starts_with("home/"));
    assert!(watcher.wait_exit().success());
    assert_eq!(
        messages(&watcher),
        ["home/marker m"],
        "will sent after clean DISCONNECT"
    );
}

/// MQTT 5 properties set by mosquitto_pub (`-D publish ...`) reach
/// mosquitto_sub unchanged, user properties in order.
#[test]
fn mqttv5_properties_forwarded() {
    if !tools_present() {
        return;
    }
    let roost = Roost::start();
    let mut sub = mosquitto_sub(
        roost.port,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            "home/#",
            "-C",
            "1",
            "-W",
            "10",
            "-F",
            "MSG %t|%p|%P|%C|%R|%D",
        ],
    );
    wait_suback(&sub);
    publish(
        roost.port,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            "home/rpc",
            "-m",
            "hi",
            "-D",
            "publish",
            "user-property",
            "k1",
            "v1",
            "-D",
            "publish",
            "user-property",
            "k0",
            "v2",
            "-D",
            "publish",
            "user-property",
            "k1",
            "v3",
            "-D",
            "publish",
            "content-type",
            "text/x",
            "-D",
            "publish",
            "response-topic",
            "home/reply",
            "-D",
            "publish",
            "correlation-data",
            "abc",
        ],
    );
    let line = sub.wait_line("message line", |l| l.starts_with("MSG "));
    assert_eq!(
        line,
        "MSG home/rpc|hi|k1:v1 k0:v2 k1:v3|text/x|home/reply|abc"
    );
    assert!(sub.wait_exit().success());
}
