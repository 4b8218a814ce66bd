//! roost against an independent client library: rumqttc (MQTT 3.1.1 and
//! MQTT 5), over real loopback sockets.
//!
//! Each rumqttc `Connection` is driven on its own thread which forwards every
//! event to the test through a channel; the test waits for the events it
//! expects with a deadline (`TIMEOUT`), so no test can hang. Stopping that
//! thread drops the connection without a DISCONNECT packet, which is how the
//! "socket dropped" cases (wills) are produced.

mod common;

use common::{Roost, TIMEOUT};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A client id unique within this test process.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

enum Poll<E> {
    Event(E),
    Error(String),
    Idle,
    Done,
}

/// Runs an event loop on a thread and hands its events to the test.
struct Driver<E> {
    rx: mpsc::Receiver<Result<E, String>>,
    /// Events received but not yet matched by any `wait_for`.
    pending: RefCell<VecDeque<E>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl<E: Send + std::fmt::Debug + 'static> Driver<E> {
    fn spawn(mut poll: impl FnMut(Duration) -> Poll<E> + Send + 'static) -> Driver<E> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match poll(Duration::from_millis(50)) {
                    Poll::Event(e) => {
                        if tx.send(Ok(e)).is_err() {
                            break;
                        }
                    }
                    Poll::Error(e) => {
                        // Stop here: rumqttc would otherwise reconnect on the
                        // next poll, which no test wants.
                        let _ = tx.send(Err(e));
                        break;
                    }
                    Poll::Idle => {}
                    Poll::Done => break,
                }
            }
            // `poll` (and with it the connection and its socket) is dropped
            // here, without a DISCONNECT unless the client sent one.
        });
        Driver {
            rx,
            pending: RefCell::new(VecDeque::new()),
            stop,
            thread: Some(thread),
        }
    }

    /// The first event for which `f` returns `Some` (events that do not
    /// match stay queued for later waits); panics on a connection error or
    /// after `TIMEOUT`.
    fn wait_for<T>(&self, what: &str, mut f: impl FnMut(&E) -> Option<T>) -> T {
        {
            let mut pending = self.pending.borrow_mut();
            let mut found = None;
            for (i, event) in pending.iter().enumerate() {
                if let Some(v) = f(event) {
                    found = Some((i, v));
                    break;
                }
            }
            if let Some((i, v)) = found {
                pending.remove(i);
                return v;
            }
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Ok(event)) => {
                    if let Some(v) = f(&event) {
                        return v;
                    }
                    self.pending.borrow_mut().push_back(event);
                }
                Ok(Err(e)) => panic!("connection error while waiting for {what}: {e}"),
                Err(_) => panic!("timed out after {TIMEOUT:?} waiting for {what}"),
            }
        }
    }

    /// Events matching `f` seen within `window` (used only to check that
    /// something does NOT arrive, after a positive marker already did).
    fn collect_for<T>(&self, window: Duration, mut f: impl FnMut(&E) -> Option<T>) -> Vec<T> {
        let deadline = Instant::now() + window;
        let mut out: Vec<T> = self
            .pending
            .borrow_mut()
            .drain(..)
            .filter_map(|e| f(&e))
            .collect();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            match self.rx.recv_timeout(left) {
                Ok(Ok(event)) => out.extend(f(&event)),
                Ok(Err(_)) | Err(_) => return out,
            }
        }
    }

    /// Waits until the broker closes the connection (an I/O error or EOF
    /// on the client side); panics after `TIMEOUT`.
    fn wait_closed(&self) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Ok(event)) => self.pending.borrow_mut().push_back(event),
                Ok(Err(e)) => return e,
                Err(mpsc::RecvTimeoutError::Disconnected) => return "event loop ended".into(),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("connection not closed by the broker within {TIMEOUT:?}")
                }
            }
        }
    }

    /// Stops the event loop thread; the connection is dropped with it.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("event loop thread panicked");
        }
    }
}

