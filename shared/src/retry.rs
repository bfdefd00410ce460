//! One retry policy for the house. Every loop that retries a failing call says how
//! long it may wait (bounded exponential backoff with jitter, so a fleet never retries
//! in lockstep) and when it gives up: after a number of attempts, after a deadline, or
//! never — and a loop that never gives up is observable while it waits:
//! `tradeflow_retries_total{op}` counts every retry, `tradeflow_retry_gave_up_total{op}`
//! every give-up, and a warning names the operation, the attempts and the time spent,
//! at most once per `LOG_EVERY` per loop (the first failure always).
//!
//! A small module rather than a crate (`backon`, `tokio-retry`): the loops here are
//! `select!`s that also watch a lease, a shutdown or an abort token and classify each
//! error themselves; what they need from a policy is only "how long now, or stop",
//! plus the metric and the rate-limited log, which no crate gives.

use std::fmt::Display;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Warnings about a loop still failing are logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// Help texts of the retry metrics (call once the recorder is installed).
pub fn describe() {
    metrics::describe_counter!(
        "tradeflow_retries_total",
        "Failed calls retried, by retrying loop (op)."
    );
    metrics::describe_counter!(
        "tradeflow_retry_gave_up_total",
        "Retrying loops that gave up, by op."
    );
}

/// When a retrying loop stops retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Never: giving up would lose data. Observable through the metric and the log.
    Never,
    /// After this many failed attempts (the first call included).
    Attempts(u32),
    /// Once this long has passed since the first failure.
    After(Duration),
}

/// How a loop waits between attempts: the n-th wait is drawn uniformly from
/// `[ceiling/2, ceiling]` with `ceiling = min(max, base·2ⁿ)` ("equal jitter": never
/// zero, never in lockstep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub base: Duration,
    pub max: Duration,
    pub give_up: GiveUp,
}

impl Policy {
    pub const fn new(base: Duration, max: Duration, give_up: GiveUp) -> Self {
        Policy { base, max, give_up }
    }

    /// Retry for as long as it takes (observable), waits between `base` and `max`.
    pub const fn forever(base: Duration, max: Duration) -> Self {
        Policy::new(base, max, GiveUp::Never)
    }

    /// The wait before retry number `attempt` (0 for the first retry), for a uniform
    /// draw `jitter` in [0, 1).
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        delay(attempt, self.base, self.max, jitter)
    }
}

/// Exponential backoff with jitter: between half and all of `base·2^attempt`, capped
/// at `max`. `jitter` is a uniform draw in [0, 1).
pub fn delay(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(20));
    let capped = exp.min(max);
    capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Whether waiting `wait` from now ends before `deadline`. Never adds `wait` to an
/// instant: a server's `Retry-After` may be absurd, and `Instant + huge` panics.
pub fn fits_before(wait: Duration, deadline: Instant) -> bool {
    wait < deadline.saturating_duration_since(Instant::now())
}

/// What a retrying loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again.
    RetryIn(Duration),
    /// The policy gives up: report the error.
    GiveUp,
}

/// The state of one retrying loop: attempts, when it started failing, when it last
/// said so. `op` names the operation in metrics and logs (a fixed, bounded set:
/// "producer.list_shards", "consumer.redis_apply", …).
#[derive(Debug)]
pub struct Retry {
    op: &'static str,
    policy: Policy,
    attempt: u32,
    failing_since: Option<Instant>,
    last_warned: Option<Instant>,
    suppressed: u32,
}

impl Retry {
    pub fn new(op: &'static str, policy: Policy) -> Self {
        Retry {
            op,
            policy,
            attempt: 0,
            failing_since: None,
            last_warned: None,
            suppressed: 0,
        }
    }

