//! The Redis sink: applies a folded batch exactly once and reads back the position
//! Redis durably holds for a shard.
//!
//! On one Redis, a batch is one EVALSHA of the batch script (`lua/batch.lua`; loaded at
//! connect, re-loaded transparently after a restart answers NOSCRIPT). On a Redis
//! Cluster no script may span slots, so a batch is applied in three steps (see the
//! README, "Redis Cluster"): every symbol's part with the symbol script, all at once
//! (each atomic in its symbol's slot); then `WAIT` until a replica of every primary has
//! those writes; then the position script advances the shard's position and keeps the
//! poison records aside. The position therefore only ever covers writes a failover
//! cannot lose, and a retry of any step is harmless (each is idempotent).
//!
//! Errors never show the Redis password: URLs are redacted and server messages are
//! scrubbed of it before they are stored in a [`SinkError`].
//!
//! The rooms: `config` (what to reach), `error` (what can go wrong, classified once),
//! `scripts` (the Lua, assembled), `wire` (the scripts' arguments and replies),
//! `single` and `cluster` (the two apply paths), `foreign` (keys holding foreign
//! values), `shard_end` (the check before a SHARD_END checkpoint), `stream_marker`
//! (a stream's creation time).

use std::sync::Arc;
use std::time::Duration;

use redis::RedisError;
use tradeflow_shared::{Position, SequenceNumber};

mod cluster;
mod config;
mod error;
mod foreign;
mod scripts;
mod seal;
mod shard_end;
mod single;
mod stream_marker;
mod wire;
pub use config::SinkConfig;
use error::classify;
pub use error::SinkError;
pub use shard_end::ShardEndCheck;

use super::fold::{BatchDelta, PoisonEntry};
use scripts::Scripts;
pub use seal::SealOutcome;
use tradeflow_shared::redact::{redact_url, url_password};
use tradeflow_shared::redis_conn::RedisConn;
use tradeflow_shared::redis_keys::{self as keys, Keys, Layout};

/// Gap ranges kept per symbol before the lowest are evicted (a trade arriving later for
/// an evicted range is counted `late_dropped`, not applied).
pub const MAX_GAPS_PER_SYMBOL: usize = 1000;

/// What one `apply` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Trades that changed the totals now.
    pub trades_applied: u64,
    /// Trades already counted before (or twice in this batch), skipped.
    pub duplicates: u64,
    /// Poison records written to the dead-letter stream now.
    pub poison: u64,
    /// The whole batch was at or below the shard's stored position: nothing done.
    pub batch_skipped: bool,
    /// Trades for an id range whose gap had been evicted: not applied (see module docs).
    pub late_dropped: u64,
    /// Round trips used, one after the other (1 normally on one Redis, 3 on a cluster;
    /// more only on the split and foreign-value paths).
    pub round_trips: u32,
    /// Trades not applied because a key of their symbol held a foreign value: kept
    /// aside as poison records (kind `foreign_value`; see `foreign`).
    pub foreign_trades: u64,
}

/// One batch of a shard, not empty, its symbols checked: what both apply paths take.
#[derive(Clone, Copy)]
struct Job<'a> {
    stream: &'a str,
    shard_id: &'a str,
    /// What this applier already applied to the shard (see [`RedisSink::apply_after`]).
    expected: Option<&'a Position>,
    batch: &'a BatchDelta,
    /// The shard's position key.
    pos_key: &'a str,
    first: &'a Position,
    last: &'a Position,
}

/// A handle on Redis; cheap to clone (one multiplexed, self-reconnecting connection,
/// or one per cluster node).
#[derive(Clone)]
pub struct RedisSink {
    con: RedisConn,
    scripts: Arc<Scripts>,
    wait_replicas: usize,
    wait_timeout: Duration,
    keys: Keys,
    url: Arc<str>,
    password: Option<Arc<str>>,
    /// The TTLs (s) of minute, hour and day buckets as the scripts take them: `m:h:d`.
    bucket_ttls: String,
    dead_letter_maxlen: usize,
    max_gaps: usize,
}

impl RedisSink {
    /// Validates the configuration, connects and loads the apply script.
    pub async fn connect(cfg: &SinkConfig) -> Result<Self, SinkError> {
        let keys = Keys::new(&cfg.key_prefix)?;
        let url: Arc<str> = redact_url(&cfg.url).into();
        let password = url_password(&cfg.url).map(Arc::from);
        for (what, ttl) in [
            ("minute", cfg.minute_ttl),
            ("hour", cfg.hour_ttl),
            ("day", cfg.day_ttl),
        ] {
            if ttl.as_secs() == 0 {
                return Err(SinkError::Config(format!(
                    "{what} bucket TTL must be at least 1 s"
                )));
            }
        }
        if cfg.dead_letter_maxlen == 0 {
            return Err(SinkError::Config(
                "dead-letter max length must be positive".into(),
            ));
        }
        if cfg.wait_timeout.is_zero() && cfg.wait_replicas > 0 {
            // WAIT 0 would block forever.
            return Err(SinkError::Config(
                "replica wait timeout must be positive".into(),
            ));
        }
        let scrub = |e: RedisError| classify(&url, password.as_deref(), &e);
        let mut con = RedisConn::connect(&cfg.url, cfg.ca_file.as_deref()).await?;
        let keys = keys.with_layout(con.layout());
        let scripts = Scripts::new();
        // SCRIPT LOAD goes to every node of a cluster.
        match con.layout() {
            Layout::Single => scripts.batch.load_async(&mut con).await.map_err(scrub)?,
            Layout::Cluster => {
                scripts.symbol.load_async(&mut con).await.map_err(scrub)?;
                scripts.position.load_async(&mut con).await.map_err(scrub)?
            }
        };
        Ok(RedisSink {
            con,
            scripts: Arc::new(scripts),
            wait_replicas: cfg.wait_replicas,
            wait_timeout: cfg.wait_timeout,
            keys,
            url,
            password,
            bucket_ttls: format!(
                "{}:{}:{}",
                cfg.minute_ttl.as_secs(),
                cfg.hour_ttl.as_secs(),
                cfg.day_ttl.as_secs()
            ),
            dead_letter_maxlen: cfg.dead_letter_maxlen,
            max_gaps: MAX_GAPS_PER_SYMBOL,
        })
    }

