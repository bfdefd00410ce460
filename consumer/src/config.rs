//! The consumer's command line: one struct, flags with environment fallbacks,
//! validated before any I/O.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use tradeflow_shared::aws::AwsArgs;
use tradeflow_shared::redis_args::RedisArgs;
use tradeflow_shared::telemetry::TelemetryArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitialPositionArg {
    TrimHorizon,
    Latest,
    AtTimestamp,
}

/// Reads every shard of a Kinesis stream under DynamoDB leases shared with the other
/// workers of the same application, and keeps exact per-symbol totals in Redis.
#[derive(Debug, Clone, Parser)]
#[command(name = "tradeflow-consumer", version)]
pub struct Config {
    /// Kinesis stream to read.
    #[arg(long, env = "TRADEFLOW_STREAM", default_value = "crypto")]
    pub stream: String,

    /// Application name: the DynamoDB lease table's name (the KCL's `applicationName`;
    /// point it at an existing KCL table to adopt its checkpoints).
    #[arg(long, env = "TRADEFLOW_APPLICATION", default_value = "tradeflow")]
    pub application_name: String,

    /// This worker's id in the lease table. Default: hostname, pid and a random suffix.
    #[arg(long, env = "TRADEFLOW_WORKER_ID")]
    pub worker_id: Option<String>,

    #[command(flatten)]
    pub redis: RedisArgs,

    /// Redis Cluster: replicas of each primary that must hold a batch's writes (WAIT)
    /// before the shard's position moves past it, so a failover loses none of them.
    /// 0 turns the wait off (then a failover can lose the last writes: see the README).
    #[arg(long, env = "TRADEFLOW_REDIS_WAIT_REPLICAS", default_value_t = 1)]
    pub redis_wait_replicas: usize,

    /// Redis Cluster: how long one WAIT for the replicas may take before the batch is
    /// retried.
    #[arg(long, env = "TRADEFLOW_REDIS_WAIT_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub redis_wait_timeout: Duration,

    /// Prefix of every Redis key except the legacy `symbol:<SYMBOL>` counts.
    #[arg(long, env = "TRADEFLOW_KEY_PREFIX", default_value = "tradeflow:")]
    pub key_prefix: String,

    /// How long per-minute kline buckets are kept in Redis after their last trade
    /// (about 0.3 MB per symbol-day of minutes; see the README's memory figures).
    #[arg(long, env = "TRADEFLOW_MINUTE_TTL", default_value = "2d", value_parser = humantime::parse_duration)]
    pub minute_ttl: Duration,

    /// How long hourly kline buckets are kept (24 a symbol-day).
    #[arg(long, env = "TRADEFLOW_HOUR_TTL", default_value = "90d", value_parser = humantime::parse_duration)]
    pub hour_ttl: Duration,

    /// How long daily kline buckets are kept (1 a symbol-day).
    #[arg(long, env = "TRADEFLOW_DAY_TTL", default_value = "1825d", value_parser = humantime::parse_duration)]
    pub day_ttl: Duration,

    /// How often closed hours are rolled up from minute buckets into hour and day
    /// buckets (every worker does it; idempotent).
    #[arg(long, env = "TRADEFLOW_ROLL_UP_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub roll_up_interval: Duration,

    /// Most entries kept in the Redis dead-letter stream of poison records.
    #[arg(long, env = "TRADEFLOW_DEAD_LETTER_MAXLEN", default_value_t = 100_000)]
    pub dead_letter_maxlen: usize,

