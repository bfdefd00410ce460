//! The I/O part of the backfill: historicalTrades pages, paced by a weight budget,
//! retried, turned into the websocket events Binance would have sent.

use std::time::Duration;
use tradeflow_shared::retry::{fits_before, Next, Policy, Retry};

use metrics::counter;
use tokio::time::Instant;
use tradeflow_shared::rest::weight::WeightBudget;
use tradeflow_shared::rest::{RestClient, RestError};
use tradeflow_shared::{decode_event, Event, Symbol};

use super::{Fetch, BACKFILL_REQUESTS};
use crate::source::SourceTrade;

const PATH: &str = "/api/v3/historicalTrades";
/// Binance's request weight of one historicalTrades call, and its page size limit.
pub(super) const WEIGHT: u32 = 25;
const PAGE: u64 = 1000;

/// Builds the websocket trade event Binance would have sent for one REST trade, and
/// decodes it like a live one (so the consumer cannot tell them apart).
pub fn parse_page(symbol: Symbol, body: &[u8]) -> Result<Vec<SourceTrade>, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RestTrade {
        id: u64,
        price: String,
        qty: String,
        time: u64,
        is_buyer_maker: bool,
        #[serde(default = "yes")]
        is_best_match: bool,
    }
    fn yes() -> bool {
        true
    }
    let list: Vec<RestTrade> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(list.len());
    for r in list {
        let json = serde_json::json!({
            "e": "trade", "E": r.time, "s": symbol.as_str(), "t": r.id,
            "p": r.price, "q": r.qty, "T": r.time, "m": r.is_buyer_maker, "M": r.is_best_match,
        })
        .to_string();
        match decode_event(&json) {
            Ok(Event::Trade { trade, .. }) => out.push(SourceTrade {
                trade,
                json: json.clone(),
            }),
            Ok(_) => return Err(format!("trade {} is not a trade event", r.id)),
            Err(e) => return Err(format!("trade {}: {e}", r.id)),
        }
    }
    Ok(out)
}

pub(super) type Budget = std::sync::Arc<tokio::sync::Mutex<WeightBudget>>;

/// Backoff between failed backfill requests when the server names no `Retry-After`.
const FETCH_RETRY: Policy = Policy::forever(Duration::from_millis(200), Duration::from_secs(12));

/// Fetches `f` page by page until it is complete, Binance has nothing more, or the
/// deadline. Returns what it got and, if incomplete, why.
pub(super) async fn fetch_gap(
    client: &RestClient,
    budget: &Budget,
    f: &Fetch,
    deadline: Instant,
) -> (Vec<SourceTrade>, Option<&'static str>) {
    let mut got: Vec<SourceTrade> = Vec::new();
    let mut from = f.from;
    // Retried until the gap's deadline (the give-up is `fits_before`, below); a server's
    // Retry-After replaces the policy's wait when it gives one.
    let mut retry = Retry::new("producer.backfill_fetch", FETCH_RETRY);
    while from <= f.to {
        let wait = budget.lock().await.take(WEIGHT);
        if !fits_before(wait, deadline) {
            return (got, Some("deadline"));
        }
        tokio::time::sleep(wait).await;
        let limit = (f.to - from + 1).min(PAGE);
        let path = format!(
            "{PATH}?symbol={}&fromId={from}&limit={limit}",
            f.symbol.as_str()
        );
        let reply = tokio::time::timeout_at(deadline, client.get(&path)).await;
        let retry_in = match reply {
            Err(_) => return (got, Some("deadline")),
            Ok(Err(e)) => {
                counter!(BACKFILL_REQUESTS, "outcome" => "error").increment(1);
                if matches!(e, RestError::InvalidUrl { .. }) {
                    tracing::warn!(symbol = f.symbol.as_str(), error = %e, "backfill request impossible");
                    return (got, Some("invalid_url"));
                }
                (None, e.to_string())
            }
            Ok(Ok(r)) if r.is_success() => {
                counter!(BACKFILL_REQUESTS, "outcome" => "ok").increment(1);
                retry.succeeded(f.symbol.as_str());
                match parse_page(f.symbol, &r.body) {
                    Ok(page) => {
                        let last = page.iter().map(|t| t.trade.trade_id).max();
                        got.extend(page.into_iter().filter(|t| t.trade.trade_id >= from));
                        match last {
                            Some(l) if l >= from => from = l + 1,
                            // Nothing at or after `from`: Binance does not have it.
                            _ => return (got, Some("unavailable")),
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(symbol = f.symbol.as_str(), error = %e, "backfill reply is not a trade list");
                        return (got, Some("garbage"));
                    }
                }
            }
            Ok(Ok(r)) => {
                let outcome = match r.status {
                    429 | 418 => "rate_limited",
                    500..=599 => "server_error",
                    _ => "refused",
                };
                counter!(BACKFILL_REQUESTS, "outcome" => outcome).increment(1);
                let why = format!("HTTP {}: {}", r.status, r.body_excerpt(200));
                if outcome == "refused" {
                    tracing::warn!(symbol = f.symbol.as_str(), error = %why, "backfill request refused");
                    return (got, Some("refused"));
                }
                (r.retry_after, why)
            }
        };
        let (retry_in, why) = retry_in;
        let Next::RetryIn(backoff) = retry.failed(f.symbol.as_str(), &why) else {
            unreachable!("bounded by the deadline, not by the policy")
        };
        let wait = retry_in.unwrap_or(backoff);
        if !fits_before(wait, deadline) {
            // A `Retry-After` past the deadline (up to days on a ban): give the gap up
            // now rather than hold the symbol's trades for nothing.
            tracing::warn!(symbol = f.symbol.as_str(), retry_in = ?wait, "backfill retry would land past its deadline; giving up");
            return (got, Some("deadline"));
        }
        tokio::time::sleep(wait).await;
    }
    (got, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_shared::Fixed8;

    #[test]
    fn rest_pages_become_live_trade_events() {
        let body = br#"[{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012","time":1499865549590,"isBuyerMaker":true,"isBestMatch":true}]"#;
        let got = parse_page(Symbol::new("BNBBTC").unwrap(), body).unwrap();
        assert_eq!(got.len(), 1);
        let tr = &got[0].trade;
        assert_eq!(tr.trade_id, 28457);
        assert_eq!(tr.price, Fixed8::parse("4.000001").unwrap());
        assert_eq!(tr.qty, Fixed8::parse("12").unwrap());
        assert_eq!(tr.trade_time_ms, 1499865549590);
        assert!(tr.buyer_is_maker);
        assert!(got[0].json.contains(r#""s":"BNBBTC""#));
        assert!(parse_page(Symbol::new("A").unwrap(), b"{\"code\":-1121}").is_err());
        assert!(parse_page(
            Symbol::new("A").unwrap(),
            br#"[{"id":1,"price":"x","qty":"1","time":1,"isBuyerMaker":true}]"#
        )
        .is_err());
    }
}
