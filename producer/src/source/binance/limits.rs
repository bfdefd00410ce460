//! Pure pacing decisions for the websocket client: reconnect backoff with full jitter,
//! the connection-attempt window (Binance: 300 per 5 minutes per IP), the spacing of
//! outgoing control messages (Binance: 5 per second, pongs included), and how streams
//! are spread over connections.

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// Reconnect backoff: the house's one retry policy (`tradeflow_shared::retry`): the n-th
/// delay is uniform in `[c/2, c]` with `c = min(max, min_delay × 2^n)`, so many clients
/// don't reconnect in lockstep; each counts in `tradeflow_retries_total{op="producer.ws_connect"}`
/// (the callers log each reconnect, at most one per delay).
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The ceiling of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let delay = tradeflow_shared::retry::delay(self.attempt, self.min, self.max, rng.random());
        self.attempt = self.attempt.saturating_add(1);
        metrics::counter!("tradeflow_retries_total", "op" => "producer.ws_connect").increment(1);
        delay
    }

    /// After a connection proved healthy.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// At most `max` connection attempts in any `window`.
#[derive(Debug)]
pub struct AttemptWindow {
    max: usize,
    window: Duration,
    times: VecDeque<Instant>,
}

impl AttemptWindow {
    pub fn new(max: usize, window: Duration) -> Self {
        AttemptWindow {
            max: max.max(1),
            window,
            times: VecDeque::new(),
        }
    }

    /// Records an attempt at `now` if allowed; otherwise returns when the next one is.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Instant> {
        while self
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            self.times.pop_front();
        }
        if self.times.len() < self.max {
            self.times.push_back(now);
            Ok(())
        } else {
            Err(self.times[0] + self.window)
        }
    }
}

/// Minimum spacing between control messages sent on one connection: four per second
/// leaves room under Binance's five for the pong answering a server ping.
pub const CONTROL_SPACING: Duration = Duration::from_millis(250);

/// Streams put in the connection URL; the rest are added with SUBSCRIBE messages
/// (long URLs are refused by some proxies).
pub const URL_STREAMS: usize = 100;
/// Streams per SUBSCRIBE message.
pub const SUBSCRIBE_CHUNK: usize = 100;

/// Spreads streams over connections of at most `per_connection` streams each.
pub fn plan_connections(streams: &[String], per_connection: usize) -> Vec<Vec<String>> {
    streams
        .chunks(per_connection.max(1))
        .map(<[String]>::to_vec)
        .collect()
}

/// The combined-stream URL of a connection and the SUBSCRIBE messages that complete
/// its subscriptions (ids start at `first_id`).
pub fn connection_requests(base: &str, streams: &[String], first_id: u64) -> (String, Vec<String>) {
    let (in_url, rest) = streams.split_at(streams.len().min(URL_STREAMS));
    let url = format!(
        "{}/stream?streams={}",
        base.trim_end_matches('/'),
        in_url.join("/")
    );
    let messages = rest
        .chunks(SUBSCRIBE_CHUNK)
        .zip(first_id..)
        .map(|(chunk, id)| {
            let params = serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into());
            format!(r#"{{"method":"SUBSCRIBE","params":{params},"id":{id}}}"#)
        })
        .collect();
    (url, messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_below_it() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut rng = StdRng::seed_from_u64(1);
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            let c = b.ceiling();
            ceilings.push(c.as_millis());
            let d = b.next_delay(&mut rng);
            assert!(d <= c && d >= c / 2, "{d:?} outside [{:?}, {c:?}]", c / 2);
        }
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
        for _ in 0..100 {
            b.next_delay(&mut rng); // no overflow after many attempts
        }
        assert_eq!(b.ceiling(), Duration::from_secs(2));
    }

    #[test]
    fn attempt_window_limits_and_frees() {
        let t0 = Instant::now();
        let mut w = AttemptWindow::new(3, Duration::from_secs(300));
        for i in 0..3 {
            assert!(w.try_acquire(t0 + Duration::from_secs(i)).is_ok());
        }
        assert_eq!(
            w.try_acquire(t0 + Duration::from_secs(10)),
            Err(t0 + Duration::from_secs(300))
        );
        assert!(w.try_acquire(t0 + Duration::from_secs(300)).is_ok());
        assert!(w.try_acquire(t0 + Duration::from_secs(300)).is_err());
    }

    #[test]
    fn streams_are_spread_and_subscribed_in_chunks() {
        let streams: Vec<String> = (0..2500).map(|i| format!("s{i}@trade")).collect();
        let plan = plan_connections(&streams, 1024);
        assert_eq!(
            plan.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1024, 1024, 452]
        );
        let (url, msgs) = connection_requests("ws://h:1/", &plan[0], 1);
        assert!(url.starts_with("ws://h:1/stream?streams=s0@trade/s1@trade/"));
        assert_eq!(url.matches("@trade").count(), URL_STREAMS);
        assert_eq!(msgs.len(), 10);
        assert!(msgs[0].starts_with(r#"{"method":"SUBSCRIBE","params":["s100@trade","#));
        assert!(msgs[9].ends_with(r#"],"id":10}"#));
        let (_, none) = connection_requests("ws://h", &plan[0][..14], 1);
        assert!(none.is_empty());
    }
}
