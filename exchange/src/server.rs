//! The exchange itself: one global tape player, and a server (websocket streams, REST,
//! fault control) that can be stopped and started again on the same port while the
//! tape keeps its place.
//!
//! Here: the settings, faults, counters and the `Exchange` handle. The tape player is in
//! `play.rs`, the listening port (websocket or HTTP, `/control`) in `listen.rs`, one
//! websocket connection in `ws.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tradeflow_shared::{Fixed8, Symbol};

use crate::history::History;
use crate::item::TapeItem;
use crate::klines::Klines;
use crate::tape::Tape;
use listen::serve_shared;
use play::play;

mod listen;
mod play;
mod ws;

/// Timings and limits. Defaults are Binance's; tests shrink the timings.
#[derive(Debug, Clone)]
pub struct ExchangeConfig {
    /// How often the server pings each connection.
    pub ping_interval: Duration,
    /// A ping not answered by a pong with the same payload within this is a dead client.
    pub pong_timeout: Duration,
    /// The server closes every connection this long after it opened (Binance: 24 h).
    pub max_connection_age: Duration,
    /// After a `serverShutdown` notice, the connection is closed this much later.
    pub shutdown_grace: Duration,
    /// Trades per second; `None` plays as fast as possible.
    pub rate: Option<f64>,
    /// Incoming messages allowed per second per connection (Binance: 5); a client over
    /// it is disconnected and counted. `None` disables the check.
    pub max_incoming_per_sec: Option<usize>,
    /// Largest message accepted from a client.
    pub max_client_message: usize,
    /// Trades a connection may fall behind before it is dropped as too slow.
    pub lag_capacity: usize,
    /// Size of the frame sent by [`Fault::Huge`].
    pub huge_frame_bytes: usize,
    /// Emitted trades kept per symbol for `historicalTrades` (the newest ones).
    pub history_per_symbol: usize,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(60),
            max_connection_age: Duration::from_secs(24 * 3600),
            shutdown_grace: Duration::from_secs(5),
            rate: None,
            max_incoming_per_sec: Some(5),
            max_client_message: 64 * 1024,
            lag_capacity: 1 << 16,
            huge_frame_bytes: 2 * 1024 * 1024,
            history_per_symbol: 100_000,
        }
    }
}

/// Faults a test or script can trigger on the connections open at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Drop every socket at once, no close frame.
    CloseAll,
    /// Stop sending anything (trades, pings) and stop reading (no pongs) on them.
    Silence,
    /// Send `serverShutdown`, then close after the grace period.
    ServerShutdown,
    /// A text frame that is not JSON.
    Garbage,
    /// A binary frame.
    Binary,
    /// A text frame far above any sane size.
    Huge,
}

impl Fault {
    pub fn from_name(name: &str) -> Option<Fault> {
        Some(match name {
            "close-all" => Fault::CloseAll,
            "silence" => Fault::Silence,
            "server-shutdown" => Fault::ServerShutdown,
            "garbage" => Fault::Garbage,
            "binary" => Fault::Binary,
            "huge" => Fault::Huge,
            _ => return None,
        })
    }
}

/// Counters for tests and the `/control/stats` endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub connections_open: u64,
    pub connections_total: u64,
    pub emitted: u64,
    pub pings_sent: u64,
    /// Pongs echoing the payload of the last ping.
    pub pongs_matched: u64,
    /// Pongs with any other payload.
    pub pongs_mismatched: u64,
    pub client_messages: u64,
    pub rate_violations: u64,
    pub pong_timeouts: u64,
    pub lagged_closes: u64,
    pub age_closes: u64,
    /// `historicalTrades` requests answered (or refused).
    pub history_requests: u64,
    /// `klines` requests answered (or refused).
    pub kline_requests: u64,
}

