//! Pure pacing decisions for the websocket client: the reconnect retry policy, the
//! connection-attempt window (Binance: 300 per 5 minutes per IP), the spacing of
//! outgoing control messages (Binance: 5 per second, pongs included), and how streams
//! are spread over connections.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use tradeflow_shared::retry::{Policy, Retry};

/// The `op` of reconnects in `tradeflow_retries_total` and in the retry log lines.
const RECONNECT_OP: &str = "producer.ws_connect";

/// Reconnect backoff: the house's one retry policy (`tradeflow_shared::retry`), retried
/// forever — a group without a connection loses trades. The n-th delay is uniform in
/// `[c/2, c]` with `c = min(max, min × 2^n)`, so many clients don't reconnect in
/// lockstep (a `max` below `min` is taken as `min`).
pub fn reconnect_policy(min: Duration, max: Duration) -> Policy {
    Policy::forever(min, max.max(min))
}

/// One group's reconnect state: every retry counts in
/// `tradeflow_retries_total{op="producer.ws_connect"}` and is logged at most once per
/// `retry::LOG_EVERY` (the rest at debug); the first trade on a new connection resets it.
pub fn reconnect_retry(min: Duration, max: Duration) -> Retry {
    Retry::new(RECONNECT_OP, reconnect_policy(min, max))
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
    use tradeflow_shared::retry::Next;

    #[test]
    fn reconnect_backoff_grows_to_the_cap_with_jitter_below_it() {
        let ms = Duration::from_millis;
        let p = reconnect_policy(ms(100), Duration::from_secs(2));
        let ceilings: Vec<u128> = (0..8).map(|n| p.delay(n, 1.0).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(p.delay(0, 0.0), ms(50));
        // A cap below the first delay is the first delay.
        assert_eq!(reconnect_policy(ms(100), ms(10)).delay(3, 1.0), ms(100));

        let mut r = reconnect_retry(ms(100), Duration::from_secs(2));
        for c in &ceilings {
            let Next::RetryIn(d) = r.failed("group 0", &"lost") else {
                panic!("reconnects never give up")
            };
            let c = ms(*c as u64);
            assert!(d <= c && d >= c / 2, "{d:?} outside [{:?}, {c:?}]", c / 2);
        }
        r.succeeded("group 0");
        assert_eq!(r.attempts(), 0);
        for _ in 0..100 {
            // No overflow, no give-up after many attempts.
            let Next::RetryIn(d) = r.failed("group 0", &"lost") else {
                panic!("reconnects never give up")
            };
            assert!(d <= Duration::from_secs(2));
        }
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
