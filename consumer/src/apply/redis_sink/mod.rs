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

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{ErrorKind, RedisError, Script, ServerErrorKind, Value};
use tradeflow_shared::{Position, SequenceNumber, Symbol};

mod cluster;
mod foreign;
mod shard_end;
mod stream_marker;
pub use shard_end::ShardEndCheck;

use super::fold::{self, BatchDelta, PoisonEntry, Segment};
use tradeflow_shared::redact::{redact_url, scrub_text, url_password};
use tradeflow_shared::redis_conn::RedisConn;
use tradeflow_shared::redis_keys::{self as keys, KeyError, Keys, Layout};

/// Gap ranges kept per symbol before the lowest are evicted (a trade arriving later for
/// an evicted range is counted `late_dropped`, not applied).
pub const MAX_GAPS_PER_SYMBOL: usize = 1000;
/// Rounds of "split needed" before giving up; each round turns more symbols into one
/// trade per segment, which can never need splitting, so two rounds suffice unless
/// another worker keeps changing the same symbols in between.
const MAX_SPLIT_ROUNDS: usize = 6;

/// One Redis: the whole batch in one script.
const BATCH_LUA: &str = concat!(
    include_str!("../lua/batch_prologue.lua"),
    include_str!("../lua/pos_cmp.lua"),
    include_str!("../lua/common.lua"),
    include_str!("../lua/batch.lua"),
);
/// Redis Cluster: one symbol's part of a batch, in that symbol's slot.
const SYMBOL_LUA: &str = concat!(
    include_str!("../lua/symbol_prologue.lua"),
    include_str!("../lua/pos_cmp.lua"),
    include_str!("../lua/common.lua"),
    include_str!("../lua/symbol.lua"),
);
/// Redis Cluster: the shard's position, dead letters and symbols index (slot `{meta}`).
const POSITION_LUA: &str = concat!(
    include_str!("../lua/pos_cmp.lua"),
    include_str!("../lua/position.lua"),
);

/// How to reach Redis and shape what is written.
#[derive(Clone)]
pub struct SinkConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://` for TLS.
    pub url: String,
    /// Prefix of every key except the legacy `symbol:<SYM>` counts.
    pub key_prefix: String,
    /// How long a per-minute bucket lives after its last write.
    pub minute_ttl: Duration,
    /// Approximate cap of the dead-letter stream (`XADD MAXLEN ~`).
    pub dead_letter_maxlen: usize,
    /// PEM file of the CA that signed the server's certificate, for `rediss://` with a
    /// private CA (public CAs are trusted without it).
    pub ca_file: Option<std::path::PathBuf>,
    /// Cluster only: replicas of each primary that must hold a batch's writes before
    /// the shard's position moves past it (`WAIT`); 0 turns the wait off.
    pub wait_replicas: usize,
    /// Cluster only: how long one `WAIT` may take before the batch is retried.
    pub wait_timeout: Duration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: keys::DEFAULT_PREFIX.into(),
            minute_ttl: Duration::from_secs(48 * 3600),
            dead_letter_maxlen: 100_000,
            ca_file: None,
            wait_replicas: 1,
            wait_timeout: Duration::from_secs(2),
        }
    }
}

impl std::fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("minute_ttl", &self.minute_ttl)
            .field("dead_letter_maxlen", &self.dead_letter_maxlen)
            .field("ca_file", &self.ca_file)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .finish()
    }
}

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

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("invalid Redis sink configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Connection lost or refused, timeout, server loading or busy: try again later.
    #[error("Redis at {url} unavailable ({kind}): {message}")]
    Unavailable {
        url: String,
        kind: &'static str,
        message: String,
    },
    /// The server refused the work (script error, authentication, permissions).
    #[error("Redis at {url} failed ({kind}): {message}")]
    Fatal {
        url: String,
        kind: &'static str,
        message: String,
    },
    #[error("unexpected reply from Redis: {0}")]
    Protocol(String),
    /// Redis holds less than this applier already applied to the shard (it lost its
    /// last writes: a restart under `appendfsync everysec`, a failover). Nothing was
    /// written; the shard must be re-read after `stored`.
    #[error("Redis is behind what was applied to this shard (lost writes); it holds {stored:?}")]
    Behind { stored: Option<Position> },
}

