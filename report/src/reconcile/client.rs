//! The exchange's side: `GET /api/v3/klines` (1m) for one symbol and a window of at
//! most 1,000 minutes (Binance's `limit` maximum: one call per window), paced by the
//! request-weight budget the producer's backfill uses (`shared::rest::weight`; klines
//! weigh 2) and retried with the house's `shared::retry`: 5xx, unreachable or timed
//! out, and 429/418 after their `Retry-After` (Binance's rule: back off for that long),
//! all within `retry_for` per call; a wait that would end past it gives up at once.
//! Never retried: a refusal (4xx, e.g. -1121 for a symbol the exchange does not know)
//! and a reply that is not kline arrays. Every error names the URL and the symbol.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tradeflow_shared::kline::{Kline, MINUTE_MS};
use tradeflow_shared::rest::weight::WeightBudget;
use tradeflow_shared::rest::{RestClient, RestError};
use tradeflow_shared::retry::{fits_before, Next, Policy, Retry};
use tradeflow_shared::Symbol;

use super::compare::Theirs;
use super::window::Window;

pub const KLINES_PATH: &str = "/api/v3/klines";
/// Binance's request weight of one klines call.
const WEIGHT: u32 = 2;
/// A page of 1,000 klines is ~200 KB; far more is not a page.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Backoff between failed calls when the server names no `Retry-After`.
const RETRY: Policy = Policy::forever(Duration::from_millis(250), Duration::from_secs(8));

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Url(String),
    #[error("klines of {symbol} from {url}: unreachable, given up after {retried_s} s of retries (--retry-for): {reason}")]
    Unreachable {
        url: String,
        symbol: String,
        retried_s: u64,
        reason: String,
    },
    #[error("klines of {symbol} from {url}: HTTP {status}, Retry-After {retry_after}, given up after {retried_s} s of retries (--retry-for): {body}")]
    Unavailable {
        url: String,
        symbol: String,
        status: u16,
        retried_s: u64,
        retry_after: String,
        body: String,
    },
    #[error("klines of {symbol} from {url}: refused (HTTP {status}): {body}")]
    Refused {
        url: String,
        symbol: String,
        status: u16,
        body: String,
    },
    #[error("klines of {symbol} from {url}: not kline arrays: {why}")]
    Malformed {
        url: String,
        symbol: String,
        why: String,
    },
}

impl FetchError {
    /// Whether the exchange as a whole failed (every other symbol would fail the same
    /// way), rather than this symbol's answer.
    pub fn is_exchange_down(&self) -> bool {
        matches!(
            self,
            FetchError::Url(_) | FetchError::Unreachable { .. } | FetchError::Unavailable { .. }
        )
    }
}

/// The exchange's klines endpoint, its weight budget and retry bound. Cheap to clone.
#[derive(Clone)]
pub struct Exchange {
    client: RestClient,
    budget: Arc<Mutex<WeightBudget>>,
    retry_for: Duration,
}

impl Exchange {
    pub fn new(
        base_url: &str,
        timeout: Duration,
        weight_per_minute: u32,
        retry_for: Duration,
    ) -> Result<Self, FetchError> {
        let client = RestClient::new(base_url, timeout, MAX_BODY_BYTES, "tradeflow-report")
            .map_err(|e| FetchError::Url(e.to_string()))?;
        Ok(Exchange {
            client,
            budget: Arc::new(Mutex::new(WeightBudget::new(weight_per_minute.max(WEIGHT)))),
            retry_for,
        })
    }

    /// The 1m klines of `symbol` opening in `w` (at most 1,000 minutes).
    pub async fn klines(&self, symbol: &Symbol, w: Window) -> Result<Vec<Theirs>, FetchError> {
        let path = path(symbol, w);
        let url = self.client.url(&path);
        let sym = symbol.as_str().to_string();
        // A huge --retry-for must not overflow the instant.
        let now = Instant::now();
        let deadline = now
            .checked_add(self.retry_for)
            .unwrap_or(now + Duration::from_secs(86_400));
        let mut retry = Retry::new("report.reconcile_klines", RETRY);
        loop {
            let wait = self.budget.lock().await.take(WEIGHT);
            tokio::time::sleep(wait).await;
            let (retry_after, failure) = match self.client.get(&path).await {
                Ok(r) if r.is_success() => {
                    retry.succeeded(&sym);
                    return parse(&r.body, w).map_err(|why| FetchError::Malformed {
                        url,
                        symbol: sym,
                        why,
                    });
                }
                Ok(r) if matches!(r.status, 429 | 418) || r.status >= 500 => {
                    let failure = FetchError::Unavailable {
                        url: url.clone(),
                        symbol: sym.clone(),
                        status: r.status,
                        retried_s: 0,
                        retry_after: r
                            .retry_after
                            .map_or("none".into(), |d| format!("{} s", d.as_secs())),
                        body: r.body_excerpt(200),
                    };
                    (r.retry_after, failure)
                }
                Ok(r) => {
                    return Err(FetchError::Refused {
                        url,
                        symbol: sym,
                        status: r.status,
                        body: r.body_excerpt(200),
                    })
                }
                Err(RestError::InvalidUrl { reason, .. }) => {
                    return Err(FetchError::Url(format!(
                        "{url} is not a usable URL: {reason}"
                    )))
                }
                Err(e) => {
                    // The URL is in the message already.
                    let reason = match e {
                        RestError::Unreachable { reason, .. } => reason,
                        RestError::Timeout { ms, .. } => format!("no answer within {ms} ms"),
                        other => other.to_string(),
                    };
                    let failure = FetchError::Unreachable {
                        url: url.clone(),
                        symbol: sym.clone(),
                        retried_s: 0,
                        reason,
                    };
                    (None, failure)
                }
            };
            let Next::RetryIn(backoff) = retry.failed(&sym, &failure) else {
                unreachable!("bounded by the deadline, not by the policy")
            };
            // Binance: after a 429/418, wait Retry-After before the next call.
            let wait = retry_after.unwrap_or(backoff);
            if !fits_before(wait, deadline) {
                return Err(with_retried(failure, retry.failing_for()));
            }
            tokio::time::sleep(wait).await;
        }
    }
}

