//! One bridge's connection as its client side runs it, without IO: when to
//! connect and to which address, how long to wait after a failure, when
//! to ping, when to give up on a silent remote, when a lazy bridge goes
//! idle. `net/bridge.rs` carries out each [`Step`] and reports back.

use std::time::{Duration, Instant};

use super::{Bridge, StartType};

pub struct Link {
    state: State,
    /// The address of the current or next attempt.
    address: usize,
    /// The last wait after a failure; the next grows from it (jitter).
    backoff: Duration,
    /// Whether CONNECT carries the private bit, see [`Private`].
    private: Private,
    /// Last packet from the remote, last PINGREQ, last message either way.
    heard: Instant,
    pinged: Instant,
    active: Instant,
    /// When to check whether the main address answers again (connected
    /// to another one, without `round_robin`).
    probe_at: Option<Instant>,
    /// xorshift state for the back-off jitter.
    rng: u64,
}

/// mosquitto's bridge bit (`try_private`), as this link has learnt to use
/// it. Brokers without bridge support refuse it with CONNACK 0x01 (as
/// mosquitto expects) or, as rumqttd and AWS IoT Core do, close the
/// connection without a word; each is then tried without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Private {
    On,
    /// Not asked for (`try_private false`, 5.0), or refused.
    Off,
    /// Off for the attempt after a remote closed on a CONNECT with it:
    /// if this one gets a CONNACK, the bit was the trouble and stays off;
    /// if not, something else was, and it is on again.
    Trying,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Lazy: waiting for enough messages. Once: finished.
    Idle,
    /// After a failure: the next attempt is due then.
    Waiting(Instant),
    /// TCP connect and CONNACK under way, given up at the deadline.
    Connecting(Instant),
    Up,
}

/// What the loop is to do for a bridge.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Open a connection to address number `.0` and send CONNECT.
    Connect(usize),
    Ping,
    /// Close the connection, which failed for the reason given.
    Drop(&'static str),
    /// See whether the main address takes a TCP connection again; if it
    /// does, [`Link::back_to_main`].
    Probe,
    /// A lazy bridge went idle: DISCONNECT and close.
    Disconnect,
}

impl Link {
    pub fn new(b: &Bridge, now: Instant) -> Link {
        let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let seed = clock.map_or(0, |d| d.as_nanos() as u64) ^ u64::from(std::process::id()) << 32;
        Link {
            state: match b.start_type {
                StartType::Lazy => State::Idle,
                _ => State::Waiting(now),
            },
            address: 0,
            backoff: b.restart.base,
            private: if b.try_private && b.version < crate::protocol::Version::V5 {
                Private::On
            } else {
                Private::Off
            },
            heard: now,
            pinged: now,
            active: now,
            probe_at: None,
            rng: seed | 1,
        }
    }

    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// Connecting or connected: a closed connection is a failure.
    pub fn is_active(&self) -> bool {
        matches!(self.state, State::Up | State::Connecting(_))
    }

    /// What is due at `now`, given `backlog` messages waiting for the
    /// remote. A `Connect` starts an attempt; a `Drop` expects
    /// [`Link::failed`] and a `Disconnect` [`Link::idle`] once done.
    pub fn poll(&mut self, b: &Bridge, backlog: usize, now: Instant) -> Option<Step> {
        let lazy = b.start_type == StartType::Lazy;
        let keepalive = Duration::from_secs(b.keepalive.into());
        match self.state {
            State::Idle if lazy && backlog >= b.threshold => Some(self.connect(keepalive, now)),
            State::Waiting(at) if at <= now => {
                if lazy && backlog < b.threshold {
                    self.state = State::Idle;
                    return None;
                }
                Some(self.connect(keepalive, now))
            }
            State::Connecting(deadline) if deadline <= now => {
                Some(Step::Drop("no CONNACK in time"))
            }
            State::Up if now >= self.heard + keepalive.mul_f32(1.5) => {
                Some(Step::Drop("remote silent past 1.5 x keep-alive"))
            }
            State::Up if lazy && now >= self.active + b.idle_timeout => Some(Step::Disconnect),
            State::Up if now >= self.pinged + keepalive => {
                self.pinged = now;
                Some(Step::Ping)
            }
            State::Up if self.probe_at.is_some_and(|at| at <= now) => {
                self.probe_at = Some(now + b.restart.base);
                Some(Step::Probe)
            }
            _ => None,
        }
    }