    /// Where to start shards that have no checkpoint yet.
    #[arg(
        long,
        env = "TRADEFLOW_INITIAL_POSITION",
        value_enum,
        default_value = "trim-horizon"
    )]
    pub initial_position: InitialPositionArg,

    /// The stream was deleted and created again under the same name (the worker stops
    /// and says so otherwise): forget the shard positions Redis and the lease table hold
    /// for the old stream and read the new one from its start (TRIM_HORIZON) — trades
    /// counted before are recognised by their ids and not counted twice. Stop every
    /// consumer of the stream first; only the first start needs the flag.
    #[arg(long, env = "TRADEFLOW_RESET_RECREATED_STREAM")]
    pub reset_recreated_stream: bool,

    /// With `--initial-position at-timestamp`: RFC 3339 time, e.g. 2026-11-23T10:00:00Z.
    #[arg(long, env = "TRADEFLOW_INITIAL_TIMESTAMP", value_parser = humantime::parse_rfc3339_weak)]
    pub initial_timestamp: Option<std::time::SystemTime>,

    /// A lease not renewed for this long (by this worker's clock) is expired.
    #[arg(long, env = "TRADEFLOW_FAILOVER_TIME", default_value = "10s", value_parser = humantime::parse_duration)]
    pub failover_time: Duration,

    /// How often this worker scans the lease table to take leases while the table is
    /// settled. Default: failover/2 (5 s at the default failover). While leases move (a
    /// take or steal in the last pass, or an owned lease whose counter stands still
    /// for failover/2) it scans every failover/10 (at least 1 s, at most this). Expiry
    /// is seen only by scans, so this bounds how late a crashed worker's leases are
    /// taken (≈ failover + up to this) and how late released ones are (≈ this); each
    /// scan is one consistent DynamoDB Scan of the lease table.
    #[arg(long, env = "TRADEFLOW_TAKE_INTERVAL", value_parser = humantime::parse_duration)]
    pub take_interval: Option<Duration>,

    /// Most leases this worker holds (default: no cap beyond the fair share).
    #[arg(long, env = "TRADEFLOW_MAX_LEASES")]
    pub max_leases_per_worker: Option<usize>,

    /// How often the shard list is re-read (new shards get leases).
    #[arg(long, env = "TRADEFLOW_SHARD_SYNC_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub shard_sync_interval: Duration,

    /// Least time between DynamoDB checkpoints of one shard. Redis holds the exact
    /// position, so a checkpoint that lags costs nothing but a short re-read.
    #[arg(long, env = "TRADEFLOW_CHECKPOINT_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub checkpoint_interval: Duration,

    /// Records asked for per GetRecords call (at most 10,000).
    #[arg(long, env = "TRADEFLOW_MAX_RECORDS", default_value_t = 10_000)]
    pub max_records: i32,

    /// KiB a GetRecords page should hold: each call's record limit follows the shard's
    /// recent record size to stay near it (2 MiB at 5 calls/s reads 10 MB/s a shard;
    /// Kinesis serves 2 MB/s).
    #[arg(long, env = "TRADEFLOW_PAGE_TARGET_KIB", default_value_t = 2048)]
    pub page_target_kib: usize,

    /// MiB of pages (received, decoded, not yet applied) held at once over all the
    /// worker's shards; a reader waits for room before its next call. Bounds memory
    /// when many shards are read at full speed (after an outage, say).
    #[arg(long, env = "TRADEFLOW_READ_BUDGET_MIB", default_value_t = 32)]
    pub read_budget_mib: usize,

    /// Wait after a GetRecords call that found nothing. A shard that stays quiet is
    /// polled every quarter of its quiet time, up to --idle-max-wait (so the first
    /// record after a silence is read at most a quarter of the silence late); back to
    /// this after a call with records.
    #[arg(long, env = "TRADEFLOW_IDLE_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub idle_interval: Duration,

    /// Longest wait between GetRecords calls on a quiet shard (reached after ~25 s of
    /// silence at the defaults; an idle shard then costs 0.2 calls a second). Set it
    /// to --idle-interval for a constant poll.
    #[arg(long, env = "TRADEFLOW_IDLE_MAX_WAIT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub idle_max_wait: Duration,

    /// After a shard first reports its end, wait this long and read once more before
    /// believing it (0 trusts the first answer). Children start that much later after
    /// a reshard. Kinesis should not need it; ferrokinesis was seen storing writes that
    /// were in flight at the close into the closed shard seconds later (1 s was not
    /// enough under load, 5 s was).
    #[arg(long, env = "TRADEFLOW_SHARD_END_SETTLE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shard_end_settle: Duration,

    /// Read with enhanced fan-out (SubscribeToShard) as stream consumer NAME instead
    /// of polling; `--fan-out` alone uses the application name. The consumer is
    /// registered if missing. Needs HTTPS to Kinesis (an emulator's TLS port with
    /// `--kinesis-ca-file`).
    #[arg(long, env = "TRADEFLOW_FAN_OUT", value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    pub fan_out: Option<String>,

    /// Renew each fan-out subscription after this long (the service ends them at 5
    /// minutes; shorter only for tests).
    #[arg(long, env = "TRADEFLOW_FAN_OUT_RESUBSCRIBE_AFTER", default_value = "5m", value_parser = humantime::parse_duration)]
    pub fan_out_resubscribe_after: Duration,

    /// PEM file of extra CA certificates trusted for the Kinesis endpoint, besides the
    /// system roots (a private CA, or an emulator's TLS port). Read at start.
    #[arg(long, env = "TRADEFLOW_KINESIS_CA_FILE", value_parser = tradeflow_shared::aws::read_pem_file)]
    pub kinesis_ca_file: Option<tradeflow_shared::aws::PemFile>,

    #[command(flatten)]
    pub aws: AwsArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