fn with_retried(mut e: FetchError, spent: Duration) -> FetchError {
    if let FetchError::Unreachable { retried_s, .. } | FetchError::Unavailable { retried_s, .. } =
        &mut e
    {
        *retried_s = spent.as_secs();
    }
    e
}

fn path(symbol: &Symbol, w: Window) -> String {
    format!(
        "{KLINES_PATH}?symbol={}&interval=1m&startTime={}&endTime={}&limit=1000",
        symbol.as_str(),
        w.first_ms,
        w.last_ms
    )
}

/// A reply: kline arrays, ascending by open time, each opening in `w`.
pub fn parse(body: &[u8], w: Window) -> Result<Vec<Theirs>, String> {
    let list: Vec<serde_json::Value> = serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(body);
        format!(
            "{e} (reply begins {:?})",
            text.chars().take(80).collect::<String>()
        )
    })?;
    let mut out: Vec<Theirs> = Vec::with_capacity(list.len());
    for v in &list {
        let kline = Kline::from_binance_array(v, MINUTE_MS)?;
        let open = kline.open_time_ms;
        if !(w.first_ms..=w.last_ms).contains(&open) || open % MINUTE_MS != 0 {
            return Err(format!(
                "a kline opens at {open}, outside the minutes asked for ({}..={})",
                w.first_ms, w.last_ms
            ));
        }
        if out.last().is_some_and(|l| l.kline.open_time_ms >= open) {
            return Err(format!("klines out of order or repeated at {open}"));
        }
        out.push(Theirs {
            kline,
            quote_decimals: decimals(&v[7]),
            taker_quote_decimals: decimals(&v[10]),
        });
    }
    Ok(out)
}

/// The fractional digits a decimal string was printed with.
fn decimals(v: &serde_json::Value) -> u32 {
    v.as_str()
        .and_then(|s| s.split_once('.'))
        .map_or(0, |(_, f)| f.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Window = Window {
        first_ms: 1_717_002_000_000,
        last_ms: 1_717_002_060_000,
    };

    #[test]
    fn replies_parse_with_their_printed_precision() {
        let body = br#"[[1717002000000,"1.0","2.0","0.5","1.5","3.00000000",1717002059999,"4.12345678",7,"1.00000000","1.1","0"]]"#;
        let k = parse(body, W).unwrap();
        assert_eq!(k.len(), 1);
        assert_eq!((k[0].quote_decimals, k[0].taker_quote_decimals), (8, 1));
        assert_eq!(k[0].kline.count, 7);
        assert_eq!(k[0].kline.quote, 412_345_678 * 10u128.pow(8));
    }

    #[test]
    fn anything_else_is_named() {
        let e = |b: &[u8]| parse(b, W).unwrap_err();
        assert!(e(b"<html>").contains("reply begins"), "{}", e(b"<html>"));
        assert!(e(br#"{"code":-1121}"#).contains("invalid type"));
        assert!(e(br#"[[1717002000000,"x"]]"#).contains("array of 12"));
        let outside = br#"[[1717002120000,"1","1","1","1","1",1717002179999,"1",1,"1","1","0"]]"#;
        assert!(e(outside).contains("outside"));
        let twice = br#"[[1717002000000,"1","1","1","1","1",1717002059999,"1",1,"1","1","0"],[1717002000000,"1","1","1","1","1",1717002059999,"1",1,"1","1","0"]]"#;
        assert!(e(twice).contains("repeated"));
        assert_eq!(parse(b"[]", W).unwrap(), vec![]);
    }
}
