//! roost against Python paho-mqtt 2.x (MQTT 3.1.1 and 5), driven by the
//! script tests/paho/client.py, plus one cross-client test:
//! mosquitto_pub (3.1.1) -> roost -> paho (v5) and rumqttc (v5).
//!
//! The script prints one result line and exits non-zero on failure; it has
//! its own watchdog, and the test kills it after `TIMEOUT` regardless.

mod common;

use common::{Proc, Roost, TIMEOUT, have, have_paho};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paho/client.py");

/// Starts the paho script (unbuffered) with `args`.
fn spawn_paho(args: &[&str]) -> Proc {
    let mut cmd = Command::new("python3");
    cmd.arg("-u").arg(SCRIPT).args(args);
    Proc::spawn(cmd)
}

/// Runs the paho script in `mode` and returns its "PAHO OK" line.
fn paho_run(roost: &Roost, mode: &str, args: &[&str]) -> String {
    let port = roost.port.to_string();
    let mut all = vec![mode, port.as_str()];
    all.extend_from_slice(args);
    let mut proc = spawn_paho(&all);
    let status = proc.wait_exit();
    let output = proc.output();
    assert!(
        status.success(),
        "paho {args:?} failed ({status}): {output:#?}\nroost log: {:#?}",
        roost.log()
    );
    output
        .into_iter()
        .find(|l| l.starts_with("PAHO OK"))
        .unwrap_or_else(|| panic!("no PAHO OK line"))
}

#[test]
fn paho_v311_publish_subscribe_qos_0_1_2() {
    skip_without!(have_paho(), "python3 paho-mqtt");
    let roost = Roost::start();
    let ok = paho_run(&roost, "roundtrip", &["311"]);
    assert!(ok.starts_with("PAHO OK v311"), "{ok}");
}

/// v5 with defaults: CONNACK carries an Assigned Client Identifier (empty
/// client id) and Topic Alias Maximum 10, and no Maximum Packet Size (no
/// limit but MQTT's, as mosquitto); user properties arrive in order at
/// every QoS.
#[test]
fn paho_v5_publish_subscribe_and_connack_properties() {
    skip_without!(have_paho(), "python3 paho-mqtt");
    let roost = Roost::start();
    let ok = paho_run(&roost, "roundtrip", &["5"]);
    assert!(ok.contains("max_packet=None"), "{ok}");
}

/// The configured `max_packet_size` is what CONNACK advertises.
#[test]
fn paho_v5_connack_max_packet_size_from_config() {
    skip_without!(have_paho(), "python3 paho-mqtt");
    let roost =
        Roost::with_config("listener 0 127.0.0.1\nallow_anonymous true\nmax_packet_size 100000\n");
    let ok = paho_run(&roost, "roundtrip", &["5", "100000"]);
    assert!(ok.contains("max_packet=100000"), "{ok}");
}

/// Session takeover seen by a real v5 client: DISCONNECT with reason 0x8E
/// (Session taken over) on the old connection, and its will published.
#[test]
fn paho_v5_session_takeover() {
    skip_without!(have_paho(), "python3 paho-mqtt");
    let roost = Roost::start();
    let ok = paho_run(&roost, "takeover", &[]);
    assert_eq!(ok, "PAHO OK takeover reason=0x8E");
}

/// A rumqttc v5 subscriber on its own thread: sends "SUBSCRIBED" once the
/// SUBACK is in, then "GOT topic payload qos retain" for the first message.
fn rumqttc_v5_subscriber(port: u16, topic: &str) -> mpsc::Receiver<String> {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{Client, Event, MqttOptions};
    let (tx, rx) = mpsc::channel();
    let mut opts = MqttOptions::new(
        format!("rumqttc-cross-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = Client::new(opts, 16);
    client.subscribe(topic, QoS::AtLeastOnce).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + 2 * TIMEOUT;
        while Instant::now() < deadline {
            match connection.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                    let _ = tx.send("SUBSCRIBED".to_string());
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    let _ = tx.send(format!(
                        "GOT {} {} {} {}",
                        String::from_utf8_lossy(&p.topic),
                        String::from_utf8_lossy(&p.payload),
                        p.qos as u8,
                        u8::from(p.retain)
                    ));
                    // Let the PUBACK go out before leaving.
                    let _ = client.disconnect();
                    let flush = Instant::now() + Duration::from_millis(500);
                    while Instant::now() < flush {
                        if connection.recv_timeout(Duration::from_millis(50)).is_err() {
                            break;
                        }
                    }
                    return;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    let _ = tx.send(format!("ERROR {e}"));
                    return;
                }
                Err(_) => {}
            }
        }
    });
    rx
}

#[test]
fn cross_client_mosquitto_pub_to_paho_and_rumqttc() {
    skip_without!(have_paho(), "python3 paho-mqtt");
    skip_without!(have("mosquitto_pub"), "mosquitto-clients");
    let roost = Roost::start();
    let port = roost.port.to_string();

    let mut paho = spawn_paho(&["sub", &port, "home/#"]);
    paho.wait_line("paho SUBSCRIBED", |l| l == "SUBSCRIBED");
    let rumqttc = rumqttc_v5_subscriber(roost.port, "home/+/temp");
    let line = rumqttc
        .recv_timeout(TIMEOUT)
        .expect("rumqttc subscriber: no SUBACK");
    assert_eq!(line, "SUBSCRIBED");

    let mut publisher = Command::new("mosquitto_pub");
    publisher.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "mqttv311",
        "-q",
        "1",
        "-t",
        "home/kitchen/temp",
        "-m",
        "21.5",
    ]);
    let mut publisher = Proc::spawn(publisher);
    let status = publisher.wait_exit();
    assert!(status.success(), "mosquitto_pub: {:#?}", publisher.output());

    let got = paho.wait_line("paho GOT", |l| {
        l.starts_with("GOT ") || l.starts_with("FAIL")
    });
    assert_eq!(got, "GOT home/kitchen/temp 21.5 1 0");
    let status = paho.wait_exit();
    assert!(status.success(), "paho: {:#?}", paho.output());

    let got = rumqttc
        .recv_timeout(TIMEOUT)
        .expect("rumqttc subscriber: no message");
    assert_eq!(got, "GOT home/kitchen/temp 21.5 1 0");
}