impl<E> Drop for Driver<E> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The connection wrapper both rumqttc APIs share: `rumqttc` (3.1.1) and
/// `rumqttc::v5` have parallel types under the same names, so this expands
/// in each version's module against that module's imports. What differs
/// between the versions (publishing, wills, sessions) stays in the modules.
macro_rules! connection_wrapper {
    () => {
        pub struct Conn {
            pub client: Client,
            pub driver: Driver<Event>,
            pub connack: ConnAck,
        }

        pub fn options(port: u16, id: &str) -> MqttOptions {
            let mut opts = MqttOptions::new(id, "127.0.0.1", port);
            opts.set_keep_alive(Duration::from_secs(30));
            opts
        }

        pub fn connect(opts: MqttOptions) -> Conn {
            let (client, mut connection) = Client::new(opts, 64);
            let driver = Driver::spawn(move |d| match connection.recv_timeout(d) {
                Ok(Ok(e)) => Poll::Event(e),
                Ok(Err(e)) => Poll::Error(e.to_string()),
                Err(RecvTimeoutError::Timeout) => Poll::Idle,
                Err(RecvTimeoutError::Disconnected) => Poll::Done,
            });
            let connack = driver.wait_for("CONNACK", |e| match e {
                Event::Incoming(Packet::ConnAck(c)) => Some(c.clone()),
                _ => None,
            });
            assert_eq!(connack.code, ConnectReturnCode::Success, "{connack:?}");
            Conn {
                client,
                driver,
                connack,
            }
        }

        impl Conn {
            pub fn subscribe(&self, filter: &str, qos: QoS) {
                self.client.subscribe(filter, qos).unwrap();
                let codes = self.driver.wait_for("SUBACK", |e| match e {
                    Event::Incoming(Packet::SubAck(s)) => Some(s.return_codes.clone()),
                    _ => None,
                });
                assert_eq!(codes, vec![SubscribeReasonCode::Success(qos)], "{filter}");
            }

            /// After a publish at `qos`: waits until it was written (QoS 0)
            /// or the broker has acknowledged it (PUBACK, checked by the
            /// version's `wait_puback`, or PUBCOMP).
            fn wait_acknowledged(&self, qos: QoS) {
                match qos {
                    QoS::AtMostOnce => self.driver.wait_for("outgoing PUBLISH", |e| {
                        matches!(e, Event::Outgoing(Outgoing::Publish(_))).then_some(())
                    }),
                    QoS::AtLeastOnce => self.wait_puback(),
                    QoS::ExactlyOnce => self.driver.wait_for("PUBCOMP", |e| {
                        matches!(e, Event::Incoming(Packet::PubComp(_))).then_some(())
                    }),
                }
            }

            pub fn next_publish(&self) -> Publish {
                self.driver.wait_for("PUBLISH", |e| match e {
                    Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
                    _ => None,
                })
            }

            /// The PUBLISHes that arrive within `window` (for checking that
            /// nothing more arrives).
            pub fn publishes_within(&self, window: Duration) -> Vec<Publish> {
                self.driver.collect_for(window, |e| match e {
                    Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
                    _ => None,
                })
            }

            /// Sends DISCONNECT, waits until it was written, stops the loop.
            pub fn disconnect(mut self) {
                self.client.disconnect().unwrap();
                self.driver.wait_for("outgoing DISCONNECT", |e| {
                    matches!(e, Event::Outgoing(Outgoing::Disconnect)).then_some(())
                });
                self.driver.stop();
            }

            /// Drops the socket without DISCONNECT.
            pub fn kill(mut self) {
                self.driver.stop();
            }
        }
    };
}

// ---------------------------------------------------------------- MQTT 3.1.1

mod v4 {
    use super::{Driver, Poll};
    pub use rumqttc::{
        Client, ConnAck, ConnectReturnCode, Event, LastWill, MqttOptions, Outgoing, Packet,
        Publish, QoS, RecvTimeoutError, SubscribeReasonCode,
    };
    use std::time::Duration;

    connection_wrapper!();

    impl Conn {
        /// Publishes and, for QoS 1/2, waits until the broker has
        /// acknowledged (PUBACK / PUBCOMP).
        pub fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) {
            self.client
                .publish(topic, qos, retain, payload.to_vec())
                .unwrap();
            self.wait_acknowledged(qos);
        }