impl SinkError {
    /// True when the same call may succeed later (the worker backs off and retries;
    /// retrying an apply is always safe: it is idempotent).
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Unavailable { .. })
    }

    /// Bounded label for `tradeflow_consumer_redis_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkError::Config(_) => "config",
            SinkError::Key(_) => "key",
            SinkError::Unavailable { kind, .. } | SinkError::Fatal { kind, .. } => kind,
            SinkError::Protocol(_) => "protocol",
            SinkError::Behind { .. } => "behind",
        }
    }
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
    minute_ttl_s: u64,
    dead_letter_maxlen: usize,
    max_gaps: usize,
}

impl RedisSink {
    /// Validates the configuration, connects and loads the apply script.
    pub async fn connect(cfg: &SinkConfig) -> Result<Self, SinkError> {
        let keys = Keys::new(&cfg.key_prefix)?;
        let url: Arc<str> = redact_url(&cfg.url).into();
        let password = url_password(&cfg.url).map(Arc::from);
        if cfg.minute_ttl.as_secs() == 0 {
            return Err(SinkError::Config("minute TTL must be at least 1 s".into()));
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
        let scripts = Scripts {
            batch: Script::new(BATCH_LUA),
            symbol: Script::new(SYMBOL_LUA),
            position: Script::new(POSITION_LUA),
        };
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
            minute_ttl_s: cfg.minute_ttl.as_secs(),
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
        match self.keys.layout() {
            Layout::Single => self.apply_single(stream, shard_id, expected, batch).await,
            Layout::Cluster => self.apply_cluster(stream, shard_id, expected, batch).await,
        }
    }

    async fn apply_single(
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
        let mut singles: Vec<Symbol> = Vec::new();
        // Symbols whose keys hold foreign values: sent as poison, not as trades.
        let mut foreign_syms: Vec<Symbol> = Vec::new();
        let mut kept_aside: Vec<PoisonEntry> = Vec::new();
        let mut outcome = ApplyOutcome::default();
        for _ in 0..MAX_SPLIT_ROUNDS {
            let mut inv = self.scripts.batch.prepare_invoke();
            inv.arg(self.keys.prefix())
                .arg(&pos_key)
                .arg(first.seq.as_str())
                .arg(first.sub)
                .arg(last.seq.as_str())
                .arg(last.sub)
                .arg(self.minute_ttl_s)
                .arg(self.dead_letter_maxlen)
                .arg(stream)
                .arg(shard_id)
                .arg(self.max_gaps)
                .arg(expected.map(|p| p.seq.as_str()).unwrap_or(""))
                .arg(expected.map(|p| p.sub).unwrap_or(0));
            push_poison(&mut inv, &batch.poison, &kept_aside);
            inv.arg(batch.symbols.len() - foreign_syms.len());
            for s in batch
                .symbols
                .iter()
                .filter(|s| !foreign_syms.contains(&s.symbol))
            {
                inv.arg(s.symbol.as_str());
                if singles.contains(&s.symbol) {
                    let segs = fold::single_segments(&s.trades);
                    push_segments(&mut inv, &segs);
                } else {
                    push_segments(&mut inv, &s.segments);
                }
            }
            let mut con = self.con.clone();
            let started = Instant::now();
            let reply: Result<Vec<Value>, RedisError> = inv.invoke_async(&mut con).await;
            metrics::counter!("tradeflow_consumer_redis_round_trips_total").increment(1);
            outcome.round_trips += 1;
            let reply = reply.map_err(|e| classify(&self.url, self.password.as_deref(), &e))?;
            metrics::histogram!("tradeflow_consumer_redis_batch_seconds")
                .record(started.elapsed().as_secs_f64());
            let (status, nums, split) = parse_reply(&reply)?;
            match status {
                0 => {
                    outcome.trades_applied = nums[0];
                    outcome.duplicates = nums[1] + batch.in_batch_duplicates;
                    outcome.poison = nums[2];
                    outcome.late_dropped = nums[3];
                    outcome.foreign_trades = kept_aside.len() as u64;
                    return Ok((outcome, kept_aside));
                }
                1 => {
                    outcome.batch_skipped = true;
                    return Ok((outcome, Vec::new()));
                }
                3 => return Err(behind(&split)),
                4 => {
                    if split.is_empty() {
                        return Err(SinkError::Protocol("foreign reply without symbols".into()));
                    }
                    for pair in split.chunks(2) {
                        let [name, reason] = pair else {
                            return Err(SinkError::Protocol(format!("foreign reply {split:?}")));
                        };
                        let sym = batch
                            .symbols
                            .iter()
                            .find(|s| {
                                s.symbol.as_str() == name.as_str()
                                    && !foreign_syms.contains(&s.symbol)
                            })
                            .ok_or_else(|| {
                                SinkError::Protocol(format!("foreign symbol {name:?}"))
                            })?;
                        foreign::warn(stream, shard_id, &sym.symbol, reason, sym.trades.len());
                        foreign_syms.push(sym.symbol);
                        kept_aside.extend(foreign::kept_aside(sym, reason, last));
                    }
                }
                _ => {
                    let mut grew = false;
                    for name in split {
                        let sym = Symbol::new(&name)
                            .map_err(|_| SinkError::Protocol(format!("split symbol {name:?}")))?;
                        if !singles.contains(&sym) {
                            singles.push(sym);
                            grew = true;
                        }
                    }
                    if !grew {
                        return Err(SinkError::Protocol(
                            "script asked to split one-trade segments".into(),
                        ));
                    }
                    tracing::debug!(
                        stream,
                        shard_id,
                        symbols = singles.len(),
                        "segments overlap applied ids; re-sending one trade per segment"
                    );
                }
            }
        }
        Err(SinkError::Unavailable {
            url: self.url.to_string(),
            kind: "contention",
            message: "segments kept overlapping concurrent writes; retry the batch".into(),
        })
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

/// The scripts, loaded at connect (the batch script on one Redis, the other two on a
/// cluster).
struct Scripts {
    batch: Script,
    symbol: Script,
    position: Script,
}

/// The "behind" reply's stored position (`''` when Redis holds none).
fn behind(rest: &[String]) -> SinkError {
    let stored = match rest {
        [seq, _] if seq.is_empty() => None,
        [seq, sub] => match (SequenceNumber::parse(seq), sub.parse()) {
            (Ok(seq), Ok(sub)) => Some(Position::new(seq, sub)),
            _ => return SinkError::Protocol(format!("stored position {seq:?} {sub:?}")),
        },
        _ => return SinkError::Protocol(format!("behind reply {rest:?}")),
    };
    SinkError::Behind { stored }
}

/// The poison records (the batch's, then trades kept aside), as both apply scripts take
/// them: count P, then P × {seq, sub, kind, reason, data}.
fn push_poison(inv: &mut redis::ScriptInvocation<'_>, batch: &[PoisonEntry], more: &[PoisonEntry]) {
    inv.arg(batch.len() + more.len());
    for p in batch.iter().chain(more) {
        inv.arg(p.pos.seq.as_str())
            .arg(p.pos.sub)
            .arg(p.kind)
            .arg(&p.reason)
            .arg(&p.data[..]);
    }
}

fn push_segments(inv: &mut redis::ScriptInvocation<'_>, segs: &[Segment]) {
    inv.arg(segs.len());
    for g in segs {
        inv.arg(g.first_id)
            .arg(g.last_id)
            .arg(g.count)
            .arg(g.base_units.to_string())
            .arg(g.quote_units.to_string())
            .arg(g.last_price.to_string())
            .arg(g.last_time_ms)
            .arg(g.minutes.len());
        for m in &g.minutes {
            inv.arg(m.minute)
                .arg(m.count)
                .arg(m.base_units.to_string())
                .arg(m.quote_units.to_string());
        }
    }
}

type Reply = (i64, [u64; 4], Vec<String>);

fn parse_reply(reply: &[Value]) -> Result<Reply, SinkError> {
    let bad = || SinkError::Protocol(format!("apply script replied {reply:?}"));
    if reply.len() < 5 {
        return Err(bad());
    }
    let int = |v: &Value| match v {
        Value::Int(n) if *n >= 0 => Ok(*n),
        _ => Err(bad()),
    };
    let status = int(&reply[0])?;
    let mut nums = [0u64; 4];
    for (i, n) in nums.iter_mut().enumerate() {
        *n = int(&reply[i + 1])? as u64;
    }
    let mut split = Vec::new();
    for v in &reply[5..] {
        match v {
            Value::BulkString(b) => split.push(String::from_utf8_lossy(b).into_owned()),
            _ => return Err(bad()),
        }
    }
    if status > 4 {
        return Err(bad());
    }
    Ok((status, nums, split))
}

/// Turns a Redis error into a retryable or fatal [`SinkError`], password scrubbed.
pub(crate) fn classify(url: &str, password: Option<&str>, e: &RedisError) -> SinkError {
    let message = scrub_text(&e.to_string(), password);
    let url = url.to_string();
    let kind = e.kind();
    let code = e.code().unwrap_or("");
    // The cluster client reports a refused password while connecting as an I/O error
    // ("Failed to create initial connections … AuthenticationFailed"): never retryable.
    let auth_refused = message.contains("AuthenticationFailed") || code == "WRONGPASS";
    let retry_kind: Option<&'static str> = if auth_refused {
        None
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
    {
        Some("io")
    } else {
        match kind {
            ErrorKind::Server(ServerErrorKind::BusyLoading) => Some("loading"),
            // A cluster's redirections that outlasted the client's own retries (nodes
            // disagree for a moment during a failover or a migration).
            ErrorKind::Server(ServerErrorKind::Moved) | ErrorKind::Server(ServerErrorKind::Ask) => {
                Some("redirect")
            }
            ErrorKind::Server(ServerErrorKind::TryAgain)
            | ErrorKind::Server(ServerErrorKind::MasterDown)
            | ErrorKind::Server(ServerErrorKind::ClusterDown)
            | ErrorKind::Server(ServerErrorKind::ReadOnly) => Some("unavailable"),
            _ if code == "BUSY" || code == "OOM" || code == "MISCONF" => Some("busy"),
            // A key of the whole batch holds a foreign value (the scripts checked before
            // writing anything): not retryable by itself, it needs a human.
            _ => None,
        }
    };
    match retry_kind {
        Some(kind) => SinkError::Unavailable { url, kind, message },
        None => {
            let kind = match kind {
                _ if auth_refused => "auth",
                _ if code == "FOREIGN" => foreign::KIND,
                ErrorKind::AuthenticationFailed => "auth",
                ErrorKind::Server(ServerErrorKind::NoPerm) => "auth",
                ErrorKind::Server(ServerErrorKind::NoScript) => "noscript",
                ErrorKind::Server(_) => "server",
                _ => "client",
            };
            SinkError::Fatal { url, kind, message }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_parsing() {
        let r = vec![
            Value::Int(2),
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
            Value::BulkString(b"BTCUSDT".to_vec()),
        ];
        let (s, _, split) = parse_reply(&r).unwrap();
        assert_eq!((s, split), (2, vec!["BTCUSDT".to_string()]));
        assert!(parse_reply(&[Value::Nil]).is_err());
    }
}