    fn connect(&mut self, keepalive: Duration, now: Instant) -> Step {
        self.state = State::Connecting(now + keepalive);
        Step::Connect(self.address)
    }

    /// When [`Link::poll`] next has something to do, barring traffic.
    pub fn next_deadline(&self, b: &Bridge) -> Option<Instant> {
        let keepalive = Duration::from_secs(b.keepalive.into());
        match self.state {
            State::Idle => None,
            State::Waiting(at) | State::Connecting(at) => Some(at),
            State::Up => {
                let mut at = (self.heard + keepalive.mul_f32(1.5)).min(self.pinged + keepalive);
                if b.start_type == StartType::Lazy {
                    at = at.min(self.active + b.idle_timeout);
                }
                Some(self.probe_at.map_or(at, |probe| probe.min(at)))
            }
        }
    }

    /// Whether the next CONNECT carries the private bit.
    pub fn private(&self) -> bool {
        self.private == Private::On
    }

    /// A 3.x remote refused the private bit (CONNACK 0x01): the next
    /// attempts go without it. False when the CONNECT did not carry it.
    pub fn private_refused(&mut self) -> bool {
        let had = self.private == Private::On;
        if had {
            self.private = Private::Off;
        }
        had
    }

    /// The remote closed the connection, before any answer, after it had
    /// all of a CONNECT. If that CONNECT carried the private bit, the
    /// next attempt goes at once, to the same address, without it (and
    /// this returns true); otherwise this is a failure like any other.
    pub fn closed_unanswered(&mut self, now: Instant) -> bool {
        let retry = matches!(self.state, State::Connecting(_)) && self.private == Private::On;
        if retry {
            self.private = Private::Trying;
            self.state = State::Waiting(now);
        }
        retry
    }

    /// The remote accepted the connection. Returns true when this is the
    /// first attempt without the private bit after a remote closed on it:
    /// the bit stays off for the link from now on.
    pub fn up(&mut self, b: &Bridge, now: Instant) -> bool {
        let learnt = self.private == Private::Trying;
        if learnt {
            self.private = Private::Off;
        }
        self.state = State::Up;
        self.heard = now;
        self.pinged = now;
        self.active = now;
        self.backoff = b.restart.base;
        // As mosquitto: the first address is the main one, checked every
        // `restart_timeout` while another serves.
        self.probe_at = (!b.round_robin && self.address != 0).then(|| now + b.restart.base);
        learnt
    }

    /// The main address answers again: leave the connection to another
    /// one (not a failure) and connect to it now.
    pub fn back_to_main(&mut self, now: Instant) {
        self.address = 0;
        self.probe_at = None;
        self.state = State::Waiting(now);
    }

    /// A packet came from the remote.
    pub fn heard(&mut self, now: Instant) {
        self.heard = now;
    }

    /// A message went to or came from the remote (a lazy bridge's idle
    /// time counts from the last one).
    pub fn active(&mut self, now: Instant) {
        self.active = now;
    }