        fn wait_puback(&self) {
            self.driver.wait_for("PUBACK", |e| {
                matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
            });
        }
    }

    pub fn will(topic: &str, payload: &str, qos: QoS, retain: bool) -> LastWill {
        LastWill::new(topic, payload, qos, retain)
    }

    /// A session kept after disconnecting: clean session 0.
    pub fn persistent(opts: &mut MqttOptions) {
        opts.set_clean_session(false);
    }
}

// ------------------------------------------------------------------- MQTT 5

mod v5 {
    use super::{Driver, Poll};
    use rumqttc::Outgoing;
    pub use rumqttc::v5::mqttbytes::QoS;
    pub use rumqttc::v5::mqttbytes::v5::{
        ConnAck, ConnectReturnCode, LastWill, Packet, Publish, PublishProperties,
        SubscribeReasonCode,
    };
    pub use rumqttc::v5::{Client, Event, MqttOptions, RecvTimeoutError};
    use std::time::Duration;

    connection_wrapper!();

    impl Conn {
        pub fn publish_with(
            &self,
            topic: &str,
            qos: QoS,
            retain: bool,
            payload: &[u8],
            props: Option<PublishProperties>,
        ) {
            match props {
                Some(p) => self
                    .client
                    .publish_with_properties(topic, qos, retain, payload.to_vec(), p)
                    .unwrap(),
                None => self
                    .client
                    .publish(topic, qos, retain, payload.to_vec())
                    .unwrap(),
            }
            self.wait_acknowledged(qos);
        }

        pub fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) {
            self.publish_with(topic, qos, retain, payload, None)
        }

        fn wait_puback(&self) {
            let ack = self.driver.wait_for("PUBACK", |e| match e {
                Event::Incoming(Packet::PubAck(a)) => Some(a.clone()),
                _ => None,
            });
            // 0x10 "no matching subscribers" is a success too.
            assert!((ack.reason as u8) < 0x80, "{ack:?}");
        }
    }

    pub fn will(topic: &str, payload: &str, qos: QoS, retain: bool) -> LastWill {
        LastWill::new(topic, payload, qos, retain, None)
    }

    /// A session kept after disconnecting: clean start 0 and a Session
    /// Expiry Interval.
    pub fn persistent(opts: &mut MqttOptions) {
        opts.set_clean_start(false);
        opts.set_session_expiry_interval(Some(300));
    }
}

/// Bytes (a payload, or a v5 topic) or a 3.1.1 topic as text.
fn text(b: impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(b.as_ref()).into_owned()
}

// ----------------------------------------------------- tests for both versions

