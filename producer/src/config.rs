//! The producer's configuration: one clap struct, every flag with an environment
//! fallback, validated before any I/O.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tradeflow_shared::aws::AwsArgs;
use tradeflow_shared::telemetry::TelemetryArgs;

/// Kinesis PutRecords limits (per call and per record).
pub const MAX_RECORDS_PER_CALL: usize = 500;
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
pub const MAX_BYTES_PER_RECORD: usize = 1024 * 1024;
/// PUT payload units are billed per 25 KB.
pub const PAYLOAD_UNIT_BYTES: usize = 25 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceKind {
    /// Binance websocket trade streams.
    Binance,
    /// A capture file of newline-delimited trade events.
    Replay,
    /// A growing file of JSON lines (rotation and truncation handled).
    Tail,
    /// Generated trades at a given rate, deterministic from a seed.
    Synthetic,
}

/// Whether trade-id gaps of the Binance source are filled over REST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackfillMode {
    /// `GET /api/v3/historicalTrades` for the missing ids, written before the trades
    /// after the gap.
    HistoricalTrades,
    /// Gaps are only counted and logged.
    Off,
}

/// Binance's public REST host for market data (no API key needed).
pub const BINANCE_REST_URL: &str = "https://data-api.binance.vision";

/// What happens when the buffer between sources and Kinesis is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OverflowPolicy {
    /// Stop reading from the sources until Kinesis catches up (nothing dropped).
    Block,
    /// Drop the incoming trade, counted in `tradeflow_producer_dropped_total{reason="buffer_full"}`.
    DropNewest,
}

#[derive(Debug, Clone, Parser)]
#[command(name = "tradeflow-producer", version, about)]
pub struct Config {
    /// Kinesis data stream name.
    #[arg(long, env = "TRADEFLOW_STREAM", default_value = "crypto")]
    pub stream: String,

    /// Where trades come from.
    #[arg(long, env = "TRADEFLOW_SOURCE", value_enum, default_value = "binance")]
    pub source: SourceKind,

