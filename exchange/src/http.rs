//! The plain-HTTP side of the exchange (REST market data and the fault control
//! endpoint), served by axum on connections the websocket listener hands over.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tradeflow_shared::{Fixed8, Symbol};

use crate::history::{History, Refusal};
use crate::klines::{KlineQuery, Klines};

type PricesFn = Box<dyn Fn() -> BTreeMap<Symbol, Fixed8> + Send + Sync>;
type ControlFn = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub(crate) struct HttpState {
    pub prices: PricesFn,
    /// Runs a control command by name; `None` if there is no such command.
    pub control: ControlFn,
    pub history: Arc<History>,
    pub klines: Arc<Klines>,
}

/// An axum listener fed with connections the websocket acceptor decided are plain HTTP.
pub(crate) struct ChannelListener {
    pub rx: mpsc::Receiver<(TcpStream, SocketAddr)>,
    pub addr: SocketAddr,
}

impl axum::serve::Listener for ChannelListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The acceptor is gone; graceful shutdown ends the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

pub(crate) fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/api/v3/ticker/price", get(ticker_price))
        .route("/api/v3/exchangeInfo", get(exchange_info))
        .route("/api/v3/historicalTrades", get(historical_trades))
        .route("/api/v3/klines", get(klines))
        .route("/control/{command}", post(control).get(control))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

fn json(body: String) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn ticker_price(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    let list: Vec<serde_json::Value> = (s.prices)()
        .into_iter()
        .map(|(sym, p)| serde_json::json!({"symbol": sym.as_str(), "price": p.to_string()}))
        .collect();
    json(serde_json::Value::Array(list).to_string())
}

async fn exchange_info(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    let symbols: Vec<serde_json::Value> = (s.prices)()
        .into_keys()
        .map(|sym| serde_json::json!({"symbol": sym.as_str(), "status": "TRADING"}))
        .collect();
    let body = serde_json::json!({
        "timezone": "UTC",
        "serverTime": tradeflow_shared::telemetry::now_ms(),
        "symbols": symbols,
    });
    json(body.to_string())
}

/// Binance's parameter names; all optional here so that a missing one gets Binance's
/// error body rather than axum's.
#[derive(serde::Deserialize)]
struct HistoryQuery {
    symbol: Option<String>,
    #[serde(rename = "fromId")]
    from_id: Option<String>,
    limit: Option<String>,
}

async fn historical_trades(
    State(s): State<Arc<HttpState>>,
    Query(q): Query<HistoryQuery>,
) -> axum::response::Response {
    let prices = (s.prices)();
    let answer = s.history.answer(
        q.symbol.as_deref(),
        q.from_id.as_deref(),
        q.limit.as_deref(),
        |sym| prices.contains_key(sym),
    );
    answered(answer)
}

async fn klines(
    State(s): State<Arc<HttpState>>,
    Query(q): Query<KlineQuery>,
) -> axum::response::Response {
    let prices = (s.prices)();
    answered(s.klines.answer(&q, |sym| prices.contains_key(sym)))
}

/// A market-data answer, or Binance's error body with its status.
fn answered(answer: Result<String, Refusal>) -> axum::response::Response {
    match answer {
        Ok(body) => json(body).into_response(),
        Err(r) => (
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
            [(header::CONTENT_TYPE, "application/json")],
            r.body,
        )
            .into_response(),
    }
}

async fn control(
    State(s): State<Arc<HttpState>>,
    Path(command): Path<String>,
) -> axum::response::Response {
    match (s.control)(&command) {
        Some(body) => json(body).into_response(),
        None => (StatusCode::NOT_FOUND, "unknown control command\n").into_response(),
    }
}