    /// The attempt or the connection failed: the next one waits for the
    /// back-off, at the next address (`round_robin` stays on an address
    /// that worked; otherwise an established connection that is lost is
    /// followed by a fresh start from the first address). Returns the
    /// wait, or None when the bridge is finished (`start_type once`).
    pub fn failed(&mut self, b: &Bridge, now: Instant) -> Option<Duration> {
        let was_up = self.state == State::Up;
        if self.private == Private::Trying {
            // Without the bit it failed too: the bit was not the cause.
            self.private = Private::On;
        }
        if b.start_type == StartType::Once {
            self.state = State::Idle;
            return None;
        }
        self.address = match (was_up, b.round_robin) {
            (true, true) => self.address,
            (true, false) => 0,
            (false, _) => (self.address + 1) % b.addresses.len(),
        };
        let wait = match b.restart.cap {
            None => b.restart.base,
            Some(cap) => {
                // Decorrelated jitter: between the base and three times
                // the last wait, at most the cap.
                let base = b.restart.base.as_millis() as u64;
                let high = (self.backoff.as_millis() as u64 * 3).max(base + 1);
                let pick = base + self.random() % (high - base);
                Duration::from_millis(pick).min(cap)
            }
        };
        self.backoff = wait;
        self.state = State::Waiting(now + wait);
        Some(wait)
    }

