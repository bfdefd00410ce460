//! The exchange itself: one global tape player, and a server (websocket streams, REST,
//! fault control) that can be stopped and started again on the same port while the
//! tape keeps its place.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{http, Message};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tradeflow_shared::{Fixed8, Symbol};

use crate::history::History;
use crate::item::TapeItem;
use crate::protocol::{self, MAX_STREAMS_PER_CONNECTION};
use crate::tape::Tape;

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
    }
}

/// Emits the tape into the global timeline, paced, once the first subscriber is there.
async fn play(shared: Arc<Shared>, tape: Tape, stop: CancellationToken) {
    let mut started = shared.started.subscribe();
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = started.wait_for(|s| *s) => {}
    }
    let mut paused = shared.paused.subscribe();
    let mut cursor = tape.cursor();
    let mut sent: u64 = 0;
    let (mut t0, mut base) = (Instant::now(), 0u64);
    loop {
        if *paused.borrow_and_update() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = paused.wait_for(|p| !*p) => {}
            }
            // Pacing restarts after a pause rather than catching up in a burst.
            (t0, base) = (Instant::now(), sent);
        }
        let batch = match shared.config.rate {
            Some(rate) => {
                let due = base + (rate * t0.elapsed().as_secs_f64()) as u64;
                if due <= sent {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = paused.changed() => {}
                        _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                    }
                    continue;
                }
                (due - sent).min(1000)
            }
            None => 64,
        };
        for _ in 0..batch {
            let Some(item) = cursor.next_item() else {
                shared.finished.send_replace(true);
                return;
            };
            if let Ok(mut p) = shared.prices.lock() {
                p.insert(item.trade.symbol, item.trade.price);
            }
            let item = Arc::new(item);
            shared.history.record(&item);
            let _ = shared.trades.send(item);
            sent += 1;
            shared.emitted.send_replace(sent);
        }
        if shared.config.rate.is_none() {
            tokio::task::yield_now().await;
            if stop.is_cancelled() {
                return;
            }
        }
    }
}

async fn serve_shared(
    shared: Arc<Shared>,
    listener: TcpListener,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let tracker = TaskTracker::new();
    let (http_tx, http_rx) = mpsc::channel(64);
    let router = crate::http::router(Arc::new(crate::http::HttpState {
        prices: Box::new({
            let s = shared.clone();
            move || s.prices.lock().map(|p| p.clone()).unwrap_or_default()
        }),
        control: Box::new({
            let s = shared.clone();
            move |cmd: &str| control(&s, cmd)
        }),
        history: shared.history.clone(),
    }));
    let http = axum::serve(crate::http::ChannelListener { rx: http_rx, addr }, router)
        .with_graceful_shutdown(cancel.clone().cancelled_owned());
    tracker.spawn(async move {
        if let Err(e) = http.await {
            tracing::warn!(error = %e, "http server ended");
        }
    });
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let (shared, cancel, http_tx) = (shared.clone(), cancel.clone(), http_tx.clone());
        tracker.spawn(async move {
            match sniff(&stream).await {
                Some(true) => handle_ws(shared, stream, cancel).await,
                Some(false) => {
                    let _ = http_tx.send((stream, peer)).await;
                }
                None => {}
            }
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Peeks at the request line: `Some(true)` for a websocket path, `Some(false)` for
/// plain HTTP, `None` if the client sent nothing usable in time.
async fn sniff(stream: &TcpStream) -> Option<bool> {
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..end]);
            return Some(protocol::is_websocket_request_line(&line));
        }
        if n == buf.len() || Instant::now() >= deadline {
            return Some(false);
        }
        // The request line is still arriving; peek does not wait for more bytes.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn control(shared: &Shared, cmd: &str) -> Option<String> {
    match cmd {
        "pause" => {
            shared.paused.send_replace(true);
        }
        "resume" => {
            shared.paused.send_replace(false);
        }
        "stats" => return serde_json::to_string(&stats(shared)).ok(),
        other => {
            let _ = shared.faults.send(Fault::from_name(other)?);
        }
    }
    Some("{\"ok\":true}".into())
}

struct OpenGuard<'a>(&'a Shared);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        let n = self
            .0
            .counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed)
            - 1;
        self.0.open.send_replace(n);
    }
}

