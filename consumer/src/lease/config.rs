//! Lease timings and limits.

use std::time::Duration;

use super::model::InitialPosition;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The lease table: named by the application name, as the KCL does.
    pub table_name: String,
    /// Unique per running process (a restart with the same id waits for its own
    /// leases to expire, as another worker would).
    pub worker_id: String,
    /// A lease whose counter has not moved for this long is expired. KCL default 10 s.
    pub failover_time: Duration,
    /// How often held leases are renewed: failover/3 leaves two retries before expiry.
    pub renew_interval: Duration,
    /// How often the table is scanned to take or steal leases while it is settled (one
    /// consistent Scan each). Expiry is seen only by scans: a crashed worker's leases
    /// are taken about failover + up to this after its last renewal (a scan that finds
    /// a counter standing still switches to `unsettled_take_interval`), released ones
    /// within this. The consumer passes `Config::take_interval()`: failover/2 (5 s at
    /// the default failover). `new`/`with_failover` default to the failover time (the
    /// KCL uses 2×), which only tests that build a `LeaseConfig` themselves see.
    pub take_interval: Duration,
    /// The scan pace while leases move: after a pass that took or stole, and while an
    /// owned lease's counter stands still (see `decisions::table_settled`). Never
    /// slower than `take_interval`. The consumer passes failover/10, within
    /// 1 s..failover/2.
    pub unsettled_take_interval: Duration,
    pub max_leases_per_worker: Option<usize>,
    /// Where shards without a checkpoint start (only when the table is bootstrapped;
    /// shards appearing later are reshard children and start at TRIM_HORIZON).
    pub initial_position: InitialPosition,
    /// How often ListShards runs to find new shards (also on demand after a shard end).
    pub shard_sync_interval: Duration,
}

impl LeaseConfig {
    /// Defaults: failover 10 s, renew 10/3 s, take every 10 s (the consumer: every 5 s,
    /// 1 s while leases move; see `take_interval`), shard sync every 60 s, start at TRIM_HORIZON (nothing
    /// is skipped; the KCL's default is LATEST).
    pub fn new(table_name: impl Into<String>, worker_id: impl Into<String>) -> Self {
        Self::with_failover(table_name, worker_id, Duration::from_secs(10))
    }

    /// Defaults scaled to another failover time (tests use 1–2 s).
    pub fn with_failover(
        table_name: impl Into<String>,
        worker_id: impl Into<String>,
        failover: Duration,
    ) -> Self {
        LeaseConfig {
            table_name: table_name.into(),
            worker_id: worker_id.into(),
            failover_time: failover,
            renew_interval: failover / 3,
            take_interval: failover,
            unsettled_take_interval: failover,
            max_leases_per_worker: None,
            initial_position: InitialPosition::TrimHorizon,
            shard_sync_interval: Duration::from_secs(60),
        }
    }

    /// How long until the next take pass: the settled pace, or the quicker one while
    /// leases move.
    pub fn next_take_pass(&self, settled: bool) -> Duration {
        if settled {
            self.take_interval
        } else {
            self.unsettled_take_interval.min(self.take_interval)
        }
    }

    /// Checked before any I/O.
    pub fn validate(&self) -> Result<(), String> {
        if self.table_name.len() < 3 || self.table_name.len() > 255 {
            return Err(format!(
                "lease table name must be 3–255 characters: {:?}",
                self.table_name
            ));
        }
        if self.worker_id.is_empty() {
            return Err("worker id must not be empty".into());
        }
        if self.failover_time.is_zero()
            || self.renew_interval.is_zero()
            || self.take_interval.is_zero()
            || self.unsettled_take_interval.is_zero()
            || self.shard_sync_interval.is_zero()
        {
            return Err("lease timings must be positive".into());
        }
        if self.renew_interval * 2 > self.failover_time {
            return Err(format!(
                "renew interval {:?} must be at most half the failover time {:?}",
                self.renew_interval, self.failover_time
            ));
        }
        if self.max_leases_per_worker == Some(0) {
            return Err("max leases per worker must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_ones_are_refused() {
        assert!(LeaseConfig::new("tradeflow", "w1").validate().is_ok());
        let mut c = LeaseConfig::new("tradeflow", "w1");
        c.renew_interval = c.failover_time;
        assert!(c.validate().is_err());
        assert!(LeaseConfig::new("tf", "w1").validate().is_err());
    }

    #[test]
    fn the_unsettled_pace_is_never_slower_than_the_settled_one() {
        let mut c = LeaseConfig::new("tradeflow", "w1");
        c.take_interval = Duration::from_secs(5);
        c.unsettled_take_interval = Duration::from_secs(1);
        assert_eq!(c.next_take_pass(true), Duration::from_secs(5));
        assert_eq!(c.next_take_pass(false), Duration::from_secs(1));
        c.take_interval = Duration::from_millis(300);
        assert_eq!(c.next_take_pass(false), Duration::from_millis(300));
    }
}
