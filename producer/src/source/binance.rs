//! The Binance websocket source: every configured `<symbol>@trade` stream, spread over
//! as few connections as the 1024-streams limit allows, each kept alive forever.
//!
//! - Pings are answered by tungstenite itself with the same payload; a connection that
//!   receives nothing (not even a ping) for `dead_timeout` is given up and replaced.
//! - Lost connections are reopened with exponential backoff and full jitter, never
//!   more than 300 attempts per 5 minutes over all connections.
//! - Before the 24-hour cut (`max_connection_age`) and on `serverShutdown`, the
//!   replacement is opened FIRST. Its trades are held back until it is receiving;
//!   then the old connection is closed with a close handshake (which delivers all it
//!   still had in flight), and only then are the held trades released. So per symbol
//!   the channel sees the old connection's trades, then the new one's, overlapping but
//!   never missing any: the pipeline's dedupe drops ids it has already seen. At most
//!   `max_held` trades are held (see `overlap.rs` for what happens past it).
//! - Messages that are not trades are counted (`tradeflow_producer_bad_input_total`,
//!   `source="binance"`) and logged, never fatal; frames are capped in size.

mod conn;
mod limits;
mod overlap;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use metrics::counter;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;
use tradeflow_shared::{decode_event, Event, Symbol};

pub use limits::{
    connection_requests, plan_connections, AttemptWindow, Backoff, CONTROL_SPACING,
    SUBSCRIBE_CHUNK, URL_STREAMS,
};

use super::{SourceTrade, TradeTx};
use crate::metrics::{
    self as m, BAD_INPUT, WS_CONNECT_FAILURES, WS_MESSAGES, WS_RECONNECTS, WS_ROTATIONS,
};
use conn::{clip, connect, start_drain, without_userinfo, Conn};

/// Binance's public spot stream endpoint.
pub const LIVE_URL: &str = "wss://stream.binance.com:9443";
/// Binance's limit of streams on one connection.
pub const MAX_STREAMS_PER_CONNECTION: usize = 1024;

const SOURCE: &str = "binance";

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
            backoff: Backoff::new(cfg.backoff_min, cfg.backoff_max),
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

type Connecting = Pin<Box<dyn Future<Output = Result<Conn, BinanceError>> + Send>>;

