//! `/api/candles?symbol=…&interval=…&limit=…`: one symbol's candles for the page's
//! chart, as Binance kline arrays (`Kline::to_binance_array`, the body of Binance's
//! `GET /api/v3/klines`). `interval` is any of Binance's names tradeflow keeps (1m…1d),
//! `limit` 1..=[`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]).
//!
//! The window is the `limit` intervals ending at the one holding the symbol's newest
//! trade (its stats' `last_time_ms`; now if it has none): like the minute chart, a
//! replayed or stalled feed still shows its last hour of data. Intervals without a trade
//! are left out.
//!
//! Answers: 200 with the array; 400 `{"ok":false,"error":…}` for a missing or bad
//! parameter or a symbol not in the symbols index; 503 (same shape) when Redis cannot be
//! read; 500 when a bucket holds a value tradeflow did not write (the error names it).
//!
//! Redis cost of one read: one round trip `SISMEMBER <p>symbols` + `HGET <p>stats:<SYM>
//! last_time_ms`, then `limit` × (interval ÷ its stored bucket) `HMGET`s in one pipeline
//! per 2000 (1m × 60: 60; 5m × 60: 300; 15m × 60: 900; 1h × 60: 60 hour buckets; worst,
//! 30m × 240: 7200 in 4 round trips). Cached per (symbol, interval) for the page's
//! `min_interval` (1 s): a fresh entry answers every viewer and any `limit` up to the one
//! it was read with; only a wider `limit` reads again. Failures are cached as well, so a
//! Redis outage costs one attempt a second, not one per viewer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use tokio::sync::Mutex;
use tradeflow_shared::kline::{Interval, Kline};
use tradeflow_shared::snapshot::CandleError;
use tradeflow_shared::Symbol;

use super::source::{now_ms, Source};
use crate::candles::{lookup, parse_symbol};
use crate::error::ReportError;

/// Most intervals one request may ask for: four hours of minutes (the page asks 60;
/// longer reads are the CLI's, up to 1000).
pub const MAX_LIMIT: u64 = 240;
pub const DEFAULT_LIMIT: u64 = 60;

/// What one read found: the candles and the open time of the window's last interval,
/// or the status and reason to answer with.
#[derive(Debug, Clone)]
pub enum Outcome {
    Candles { last_ms: u64, candles: Vec<Kline> },
    Failed { status: StatusCode, error: String },
}

impl Outcome {
    fn failed(status: StatusCode, error: impl Into<String>) -> Self {
        Outcome::Failed {
            status,
            error: error.into(),
        }
    }

    /// The status and JSON body to answer with.
    pub fn reply(&self) -> (StatusCode, serde_json::Value) {
        match self {
            Outcome::Candles { candles, .. } => (
                StatusCode::OK,
                candles.iter().map(Kline::to_binance_array).collect(),
            ),
            Outcome::Failed { status, error } => {
                (*status, serde_json::json!({ "ok": false, "error": error }))
            }
        }
    }

    /// Only the last `limit` intervals of the window (a cached wider read, narrowed).
    fn narrowed(&self, interval: Interval, limit: u64) -> Outcome {
        match self {
            Outcome::Candles { last_ms, candles } => {
                let first = last_ms.saturating_sub((limit - 1) * interval.ms());
                Outcome::Candles {
                    last_ms: *last_ms,
                    candles: candles
                        .iter()
                        .filter(|k| k.open_time_ms >= first)
                        .copied()
                        .collect(),
                }
            }
            failed => failed.clone(),
        }
    }
}

/// A request's parameters, checked (never reaching Redis when bad).
pub fn parse_query(q: &HashMap<String, String>) -> Result<(Symbol, Interval, u64), Outcome> {
    let bad = |e: String| Outcome::failed(StatusCode::BAD_REQUEST, e);
    let need = |k: &str| {
        q.get(k)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(format!("parameter {k} is required")))
    };
    let sym = parse_symbol(need("symbol")?).map_err(bad)?;
    let interval: Interval = need("interval")?.parse().map_err(bad)?;
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| bad(format!("limit {l:?} is not a number from 1 to {MAX_LIMIT}")))?,
    };
    Ok((sym, interval, limit))
}

struct Entry {
    at: Instant,
    limit: u64,
    outcome: Arc<Outcome>,
}

/// The per-(symbol, interval) cache; held across a read, so concurrent viewers wait
/// for one read instead of each making their own.
#[derive(Default)]
pub struct CandleCache {
    entries: Mutex<HashMap<(String, Interval), Entry>>,
}

