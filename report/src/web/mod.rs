//! `tradeflow-report serve`: a live page of the totals in Redis, served by the binary
//! itself (HTML, JS and CSS embedded; nothing from the internet).
//!
//! - `/` — a treemap of trades per symbol (top 3 highlighted; a click on a tile picks the
//!   symbol of the candlestick chart), 1m/5m/15m/1h candles of one symbol (default the
//!   top one; the choice is kept in the URL's `#symbol=…&interval=…`, so it survives a
//!   reload), trades per minute of the top symbols over the last hour, traded USD value per symbol (the report's
//!   valuation), the age of the newest trade, and a notice while Redis is unreachable.
//!   The page polls `/api/snapshot` every 2 s and updates its SVG in place.
//! - `/api/snapshot` — the same numbers as JSON ([`snapshot::WebSnapshot`]); 503 with
//!   `ok: false` and `error` when Redis cannot be read.
//! - `/api/candles?symbol=…&interval=…&limit=…` — a symbol's candles as Binance kline
//!   arrays ([`candles`]); 400/500/503 with `ok: false` and `error`.
//!
//! Redis cost: see [`source`] — per refresh 3 round trips, S + 4 + 60·N commands, and
//! at most one refresh per second however many browsers watch; the chart's candles
//! (62 commands for 1m) at most once a second per (symbol, interval).
//! The listener binds only `--addr` (loopback by default); put a reverse proxy with
//! authentication in front before exposing it: the page has no login of its own.

pub mod candles;
pub mod http;
pub mod snapshot;
pub mod source;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tradeflow_shared::redact::redact_url;
use tradeflow_shared::redis_keys::Keys;

use crate::error::ReportError;
use crate::prices::{PriceArgs, PriceFeed};

pub use source::{Source, SourceConfig};

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (only this one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Symbols in the trades-per-minute chart (each costs 60 `HGET` per refresh).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(0..=50))]
    pub series: u16,
}

/// Serves the page until `shutdown`.
pub async fn serve(
    redis_url: &str,
    ca_file: Option<&std::path::Path>,
    key_prefix: &str,
    prices: &PriceArgs,
    args: ServeArgs,
    shutdown: CancellationToken,
) -> Result<(), ReportError> {
    // Bad configuration fails now, not as a notice on the page forever.
    Keys::new(key_prefix)?;
    // One Redis or a cluster (`redis+cluster://`): every node's URL must parse.
    for node in source::node_urls(redis_url)? {
        redis::Client::open(node.as_str()).map_err(|_| {
            ReportError::Config(format!("invalid Redis URL {}", redact_url(redis_url)))
        })?;
    }
    if let Some(path) = ca_file {
        source::read_ca(path)?;
    }
    // Binance prices: one shared request per `--prices-refresh`, never per viewer.
    let feed = PriceFeed::new(prices, prices.prices_refresh)?;
    let source = Arc::new(Source::new(SourceConfig {
        redis_url: redis_url.to_string(),
        ca_file: ca_file.map(std::path::Path::to_path_buf),
        key_prefix: key_prefix.to_string(),
        top_series: args.series as usize,
        min_interval: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        prices: feed,
    }));
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|source| ReportError::Listen {
            addr: args.addr,
            source,
        })?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "serving the live view");
    eprintln!("tradeflow-report: serving http://{local}/");
    axum::serve(listener, http::router(source))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(ReportError::Serve)
}
