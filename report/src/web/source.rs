//! Where the page's numbers come from: Redis, read through the shared snapshot read
//! ([`Reader`]: the totals, and one pipeline for the minute buckets of the top
//! symbols). Shared by every viewer: at most one refresh per `min_interval`, whatever
//! the number of browsers.
//!
//! Cost of one refresh (S = symbols in the index, N = `top_series`):
//! 1. `SMEMBERS <p>symbols` — one round trip;
//! 2. `MULTI`, `MGET symbol:*` (all S), S × `HMGET <p>stats:<SYM>`, `EXEC` — one round
//!    trip (the report's consistent snapshot);
//! 3. N × 60 `HGET <p>min:<SYM>:<minute> count` — one pipelined round trip.
//!
//! So 3 round trips and S + 4 + 60·N commands (N = 5: S + 304). On a Redis Cluster also
//! 3 round trips: step 2 is one small transaction per symbol and step 3 one pipeline per
//! top symbol, each sent at once (S + 1 + 2·S + 60·N commands).
//!
//! The candle chart's `/api/candles` reads are cached apart, per (symbol, interval), for
//! the same `min_interval`: 2 + 60 commands in 2 round trips for the page's 1m chart (see
//! [`super::candles`] for other intervals). A page watching one symbol thus costs Redis
//! at most S + 306 + 60·N commands a second, however many browsers show it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Mutex;

use super::candles::{CandleCache, Outcome};
use super::snapshot::{
    anchor_minute, build_snapshot, error_snapshot, minute_window, newest_trade, top_symbols,
    MinuteSeries, SymbolMinutes, WebSnapshot,
};
use crate::error::ReportError;
use crate::prices::PriceFeed;
use tradeflow_shared::kline::Interval;
use tradeflow_shared::redact::redact_url;
use tradeflow_shared::redis_conn::Target;
use tradeflow_shared::snapshot::{ReadError, Reader};
use tradeflow_shared::Symbol;

pub const ERRORS_METRIC: &str = "tradeflow_report_web_redis_errors_total";

pub struct SourceConfig {
    pub redis_url: String,
    /// PEM file of a private CA for `rediss://`.
    pub ca_file: Option<std::path::PathBuf>,
    pub key_prefix: String,
    /// Symbols in the per-minute chart.
    pub top_series: usize,
    /// A refresh younger than this is served again instead of asking Redis.
    pub min_interval: Duration,
    /// A refresh (connect included) taking longer than this counts as Redis down.
    pub timeout: Duration,
    /// USD prices (Redis's, or Binance's refreshed at most once per its interval).
    pub prices: PriceFeed,
}

pub struct Source {
    cfg: SourceConfig,
    /// Connected lazily, so the page comes up (with its notice) while Redis is down.
    reader: Mutex<Option<Reader>>,
    /// Held across a refresh, so concurrent viewers wait for one read.
    cache: Mutex<Option<(Instant, Arc<WebSnapshot>)>>,
    /// `/api/candles` reads, per (symbol, interval).
    candles: CandleCache,
}

impl Source {
    pub fn new(cfg: SourceConfig) -> Self {
        Source {
            cfg,
            reader: Mutex::new(None),
            cache: Mutex::new(None),
            candles: CandleCache::default(),
        }
    }

    /// The candles of `sym` for `/api/candles` (see [`super::candles`]).
    pub async fn candles(&self, sym: Symbol, interval: Interval, limit: u64) -> Arc<Outcome> {
        self.candles.get(self, sym, interval, limit).await
    }

    pub(super) fn min_interval(&self) -> Duration {
        self.cfg.min_interval
    }

    pub(super) fn timeout(&self) -> Duration {
        self.cfg.timeout
    }

    /// A candle read found Redis unreadable: counted and logged like a snapshot's, and
    /// the next read connects afresh.
    pub(super) async fn failed_read(&self, message: &str) {
        metrics::counter!(ERRORS_METRIC).increment(1);
        tracing::warn!(error = %message, "web view: cannot read candles from Redis");
        *self.reader.lock().await = None;
    }