    /// A lazy bridge disconnected for want of traffic.
    pub fn idle(&mut self) {
        self.state = State::Idle;
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(extra: &str) -> Bridge {
        let text = format!(
            "connection b\naddress 127.0.0.1:1 127.0.0.1:2\ntopic #\nkeepalive_interval 10\n{extra}"
        );
        crate::config::parse(&text, "t").unwrap().bridges.remove(0)
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn connects_at_start_pings_and_drops_a_silent_remote() {
        let b = bridge("");
        let t0 = Instant::now();
        let mut link = Link::new(&b, t0);
        assert_eq!(link.poll(&b, 0, t0), Some(Step::Connect(0)));
        assert_eq!(link.poll(&b, 0, t0 + 9 * S), None);
        assert_eq!(
            link.poll(&b, 0, t0 + 10 * S),
            Some(Step::Drop("no CONNACK in time"))
        );
        link.failed(&b, t0 + 10 * S).unwrap();
        let retry = link.next_deadline(&b).unwrap();
        assert!(
            retry >= t0 + 15 * S && retry <= t0 + 40 * S,
            "jitter within base..cap"
        );
        assert_eq!(
            link.poll(&b, 0, retry),
            Some(Step::Connect(1)),
            "the next address"
        );
        let t1 = retry;
        link.up(&b, t1);
        assert_eq!(
            link.poll(&b, 0, t1 + 5 * S),
            Some(Step::Probe),
            "is the first back?"
        );
        assert_eq!(link.poll(&b, 0, t1 + 10 * S), Some(Step::Ping));
        link.heard(t1 + 11 * S);
        assert_eq!(link.poll(&b, 0, t1 + 20 * S), Some(Step::Ping));
        assert_eq!(
            link.poll(&b, 0, t1 + 27 * S),
            Some(Step::Drop("remote silent past 1.5 x keep-alive"))
        );
        link.failed(&b, t1 + 27 * S);
        let retry = link.next_deadline(&b).unwrap();
        assert_eq!(
            link.poll(&b, 0, retry),
            Some(Step::Connect(0)),
            "back to the first"
        );
    }

    #[test]
    fn on_another_address_the_main_one_is_probed_unless_round_robin() {
        let b = bridge("restart_timeout 2\n");
        let now = Instant::now();
        let mut link = Link::new(&b, now);
        link.poll(&b, 0, now);
        link.failed(&b, now);
        assert_eq!(link.poll(&b, 0, now + 2 * S), Some(Step::Connect(1)));
        link.up(&b, now + 2 * S);
        assert_eq!(link.next_deadline(&b), Some(now + 4 * S));
        assert_eq!(link.poll(&b, 0, now + 4 * S), Some(Step::Probe));
        link.back_to_main(now + 5 * S);
        assert!(!link.is_active(), "closing it is no failure");
        assert_eq!(link.poll(&b, 0, now + 5 * S), Some(Step::Connect(0)));
        link.up(&b, now + 5 * S);
        assert_eq!(link.poll(&b, 0, now + 7 * S), None, "on the main one");

        let b = bridge("restart_timeout 2\nround_robin true\n");
        let mut link = Link::new(&b, now);
        link.poll(&b, 0, now);
        link.failed(&b, now);
        link.poll(&b, 0, now + 2 * S);
        link.up(&b, now + 2 * S);
        assert_eq!(link.poll(&b, 0, now + 4 * S), None);
    }

    #[test]
    fn backoff_grows_within_the_cap_and_a_constant_stays() {
        let b = bridge("restart_timeout 1 8\n");
        let now = Instant::now();
        let mut link = Link::new(&b, now);
        let waits: Vec<Duration> = (0..50).map(|_| link.failed(&b, now).unwrap()).collect();
        assert!(waits.iter().all(|w| *w >= S && *w <= 8 * S), "{waits:?}");
        assert!(waits.iter().any(|w| *w > 3 * S), "it grows: {waits:?}");
        let b = bridge("restart_timeout 3\n");
        let mut link = Link::new(&b, now);
        assert!((0..5).all(|_| link.failed(&b, now) == Some(3 * S)));
    }

    #[test]
    fn lazy_waits_for_the_threshold_and_leaves_when_idle() {
        let b = bridge("start_type lazy\nthreshold 3\nidle_timeout 4\n");
        let now = Instant::now();
        let mut link = Link::new(&b, now);
        assert_eq!(link.poll(&b, 2, now), None);
        assert_eq!(link.next_deadline(&b), None);
        assert_eq!(link.poll(&b, 3, now), Some(Step::Connect(0)));
        link.up(&b, now);
        link.active(now + 2 * S);
        link.heard(now + 5 * S);
        assert_eq!(link.poll(&b, 0, now + 5 * S), None);
        assert_eq!(link.poll(&b, 0, now + 6 * S), Some(Step::Disconnect));
        link.idle();
        assert_eq!(link.poll(&b, 0, now + 7 * S), None);
    }

    /// rumqttd and AWS IoT Core close the connection on the private bit.
    #[test]
    fn a_remote_closing_on_the_private_bit_is_tried_at_once_without_it() {
        let b = bridge("");
        let now = Instant::now();
        let mut link = Link::new(&b, now);
        assert_eq!(link.poll(&b, 0, now), Some(Step::Connect(0)));
        assert!(link.private());
        assert!(link.closed_unanswered(now));
        assert!(!link.private());
        assert_eq!(
            link.poll(&b, 0, now),
            Some(Step::Connect(0)),
            "now, same address"
        );
        assert!(link.up(&b, now), "learnt: say so");
        link.failed(&b, now + S).unwrap();
        let retry = link.next_deadline(&b).unwrap();
        assert_eq!(link.poll(&b, 0, retry), Some(Step::Connect(0)));
        assert!(!link.private(), "remembered for the link");
        assert!(!link.closed_unanswered(retry), "a failure like any other");
        assert!(!link.up(&b, retry), "said once");
    }

    /// Closed without the bit too: the bit was not the trouble.
    #[test]
    fn a_remote_closing_on_every_connect_keeps_the_private_bit_and_backs_off() {
        let b = bridge("");
        let now = Instant::now();
        let mut link = Link::new(&b, now);
        link.poll(&b, 0, now);
        assert!(link.closed_unanswered(now));
        link.poll(&b, 0, now);
        assert!(!link.closed_unanswered(now));
        assert!(link.failed(&b, now).unwrap() >= 5 * S, "the back-off");
        assert!(link.private());
        // Refused with CONNACK 0x01: off for good, nothing to learn.
        link.poll(&b, 0, now + 40 * S);
        assert!(link.private_refused());
        link.failed(&b, now + 40 * S);
        assert!(!link.private() && !link.private_refused());
        let b = bridge("try_private false\n");
        let mut link = Link::new(&b, now);
        link.poll(&b, 0, now);
        assert!(!link.closed_unanswered(now));
    }

    #[test]
    fn once_does_not_come_back() {
        let b = bridge("start_type once\n");
        let now = Instant::now();
        let mut link = Link::new(&b, now);
        assert_eq!(link.poll(&b, 0, now), Some(Step::Connect(0)));
        assert_eq!(link.failed(&b, now), None);
        assert_eq!(link.poll(&b, 100, now + 100 * S), None);
    }
}