// The handshake callback's error type is tungstenite's, large or not.
#[allow(clippy::result_large_err)]
async fn handle_ws(shared: Arc<Shared>, stream: TcpStream, cancel: CancellationToken) {
    // Subscribed before the handshake completes: a client receives every trade emitted
    // from the moment its connection is established.
    let mut trades = shared.trades.subscribe();
    let mut faults = shared.faults.subscribe();
    let mut target = String::new();
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        target = req.uri().to_string();
        if protocol::parse_target(&target).is_none() {
            let mut e = ErrorResponse::new(Some("not found".into()));
            *e.status_mut() = http::StatusCode::NOT_FOUND;
            return Err(e);
        }
        Ok(resp)
    };
    let ws_config =
        WebSocketConfig::default().max_message_size(Some(shared.config.max_client_message));
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config)).await
    else {
        return;
    };
    let Some((kind, initial)) = protocol::parse_target(&target) else {
        return;
    };
    if initial.len() > MAX_STREAMS_PER_CONNECTION {
        return;
    }
    let c = &shared.counters;
    bump(&c.connections_total);
    let open = c.connections_open.fetch_add(1, Ordering::Relaxed) + 1;
    shared.open.send_replace(open);
    let _guard = OpenGuard(&shared);
    let mut subs: BTreeSet<String> = initial.into_iter().collect();
    if !subs.is_empty() {
        shared.started.send_replace(true);
    }

    let cfg = &shared.config;
    let opened = Instant::now();
    let age_deadline = opened + cfg.max_connection_age;
    let mut ping_timer = tokio::time::interval_at(opened + cfg.ping_interval, cfg.ping_interval);
    let mut ping_seq: u64 = 0;
    let mut last_ping: Option<Vec<u8>> = None;
    let mut unanswered_since: Option<Instant> = None;
    let mut silent_since: Option<Instant> = None;
    let mut closing_at: Option<Instant> = None;
    let mut arrivals: VecDeque<Instant> = VecDeque::new();
    let far = || Instant::now() + Duration::from_secs(365 * 24 * 3600);

    loop {
        let pong_deadline = unanswered_since.map_or_else(far, |t| t + cfg.pong_timeout);
        // A silent connection is given up after the pong timeout (the client must
        // have left by then).
        let silent_deadline = silent_since.map_or_else(far, |t| t + cfg.pong_timeout);
        let silent = silent_since.is_some();
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(age_deadline) => {
                bump(&c.age_closes);
                if !silent {
                    let _ = ws.close(None).await;
                }
                return;
            }
            _ = tokio::time::sleep_until(closing_at.unwrap_or_else(far)) => {
                let _ = ws.close(None).await;
                return;
            }
            _ = tokio::time::sleep_until(silent_deadline) => return,
            _ = tokio::time::sleep_until(pong_deadline), if !silent => {
                bump(&c.pong_timeouts);
                return;
            }
            f = faults.recv() => match f {
                Ok(Fault::CloseAll) => return,
                Ok(Fault::Silence) => silent_since = silent_since.or(Some(Instant::now())),
                Ok(fault) if !silent => {
                    let msg = match fault {
                        Fault::ServerShutdown => {
                            closing_at = closing_at.or(Some(Instant::now() + cfg.shutdown_grace));
                            Message::text(protocol::frame_server_shutdown(
                                kind,
                                tradeflow_shared::telemetry::now_ms(),
                            ))
                        }
                        Fault::Garbage => Message::text("}{ not json \u{1}"),
                        Fault::Binary => Message::binary(vec![0xde, 0xad, 0xbe, 0xef, 0, 1, 2]),
                        _ => Message::text(huge_text(cfg.huge_frame_bytes)),
                    };
                    if ws.send(msg).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ping_timer.tick(), if !silent => {
                ping_seq += 1;
                let payload = format!("ping-{ping_seq}").into_bytes();
                last_ping = Some(payload.clone());
                unanswered_since = unanswered_since.or(Some(Instant::now()));
                bump(&c.pings_sent);
                if ws.send(Message::Ping(payload.into())).await.is_err() {
                    return;
                }
            }
            msg = ws.next(), if !silent => {
                let Some(Ok(msg)) = msg else { return };
                if !matches!(msg, Message::Close(_) | Message::Frame(_)) {
                    bump(&c.client_messages);
                    let now = Instant::now();
                    arrivals.push_back(now);
                    while arrivals.front().is_some_and(|t| now - *t >= Duration::from_secs(1)) {
                        arrivals.pop_front();
                    }
                    if cfg.max_incoming_per_sec.is_some_and(|max| arrivals.len() > max) {
                        bump(&c.rate_violations);
                        tracing::warn!("client over the incoming message rate: disconnected");
                        return;
                    }
                }
                match msg {
                    Message::Text(text) => {
                        let reply = protocol::apply_command(&mut subs, protocol::parse_command(&text));
                        if !subs.is_empty() {
                            shared.started.send_replace(true);
                        }
                        if ws.send(Message::text(reply)).await.is_err() {
                            return;
                        }
                    }
                    Message::Pong(p) => {
                        if last_ping.as_deref() == Some(&p[..]) {
                            bump(&c.pongs_matched);
                            unanswered_since = None;
                        } else {
                            bump(&c.pongs_mismatched);
                        }
                    }
                    Message::Close(_) => return,
                    _ => {}
                }
            }
            item = trades.recv(), if !silent => match item {
                Ok(item) => {
                    if subs.contains(&*item.stream) {
                        let text = protocol::frame_trade(kind, &item.stream, &item.json);
                        if ws.send(Message::text(text)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    bump(&c.lagged_closes);
                    tracing::warn!(missed = n, "client too slow: disconnected");
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

fn huge_text(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 32);
    s.push_str(r#"{"e":"trade","pad":""#);
    while s.len() < bytes {
        s.push_str("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    }
    s.push_str(r#""}"#);
    s
}