impl Config {
    /// Checks that need no I/O. Called before anything connects.
    pub fn validate(&self) -> Result<(), String> {
        if self.application_name.len() < 3 || self.application_name.len() > 255 {
            return Err(
                "--application-name must be 3 to 255 characters (a DynamoDB table name)".into(),
            );
        }
        if !self
            .application_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err("--application-name may use only A-Z a-z 0-9 _ - .".into());
        }
        if self.stream.is_empty() {
            return Err("--stream is empty".into());
        }
        if !(1..=10_000).contains(&self.max_records) {
            return Err("--max-records must be 1 to 10000".into());
        }
        if !(16..=10 * 1024).contains(&self.page_target_kib) {
            return Err(
                "--page-target-kib must be 16 to 10240 (GetRecords answers at most 10 MB)".into(),
            );
        }
        if !(1..=64 * 1024).contains(&self.read_budget_mib) {
            return Err("--read-budget-mib must be 1 to 65536".into());
        }
        if self.failover_time < Duration::from_millis(300) {
            return Err("--failover-time must be at least 300ms".into());
        }
        if self.initial_position == InitialPositionArg::AtTimestamp
            && self.initial_timestamp.is_none()
        {
            return Err("--initial-position at-timestamp needs --initial-timestamp".into());
        }
        self.redis.validate()?;
        if self.roll_up_interval.is_zero() {
            return Err("--roll-up-interval must be positive".into());
        }
        if self.redis_wait_replicas > 0 && self.redis_wait_timeout.is_zero() {
            return Err("--redis-wait-timeout must be positive".into());
        }
        if let Some(name) = self.fan_out_consumer() {
            // The service's rule for consumer names.
            if name.is_empty()
                || name.len() > 128
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                return Err(
                    "--fan-out NAME must be 1 to 128 characters of A-Z a-z 0-9 _ - .".into(),
                );
            }
        }
        if self.fan_out_resubscribe_after < Duration::from_secs(1) {
            return Err("--fan-out-resubscribe-after must be at least 1s".into());
        }
        Ok(())
    }

    /// The stream consumer name when reading with enhanced fan-out.
    pub fn fan_out_consumer(&self) -> Option<String> {
        self.fan_out.as_ref().map(|n| {
            if n.is_empty() {
                self.application_name.clone()
            } else {
                n.clone()
            }
        })
    }

    pub fn worker_id(&self) -> String {
        self.worker_id.clone().unwrap_or_else(default_worker_id)
    }

    /// The take pace while the lease table is settled.
    pub fn take_interval(&self) -> Duration {
        self.take_interval.unwrap_or(self.failover_time / 2)
    }

    /// The take pace while leases move: failover/10 within 1 s..failover/2, and never
    /// slower than `take_interval`.
    pub fn unsettled_take_interval(&self) -> Duration {
        (self.failover_time / 10)
            .max(Duration::from_secs(1))
            .min(self.failover_time / 2)
            .min(self.take_interval())
    }
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["tradeflow-consumer"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&[]);
        assert!(c.validate().is_ok());
        assert_eq!(c.take_interval(), Duration::from_secs(5));
        assert_eq!(c.unsettled_take_interval(), Duration::from_secs(1));
        let short = parse(&["--failover-time", "1s"]);
        assert_eq!(short.take_interval(), Duration::from_millis(500));
        assert_eq!(short.unsettled_take_interval(), Duration::from_millis(500));
        let fixed = parse(&["--take-interval", "300ms"]);
        assert_eq!(fixed.unsettled_take_interval(), Duration::from_millis(300));
        assert_eq!(c.failover_time, Duration::from_secs(10));
    }

    #[test]
    fn rejects_bad_values_before_io() {
        assert!(parse(&["--application-name", "ab"]).validate().is_err());
        assert!(parse(&["--redis-url", "http://x"]).validate().is_err());
        assert!(parse(&["--initial-position", "at-timestamp"])
            .validate()
            .is_err());
        assert!(parse(&["--max-records", "0"]).validate().is_err());
        assert!(parse(&["--page-target-kib", "8"]).validate().is_err());
        assert!(parse(&["--read-budget-mib", "0"]).validate().is_err());
        assert!(
            parse(&["--page-target-kib", "64", "--read-budget-mib", "1"])
                .validate()
                .is_ok()
        );
        assert!(parse(&[
            "--initial-position",
            "at-timestamp",
            "--initial-timestamp",
            "2026-11-23T10:00:00Z"
        ])
        .validate()
        .is_ok());
    }

    #[test]
    fn fan_out_names_default_to_the_application() {
        assert_eq!(parse(&[]).fan_out_consumer(), None);
        let c = parse(&["--application-name", "app1", "--fan-out"]);
        assert_eq!(c.fan_out_consumer().as_deref(), Some("app1"));
        assert!(c.validate().is_ok());
        let c = parse(&["--fan-out", "reader-2"]);
        assert_eq!(c.fan_out_consumer().as_deref(), Some("reader-2"));
        assert_eq!(c.fan_out_resubscribe_after, Duration::from_secs(300));
        assert!(parse(&["--fan-out", "a b"]).validate().is_err());
        assert!(parse(&["--fan-out-resubscribe-after", "10ms"])
            .validate()
            .is_err());
    }
}
