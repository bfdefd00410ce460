//! Binance's request-weight pacing, shared by every REST caller (the producer's gap
//! backfill, the report's reconcile): Binance allows 6,000 weight per minute and IP,
//! and a caller that goes over gets 429 and then a 418 ban. Each process spends at most
//! its own share, so several callers on one host stay under the limit together.

use std::time::Duration;

use tokio::time::Instant;

/// Spends request weight at no more than `per_minute`, in a bucket of one minute: a
/// full minute's weight may be spent at once, then calls wait for it to refill.
pub struct WeightBudget {
    per_minute: f64,
    tokens: f64,
    at: Instant,
}

impl WeightBudget {
    /// A full bucket of `per_minute` weight (at least 1). A caller whose calls weigh
    /// more than that should pass at least one call's weight.
    pub fn new(per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute.max(1));
        WeightBudget {
            per_minute,
            tokens: per_minute,
            at: Instant::now(),
        }
    }

    /// How long to wait before `weight` may be spent (and spends it).
    pub fn take(&mut self, weight: u32) -> Duration {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_minute / 60.0;
        self.tokens = (self.tokens + refill).min(self.per_minute);
        self.at = now;
        self.tokens -= f64::from(weight);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens * 60.0 / self.per_minute)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weight_budget_paces_requests() {
        let mut b = WeightBudget::new(100); // 4 requests of 25 per minute
        for _ in 0..4 {
            assert_eq!(b.take(25), Duration::ZERO);
        }
        let wait = b.take(25);
        assert!(
            wait > Duration::from_secs(14) && wait <= Duration::from_secs(15),
            "{wait:?}"
        );
    }
}