/// Tests whose behaviour is the same under MQTT 3.1.1 and MQTT 5, generated
/// against one version's wrapper module (`v4` or `v5`) under the given test
/// names. `capped_qos` is the QoS a second subscriber is granted (which caps
/// what it is delivered); `retained_qos` the QoS the retained message is
/// published and subscribed at.
macro_rules! same_for_both_versions {
    ($m:ident {
        capped_qos: $capped_qos:ident,
        retained_qos: $retained_qos:ident,
        publish_subscribe_qos_0_1_2: $publish_subscribe:ident,
        wildcards: $wildcards:ident,
        retained_then_cleared: $retained_then_cleared:ident,
        no_will_after_clean_disconnect: $no_will_after_clean_disconnect:ident,
        persistent_session_gets_offline_qos1_in_order: $persistent_qos1:ident $(,)?
    }) => {
        #[test]
        fn $publish_subscribe() {
            use $m::*;
            let roost = Roost::start();
            let sub = connect(options(roost.port, &unique("sub")));
            sub.subscribe("home/kitchen/temp", QoS::ExactlyOnce);
            let capped = connect(options(roost.port, &unique("capped")));
            capped.subscribe("home/kitchen/temp", QoS::$capped_qos);
            let publ = connect(options(roost.port, &unique("pub")));
            for (qos, payload) in [
                (QoS::AtMostOnce, "21.5"),
                (QoS::AtLeastOnce, "22.0"),
                (QoS::ExactlyOnce, "22.5"),
            ] {
                publ.publish("home/kitchen/temp", qos, false, payload.as_bytes());
                let p = sub.next_publish();
                assert_eq!(text(&p.topic), "home/kitchen/temp");
                assert_eq!(text(&p.payload), payload);
                assert_eq!(p.qos, qos, "delivered at min(publish, granted) QoS");
                assert!(!p.retain, "live delivery must have retain 0");
                assert!(!p.dup);
                let p = capped.next_publish();
                assert_eq!(text(&p.payload), payload);
                let expected = if qos < QoS::$capped_qos {
                    qos
                } else {
                    QoS::$capped_qos
                };
                assert_eq!(p.qos, expected, "granted QoS caps delivery");
            }
            publ.disconnect();
            sub.disconnect();
            capped.disconnect();
        }

        #[test]
        fn $wildcards() {
            use $m::*;
            let roost = Roost::start();
            let hash = connect(options(roost.port, &unique("hash")));
            hash.subscribe("home/#", QoS::AtLeastOnce);
            let plus = connect(options(roost.port, &unique("plus")));
            plus.subscribe("+/kitchen/+", QoS::AtLeastOnce);
            let publ = connect(options(roost.port, &unique("pub")));
            for topic in [
                "home/kitchen/temp",
                "home",
                "garden/kitchen/x",
                "office/x",
                "home/a/b/c",
                "home/kitchen",
                "end/kitchen/end",
                "home/end",
            ] {
                publ.publish(topic, QoS::AtLeastOnce, false, topic.as_bytes());
            }
            // Each message's payload is its topic; `end` marks the last one.
            let collect = |c: &Conn, end: &str| {
                let mut got = Vec::new();
                loop {
                    let p = c.next_publish();
                    let topic = text(&p.topic);
                    assert_eq!(text(&p.payload), topic);
                    if topic == end {
                        return got;
                    }
                    got.push(topic);
                }
            };
            assert_eq!(
                collect(&hash, "home/end"),
                ["home/kitchen/temp", "home", "home/a/b/c", "home/kitchen"],
                "home/# matches the parent and every level below home"
            );
            assert_eq!(
                collect(&plus, "end/kitchen/end"),
                ["home/kitchen/temp", "garden/kitchen/x"]
            );
        }

        #[test]
        fn $retained_then_cleared() {
            use $m::*;
            let roost = Roost::start();
            let publ = connect(options(roost.port, &unique("pub")));
            publ.publish("home/door", QoS::$retained_qos, true, b"open");

            let sub = connect(options(roost.port, &unique("sub")));
            sub.subscribe("home/#", QoS::$retained_qos);
            let p = sub.next_publish();
            assert_eq!(
                (text(&p.topic), text(&p.payload)),
                ("home/door".into(), "open".into())
            );
            assert!(p.retain, "retained message sent on subscribe has retain 1");
            assert_eq!(p.qos, QoS::$retained_qos);

            // A live publish of a retained message to an existing
            // subscriber: retain 0.
            publ.publish("home/door", QoS::AtLeastOnce, true, b"closed");
            let p = sub.next_publish();
            assert_eq!(text(&p.payload), "closed");
            assert!(
                !p.retain,
                "live delivery has retain 0 without Retain As Published"
            );

            // Empty retained publish clears the topic.
            publ.publish("home/door", QoS::AtLeastOnce, true, b"");
            let p = sub.next_publish();
            assert_eq!(text(&p.topic), "home/door");
            assert!(p.payload.is_empty());

            let later = connect(options(roost.port, &unique("later")));
            later.subscribe("home/#", QoS::AtLeastOnce);
            publ.publish("home/marker", QoS::AtLeastOnce, false, b"m");
            let p = later.next_publish();
            assert_eq!(
                (text(&p.topic), text(&p.payload), p.retain),
                ("home/marker".into(), "m".into(), false),
                "the cleared retained message must not be delivered"
            );
        }

        #[test]
        fn $no_will_after_clean_disconnect() {
            use $m::*;
            let roost = Roost::start();
            let watcher = connect(options(roost.port, &unique("watch")));
            watcher.subscribe("will/#", QoS::AtLeastOnce);

            let mut opts = options(roost.port, &unique("polite"));
            opts.set_last_will(will("will/polite", "gone", QoS::AtLeastOnce, false));
            let polite = connect(opts);
            polite.disconnect();

            // A marker published afterwards: if the broker wrongly published
            // the will, it would (almost always) arrive before the marker.
            watcher.publish("will/marker", QoS::AtLeastOnce, false, b"marker");
            let p = watcher.next_publish();
            assert_eq!(
                (text(&p.topic), text(&p.payload)),
                ("will/marker".into(), "marker".into()),
                "will published after a clean DISCONNECT"
            );
            let late: Vec<_> = watcher
                .publishes_within(Duration::from_millis(300))
                .iter()
                .map(|p| text(&p.topic))
                .collect();
            assert!(late.is_empty(), "unexpected publishes: {late:?}");
        }

        #[test]
        fn $persistent_qos1() {
            use $m::*;
            let roost = Roost::start();
            let id = unique("persist");
            let mut opts = options(roost.port, &id);
            persistent(&mut opts);
            let first = connect(opts.clone());
            assert!(!first.connack.session_present);
            first.subscribe("queue/#", QoS::AtLeastOnce);
            first.disconnect();

            let publ = connect(options(roost.port, &unique("pub")));
            for i in 1..=5 {
                publ.publish(
                    "queue/a",
                    QoS::AtLeastOnce,
                    false,
                    format!("m{i}").as_bytes(),
                );
                if i == 3 {
                    // QoS 0 is not queued for an offline client.
                    publ.publish("queue/a", QoS::AtMostOnce, false, b"qos0");
                }
            }

            let again = connect(opts);
            assert!(again.connack.session_present, "session present on resume");
            let mut got = Vec::new();
            while got.len() < 5 {
                let p = again.next_publish();
                assert_eq!(text(&p.topic), "queue/a");
                assert_eq!(p.qos, QoS::AtLeastOnce);
                got.push(text(&p.payload));
            }
            assert_eq!(got, ["m1", "m2", "m3", "m4", "m5"]);
            // Nothing else was queued (in particular not the QoS 0
            // message): the next message is a live one.
            publ.publish("queue/live", QoS::AtLeastOnce, false, b"live");
            let p = again.next_publish();
            assert_eq!(text(&p.payload), "live");
            again.disconnect();
        }
    };
}