    /// Binance websocket base URL (combined streams are requested under it).
    #[arg(
        long,
        env = "TRADEFLOW_BINANCE_URL",
        // URLs may carry credentials (a proxy's): never echoed by --help.
        hide_env_values = true,
        default_value = "wss://stream.binance.com:9443"
    )]
    pub binance_url: String,

    /// Symbols to subscribe to (comma separated, any case).
    #[arg(long, env = "TRADEFLOW_SYMBOLS", value_delimiter = ',', default_values_t = tradeflow_shared::SEED_SYMBOLS.map(String::from))]
    pub symbols: Vec<String>,

    /// Read the symbols from this file instead (one per line, any case; blank lines and
    /// `#` comments skipped).
    #[arg(long, env = "TRADEFLOW_SYMBOLS_FILE", conflicts_with = "all_symbols")]
    pub symbols_file: Option<PathBuf>,

    /// Subscribe to every symbol Binance lists as TRADING (`exchangeInfo`, read once at
    /// start from the REST URL) instead of --symbols.
    #[arg(long, env = "TRADEFLOW_ALL_SYMBOLS")]
    pub all_symbols: bool,

    /// Binance REST base URL (--all-symbols, gap backfill). Default: Binance's public
    /// market-data host when --binance-url is Binance's, else the same host and port as
    /// --binance-url over http(s) (the local exchange serves both).
    #[arg(long, env = "TRADEFLOW_BINANCE_REST_URL", hide_env_values = true)]
    pub binance_rest_url: Option<String>,

    /// Fill trade-id gaps (trades missed while disconnected) over REST before writing
    /// the trades after them.
    #[arg(
        long,
        env = "TRADEFLOW_BACKFILL",
        value_enum,
        default_value = "historical-trades"
    )]
    pub backfill: BackfillMode,

    /// Gaps larger than this many trades are not backfilled (only counted).
    #[arg(long, env = "TRADEFLOW_BACKFILL_MAX_GAP", default_value_t = 10_000)]
    pub backfill_max_gap: u64,

    /// A gap not filled within this is given up; what was fetched is kept.
    #[arg(long, env = "TRADEFLOW_BACKFILL_DEADLINE", default_value = "30s", value_parser = parse_duration)]
    pub backfill_deadline: Duration,

    /// Binance request weight per minute the backfill may spend (historicalTrades
    /// weighs 25; Binance allows 6,000 per minute and IP).
    #[arg(
        long,
        env = "TRADEFLOW_BACKFILL_WEIGHT_PER_MINUTE",
        default_value_t = 3_000
    )]
    pub backfill_weight_per_minute: u32,

    /// A websocket connection with no message and no ping for this long is dead and
    /// is replaced.
    #[arg(long, env = "TRADEFLOW_WS_DEAD_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub ws_dead_timeout: Duration,

    /// Age at which a websocket connection is replaced (overlapping, no gap) before
    /// Binance's 24-hour cut.
    #[arg(long, env = "TRADEFLOW_WS_MAX_AGE", default_value = "23h 50m", value_parser = humantime::parse_duration)]
    pub ws_max_age: Duration,

    /// Capture file to replay (`--source replay`).
    #[arg(long, env = "TRADEFLOW_REPLAY_FILE")]
    pub replay_file: Option<PathBuf>,

    /// File to tail (`--source tail`).
    #[arg(
        long,
        env = "TRADEFLOW_TAIL_FILE",
        default_value = "/tmp/transactions.json"
    )]
    pub tail_file: PathBuf,
    /// Read the tailed file from its start instead of its end.
    #[arg(long, env = "TRADEFLOW_TAIL_FROM_START")]
    pub tail_from_start: bool,
    /// How often the tailed file is polled for growth, truncation and rotation.
    #[arg(long, env = "TRADEFLOW_TAIL_POLL", default_value = "200ms", value_parser = parse_duration)]
    pub tail_poll: Duration,

    /// Synthetic trades per second (all symbols together; 0 = as fast as possible).
    #[arg(long, env = "TRADEFLOW_SYNTHETIC_RATE", default_value_t = 1000)]
    pub synthetic_rate: u64,
    /// Total synthetic trades, then stop (default: unlimited).
    #[arg(long, env = "TRADEFLOW_SYNTHETIC_COUNT")]
    pub synthetic_count: Option<u64>,
    /// Seed of the synthetic generator.
    #[arg(long, env = "TRADEFLOW_SYNTHETIC_SEED", default_value_t = 42)]
    pub synthetic_seed: u64,

    /// Records per PutRecords call (≤ 500).
    #[arg(long, env = "TRADEFLOW_BATCH_RECORDS", default_value_t = MAX_RECORDS_PER_CALL)]
    pub batch_records: usize,
    /// Bytes per PutRecords call (≤ 5 MiB).
    #[arg(long, env = "TRADEFLOW_BATCH_BYTES", default_value_t = MAX_BYTES_PER_CALL)]
    pub batch_bytes: usize,
    /// How long a shard's first pending trade may wait for a fuller batch.
    #[arg(long, env = "TRADEFLOW_LINGER", default_value = "100ms", value_parser = parse_duration)]
    pub linger: Duration,
    /// PutRecords calls in flight at once (at most one per shard).
    #[arg(long, env = "TRADEFLOW_MAX_IN_FLIGHT", default_value_t = 8)]
    pub max_in_flight: usize,
    /// Trades accepted but not yet written before the overflow policy applies.
    #[arg(long, env = "TRADEFLOW_BUFFER_RECORDS", default_value_t = 100_000)]
    pub buffer_records: usize,
    /// What to do when the buffer is full.
    #[arg(long, env = "TRADEFLOW_OVERFLOW", value_enum, default_value = "block")]
    pub overflow: OverflowPolicy,
    /// Allow several records of one symbol per PutRecords call (more throughput without
    /// aggregation, but a partial failure can then reorder that symbol's trades).
    #[arg(long, env = "TRADEFLOW_RELAXED_ORDER")]
    pub relaxed_order: bool,

    /// Write KPL aggregated records (many trades per Kinesis record).
    #[arg(long, env = "TRADEFLOW_AGGREGATE")]
    pub aggregate: bool,
    /// Largest aggregate, in bytes (≤ 1 MiB minus the partition key; multiples of 25 KB bill best).
    #[arg(long, env = "TRADEFLOW_AGGREGATE_BYTES", default_value_t = 4 * PAYLOAD_UNIT_BYTES)]
    pub aggregate_bytes: usize,

    /// First retry delay after a failed call or entry.
    #[arg(long, env = "TRADEFLOW_RETRY_BASE", default_value = "100ms", value_parser = parse_duration)]
    pub retry_base: Duration,
    /// Longest retry delay.
    #[arg(long, env = "TRADEFLOW_RETRY_MAX", default_value = "5s", value_parser = parse_duration)]
    pub retry_max: Duration,
    /// How often the shard map is refreshed even without a sign of resharding.
    #[arg(long, env = "TRADEFLOW_SHARD_REFRESH", default_value = "60s", value_parser = parse_duration)]
    pub shard_refresh: Duration,
    /// After a shutdown signal, how long to keep trying to write what was accepted.
    #[arg(long, env = "TRADEFLOW_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value for {flag}: {reason}")]
    Invalid { flag: &'static str, reason: String },
}

fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        reason: reason.into(),
    }
}

impl Config {
    /// Checks everything that can be checked without I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.stream.is_empty() || self.stream.len() > 128 {
            return Err(invalid("--stream", "1 to 128 characters"));
        }
        if !(1..=MAX_RECORDS_PER_CALL).contains(&self.batch_records) {
            return Err(invalid("--batch-records", "between 1 and 500"));
        }
        if !(MAX_BYTES_PER_RECORD..=MAX_BYTES_PER_CALL).contains(&self.batch_bytes) {
            return Err(invalid("--batch-bytes", "between 1 MiB and 5 MiB"));
        }
        if self.max_in_flight == 0 {
            return Err(invalid("--max-in-flight", "at least 1"));
        }
        if self.buffer_records == 0 {
            return Err(invalid("--buffer-records", "at least 1"));
        }
        if !(1024..=MAX_BYTES_PER_RECORD - 256).contains(&self.aggregate_bytes) {
            return Err(invalid(
                "--aggregate-bytes",
                "between 1 KiB and 1 MiB minus 256 bytes",
            ));
        }
        if self.retry_base.is_zero() || self.retry_max < self.retry_base {
            return Err(invalid("--retry-base/--retry-max", "0 < base ≤ max"));
        }
        if self.shard_refresh < Duration::from_secs(1) {
            return Err(invalid("--shard-refresh", "at least 1s"));
        }
        match self.source {
            SourceKind::Binance => {
                if self.symbols.is_empty() {
                    return Err(invalid("--symbols", "at least one symbol"));
                }
                self.parsed_symbols()?;
                if !(self.binance_url.starts_with("wss://")
                    || self.binance_url.starts_with("ws://"))
                {
                    return Err(invalid("--binance-url", "a ws:// or wss:// URL"));
                }
                let rest = self.rest_url();
                if !(rest.starts_with("https://") || rest.starts_with("http://")) {
                    return Err(invalid("--binance-rest-url", "an http:// or https:// URL"));
                }
                if self.backfill_deadline.is_zero() || self.backfill_weight_per_minute < 25 {
                    return Err(invalid(
                        "--backfill-deadline/--backfill-weight-per-minute",
                        "a deadline > 0 and at least 25 weight per minute",
                    ));
                }
            }
            SourceKind::Replay => {
                if self.replay_file.is_none() {
                    return Err(invalid("--replay-file", "required with --source replay"));
                }
            }
            SourceKind::Tail => {}
            SourceKind::Synthetic => {
                if self.symbols.is_empty() {
                    return Err(invalid("--symbols", "at least one symbol"));
                }
                self.parsed_symbols()?;
            }
        }
        Ok(())
    }

    /// The REST base URL: the flag, or derived from the websocket URL.
    pub fn rest_url(&self) -> String {
        match &self.binance_rest_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => derive_rest_url(&self.binance_url),
        }
    }

    /// The symbols, upper-cased and validated (Binance stream names are lower case).
    pub fn parsed_symbols(&self) -> Result<Vec<tradeflow_shared::Symbol>, ConfigError> {
        self.symbols
            .iter()
            .map(|s| {
                tradeflow_shared::Symbol::new(&s.trim().to_ascii_uppercase())
                    .map_err(|e| invalid("--symbols", format!("{s}: {e}")))
            })
            .collect()
    }

    /// Trades of one symbol allowed in one PutRecords call (see `--relaxed-order`).
    pub fn per_key_limit(&self) -> usize {
        if self.relaxed_order {
            MAX_RECORDS_PER_CALL
        } else {
            1
        }
    }
}

