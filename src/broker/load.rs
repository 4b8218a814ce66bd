//! `$SYS/broker/load/...`: exponential moving averages of the broker's
//! counters over 1, 5 and 15 minutes, computed as mosquitto computes them
//! so that a dashboard reads the same numbers from either broker.
//!
//! At each `$SYS` update, `dt` seconds after the last, a counter that grew
//! by `n` has run at `rate = n * 60 / dt` events per minute, and each
//! average moves towards it: `rate + exp(-dt / window) * (average - rate)`.
//! A value is "events per minute, averaged over the window"; a burst of
//! `n` events raises the 1-minute average by about `n` at the next update.

use std::time::Instant;

/// The counters averaged, named as in their topics, in mosquitto's order.
pub(super) const SOURCES: [&str; 9] = [
    "messages/received",
    "messages/sent",
    "publish/dropped",
    "publish/received",
    "publish/sent",
    "bytes/received",
    "bytes/sent",
    "sockets",
    "connections",
];

/// The windows, in seconds, with the last level of their topics.
const WINDOWS: [(f64, &str); 3] = [(60.0, "1min"), (300.0, "5min"), (900.0, "15min")];

type Table<T> = [[T; WINDOWS.len()]; SOURCES.len()];

#[derive(Default)]
pub(super) struct Loads {
    /// The last update, and the counters then.
    last: Option<(Instant, [u64; SOURCES.len()])>,
    averages: Table<f64>,
    /// What was published, in hundredths: a topic is published again when
    /// its two-decimal text changes.
    published: Table<Option<u64>>,
}

impl Loads {
    /// Moves every average on to `now`, where the counters (in the order of
    /// [`SOURCES`]) stand at `counts`. Returns the topics whose value
    /// changed, each with its value as mosquitto prints it (`"%.2f"`); the
    /// first time, every topic at 0.00, as mosquitto starts them.
    pub(super) fn update(
        &mut self,
        now: Instant,
        counts: [u64; SOURCES.len()],
    ) -> Vec<(String, String)> {
        if let Some((then, before)) = self.last {
            let dt = now.duration_since(then).as_secs_f64();
            if dt <= 0.0 {
                // Nothing to average over: the events count at the next.
                return Vec::new();
            }
            for ((averages, count), before) in self.averages.iter_mut().zip(counts).zip(before) {
                let rate = count.wrapping_sub(before) as f64 * 60.0 / dt;
                for (average, (window, _)) in averages.iter_mut().zip(WINDOWS) {
                    *average = rate + (-dt / window).exp() * (*average - rate);
                }
            }
        }
        self.last = Some((now, counts));
        let mut changed = Vec::new();
        for (s, source) in SOURCES.iter().enumerate() {
            for (w, (_, window)) in WINDOWS.iter().enumerate() {
                // Never negative: every counter only grows.
                let hundredths = (self.averages[s][w] * 100.0).round() as u64;
                if self.published[s][w] != Some(hundredths) {
                    self.published[s][w] = Some(hundredths);
                    let topic = format!("$SYS/broker/load/{source}/{window}");
                    let value = format!("{}.{:02}", hundredths / 100, hundredths % 100);
                    changed.push((topic, value));
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn value(changed: &[(String, String)], topic: &str) -> Option<String> {
        changed
            .iter()
            .find(|(t, _)| t == topic)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn starts_at_zero_then_follows_mosquittos_formula() {
        let start = Instant::now();
        let mut loads = Loads::default();
        let first = loads.update(start, [5; 9]);
        assert_eq!(first.len(), 27);
        assert!(first.iter().all(|(_, v)| v == "0.00"), "{first:?}");
        assert_eq!(first[0].0, "$SYS/broker/load/messages/received/1min");
        assert_eq!(first[26].0, "$SYS/broker/load/connections/15min");

        // mosquitto 2.0.11, sys_interval 1, one client connecting in the
        // first two seconds (its updates are 2 s apart): sockets and
        // connections 0.98 / 0.20 / 0.07 per minute.
        let mut counts = [5; 9];
        counts[7] += 1;
        counts[8] += 1;
        let next = loads.update(start + Duration::from_secs(2), counts);
        for (topic, expected) in [
            ("sockets/1min", "0.98"),
            ("sockets/5min", "0.20"),
            ("sockets/15min", "0.07"),
            ("connections/1min", "0.98"),
        ] {
            let topic = format!("$SYS/broker/load/{topic}");
            assert_eq!(value(&next, &topic).as_deref(), Some(expected), "{topic}");
        }
        assert_eq!(next.len(), 6, "the others are still 0.00: {next:?}");

        // Nothing more happens: the averages decay, and are published
        // while their printed value changes.
        let later = loads.update(start + Duration::from_secs(3), counts);
        let one = (1.0 - (-2.0f64 / 60.0).exp()) * 30.0 * (-1.0f64 / 60.0).exp();
        assert_eq!(
            value(&later, "$SYS/broker/load/sockets/1min"),
            Some(format!("{one:.2}"))
        );
        assert_eq!(value(&later, "$SYS/broker/load/sockets/15min"), None);
    }

    #[test]
    fn a_steady_rate_is_reached() {
        let start = Instant::now();
        let mut loads = Loads::default();
        loads.update(start, [0; 9]);
        // 10 PUBLISH packets a second for an hour: 600 a minute. From 0,
        // an average is at rate * (1 - exp(-t / window)).
        for second in 1..=3600 {
            let now = start + Duration::from_secs(second);
            loads.update(now, [0, 0, 0, second * 10, 0, 0, 0, 0, 0]);
        }
        let [one, five, fifteen] = loads.averages[3];
        assert!((one - 600.0).abs() < 0.005, "{one}");
        assert!((five - 600.0).abs() < 0.005, "{five}");
        assert!((fifteen - 600.0 * (1.0 - (-4.0f64).exp())).abs() < 0.005);
    }

    #[test]
    fn events_of_an_instant_without_time_count_at_the_next_update() {
        let start = Instant::now();
        let mut loads = Loads::default();
        loads.update(start, [0; 9]);
        assert!(loads.update(start, [1; 9]).is_empty());
        let next = loads.update(start + Duration::from_secs(1), [1; 9]);
        // 60 * (1 - exp(-1/60)) = 0.9917
        assert_eq!(
            value(&next, "$SYS/broker/load/messages/received/1min").as_deref(),
            Some("0.99")
        );
    }
}