same_for_both_versions!(v4 {
    capped_qos: AtMostOnce,
    retained_qos: AtLeastOnce,
    publish_subscribe_qos_0_1_2: v311_publish_subscribe_qos_0_1_2,
    wildcards: v311_wildcards,
    retained_then_cleared: v311_retained_then_cleared,
    no_will_after_clean_disconnect: v311_no_will_after_clean_disconnect,
    persistent_session_gets_offline_qos1_in_order:
        v311_persistent_session_gets_offline_qos1_in_order,
});

same_for_both_versions!(v5 {
    capped_qos: AtLeastOnce,
    retained_qos: ExactlyOnce,
    publish_subscribe_qos_0_1_2: v5_publish_subscribe_qos_0_1_2,
    wildcards: v5_wildcards,
    retained_then_cleared: v5_retained_then_cleared,
    no_will_after_clean_disconnect: v5_no_will_after_clean_disconnect,
    persistent_session_gets_offline_qos1_in_order: v5_persistent_session_gets_offline_qos1_in_order,
});

// ------------------------------------------------------------ 3.1.1 tests

#[test]
fn v311_will_on_abrupt_close() {
    use v4::*;
    let roost = Roost::start();
    let watcher = connect(options(roost.port, &unique("watch")));
    watcher.subscribe("will/#", QoS::ExactlyOnce);

    let mut opts = options(roost.port, &unique("dying"));
    opts.set_last_will(will("will/dying", "gone", QoS::AtLeastOnce, true));
    let dying = connect(opts);
    dying.kill();

    let p = watcher.next_publish();
    assert_eq!(
        (p.topic.as_str(), text(&p.payload).as_str()),
        ("will/dying", "gone")
    );
    assert_eq!(p.qos, QoS::AtLeastOnce, "will QoS honoured");
    assert!(!p.retain, "live delivery has retain 0");

    // Will retain honoured: a later subscriber gets it as retained.
    let later = connect(options(roost.port, &unique("later")));
    later.subscribe("will/#", QoS::AtLeastOnce);
    let p = later.next_publish();
    assert_eq!(
        (p.topic.as_str(), text(&p.payload).as_str()),
        ("will/dying", "gone")
    );
    assert!(p.retain);
}

// --------------------------------------------------------------- v5 tests