    /// The current numbers, or a snapshot with `ok: false` and the reason.
    pub async fn snapshot(&self) -> Arc<WebSnapshot> {
        let mut cache = self.cache.lock().await;
        if let Some((at, snap)) = cache.as_ref() {
            if at.elapsed() < self.cfg.min_interval {
                return snap.clone();
            }
        }
        let snap = match tokio::time::timeout(self.cfg.timeout, self.read()).await {
            Ok(Ok(s)) => s,
            // The notice says which side failed: the price endpoint, or Redis.
            Ok(Err(ReportError::Prices(e))) => self.failed(e.to_string()),
            Ok(Err(e)) => self.failed(format!("Redis unreachable: {e}")),
            Err(_) => self.failed(format!(
                "Redis unreachable: no answer within {} ms",
                self.cfg.timeout.as_millis()
            )),
        };
        if !snap.ok {
            // A fresh connect fails fast (refused) where the old connection would keep
            // retrying its reconnect until our timeout.
            *self.reader.lock().await = None;
        }
        let snap = Arc::new(snap);
        *cache = Some((Instant::now(), snap.clone()));
        snap
    }

    fn failed(&self, message: String) -> WebSnapshot {
        metrics::counter!(ERRORS_METRIC).increment(1);
        tracing::warn!(error = %message, "web view: cannot read Redis");
        error_snapshot(message, now_ms())
    }

    pub(super) async fn reader(&self) -> Result<Reader, ReportError> {
        let mut slot = self.reader.lock().await;
        if let Some(r) = slot.as_ref() {
            return Ok(r.clone());
        }
        // The connection manager retries a refused connect for seconds; a plain connect
        // (to the first seed node of a cluster) first fails fast and says why (the text
        // names no secret: kind only).
        let first = node_urls(&self.cfg.redis_url)?.swap_remove(0);
        let client = match &self.cfg.ca_file {
            None => redis::Client::open(first.as_str()),
            Some(path) => redis::Client::build_with_tls(
                first.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(read_ca(path)?),
                },
            ),
        }
        .map_err(|e| ReportError::Config(format!("Redis URL: {:?}", e.kind())))?;
        if let Err(e) = client.get_multiplexed_async_connection().await {
            let why = if e.is_connection_refusal() {
                "connection refused".to_string()
            } else {
                format!("{:?}", e.kind())
            };
            return Err(ReportError::Unavailable {
                url: redact_url(&self.cfg.redis_url),
                why,
            });
        }
        let r = Reader::connect_with_ca(
            &self.cfg.redis_url,
            self.cfg.ca_file.as_deref(),
            &self.cfg.key_prefix,
        )
        .await?;
        *slot = Some(r.clone());
        Ok(r)
    }

    async fn read(&self) -> Result<WebSnapshot, ReportError> {
        let reader = self.reader().await?;
        let totals = reader.snapshot().await?;
        let top = top_symbols(&totals, self.cfg.top_series);
        let anchor = anchor_minute(newest_trade(&totals), now_ms());
        let minutes = read_minutes(&reader, &top, anchor).await?;
        let prices = self.cfg.prices.prices(&totals).await?;
        Ok(build_snapshot(&totals, &prices, minutes, now_ms()))
    }
}

/// The URL of each node `url` names: itself for one Redis, the seed nodes of a cluster
/// (never empty).
pub(super) fn node_urls(url: &str) -> Result<Vec<String>, ReportError> {
    let target = Target::parse(url).map_err(|e| ReportError::Config(e.to_string()))?;
    Ok(match target {
        Target::Single(url) => vec![url],
        Target::Cluster(nodes) => nodes,
    })
}

/// The CA file's contents (an unreadable file is a configuration error).
pub(super) fn read_ca(path: &std::path::Path) -> Result<Vec<u8>, ReportError> {
    std::fs::read(path)
        .map_err(|e| ReportError::Config(format!("Redis CA file {}: {e}", path.display())))
}

/// Counts per minute of `symbols` over the hour ending at `anchor` (the shared read:
/// one pipeline on one Redis, one per symbol on a cluster, all sent at once).
async fn read_minutes(
    reader: &Reader,
    symbols: &[String],
    anchor: u64,
) -> Result<MinuteSeries, ReportError> {
    let window = minute_window(anchor);
    let start = *window.start();
    let syms = symbols
        .iter()
        .map(|s| Symbol::new(s).map_err(|_| ReadError::Protocol(format!("{s:?} is not a symbol"))))
        .collect::<Result<Vec<_>, _>>()?;
    let counts = reader.minute_counts(&syms, window).await?;
    Ok(MinuteSeries {
        start_minute: start,
        series: symbols
            .iter()
            .zip(counts)
            .map(|(s, counts)| SymbolMinutes {
                symbol: s.clone(),
                counts,
            })
            .collect(),
    })
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