/// Parses durations the way the consumer does (humantime: `250ms`, `30s`, `2m`,
/// `1h 30m`); a bare number stays milliseconds, as the first releases accepted.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map(Duration::from_millis)
            .map_err(|e| format!("`{s}`: {e}"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 250ms, 30s or 2m: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut v = vec!["tradeflow-producer"];
        v.extend_from_slice(args);
        Config::try_parse_from(v).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&[]);
        assert_eq!(c.stream, "crypto");
        assert_eq!(c.symbols.len(), 14);
        assert_eq!(c.linger, Duration::from_millis(100));
        c.validate().unwrap();
    }

    #[test]
    fn bad_values_are_rejected_before_io() {
        assert!(parse(&["--batch-records", "501"]).validate().is_err());
        assert!(parse(&["--source", "replay"]).validate().is_err());
        assert!(parse(&["--symbols", "BTC USDT"]).validate().is_err());
        assert!(parse(&["--aggregate-bytes", "2000000"]).validate().is_err());
        let c = Config::try_parse_from(["p", "--linger", "abc"]);
        assert!(c.is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_millis(7)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("1 parsec").is_err());
        assert!(parse_duration("").is_err());
    }
}

/// `ws://host:port/...` → `http://host:port` (the local exchange serves REST on its
/// websocket port); Binance's own stream hosts → its public market-data host. Any
/// user:password in the websocket URL is not carried over.
pub fn derive_rest_url(ws_url: &str) -> String {
    let (scheme, rest) = if let Some(r) = ws_url.strip_prefix("wss://") {
        ("https", r)
    } else if let Some(r) = ws_url.strip_prefix("ws://") {
        ("http", r)
    } else {
        return BINANCE_REST_URL.into();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    if host.ends_with("binance.com") || host.ends_with("binance.vision") {
        return BINANCE_REST_URL.into();
    }
    format!("{scheme}://{authority}")
}

#[cfg(test)]
mod rest_url_tests {
    use super::*;

    #[test]
    fn the_rest_url_follows_the_feed() {
        assert_eq!(
            derive_rest_url("wss://stream.binance.com:9443"),
            BINANCE_REST_URL
        );
        assert_eq!(
            derive_rest_url("wss://data-stream.binance.vision/ws"),
            BINANCE_REST_URL
        );
        assert_eq!(
            derive_rest_url("ws://127.0.0.1:4567"),
            "http://127.0.0.1:4567"
        );
        assert_eq!(
            derive_rest_url("ws://u:secret@127.0.0.1:4567/stream"),
            "http://127.0.0.1:4567"
        );
        assert_eq!(
            derive_rest_url("wss://feed.example:443"),
            "https://feed.example:443"
        );
        let c = Config::try_parse_from(["p", "--binance-url=ws://127.0.0.1:9"]).unwrap();
        assert_eq!(c.rest_url(), "http://127.0.0.1:9");
        let c = Config::try_parse_from(["p", "--binance-rest-url=http://h:1/"]).unwrap();
        assert_eq!(c.rest_url(), "http://h:1");
        assert!(Config::try_parse_from(["p", "--all-symbols", "--symbols-file=x"]).is_err());
    }
}
