//! roost against the mosquitto command-line clients (mosquitto_sub /
//! mosquitto_pub) for MQTT 3.1, 3.1.1 and 5.
//!
//! Race-freedom: mosquitto_sub runs with `-d` under `stdbuf -oL`, and the
//! test waits for its "received SUBACK" debug line before anything is
//! published. Every wait has a deadline and every child is killed on drop.

mod common;

use common::{Roost, TIMEOUT, have};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// A running mosquitto_sub whose stdout lines are collected as they come.
struct Sub {
    child: Child,
    rx: mpsc::Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Sub {
    fn spawn(port: u16, args: &[&str]) -> Sub {
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .arg("-d")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mosquitto_sub");
        let (tx, rx) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            let seen = seen.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    seen.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            }));
        }
        Sub {
            child,
            rx,
            seen,
            readers,
        }
    }

    /// The first line (from now on) satisfying `pred`; panics after TIMEOUT.
    fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "mosquitto_sub: no {what} within {TIMEOUT:?}; output: {:#?}",
                    self.seen.lock().unwrap()
                ),
            }
        }
    }

    fn wait_suback(&self) -> String {
        self.wait_line("SUBACK", |l| l.contains("received SUBACK"));
        self.wait_line("'Subscribed' line", |l| l.starts_with("Subscribed"))
    }

    /// Waits (bounded) for the process to exit.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The process is gone, so its pipes reach EOF: collect
                // every line it wrote before returning.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "mosquitto_sub did not exit; output: {:#?}",
                    self.seen.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn output(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs mosquitto_pub to completion (killed after TIMEOUT) and asserts it
/// succeeded.
fn publish(port: u16, args: &[&str]) {
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mosquitto_pub");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mosquitto_pub {args:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(status.success(), "mosquitto_pub {args:?}: {status}: {err}");
}

/// `mosquitto_sub -t 'home/#' -v -C 1` receives what `mosquitto_pub` sends,
/// both speaking `version` at `qos`.
fn roundtrip(version: &str, qos: u8) {
    if !tools_present() {
        return;
    }
    let roost = Roost::start();
    let q = qos.to_string();
    let mut sub = Sub::spawn(
        roost.port,
        &[
            "-V", version, "-q", &q, "-t", "home/#", "-v", "-C", "1", "-W", "10",
        ],
    );
    let granted = sub.wait_suback();
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
    let mut sub = Sub::spawn(
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
    let mut sub = Sub::spawn(
        roost.port,
        &[
            "-V", version, "-q", "1", "-t", "home/#", "-v", "-C", "1", "-W", "10",
        ],
    );
    sub.wait_suback();
    publish(
        roost.port,
        &["-V", version, "-q", "1", "-t", "home/marker", "-m", "m"],
    );
    sub.wait_line("message line", |l| l.starts_with("home/"));
    assert!(sub.wait_exit().success());
    let messages: Vec<_> = sub
        .output()
        .into_iter()
        .filter(|l| l.starts_with("home/"))
        .collect();
    assert_eq!(messages, ["home/marker m"], "cleared retained message sent");
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
    let mut watcher = Sub::spawn(
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
    watcher.wait_suback();
    let mut dying = Sub::spawn(
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
    dying.wait_suback();
    dying.child.kill().unwrap(); // SIGKILL: no DISCONNECT
    let _ = dying.child.wait();

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
    let mut watcher = Sub::spawn(
        roost.port,
        &["-q", "1", "-t", "home/#", "-v", "-C", "1", "-W", "10"],
    );
    watcher.wait_suback();
    let mut polite = Sub::spawn(
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
    polite.wait_suback();
    unsafe { kill(polite.child.id() as i32, 2) }; // SIGINT
    polite.wait_line("DISCONNECT", |l| l.contains("sending DISCONNECT"));
    assert!(polite.wait_exit().success());

    publish(roost.port, &["-q", "1", "-t", "home/marker", "-m", "m"]);
    watcher.wait_line("message line", |l| l.starts_with("home/"));
    assert!(watcher.wait_exit().success());
    let messages: Vec<_> = watcher
        .output()
        .into_iter()
        .filter(|l| l.starts_with("home/"))
        .collect();
    assert_eq!(
        messages,
        ["home/marker m"],
        "will sent after clean DISCONNECT"
    );
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// MQTT 5 properties set by mosquitto_pub (`-D publish ...`) reach
/// mosquitto_sub unchanged, user properties in order.
#[test]
fn mqttv5_properties_forwarded() {
    if !tools_present() {
        return;
    }
    let roost = Roost::start();
    let mut sub = Sub::spawn(
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
    sub.wait_suback();
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
