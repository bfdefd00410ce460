//! The HTTP surface: the page, its two assets, `/api/snapshot` and `/api/candles`, the
//! page embedded in the binary. Anything else is 404; methods other than GET/HEAD are 405.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::candles::parse_query;
use super::source::Source;

pub const INDEX_HTML: &str = include_str!("assets/index.html");
pub const APP_JS: &str = include_str!("assets/app.js");
pub const STYLE_CSS: &str = include_str!("assets/style.css");

/// Only our own origin, no inline code, no framing: the page needs nothing else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

pub fn router(source: Arc<Source>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/snapshot", get(snapshot))
        .route("/api/candles", get(candles))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(source)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// 200 with the numbers, or 503 with `ok: false` and the reason (same shape).
async fn snapshot(State(source): State<Arc<Source>>) -> Response {
    let snap = source.snapshot().await;
    let status = if snap.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    api((status, Json(snap.as_ref().clone())).into_response())
}

/// Binance kline arrays, or `ok: false` and the reason (400, 500, 503).
async fn candles(
    State(source): State<Arc<Source>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let outcome = match parse_query(&q) {
        Ok((sym, interval, limit)) => source.candles(sym, interval, limit).await,
        Err(bad) => Arc::new(bad),
    };
    let (status, body) = outcome.reply();
    api((status, Json(body)).into_response())
}

/// An API answer: never cached by the browser, never sniffed.
fn api(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Bytes a browser fetches on first load (HTML + JS + CSS), for the docs and tests.
pub fn page_weight() -> usize {
    INDEX_HTML.len() + APP_JS.len() + STYLE_CSS.len()
}
