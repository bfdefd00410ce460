//! Which minutes a reconcile checks: the **settled** ones. A minute is settled when it
//! is closed and the pipeline has had `--settle` to deliver its trades: its last
//! millisecond (Binance's close time, open + 59 999 ms) is before `now − settle`. The
//! window is every minute from the one holding `--since` whose close time is also
//! before `--until`:
//!
//! `start_of_minute(since) ≤ open` and `open + 60 000 ≤ min(until, now − settle)`.
//!
//! Pure: `now` is passed in. The flags' forms (a duration ago, RFC 3339, Unix ms) are
//! `crate::when`'s, as for `candles`.

use std::time::Duration;

use tradeflow_shared::kline::MINUTE_MS;

use crate::when::utc;

/// The settled minutes to check, by open time (Unix ms, both ends included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub first_ms: u64,
    pub last_ms: u64,
}

impl Window {
    /// The settled minutes of `since..until` at `now_ms`, or `Err` naming why there is
    /// none (a run that checks nothing must not pass for a match).
    pub fn settled(
        since_ms: u64,
        until_ms: u64,
        settle: Duration,
        now_ms: u64,
    ) -> Result<Window, String> {
        let first_ms = since_ms - since_ms % MINUTE_MS;
        let settled_before = now_ms.saturating_sub(settle.as_millis() as u64);
        let end = until_ms.min(settled_before);
        let last_ms = end
            .checked_sub(MINUTE_MS)
            .map(|l| l - l % MINUTE_MS)
            .filter(|l| *l >= first_ms);
        match last_ms {
            Some(last_ms) => Ok(Window { first_ms, last_ms }),
            None => Err(format!(
                "no settled minute between {} and {} (a minute is checked once it closed before --until and before now − --settle, {})",
                utc(since_ms),
                utc(until_ms),
                utc(settled_before),
            )),
        }
    }

    pub fn minutes(&self) -> u64 {
        (self.last_ms - self.first_ms) / MINUTE_MS + 1
    }

    /// The window cut into pages of at most `per_page` minutes, in order.
    pub fn pages(&self, per_page: u64) -> Vec<Window> {
        let step = per_page.max(1) * MINUTE_MS;
        (self.first_ms..=self.last_ms)
            .step_by(step as usize)
            .map(|first_ms| Window {
                first_ms,
                last_ms: (first_ms + step - MINUTE_MS).min(self.last_ms),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_717_002_000_000 + 30_500; // 17:00:30.5 on 2024-05-29

    #[test]
    fn a_minute_is_settled_once_closed_and_settle_older() {
        let m = |n: u64| 1_717_002_000_000 + n * MINUTE_MS;
        // now − 2m = 16:58:30.5: the minute 16:57 closed at 16:57:59.999 is the last.
        let w = Window::settled(
            m(0) - 3_600_000 + 1,
            u64::MAX,
            Duration::from_secs(120),
            NOW,
        )
        .unwrap();
        assert_eq!(w.first_ms, m(0) - 3_600_000);
        assert_eq!(w.last_ms, m(0) - 3 * MINUTE_MS);
        assert_eq!(w.minutes(), 58);
        // --until is exclusive: the minute that closes at it is in, the next is not.
        let w = Window::settled(m(0) - 600_000, m(0) - 60_000, Duration::ZERO, NOW).unwrap();
        assert_eq!(w.last_ms, m(0) - 120_000);
        // With no settle time the minute that closed just now is in; the open one is not.
        let w = Window::settled(m(0) - 60_000, u64::MAX, Duration::ZERO, NOW).unwrap();
        assert_eq!((w.first_ms, w.last_ms), (m(0) - 60_000, m(0) - 60_000));
        let e = Window::settled(m(0), u64::MAX, Duration::ZERO, NOW).unwrap_err();
        assert!(e.contains("no settled minute"), "{e}");
        assert!(Window::settled(m(0), m(0) - 1, Duration::ZERO, NOW).is_err());
        assert!(Window::settled(0, 1, Duration::ZERO, 0).is_err());
        let e = Window::settled(m(0), u64::MAX, Duration::ZERO, NOW).unwrap_err();
        assert!(e.contains("and 18446744073709551615 ms"), "{e}");
    }

    #[test]
    fn pages_cover_the_window_in_order() {
        let w = Window {
            first_ms: 0,
            last_ms: 2_500 * MINUTE_MS,
        };
        let p = w.pages(1000);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].minutes() + p[1].minutes() + p[2].minutes(), 2_501);
        assert_eq!(p[1].first_ms, 1000 * MINUTE_MS);
        assert_eq!(p[2].last_ms, w.last_ms);
    }
}