#[test]
fn v5_will_on_abrupt_close() {
    use v5::*;
    let roost = Roost::start();
    let watcher = connect(options(roost.port, &unique("watch")));
    watcher.subscribe("will/#", QoS::ExactlyOnce);

    let mut opts = options(roost.port, &unique("dying"));
    opts.set_last_will(will("will/dying", "gone", QoS::ExactlyOnce, false));
    let dying = connect(opts);
    dying.kill();

    let p = watcher.next_publish();
    assert_eq!(
        (text(&p.topic), text(&p.payload)),
        ("will/dying".into(), "gone".into())
    );
    assert_eq!(p.qos, QoS::ExactlyOnce);
    assert!(!p.retain);
}

#[test]
fn v5_properties_forwarded() {
    use v5::*;
    let roost = Roost::start();
    let sub = connect(options(roost.port, &unique("sub")));
    sub.subscribe("rpc/#", QoS::AtLeastOnce);
    let publ = connect(options(roost.port, &unique("pub")));
    let user_properties: Vec<(String, String)> = [("b", "1"), ("a", "2"), ("b", "3"), ("z", "")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let props = PublishProperties {
            payload_format_indicator: Some(1),
            response_topic: Some("rpc/reply/42".into()),
            correlation_data: Some(vec![0u8, 1, 2, 0xff].into()),
            content_type: Some("application/json".into()),
            user_properties: user_properties.clone(),
            ..Default::default()
        };
        publ.publish_with("rpc/call", qos, false, br#"{"x":1}"#, Some(props));
        let p = sub.next_publish();
        assert_eq!(&p.topic[..], b"rpc/call");
        assert_eq!(&p.payload[..], br#"{"x":1}"#);
        let got = p.properties.expect("properties forwarded");
        assert_eq!(
            got.user_properties, user_properties,
            "user properties in order"
        );
        assert_eq!(got.response_topic.as_deref(), Some("rpc/reply/42"));
        assert_eq!(
            got.correlation_data.as_deref(),
            Some(&[0u8, 1, 2, 0xff][..])
        );
        assert_eq!(got.content_type.as_deref(), Some("application/json"));
        assert_eq!(got.payload_format_indicator, Some(1));
        assert_eq!(got.topic_alias, None);
    }
}

// ------------------------------------------------- more contract behaviour

#[test]
fn v311_persistent_session_gets_offline_qos2_in_order() {
    use v4::*;
    let roost = Roost::start();
    let mut opts = options(roost.port, &unique("persist2"));
    opts.set_clean_session(false);
    let first = connect(opts.clone());
    first.subscribe("queue/#", QoS::ExactlyOnce);
    first.disconnect();

    let publ = connect(options(roost.port, &unique("pub")));
    for i in 1..=4 {
        publ.publish(
            "queue/b",
            QoS::ExactlyOnce,
            false,
            format!("x{i}").as_bytes(),
        );
    }
    let again = connect(opts);
    assert!(again.connack.session_present);
    let got: Vec<_> = (0..4)
        .map(|_| {
            let p = again.next_publish();
            assert_eq!(p.qos, QoS::ExactlyOnce);
            text(&p.payload)
        })
        .collect();
    assert_eq!(got, ["x1", "x2", "x3", "x4"]);
    again.disconnect();
}

/// Session takeover: the old connection did not DISCONNECT, so its will is
/// published.
#[test]
fn v311_takeover_publishes_old_connections_will() {
    use v4::*;
    let roost = Roost::start();
    let watcher = connect(options(roost.port, &unique("watch")));
    watcher.subscribe("will/#", QoS::AtLeastOnce);
    let id = unique("twin");
    let mut opts = options(roost.port, &id);
    opts.set_last_will(will("will/twin", "taken over", QoS::AtLeastOnce, false));
    let old = connect(opts);
    let new = connect(options(roost.port, &id));
    let p = watcher.next_publish();
    assert_eq!(
        (p.topic.as_str(), text(&p.payload).as_str()),
        ("will/twin", "taken over")
    );
    // The old connection was closed by the broker.
    old.driver.wait_closed();
    new.disconnect();
}

#[test]
fn v5_takeover_closes_old_and_publishes_will() {
    use v5::*;
    let roost = Roost::start();
    let watcher = connect(options(roost.port, &unique("watch")));
    watcher.subscribe("will/#", QoS::AtLeastOnce);
    let id = unique("twin");
    let mut opts = options(roost.port, &id);
    opts.set_last_will(will("will/twin", "taken over", QoS::AtLeastOnce, false));
    let old = connect(opts);
    let new = connect(options(roost.port, &id));
    // rumqttc reports a server DISCONNECT as a connection error. rumqttc
    // 0.25 cannot decode a DISCONNECT that carries only a reason code
    // (remaining length 1, legal per MQTT 5 3.14.2.2.1): it waits for more
    // bytes and then reports an abrupt close. The reason code itself is
    // checked with paho (clients_paho.rs) and on the wire (conformance.rs).
    let err = old.driver.wait_closed();
    assert!(
        err.contains("SessionTakenOver") || err.contains("closed by peer abruptly"),
        "old connection should get DISCONNECT 0x8E and be closed, got: {err}"
    );
    let p = watcher.next_publish();
    assert_eq!(
        (text(&p.topic), text(&p.payload)),
        ("will/twin".into(), "taken over".into())
    );
    new.disconnect();
}

/// Inbound topic aliases: the alias set by the first PUBLISH is resolved
/// for a later PUBLISH with an empty topic; subscribers (which did not
/// allow aliases) get the full topic.
#[test]
fn v5_inbound_topic_alias() {
    use v5::*;
    let roost = Roost::start();
    let sub = connect(options(roost.port, &unique("sub")));
    sub.subscribe("alias/#", QoS::AtLeastOnce);
    let publ = connect(options(roost.port, &unique("pub")));
    assert_eq!(
        publ.connack
            .properties
            .as_ref()
            .and_then(|p| p.topic_alias_max),
        Some(10),
        "Topic Alias Maximum 10 advertised"
    );
    let alias = |n| PublishProperties {
        topic_alias: Some(n),
        ..Default::default()
    };
    publ.publish_with(
        "alias/long/topic/name",
        QoS::AtLeastOnce,
        false,
        b"1",
        Some(alias(3)),
    );
    publ.publish_with("", QoS::AtLeastOnce, false, b"2", Some(alias(3)));
    publ.publish_with("", QoS::AtMostOnce, false, b"3", Some(alias(3)));
    for payload in ["1", "2", "3"] {
        let p = sub.next_publish();
        assert_eq!(text(&p.topic), "alias/long/topic/name");
        assert_eq!(text(&p.payload), payload);
        assert_eq!(p.properties.and_then(|p| p.topic_alias), None);
    }
}

/// Outbound flow control: with Receive Maximum 2 and no acks, roost has
/// at most 2 QoS 1 messages in flight to the client; each PUBACK releases
/// the next queued one, in order.
#[test]
fn v5_receive_maximum_limits_inflight() {
    use v5::*;
    let roost = Roost::start();
    let mut opts = options(roost.port, &unique("slow"));
    opts.set_receive_maximum(Some(2));
    opts.set_manual_acks(true);
    let sub = connect(opts);
    sub.subscribe("flow/#", QoS::AtLeastOnce);
    let publ = connect(options(roost.port, &unique("pub")));
    for i in 1..=5 {
        publ.publish(
            "flow/a",
            QoS::AtLeastOnce,
            false,
            format!("f{i}").as_bytes(),
        );
    }
    let first = sub.next_publish();
    let second = sub.next_publish();
    assert_eq!(
        (text(&first.payload), text(&second.payload)),
        ("f1".into(), "f2".into())
    );
    let extra: Vec<_> = sub
        .publishes_within(Duration::from_millis(300))
        .iter()
        .map(|p| text(&p.payload))
        .collect();
    assert!(
        extra.is_empty(),
        "more than Receive Maximum in flight: {extra:?}"
    );
    let mut got = vec![text(&first.payload), text(&second.payload)];
    sub.client.ack(&first).unwrap();
    let mut unacked = vec![second];
    while got.len() < 5 {
        let p = sub.next_publish();
        got.push(text(&p.payload));
        sub.client.ack(&unacked.remove(0)).unwrap();
        unacked.push(p);
    }
    assert_eq!(got, ["f1", "f2", "f3", "f4", "f5"]);
}