impl CandleCache {
    pub async fn get(
        &self,
        source: &Source,
        sym: Symbol,
        interval: Interval,
        limit: u64,
    ) -> Arc<Outcome> {
        let fresh = source.min_interval();
        let mut entries = self.entries.lock().await;
        // Stale entries go: the map stays as small as what viewers watch this second.
        entries.retain(|_, e| e.at.elapsed() < fresh);
        let key = (sym.to_string(), interval);
        if let Some(e) = entries.get(&key) {
            if e.limit >= limit {
                return Arc::new(e.outcome.narrowed(interval, limit));
            }
        }
        let outcome =
            match tokio::time::timeout(source.timeout(), read(source, &sym, interval, limit)).await
            {
                Ok(o) => o,
                Err(_) => Outcome::failed(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "Redis unreachable: no answer within {} ms",
                        source.timeout().as_millis()
                    ),
                ),
            };
        if let Outcome::Failed { status, error } = &outcome {
            if *status == StatusCode::SERVICE_UNAVAILABLE {
                source.failed_read(error).await;
            }
        }
        let outcome = Arc::new(outcome);
        entries.insert(
            key,
            Entry {
                at: Instant::now(),
                limit,
                outcome: outcome.clone(),
            },
        );
        outcome
    }
}

async fn read(source: &Source, sym: &Symbol, interval: Interval, limit: u64) -> Outcome {
    let unavailable = |e: ReportError| {
        Outcome::failed(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Redis unreachable: {e}"),
        )
    };
    let reader = match source.reader().await {
        Ok(r) => r,
        Err(e) => return unavailable(e),
    };
    let (known, newest) = match lookup(&reader, sym).await {
        Ok(found) => found,
        Err(e) => return unavailable(e.into()),
    };
    if !known {
        let e = crate::candles::unknown(&reader, sym);
        return Outcome::failed(StatusCode::BAD_REQUEST, e.to_string());
    }
    let last_ms = interval.start_of(newest.unwrap_or_else(now_ms));
    let first = last_ms.saturating_sub((limit - 1) * interval.ms());
    match reader.candles(sym, interval, first, last_ms).await {
        Ok(candles) => Outcome::Candles { last_ms, candles },
        Err(CandleError::Read(e)) => unavailable(e.into()),
        Err(e) => Outcome::failed(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_shared::kline::MINUTE_MS;
    use tradeflow_shared::Fixed8;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn error(o: Outcome) -> String {
        let (status, body) = o.reply();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["ok"], false);
        body["error"].as_str().unwrap().to_string()
    }

    #[test]
    fn parameters_are_checked() {
        let (s, i, l) = parse_query(&q(&[("symbol", "ethbtc"), ("interval", "5m")])).unwrap();
        assert_eq!((s.as_str(), i, l), ("ETHBTC", Interval::M5, DEFAULT_LIMIT));
        let ok = parse_query(&q(&[("symbol", "X"), ("interval", "1h"), ("limit", "240")]));
        assert_eq!(ok.unwrap().2, 240);
        let e = |p: &[(&str, &str)]| error(parse_query(&q(p)).unwrap_err());
        assert!(e(&[("interval", "1m")]).contains("symbol is required"));
        assert!(e(&[("symbol", "A-B"), ("interval", "1m")]).contains("not a symbol"));
        assert!(e(&[("symbol", "AB")]).contains("interval is required"));
        assert!(e(&[("symbol", "AB"), ("interval", "1w")]).contains("not one of 1m"));
        for bad in ["0", "241", "x", "-1"] {
            let m = e(&[("symbol", "AB"), ("interval", "1m"), ("limit", bad)]);
            assert!(m.contains("from 1 to 240"), "{m}");
        }
    }

    #[test]
    fn a_wider_read_answers_a_narrower_limit() {
        let p = |s: &str| Fixed8::parse(s).unwrap();
        let t = 1_717_243_200_000;
        let candles: Vec<Kline> = (0..5)
            .map(|i| Kline::of_trade(MINUTE_MS, i, p("1"), p("1"), t + i * MINUTE_MS, false))
            .collect();
        let wide = Outcome::Candles {
            last_ms: t + 4 * MINUTE_MS,
            candles,
        };
        let (status, body) = wide.narrowed(Interval::M1, 2).reply();
        assert_eq!(status, StatusCode::OK);
        let opens: Vec<u64> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k[0].as_u64().unwrap())
            .collect();
        assert_eq!(opens, [t + 3 * MINUTE_MS, t + 4 * MINUTE_MS]);
    }
}
