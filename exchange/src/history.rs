//! What the exchange has emitted, per symbol, for `GET /api/v3/historicalTrades`: the
//! REST call a client uses to backfill the trades it missed while disconnected. The
//! history belongs to the exchange, not to a server, so it survives a server restart
//! (as Binance's does). Bounded: the newest `cap` trades per symbol.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tradeflow_shared::Symbol;

use crate::item::TapeItem;

/// Binance's default and maximum page sizes for historicalTrades.
pub const DEFAULT_LIMIT: usize = 500;
pub const MAX_LIMIT: usize = 1000;

pub struct History {
    cap: usize,
    trades: Mutex<HashMap<Symbol, VecDeque<Arc<TapeItem>>>>,
    requests: AtomicU64,
}

/// A refused request: HTTP status and Binance's error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub body: String,
}

pub(crate) fn refuse(code: i32, msg: &str) -> Refusal {
    Refusal {
        status: 400,
        body: serde_json::json!({"code": code, "msg": msg}).to_string(),
    }
}

impl History {
    pub fn new(cap: usize) -> Self {
        History {
            cap: cap.max(1),
            trades: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
        }
    }

    /// Remembers an emitted trade.
    pub fn record(&self, item: &Arc<TapeItem>) {
        let Ok(mut all) = self.trades.lock() else {
            return;
        };
        let q = all.entry(item.trade.symbol).or_default();
        if q.len() == self.cap {
            q.pop_front();
        }
        q.push_back(item.clone());
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Answers `historicalTrades` from its raw query parameters, as Binance would: the
    /// trades with id ≥ `fromId` in id order (the newest `limit` without it), as
    /// `[{"id","price","qty","quoteQty","time","isBuyerMaker","isBestMatch"}]`.
    pub fn answer(
        &self,
        symbol: Option<&str>,
        from_id: Option<&str>,
        limit: Option<&str>,
        known: impl Fn(&Symbol) -> bool,
    ) -> Result<String, Refusal> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let symbol = symbol.filter(|s| !s.is_empty()).ok_or_else(|| {
            refuse(
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            )
        })?;
        let symbol = Symbol::new(symbol).map_err(|_| refuse(-1121, "Invalid symbol."))?;
        let limit =
            match limit {
                None => DEFAULT_LIMIT,
                Some(l) => match l.parse::<usize>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                    _ => return Err(refuse(
                        -1100,
                        "Illegal characters found in parameter 'limit'; legal range is '1-1000'.",
                    )),
                },
            };
        let from_id =
            match from_id {
                None => None,
                Some(f) => Some(f.parse::<u64>().map_err(|_| {
                    refuse(-1100, "Illegal characters found in parameter 'fromId'.")
                })?),
            };
        let all = self.trades.lock().map_err(|_| {
            refuse(
                -1000,
                "An unknown error occurred while processing the request.",
            )
        })?;
        let Some(q) = all.get(&symbol) else {
            return if known(&symbol) {
                Ok("[]".into())
            } else {
                Err(refuse(-1121, "Invalid symbol."))
            };
        };
        let picked: Vec<&Arc<TapeItem>> = match from_id {
            Some(from) => {
                let start = q.partition_point(|t| t.trade.trade_id < from);
                q.range(start..).take(limit).collect()
            }
            None => q.range(q.len().saturating_sub(limit)..).collect(),
        };
        Ok(
            serde_json::Value::Array(picked.into_iter().map(|t| rest_trade(t)).collect())
                .to_string(),
        )
    }
}

/// One trade in Binance's REST shape, prices and quantities as the stream sent them.
fn rest_trade(item: &TapeItem) -> serde_json::Value {
    let t = &item.trade;
    let sent: serde_json::Value = serde_json::from_str(&item.json).unwrap_or_default();
    let text = |k: &str, fallback: String| {
        sent.get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or(fallback)
    };
    let quote = t.quote_units();
    serde_json::json!({
        "id": t.trade_id,
        "price": text("p", t.price.to_string()),
        "qty": text("q", t.qty.to_string()),
        "quoteQty": format!("{}.{:016}", quote / 10u128.pow(16), quote % 10u128.pow(16)),
        "time": t.trade_time_ms,
        "isBuyerMaker": t.buyer_is_maker,
        "isBestMatch": sent.get("M").and_then(|v| v.as_bool()).unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_shared::{Fixed8, Trade};

    fn item(sym: &str, id: u64) -> Arc<TapeItem> {
        let trade = Trade {
            symbol: Symbol::new(sym).unwrap(),
            trade_id: id,
            price: Fixed8::parse("1.5").unwrap(),
            qty: Fixed8::parse("2").unwrap(),
            trade_time_ms: 1000 + id,
            event_time_ms: 1000 + id,
            buyer_is_maker: id.is_multiple_of(2),
        };
        let json = trade.to_json();
        Arc::new(TapeItem::new(trade, json))
    }

    fn ids(body: &str) -> Vec<u64> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn pages_from_an_id_and_keeps_only_the_newest() {
        let h = History::new(5);
        for id in 1..=8 {
            h.record(&item("BTCUSDT", id));
        }
        h.record(&item("ETHUSDT", 100));
        let yes = |_: &Symbol| true;
        assert_eq!(
            ids(&h
                .answer(Some("BTCUSDT"), Some("5"), Some("2"), yes)
                .unwrap()),
            [5, 6]
        );
        // Ids 1..=3 fell out of the bounded history: the page starts at what is left.
        assert_eq!(
            ids(&h.answer(Some("BTCUSDT"), Some("1"), None, yes).unwrap()),
            [4, 5, 6, 7, 8]
        );
        assert_eq!(
            ids(&h.answer(Some("BTCUSDT"), None, Some("2"), yes).unwrap()),
            [7, 8]
        );
        assert_eq!(
            ids(&h.answer(Some("BTCUSDT"), Some("9"), None, yes).unwrap()),
            Vec::<u64>::new()
        );
        let one: serde_json::Value =
            serde_json::from_str(&h.answer(Some("ETHUSDT"), None, None, yes).unwrap()).unwrap();
        assert_eq!(one[0]["price"], "1.50000000");
        assert_eq!(one[0]["qty"], "2.00000000");
        assert_eq!(one[0]["quoteQty"], "3.0000000000000000");
        assert_eq!(one[0]["isBuyerMaker"], true);
        assert_eq!(h.requests(), 5);
    }

    #[test]
    fn bad_requests_get_binance_errors() {
        let h = History::new(5);
        let no = |_: &Symbol| false;
        let code = |r: Result<String, Refusal>| {
            let r = r.unwrap_err();
            assert_eq!(r.status, 400);
            serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["code"]
                .as_i64()
                .unwrap()
        };
        assert_eq!(code(h.answer(None, None, None, no)), -1102);
        assert_eq!(code(h.answer(Some("NOPE"), None, None, no)), -1121);
        assert_eq!(code(h.answer(Some("BTC USDT"), None, None, no)), -1121);
        assert_eq!(code(h.answer(Some("BTCUSDT"), None, Some("0"), no)), -1100);
        assert_eq!(
            code(h.answer(Some("BTCUSDT"), None, Some("1001"), no)),
            -1100
        );
        assert_eq!(code(h.answer(Some("BTCUSDT"), Some("x"), None, no)), -1100);
        // Known symbol, nothing traded yet.
        assert_eq!(
            h.answer(Some("BTCUSDT"), None, None, |_| true).unwrap(),
            "[]"
        );
    }
}
