//! How long a pass has gone without progress. The overall limits are generous (a slow
//! emulator is not a failure), so a pass whose counts stop moving — an emulator that
//! stopped answering was seen holding a run for an hour — is failed after
//! [`STALL_LIMIT`] instead, saying where it stood. Pure.

use std::time::{Duration, Instant};

/// No new trade written or counted for this long fails the pass.
pub const STALL_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    value: f64,
    since: Instant,
}

impl Progress {
    pub fn new(now: Instant) -> Self {
        Progress {
            value: f64::NEG_INFINITY,
            since: now,
        }
    }

    /// Records the counter's value now; how long it has stood still.
    pub fn observe(&mut self, value: f64, now: Instant) -> Duration {
        if value > self.value {
            self.value = value;
            self.since = now;
        }
        now.saturating_duration_since(self.since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stands_still_until_the_counter_grows() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0);
        assert_eq!(p.observe(0.0, t0), Duration::ZERO);
        let s = Duration::from_secs;
        assert_eq!(p.observe(0.0, t0 + s(50)), s(50));
        assert_eq!(p.observe(5.0, t0 + s(60)), Duration::ZERO);
        assert_eq!(p.observe(5.0, t0 + s(200)), s(140));
        // A lower reading (a counter that restarted) is not progress.
        assert_eq!(p.observe(1.0, t0 + s(210)), s(150));
    }
}