#[derive(Default)]
struct Counters {
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    pings_sent: AtomicU64,
    pongs_matched: AtomicU64,
    pongs_mismatched: AtomicU64,
    client_messages: AtomicU64,
    rate_violations: AtomicU64,
    pong_timeouts: AtomicU64,
    lagged_closes: AtomicU64,
    age_closes: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct Shared {
    config: ExchangeConfig,
    finite: Option<Arc<Vec<TapeItem>>>,
    trades: broadcast::Sender<Arc<TapeItem>>,
    faults: broadcast::Sender<Fault>,
    started: watch::Sender<bool>,
    paused: watch::Sender<bool>,
    emitted: watch::Sender<u64>,
    finished: watch::Sender<bool>,
    open: watch::Sender<u64>,
    prices: Mutex<BTreeMap<Symbol, Fixed8>>,
    history: Arc<History>,
    /// Every trade played, as minute klines (`klines`).
    klines: Arc<Klines>,
    counters: Counters,
}

/// A running exchange: the tape player plus whatever servers were started with
/// [`Exchange::serve`] / [`Exchange::bind`]. Dropping it stops the tape.
pub struct Exchange {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

/// A server started with [`Exchange::bind`].
pub struct ServerHandle {
    pub addr: SocketAddr,
    cancel: CancellationToken,
    join: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ServerHandle {
    /// Stops the server: every connection is dropped, the port is released.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.join.await;
    }
}

impl Exchange {
    /// Starts the tape player (it waits for the first subscriber). Needs a tokio runtime.
    pub fn start(config: ExchangeConfig, tape: Tape) -> Exchange {
        let prices = tape.initial_prices();
        let shared = Arc::new(Shared {
            finite: tape.finite_items().cloned(),
            trades: broadcast::channel(config.lag_capacity.max(16)).0,
            faults: broadcast::channel(64).0,
            started: watch::channel(false).0,
            paused: watch::channel(false).0,
            emitted: watch::channel(0).0,
            finished: watch::channel(false).0,
            open: watch::channel(0).0,
            prices: Mutex::new(prices),
            history: Arc::new(History::new(config.history_per_symbol)),
            klines: Arc::new(Klines::default()),
            counters: Counters::default(),
            config,
        });
        let stop = CancellationToken::new();
        tokio::spawn(play(shared.clone(), tape, stop.clone()));
        Exchange { shared, stop }
    }

    /// Binds `addr` and serves until the handle is stopped.
    pub async fn bind(&self, addr: SocketAddr) -> std::io::Result<ServerHandle> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let shared = self.shared.clone();
        let join = tokio::spawn(serve_shared(shared, listener, cancel.clone()));
        Ok(ServerHandle { addr, cancel, join })
    }

    /// Serves on `listener` until `cancel`; then drops every connection and returns.
    pub async fn serve(
        &self,
        listener: TcpListener,
        cancel: CancellationToken,
    ) -> std::io::Result<()> {
        serve_shared(self.shared.clone(), listener, cancel).await
    }

    /// Triggers a fault on every connection open now.
    pub fn inject(&self, fault: Fault) {
        let _ = self.shared.faults.send(fault);
    }

    /// Holds the tape (nothing is emitted until [`Exchange::resume`]).
    pub fn pause(&self) {
        self.shared.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.shared.paused.send_replace(false);
    }

    /// The whole tape when it is finite: the ground truth of what will be emitted.
    pub fn tape(&self) -> Option<Arc<Vec<TapeItem>>> {
        self.shared.finite.clone()
    }

    /// What was emitted so far (finite tapes only; empty otherwise).
    pub fn emitted(&self) -> Vec<TapeItem> {
        let n = self.emitted_count() as usize;
        self.shared
            .finite
            .as_ref()
            .map(|t| t[..n.min(t.len())].to_vec())
            .unwrap_or_default()
    }

    pub fn emitted_count(&self) -> u64 {
        *self.shared.emitted.borrow()
    }

    /// Waits until at least `n` trades were emitted.
    pub async fn wait_emitted(&self, n: u64) {
        let _ = self.shared.emitted.subscribe().wait_for(|e| *e >= n).await;
    }

    /// Waits until a finite tape has been emitted in full.
    pub async fn wait_finished(&self) {
        let _ = self.shared.finished.subscribe().wait_for(|f| *f).await;
    }

    /// Waits until exactly `n` websocket connections are open.
    pub async fn wait_connections(&self, n: u64) {
        let _ = self.shared.open.subscribe().wait_for(|o| *o == n).await;
    }

    pub fn stats(&self) -> Stats {
        stats(&self.shared)
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn stats(s: &Shared) -> Stats {
    let c = &s.counters;
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Stats {
        connections_open: l(&c.connections_open),
        connections_total: l(&c.connections_total),
        emitted: *s.emitted.borrow(),
        pings_sent: l(&c.pings_sent),
        pongs_matched: l(&c.pongs_matched),
        pongs_mismatched: l(&c.pongs_mismatched),
        client_messages: l(&c.client_messages),
        rate_violations: l(&c.rate_violations),
        pong_timeouts: l(&c.pong_timeouts),
        lagged_closes: l(&c.lagged_closes),
        age_closes: l(&c.age_closes),
        history_requests: s.history.requests(),
        kline_requests: s.klines.requests(),
    }
}