/// What one received message meant.
enum Got {
    Trade(SourceTrade),
    Nothing,
    Ended(&'static str),
}

/// What a connection's life ended with.
enum Next {
    Stop,
    Reconnect,
    Continue(Box<Conn>),
}

/// The connections serving one slice of the streams: one at a time, two while one
/// replaces the other.
struct Group {
    idx: usize,
    streams: Vec<String>,
    cfg: Arc<BinanceConfig>,
    limiter: Arc<Mutex<AttemptWindow>>,
    tx: TradeTx,
    shutdown: CancellationToken,
    backoff: Backoff,
    next_conn: u64,
}

impl Group {
    async fn run(mut self) -> Result<(), BinanceError> {
        let mut carried: Option<Box<Conn>> = None;
        loop {
            let conn = match carried.take() {
                Some(c) => *c,
                None => match self.connect_retrying().await {
                    Some(c) => c,
                    None => return Ok(()),
                },
            };
            match self.drive(conn).await? {
                Next::Stop => return Ok(()),
                Next::Continue(c) => carried = Some(c),
                Next::Reconnect => {
                    let delay = self.backoff.next_delay(&mut rand::rng());
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    fn connect_future(&mut self) -> Connecting {
        self.next_conn += 1;
        Box::pin(connect(
            self.cfg.clone(),
            self.limiter.clone(),
            self.streams.clone(),
            self.idx,
            self.next_conn,
        ))
    }

    /// Connects, retrying with backoff; `None` on shutdown.
    async fn connect_retrying(&mut self) -> Option<Conn> {
        loop {
            let fut = self.connect_future();
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                r = fut => match r {
                    Ok(c) => return Some(c),
                    Err(e) => {
                        counter!(WS_CONNECT_FAILURES).increment(1);
                        let delay = self.backoff.next_delay(&mut rand::rng());
                        tracing::warn!(group = self.idx, error = %e, retry_in = ?delay, "websocket connect failed");
                        tokio::select! {
                            _ = self.shutdown.cancelled() => return None,
                            _ = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }
        }
    }

    /// Reads `cur` until it ends, replacing it first when it gets old or the server
    /// announces a shutdown.
    async fn drive(&mut self, mut cur: Conn) -> Result<Next, BinanceError> {
        let cfg = self.cfg.clone();
        let mut connecting: Option<Connecting> = None;
        let mut repl: Option<Conn> = None;
        let mut retry_rotation_at: Option<Instant> = None;
        let mut draining_until: Option<Instant> = None;
        // Trades of a replacement lost while the old connection was closing: the old
        // one will not deliver them any more, so they go out after it, in order.
        let mut orphaned: Vec<SourceTrade> = Vec::new();
        let far = Instant::now() + Duration::from_secs(10 * 365 * 24 * 3600);
        loop {
            let now = Instant::now();
            let mut rotate_at = if cur.notice {
                now
            } else {
                cur.opened + cfg.max_connection_age
            };
            if let Some(r) = retry_rotation_at {
                rotate_at = rotate_at.max(r);
            }
            let can_rotate = connecting.is_none() && repl.is_none() && draining_until.is_none();
            let dead_at = cur.last_rx + cfg.dead_timeout;
            let settle_at = repl
                .as_ref()
                .filter(|r| r.acks_pending == 0)
                .map_or(far, |r| r.opened + cfg.switch_settle);
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    let _ = timeout(Duration::from_millis(500), cur.ws.close(None)).await;
                    if let Some(mut r) = repl {
                        let _ = timeout(Duration::from_millis(500), r.ws.close(None)).await;
                    }
                    return Ok(Next::Stop);
                }
                _ = sleep_until(rotate_at), if can_rotate => {
                    let reason = if cur.notice { "server_shutdown" } else { "max_age" };
                    counter!(WS_ROTATIONS, "reason" => reason).increment(1);
                    tracing::info!(group = self.idx, conn = cur.id, reason, "opening the replacement connection");
                    connecting = Some(self.connect_future());
                }
                r = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                    connecting = None;
                    match r {
                        Ok(mut c) => {
                            c.held = std::mem::take(&mut orphaned);
                            repl = Some(c);
                        }
                        Err(e) => {
                            counter!(WS_CONNECT_FAILURES).increment(1);
                            let delay = self.backoff.next_delay(&mut rand::rng());
                            tracing::warn!(group = self.idx, error = %e, retry_in = ?delay, "replacement connect failed");
                            retry_rotation_at = Some(Instant::now() + delay);
                        }
                    }
                }
                _ = sleep_until(dead_at), if draining_until.is_none() => {
                    counter!(WS_RECONNECTS, "reason" => "dead").increment(1);
                    tracing::warn!(group = self.idx, conn = cur.id, silent_for = ?cfg.dead_timeout, "connection dead: no message and no ping");
                    return self.after_loss(cur, repl, connecting).await;
                }
                _ = sleep_until(draining_until.unwrap_or(far)), if draining_until.is_some() => {
                    tracing::warn!(group = self.idx, conn = cur.id, "old connection did not finish closing; dropped");
                    return self.closed(cur, repl, orphaned, connecting).await;
                }
                _ = sleep_until(settle_at), if repl.is_some() && draining_until.is_none() => {
                    draining_until = Some(start_drain(&mut cur, cfg.drain_timeout).await);
                }
                msg = cur.ws.next() => match self.on_message(&mut cur, msg) {
                    Got::Trade(t) => self.forward(t).await?,
                    Got::Nothing => {}
                    Got::Ended(reason) => {
                        if draining_until.is_some() {
                            // The close handshake finished: everything it had is in.
                            return self.closed(cur, repl, orphaned, connecting).await;
                        }
                        counter!(WS_RECONNECTS, "reason" => reason).increment(1);
                        tracing::warn!(group = self.idx, conn = cur.id, reason, "connection lost");
                        return self.after_loss(cur, repl, connecting).await;
                    }
                },
                // Not read while its held trades are at the limit (`overlap::may_read`).
                msg = async { repl.as_mut().expect("guarded").ws.next().await }, if overlap::may_read(repl.as_ref(), cfg.max_held) => {
                    let r = repl.as_mut().expect("guarded");
                    match self.on_message(r, msg) {
                        Got::Trade(t) => {
                            r.held.push(t);
                            if r.acks_pending == 0 && draining_until.is_none() {
                                draining_until = Some(start_drain(&mut cur, cfg.drain_timeout).await);
                            }
                            if r.held.len() >= cfg.max_held {
                                if draining_until.is_some() {
                                    self.pause_replacement(r);
                                } else {
                                    let r = repl.take().expect("guarded");
                                    retry_rotation_at = Some(self.abandon_replacement(r).await);
                                }
                            }
                        }
                        Got::Nothing => {}
                        Got::Ended(reason) => {
                            let id = r.id;
                            let held = std::mem::take(&mut r.held);
                            repl = None;
                            if draining_until.is_some() {
                                // The old one is already closing: keep what this one
                                // received for after it, and open the next at once.
                                counter!(WS_RECONNECTS, "reason" => reason).increment(1);
                                tracing::warn!(group = self.idx, conn = id, reason, held = held.len(), "replacement connection lost while the old one closes; opening another");
                                orphaned.extend(held);
                                connecting = Some(self.connect_future());
                                continue;
                            }
                            // Its held trades are dropped with it: the old connection,
                            // still open, delivers them.
                            let delay = self.backoff.next_delay(&mut rand::rng());
                            tracing::warn!(group = self.idx, conn = id, reason, retry_in = ?delay, "replacement connection lost");
                            retry_rotation_at = Some(Instant::now() + delay);
                        }
                    }
                }
            }
        }
    }

    /// The current connection is gone: continue with the replacement if there is one
    /// (or one is being opened), else reconnect.
    async fn after_loss(
        &mut self,
        cur: Conn,
        repl: Option<Conn>,
        connecting: Option<Connecting>,
    ) -> Result<Next, BinanceError> {
        if let Some(r) = repl {
            return self.promote(cur, r).await;
        }
        drop(cur);
        if let Some(fut) = connecting {
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(Next::Stop),
                r = fut => if let Ok(c) = r { return Ok(Next::Continue(Box::new(c))) },
            }
        }
        Ok(Next::Reconnect)
    }

    /// The old connection finished closing (or was given up on): switch to the
    /// replacement, or, if it was lost meanwhile, release what it had received and go
    /// on with the one being opened.
    async fn closed(
        &mut self,
        old: Conn,
        repl: Option<Conn>,
        orphaned: Vec<SourceTrade>,
        connecting: Option<Connecting>,
    ) -> Result<Next, BinanceError> {
        if let Some(r) = repl {
            return self.promote(old, r).await;
        }
        drop(old);
        for t in orphaned {
            self.forward(t).await?;
        }
        let Some(fut) = connecting else {
            return Ok(Next::Reconnect);
        };
        tokio::select! {
            _ = self.shutdown.cancelled() => Ok(Next::Stop),
            r = fut => Ok(match r {
                Ok(c) => Next::Continue(Box::new(c)),
                Err(_) => Next::Reconnect,
            }),
        }
    }

    /// Switches to the replacement: the old connection is closed first, then the
    /// replacement's held trades are released in order.
    async fn promote(&mut self, old: Conn, mut new: Conn) -> Result<Next, BinanceError> {
        let old_id = old.id;
        drop(old);
        let held = std::mem::take(&mut new.held);
        tracing::info!(
            group = self.idx,
            from = old_id,
            to = new.id,
            held = held.len(),
            "switched connection"
        );
        for t in held {
            self.forward(t).await?;
        }
        Ok(Next::Continue(Box::new(new)))
    }

    async fn forward(&mut self, t: SourceTrade) -> Result<(), BinanceError> {
        if self.tx.send(t).await.is_err() {
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            return Err(BinanceError::ChannelClosed);
        }
        Ok(())
    }

    fn on_message(&mut self, conn: &mut Conn, msg: Option<Result<Message, WsError>>) -> Got {
        let msg = match msg {
            None => return Got::Ended("eof"),
            Some(Err(WsError::Capacity(e))) => {
                counter!(BAD_INPUT, "source" => SOURCE, "kind" => "oversized_frame").increment(1);
                tracing::warn!(conn = conn.id, error = %e, "oversized frame: connection dropped");
                return Got::Ended("oversized");
            }
            Some(Err(e)) => {
                tracing::debug!(conn = conn.id, error = %e, "websocket error");
                return Got::Ended("error");
            }
            Some(Ok(m)) => m,
        };
        conn.last_rx = Instant::now();
        counter!(WS_MESSAGES).increment(1);
        match msg {
            Message::Text(text) => match decode_event(&text) {
                Ok(Event::Trade { trade, json }) => {
                    if !conn.got_trade {
                        conn.got_trade = true;
                        self.backoff.reset();
                    }
                    Got::Trade(SourceTrade {
                        trade,
                        json: json.to_string(),
                    })
                }
                Ok(Event::ControlReply) => {
                    if text.contains(r#""error""#) {
                        m::bad_input(SOURCE, "subscribe_error");
                        tracing::error!(conn = conn.id, reply = %clip(&text), "subscription refused");
                    }
                    conn.acks_pending = conn.acks_pending.saturating_sub(1);
                    Got::Nothing
                }
                Ok(Event::ServerShutdown) => {
                    tracing::info!(conn = conn.id, "server announced shutdown");
                    conn.notice = true;
                    Got::Nothing
                }
                Ok(Event::Other { event_type }) => {
                    m::bad_input(SOURCE, "other_event");
                    tracing::debug!(conn = conn.id, %event_type, "ignored event");
                    Got::Nothing
                }
                Err(e) => {
                    m::bad_input(SOURCE, e.kind());
                    tracing::warn!(conn = conn.id, error = %e, message = %clip(&text), "message is not a trade; skipped");
                    Got::Nothing
                }
            },
            Message::Binary(b) => {
                m::bad_input(SOURCE, "binary_frame");
                tracing::warn!(conn = conn.id, bytes = b.len(), "binary frame; skipped");
                Got::Nothing
            }
            Message::Close(frame) => {
                tracing::info!(conn = conn.id, ?frame, "server closed the connection");
                Got::Ended("closed")
            }
            // tungstenite answers pings itself, echoing the payload.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Got::Nothing,
        }
    }
}
