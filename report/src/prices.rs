//! Where the report's USD prices come from: the last trade prices in Redis (default) or
//! Binance's REST prices of the moment (`GET /api/v3/ticker/price`, every symbol in
//! one request, weight 4), like the Jenkins job this replaces.
//!
//! Parsing is pure ([`parse_ticker`]); the HTTP side is `tradeflow_shared::rest`, a thin client on the
//! rustls (aws-lc-rs) stack the AWS SDK already brings, with webpki roots and one
//! timeout over the whole request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tradeflow_shared::decimal::Fixed8;
use tradeflow_shared::rest::{RestClient, RestError};
use tradeflow_shared::Symbol;

use super::value::parse_scaled;
use tradeflow_shared::snapshot::SymbolTotals;

/// Entries of a ticker reply that were skipped (bad symbol or price).
pub const SKIPPED_METRIC: &str = "tradeflow_report_prices_skipped_total";
/// Failed REST price fetches.
pub const FETCH_ERRORS_METRIC: &str = "tradeflow_report_price_fetch_errors_total";

pub const TICKER_PATH: &str = "/api/v3/ticker/price";
/// Binance's all-symbol reply is ~200 KB; anything far larger is not a ticker.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PriceSource {
    /// The last trade price of each symbol, as stored in Redis with the totals.
    Redis,
    /// Binance's REST prices of the moment (`/api/v3/ticker/price`).
    Binance,
}

impl PriceSource {
    pub fn name(self) -> &'static str {
        match self {
            PriceSource::Redis => "redis",
            PriceSource::Binance => "binance",
        }
    }
}

/// Price flags, shared by the report and `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct PriceArgs {
    /// Prices for the USD values: last trade prices in Redis, or Binance's REST prices
    /// of the moment (one request for all symbols).
    #[arg(long, env = "TRADEFLOW_REPORT_PRICES", value_enum, default_value_t = PriceSource::Redis, global = true)]
    pub prices: PriceSource,
    /// Base URL of Binance's REST API (for `--prices binance` and `reconcile`'s klines).
    #[arg(
        long,
        env = "TRADEFLOW_BINANCE_REST_URL",
        default_value = "https://api.binance.com",
        // A URL may carry credentials (a proxy's): never echoed by --help.
        hide_env_values = true,
        global = true
    )]
    pub binance_rest_url: String,
    /// Timeout of one whole REST request (connect, TLS, reply): prices, or a klines call.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub binance_timeout: Duration,
    /// With `--watch` and `serve`: at most one price request per this interval.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub prices_refresh: Duration,
}

/// A set of USD-valuation prices: symbol → price in units of 1e-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceSet {
    pub source: PriceSource,
    /// The endpoint asked (`None` for Redis).
    pub url: Option<String>,
    /// When the prices were read (ms since the epoch).
    pub fetched_ms: u64,
    pub prices: HashMap<String, u64>,
}

impl PriceSet {
    /// The last trade prices in a Redis snapshot (unparsable ones left out).
    pub fn from_redis(snapshot: &[SymbolTotals], fetched_ms: u64) -> Self {
        PriceSet {
            source: PriceSource::Redis,
            url: None,
            fetched_ms,
            prices: last_prices(snapshot),
        }
    }
}