    /// Changes the per-symbol gap bound (tests use a small one).
    pub fn with_max_gaps(mut self, max_gaps: usize) -> Self {
        self.max_gaps = max_gaps.max(1);
        self
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The redacted URL (safe to log).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A clone of the connection, for readers in the same process (the report).
    pub fn connection(&self) -> RedisConn {
        self.con.clone()
    }

    /// Applies one folded batch of `shard_id` exactly once: one round trip normally.
    /// An empty batch costs nothing.
    pub async fn apply(
        &self,
        stream: &str,
        shard_id: &str,
        batch: &BatchDelta,
    ) -> Result<ApplyOutcome, SinkError> {
        self.apply_after(stream, shard_id, None, batch).await
    }

    /// Like [`RedisSink::apply`], for an applier that already applied this shard up to
    /// `expected`: if Redis holds less (it lost writes), nothing is written and
    /// [`SinkError::Behind`] says where Redis stands, so the shard can be re-read.
    pub async fn apply_after(
        &self,
        stream: &str,
        shard_id: &str,
        expected: Option<&Position>,
        batch: &BatchDelta,
    ) -> Result<ApplyOutcome, SinkError> {
        let result = self.apply_inner(stream, shard_id, expected, batch).await;
        match &result {
            Ok((o, kept_aside)) => {
                metrics::counter!("tradeflow_consumer_trades_applied_total")
                    .increment(o.trades_applied);
                metrics::counter!("tradeflow_consumer_duplicates_skipped_total")
                    .increment(o.duplicates);
                if o.late_dropped > 0 {
                    tracing::warn!(
                        stream,
                        shard_id,
                        late = o.late_dropped,
                        "trades for evicted id gaps dropped (not applied)"
                    );
                    metrics::counter!("tradeflow_consumer_late_trades_dropped_total")
                        .increment(o.late_dropped);
                }
                if o.batch_skipped {
                    metrics::counter!("tradeflow_consumer_batches_skipped_total").increment(1);
                }
                // Written poison records are exactly the newest `o.poison` of the batch
                // (those after the stored position); the trades kept aside for foreign
                // values come last, at the batch's last position.
                let all = batch.poison.len() + kept_aside.len();
                let from = all - (o.poison as usize).min(all);
                for p in batch.poison.iter().chain(kept_aside).skip(from) {
                    tracing::warn!(stream, shard_id, position = %p.pos, kind = p.kind,
                        reason = %p.reason, "poison record dead-lettered");
                    metrics::counter!("tradeflow_consumer_poison_records_total", "kind" => p.kind)
                        .increment(1);
                }
            }
            Err(e) => {
                tracing::warn!(stream, shard_id, error = %e, "applying a batch to Redis failed");
                metrics::counter!("tradeflow_consumer_redis_errors_total", "kind" => e.kind())
                    .increment(1);
            }
        }
        result.map(|(o, _)| o)
    }

    /// The outcome and the poison records made of trades kept aside (foreign values).
    async fn apply_inner(
        &self,
        stream: &str,
        shard_id: &str,
        expected: Option<&Position>,
        batch: &BatchDelta,
    ) -> Result<(ApplyOutcome, Vec<PoisonEntry>), SinkError> {
        let pos_key = self.keys.position(stream, shard_id)?;
        let (Some(first), Some(last)) = (&batch.first, &batch.last) else {
            return Ok((ApplyOutcome::default(), Vec::new()));
        };
        for s in &batch.symbols {
            keys::check_symbol(&s.symbol)?;
        }
        let job = Job {
            stream,
            shard_id,
            expected,
            batch,
            pos_key: &pos_key,
            first,
            last,
        };
        match self.keys.layout() {
            Layout::Single => self.apply_single(&job).await,
            Layout::Cluster => self.apply_cluster(&job).await,
        }
    }

    fn count_round_trips(&self, outcome: &mut ApplyOutcome, n: u32) {
        metrics::counter!("tradeflow_consumer_redis_round_trips_total").increment(n as u64);
        outcome.round_trips += n;
    }

    fn classify(&self, e: &RedisError) -> SinkError {
        classify(&self.url, self.password.as_deref(), e)
    }

    /// The highest position applied for this shard, as Redis durably holds it (after
    /// Redis lost its last writes this is behind the DynamoDB checkpoint: resume here).
    pub async fn stored_position(
        &self,
        stream: &str,
        shard_id: &str,
    ) -> Result<Option<Position>, SinkError> {
        let key = self.keys.position(stream, shard_id)?;
        let mut con = self.con.clone();
        let (seq, sub): (Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("seq")
            .arg("sub")
            .query_async(&mut con)
            .await
            .map_err(|e| classify(&self.url, self.password.as_deref(), &e))?;
        match (seq, sub) {
            (Some(seq), Some(sub)) => {
                let seq = SequenceNumber::parse(&seq)
                    .map_err(|e| SinkError::Protocol(format!("{key}: {e}")))?;
                Ok(Some(Position::new(seq, sub)))
            }
            _ => Ok(None),
        }
    }
}
