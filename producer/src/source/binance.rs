//! The Binance websocket source: every configured `<symbol>@trade` stream, spread over
//! as few connections as the 1024-streams limit allows, each kept alive forever.
//!
//! - Pings are answered by tungstenite itself with the same payload; a connection that
//!   receives nothing (not even a ping) for `dead_timeout` is given up and replaced.
//! - Lost connections are reopened with exponential backoff and jitter (the shared
//!   retry policy, retried forever and logged at a bounded rate:
//!   `limits::reconnect_retry`), never more than 300 attempts per 5 minutes over all
//!   connections.
//! - Before the 24-hour cut (`max_connection_age`) and on `serverShutdown`, the
//!   replacement is opened FIRST. Its trades are held back until it is receiving;
//!   then the old connection is closed with a close handshake (which delivers all it
//!   still had in flight), and only then are the held trades released. So per symbol
//!   the channel sees the old connection's trades, then the new one's, overlapping but
//!   never missing any: the pipeline's dedupe drops ids it has already seen. At most
//!   `max_held` trades are held (see `overlap.rs` for what happens past it).
//! - Messages that are not trades are counted (`tradeflow_producer_bad_input_total`,
//!   `source="binance"`) and logged, never fatal; frames are capped in size.
//!
//! Each group of connections is a pure state machine (`group_state.rs`: the states,
//! the transitions and their tests) driven by an I/O loop (`group.rs`) that owns the
//! sockets and only carries out the actions the machine returns.

mod conn;
mod group;
mod group_state;
mod limits;
mod message;
mod overlap;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_util::sync::CancellationToken;
use tradeflow_shared::Symbol;

pub use limits::{
    connection_requests, plan_connections, reconnect_policy, reconnect_retry, AttemptWindow,
    CONTROL_SPACING, SUBSCRIBE_CHUNK, URL_STREAMS,
};

use super::TradeTx;
use conn::without_userinfo;
use group::Group;

/// Binance's public spot stream endpoint.
pub const LIVE_URL: &str = "wss://stream.binance.com:9443";
/// Binance's limit of streams on one connection.
pub const MAX_STREAMS_PER_CONNECTION: usize = 1024;

#[derive(Debug, Clone)]
pub struct BinanceConfig {
    /// Base URL, e.g. `wss://stream.binance.com:9443` or `ws://127.0.0.1:PORT`.
    pub url: String,
    /// Symbols, any case (`btcusdt` or `BTCUSDT`).
    pub symbols: Vec<String>,
    /// No message and no ping for this long: the connection is dead.
    pub dead_timeout: Duration,
    /// Age at which a connection is proactively replaced (Binance cuts at 24 h).
    pub max_connection_age: Duration,
    /// A replacement that got its subscriptions confirmed but no trade yet is taken as
    /// receiving after this long (quiet symbols may not trade for a while).
    pub switch_settle: Duration,
    /// How long the old connection's close handshake may take before it is dropped.
    pub drain_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub max_streams_per_connection: usize,
    /// Largest accepted message or frame; anything larger ends the connection.
    pub max_frame_bytes: usize,
    /// Connection attempts allowed per `attempt_window` (Binance: 300 per 5 min).
    pub max_attempts: usize,
    pub attempt_window: Duration,
    /// Trades a replacement connection may hold back per connection group while the
    /// old one is still open; past it the replacement is abandoned, or paused while the
    /// old one closes (`overlap.rs`).
    pub max_held: usize,
}

impl Default for BinanceConfig {
    fn default() -> Self {
        BinanceConfig {
            url: LIVE_URL.to_string(),
            symbols: tradeflow_shared::SEED_SYMBOLS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            dead_timeout: Duration::from_secs(60),
            max_connection_age: Duration::from_secs(23 * 3600 + 50 * 60),
            switch_settle: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            max_streams_per_connection: MAX_STREAMS_PER_CONNECTION,
            max_frame_bytes: 1 << 20,
            max_attempts: 300,
            attempt_window: Duration::from_secs(300),
            max_held: 100_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BinanceError {
    #[error("invalid symbol {0:?}")]
    Symbol(String),
    #[error("no symbols configured")]
    NoSymbols,
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    #[error("connecting: {0}")]
    Connect(#[from] WsError),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("the trade channel is closed")]
    ChannelClosed,
}

impl BinanceConfig {
    /// Checks the configuration before any I/O.
    pub fn validate(&self) -> Result<(), BinanceError> {
        if self.symbols.is_empty() {
            return Err(BinanceError::NoSymbols);
        }
        for s in &self.symbols {
            Symbol::new(&s.to_uppercase()).map_err(|_| BinanceError::Symbol(s.clone()))?;
        }
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return Err(BinanceError::Config("url must start with ws:// or wss://"));
        }
        if self.max_streams_per_connection == 0
            || self.max_streams_per_connection > MAX_STREAMS_PER_CONNECTION
        {
            return Err(BinanceError::Config(
                "max_streams_per_connection must be 1..=1024",
            ));
        }
        if self.dead_timeout.is_zero() || self.max_connection_age.is_zero() {
            return Err(BinanceError::Config("timeouts must be positive"));
        }
        if self.max_attempts == 0 {
            return Err(BinanceError::Config("max_attempts must be positive"));
        }
        if self.max_held == 0 {
            return Err(BinanceError::Config("max_held must be positive"));
        }
        Ok(())
    }

    /// The stream names, lower case, without duplicates, in the configured order.
    pub fn streams(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.symbols {
            let name = format!("{}@trade", s.trim().to_lowercase());
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }
}

/// Runs until `shutdown`: every trade of every configured stream goes into `tx`.
/// Returns an error only for a bad configuration or if `tx` closes before shutdown.
pub async fn run(
    config: BinanceConfig,
    tx: TradeTx,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let plan = plan_connections(&config.streams(), config.max_streams_per_connection);
    let limiter = Arc::new(Mutex::new(AttemptWindow::new(
        config.max_attempts,
        config.attempt_window,
    )));
    let cfg = Arc::new(config);
    tracing::info!(
        url = %without_userinfo(&cfg.url),
        streams = plan.iter().map(Vec::len).sum::<usize>(),
        connections = plan.len(),
        "binance source starting"
    );
    let mut groups = JoinSet::new();
    for (idx, streams) in plan.into_iter().enumerate() {
        let group = Group {
            idx,
            streams,
            cfg: cfg.clone(),
            limiter: limiter.clone(),
            tx: tx.clone(),
            shutdown: shutdown.clone(),
            next_conn: 0,
        };
        groups.spawn(group.run());
    }
    drop(tx);
    let mut result = Ok(());
    while let Some(r) = groups.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e.into()),
            Err(e) => result = Err(anyhow::anyhow!("connection group task failed: {e}")),
        }
    }
    result
}