/// Last prices of a snapshot, as the valuation wants them.
pub fn last_prices(snapshot: &[SymbolTotals]) -> HashMap<String, u64> {
    snapshot
        .iter()
        .filter_map(|s| {
            let p = parse_scaled(s.last_price.as_deref()?, 8)?;
            Some((s.symbol.clone(), u64::try_from(p).ok()?))
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("invalid Binance REST URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot fetch prices from {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("cannot fetch prices from {url}: no complete reply within {ms} ms")]
    Timeout { url: String, ms: u128 },
    #[error("prices from {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("prices from {url} are not a ticker list: {reason}")]
    Garbage { url: String, reason: String },
}

/// One entry of the ticker that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub symbol: String,
    pub reason: String,
}

/// A parsed ticker reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ticker {
    pub prices: HashMap<String, u64>,
    pub skipped: Vec<Skipped>,
}

#[derive(Deserialize)]
struct Entry {
    symbol: String,
    price: String,
}

/// Parses Binance's `[{"symbol":"BTCUSDT","price":"67000.01000000"}, …]` exactly.
/// A body that is not such a list is an error (the reason, not the body, is returned);
/// entries whose symbol fails validation or whose price is not an exact non-negative
/// decimal with ≤ 8 fractional digits are skipped and listed.
pub fn parse_ticker(body: &[u8]) -> Result<Ticker, String> {
    let entries: Vec<Entry> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut out = Ticker::default();
    for e in entries {
        if let Err(err) = Symbol::new(&e.symbol) {
            out.skipped.push(Skipped {
                symbol: e.symbol,
                reason: err.to_string(),
            });
            continue;
        }
        match Fixed8::parse(&e.price) {
            Ok(p) => {
                out.prices.insert(e.symbol, p.units());
            }
            Err(err) => out.skipped.push(Skipped {
                symbol: e.symbol,
                reason: format!("price {:?}: {err}", truncate(&e.price, 40)),
            }),
        }
    }
    Ok(out)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Fetches Binance's REST prices. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct BinancePrices {
    client: RestClient,
    url: String,
}

impl From<RestError> for PriceError {
    fn from(e: RestError) -> Self {
        match e {
            RestError::InvalidUrl { url, reason } => PriceError::InvalidUrl { url, reason },
            RestError::Timeout { url, ms } => PriceError::Timeout { url, ms },
            RestError::Unreachable { url, reason } => PriceError::Unreachable { url, reason },
        }
    }
}

impl BinancePrices {
    /// `base_url` like `https://api.binance.com` (http:// is accepted for local runs).
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, PriceError> {
        let client = RestClient::new(base_url, timeout, MAX_BODY_BYTES, "tradeflow-report")?;
        Ok(BinancePrices {
            url: client.url(TICKER_PATH),
            client,
        })
    }

    /// The endpoint asked, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One request for every symbol's price. Skipped entries are counted and logged.
    pub async fn fetch(&self) -> Result<(PriceSet, Vec<Skipped>), PriceError> {
        let body = self
            .fetch_body()
            .await
            .inspect_err(|_| metrics::counter!(FETCH_ERRORS_METRIC).increment(1))?;
        let ticker = parse_ticker(&body).map_err(|reason| {
            metrics::counter!(FETCH_ERRORS_METRIC).increment(1);
            PriceError::Garbage {
                url: self.url.clone(),
                reason,
            }
        })?;
        for s in &ticker.skipped {
            tracing::warn!(url = %self.url, symbol = %s.symbol, reason = %s.reason, "price skipped");
        }
        metrics::counter!(SKIPPED_METRIC).increment(ticker.skipped.len() as u64);
        Ok((
            PriceSet {
                source: PriceSource::Binance,
                url: Some(self.url.clone()),
                fetched_ms: tradeflow_shared::telemetry::now_ms(),
                prices: ticker.prices,
            },
            ticker.skipped,
        ))
    }

    async fn fetch_body(&self) -> Result<Vec<u8>, PriceError> {
        let reply = self.client.get(TICKER_PATH).await?;
        if !reply.is_success() {
            return Err(PriceError::Status {
                url: self.url.clone(),
                status: reply.status,
                body: reply.body_excerpt(200),
            });
        }
        Ok(reply.body.to_vec())
    }
}

/// The prices a (possibly long-running) view values with. Redis prices come with each
/// snapshot; Binance's are fetched at most once per `refresh`, however often the view
/// redraws or how many browsers watch.
pub struct PriceFeed {
    source: PriceSource,
    client: Option<BinancePrices>,
    refresh: Duration,
    cached: tokio::sync::Mutex<Option<(std::time::Instant, Arc<PriceSet>)>>,
}

impl PriceFeed {
    /// Checks the URL now (bad configuration fails at start, not at the first redraw).
    pub fn new(args: &PriceArgs, refresh: Duration) -> Result<Self, PriceError> {
        let client = match args.prices {
            PriceSource::Redis => None,
            PriceSource::Binance => Some(BinancePrices::new(
                &args.binance_rest_url,
                args.binance_timeout,
            )?),
        };
        Ok(PriceFeed {
            source: args.prices,
            client,
            refresh,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    pub fn source(&self) -> PriceSource {
        self.source
    }

    /// Prices for valuing `snapshot`. A failed Binance refresh keeps the previous set
    /// (its timestamp shows its age) and is retried after `refresh`; without any
    /// previous set the error is returned.
    pub async fn prices(&self, snapshot: &[SymbolTotals]) -> Result<Arc<PriceSet>, PriceError> {
        let Some(client) = &self.client else {
            let now = tradeflow_shared::telemetry::now_ms();
            return Ok(Arc::new(PriceSet::from_redis(snapshot, now)));
        };
        let mut cached = self.cached.lock().await;
        if let Some((at, set)) = cached.as_ref() {
            if at.elapsed() < self.refresh {
                return Ok(set.clone());
            }
        }
        match client.fetch().await {
            Ok((set, _skipped)) => {
                let set = Arc::new(set);
                *cached = Some((std::time::Instant::now(), set.clone()));
                Ok(set)
            }
            Err(e) => match cached.as_mut() {
                Some((at, set)) => {
                    tracing::warn!(error = %e, "keeping the previous Binance prices");
                    *at = std::time::Instant::now();
                    Ok(set.clone())
                }
                None => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_shared::decimal::ONE;

    #[test]
    fn parses_binance_ticker_exactly() {
        let t = parse_ticker(
            br#"[{"symbol":"BTCUSDT","price":"67012.01000000"},
                 {"symbol":"ETHBTC","price":"0.05123"},
                 {"symbol":"SHIBUSDT","price":"0.00001234"}]"#,
        )
        .unwrap();
        assert_eq!(t.prices["BTCUSDT"], 67_012 * ONE + 1_000_000);
        assert_eq!(t.prices["ETHBTC"], 5_123_000);
        assert_eq!(t.prices["SHIBUSDT"], 1_234);
        assert!(t.skipped.is_empty());
    }

    #[test]
    fn skips_bad_symbols_and_prices() {
        let t = parse_ticker(
            br#"[{"symbol":"btc usdt","price":"1"},{"symbol":"","price":"1"},
                 {"symbol":"BNBUSDT","price":"-3"},{"symbol":"XUSDT","price":"1e5"},
                 {"symbol":"OKUSDT","price":"2.5"}]"#,
        )
        .unwrap();
        assert_eq!(t.prices.len(), 1);
        assert_eq!(t.prices["OKUSDT"], 250_000_000);
        let names: Vec<_> = t.skipped.iter().map(|s| s.symbol.as_str()).collect();
        assert_eq!(names, ["btc usdt", "", "BNBUSDT", "XUSDT"]);
    }

    #[test]
    fn garbage_is_an_error() {
        for body in [
            &b"<html>oops</html>"[..],
            b"{\"code\":-1003,\"msg\":\"banned\"}",
            b"[{\"symbol\":\"A\"}]",
            b"",
        ] {
            assert!(parse_ticker(body).is_err(), "{body:?}");
        }
        assert_eq!(parse_ticker(b"[]").unwrap(), Ticker::default());
    }

    #[test]
    fn urls_are_checked() {
        let bad = |u: &str| BinancePrices::new(u, Duration::from_secs(1)).is_err();
        assert!(bad("api.binance.com"));
        assert!(bad("ftp://x"));
        assert!(bad("http://"));
        let ok = BinancePrices::new("https://api.binance.com/", Duration::from_secs(1)).unwrap();
        assert_eq!(ok.url(), "https://api.binance.com/api/v3/ticker/price");
    }

    #[test]
    fn redis_prices_from_the_snapshot() {
        let s = |sym: &str, p: Option<&str>| SymbolTotals {
            symbol: sym.into(),
            last_price: p.map(Into::into),
            ..Default::default()
        };
        let set = PriceSet::from_redis(
            &[
                s("BTCUSDT", Some("60000.5")),
                s("X", None),
                s("Y", Some("bad")),
            ],
            7,
        );
        assert_eq!(set.prices.len(), 1);
        assert_eq!(set.prices["BTCUSDT"], 60_000 * ONE + ONE / 2);
        assert_eq!((set.source, set.fetched_ms), (PriceSource::Redis, 7));
    }
}