    pub fn op(&self) -> &'static str {
        self.op
    }

    /// Failed attempts since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// How long the loop has been failing (zero when it is not).
    pub fn failing_for(&self) -> Duration {
        self.failing_since.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// A call failed with `error`: counts it, logs it (rate-limited) and says whether
    /// and when to try again. `context` names what the loop works on (a shard, a
    /// symbol), or is empty.
    pub fn failed(&mut self, context: &str, error: &dyn Display) -> Next {
        let now = Instant::now();
        let since = *self.failing_since.get_or_insert(now);
        self.attempt = self.attempt.saturating_add(1);
        let give_up = match self.policy.give_up {
            GiveUp::Never => false,
            GiveUp::Attempts(n) => self.attempt >= n,
            GiveUp::After(limit) => now.duration_since(since) >= limit,
        };
        if give_up {
            metrics::counter!("tradeflow_retry_gave_up_total", "op" => self.op).increment(1);
            tracing::warn!(
                op = self.op,
                context,
                attempts = self.attempt,
                failing_for_ms = now.duration_since(since).as_millis() as u64,
                error = %error,
                "giving up after retries"
            );
            return Next::GiveUp;
        }
        let wait = self.policy.delay(self.attempt - 1, rand::random::<f64>());
        metrics::counter!("tradeflow_retries_total", "op" => self.op).increment(1);
        let due = self
            .last_warned
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
        if due {
            tracing::warn!(
                op = self.op,
                context,
                attempts = self.attempt,
                failing_for_ms = now.duration_since(since).as_millis() as u64,
                retries_not_logged = self.suppressed,
                wait_ms = wait.as_millis() as u64,
                error = %error,
                "call failed; retrying"
            );
            self.last_warned = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
            tracing::debug!(op = self.op, context, attempts = self.attempt, error = %error, "call failed; retrying");
        }
        Next::RetryIn(wait)
    }

    /// A call succeeded: the next failure starts from the first delay again. A loop
    /// that had been failing says it recovered.
    pub fn succeeded(&mut self, context: &str) {
        if let Some(since) = self.failing_since.take() {
            if self.attempt > 0 {
                tracing::info!(
                    op = self.op,
                    context,
                    attempts = self.attempt,
                    failing_for_ms = since.elapsed().as_millis() as u64,
                    "recovered"
                );
            }
        }
        self.attempt = 0;
        self.last_warned = None;
        self.suppressed = 0;
    }

    /// `failed`, then the wait (cut short by `cancel`). Returns false when the loop
    /// must stop: the policy gave up or `cancel` fired.
    pub async fn wait_after(
        &mut self,
        context: &str,
        error: &(dyn Display + Sync),
        cancel: &CancellationToken,
    ) -> bool {
        match self.failed(context, error) {
            Next::GiveUp => false,
            Next::RetryIn(wait) => tokio::select! {
                _ = tokio::time::sleep(wait) => true,
                _ = cancel.cancelled() => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_grow_to_the_cap_and_keep_half_of_it_at_least() {
        let p = Policy::forever(100 * MS, 2000 * MS);
        assert_eq!(p.delay(0, 0.0), 50 * MS);
        assert_eq!(p.delay(0, 0.999_999).as_millis(), 99);
        assert_eq!(p.delay(3, 1.0), 800 * MS);
        assert_eq!(p.delay(10, 0.0), 1000 * MS);
        assert_eq!(p.delay(10, 1.0), 2000 * MS);
        // Huge attempt numbers neither overflow nor exceed the cap.
        assert_eq!(p.delay(u32::MAX, 1.0), 2000 * MS);
        assert_eq!(delay(5, Duration::MAX, 2000 * MS, 1.0), 2000 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_attempts_or_time_and_never_when_told() {
        let mut r = Retry::new(
            "test.attempts",
            Policy::new(MS, 10 * MS, GiveUp::Attempts(3)),
        );
        assert!(matches!(r.failed("", &"e"), Next::RetryIn(_)));
        assert!(matches!(r.failed("", &"e"), Next::RetryIn(_)));
        assert_eq!(r.failed("", &"e"), Next::GiveUp);

        let mut r = Retry::new(
            "test.after",
            Policy::new(MS, 10 * MS, GiveUp::After(Duration::from_secs(5))),
        );
        assert!(matches!(r.failed("", &"e"), Next::RetryIn(_)));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(matches!(r.failed("", &"e"), Next::RetryIn(_)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(r.failed("", &"e"), Next::GiveUp);

        let mut r = Retry::new("test.never", Policy::forever(MS, 10 * MS));
        for _ in 0..10_000 {
            assert!(matches!(r.failed("", &"e"), Next::RetryIn(w) if w <= 10 * MS));
        }
        assert_eq!(r.attempts(), 10_000);
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_backoff_and_the_clock() {
        let mut r = Retry::new(
            "test.reset",
            Policy::new(
                MS,
                Duration::from_secs(60),
                GiveUp::After(Duration::from_secs(5)),
            ),
        );
        for _ in 0..8 {
            r.failed("", &"e");
        }
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(r.failing_for() >= Duration::from_secs(4));
        r.succeeded("");
        assert_eq!(r.attempts(), 0);
        assert_eq!(r.failing_for(), Duration::ZERO);
        // The first delay again, and a fresh deadline.
        assert!(matches!(r.failed("", &"e"), Next::RetryIn(w) if w <= MS));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(matches!(r.failed("", &"e"), Next::RetryIn(_)));
    }

    #[test]
    fn a_wait_past_the_deadline_never_overflows() {
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(fits_before(Duration::from_secs(1), deadline));
        assert!(!fits_before(Duration::from_secs(5), deadline));
        assert!(!fits_before(Duration::from_secs(u64::MAX), deadline));
        assert!(!fits_before(Duration::MAX, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_early_on_cancel() {
        let mut r = Retry::new(
            "test.cancel",
            Policy::forever(Duration::from_secs(60), Duration::from_secs(60)),
        );
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(!r.wait_after("", &"e", &cancel).await);
        let live = CancellationToken::new();
        assert!(r.wait_after("", &"e", &live).await);
    }
}
