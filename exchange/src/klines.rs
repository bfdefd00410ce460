//! What the exchange has played, as Binance's klines (`GET /api/v3/klines`): every trade
//! of the tape is folded into its symbol's minute (`kline::Kline`, exact integers), and
//! longer intervals are rolled up from the minutes when asked. Unbounded in time but
//! small — one entry per symbol and minute with trades — unlike the capped history of
//! `historicalTrades`, so a test can reconcile any minute ever played. Minutes without
//! a trade have no kline (they are left out of answers).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tradeflow_shared::decimal::format_scaled;
use tradeflow_shared::kline::{roll_up, Interval, Kline, MINUTE_MS};
use tradeflow_shared::Symbol;

use crate::history::{refuse, Refusal, DEFAULT_LIMIT, MAX_LIMIT};
use crate::item::TapeItem;

/// Decimals Binance prints quote volumes with; ours are exact to 16.
const QUOTE_DECIMALS: u32 = 8;

#[derive(Default)]
pub struct Klines {
    minutes: Mutex<HashMap<Symbol, BTreeMap<u64, Kline>>>,
    requests: AtomicU64,
}

/// The raw query parameters of one request (Binance's names), as sent.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct KlineQuery {
    pub symbol: Option<String>,
    pub interval: Option<String>,
    #[serde(rename = "startTime")]
    pub start_time: Option<String>,
    #[serde(rename = "endTime")]
    pub end_time: Option<String>,
    pub limit: Option<String>,
    #[serde(rename = "timeZone")]
    pub time_zone: Option<String>,
}

impl Klines {
    /// Folds a played trade into its minute.
    pub fn record(&self, item: &TapeItem) {
        let t = &item.trade;
        let k = Kline::of_trade(
            MINUTE_MS,
            t.trade_id,
            t.price,
            t.qty,
            t.trade_time_ms,
            t.buyer_is_maker,
        );
        let Ok(mut all) = self.minutes.lock() else {
            return;
        };
        all.entry(t.symbol)
            .or_default()
            .entry(k.open_time_ms)
            .and_modify(|m| m.merge(&k))
            .or_insert(k);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Answers `klines` as Binance would: `limit` candles of `interval` whose open time
    /// is within `startTime..=endTime` — the first ones from `startTime`, else the last
    /// ones up to `endTime` (the most recent without either) — as Binance's arrays.
    pub fn answer(
        &self,
        q: &KlineQuery,
        known: impl Fn(&Symbol) -> bool,
    ) -> Result<String, Refusal> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let symbol = mandatory(&q.symbol, "symbol")?;
        let interval = mandatory(&q.interval, "interval")?;
        let symbol = Symbol::new(symbol).map_err(|_| refuse(-1121, "Invalid symbol."))?;
        let interval: Interval = interval
            .parse()
            .map_err(|_| refuse(-1120, "Invalid interval."))?;
        let limit = match q.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    refuse(
                        -1100,
                        "Illegal characters found in parameter 'limit'; legal range is '1-1000'.",
                    )
                })?,
        };
        let start = time_param(&q.start_time, "startTime")?;
        let end = time_param(&q.end_time, "endTime")?;
        if let (Some(s), Some(e)) = (start, end) {
            if s > e {
                return Err(refuse(
                    -1128,
                    "Combination of optional parameters invalid. Recommendation: 'startTime' should be less than 'endTime'.",
                ));
            }
        }
        if let Some(tz) = q.time_zone.as_deref() {
            if !is_utc(tz) {
                return Err(refuse(
                    -1130,
                    "Data sent for parameter 'timeZone' is not valid (this local exchange serves UTC only).",
                ));
            }
        }
        let all = self.minutes.lock().map_err(|_| {
            refuse(
                -1000,
                "An unknown error occurred while processing the request.",
            )
        })?;
        let Some(minutes) = all.get(&symbol) else {
            return if known(&symbol) {
                Ok("[]".into())
            } else {
                Err(refuse(-1121, "Invalid symbol."))
            };
        };
        let picked = select(minutes, interval, start, end, limit);
        Ok(serde_json::Value::Array(picked.iter().map(printed).collect()).to_string())
    }
}

fn mandatory<'a>(v: &'a Option<String>, name: &str) -> Result<&'a str, Refusal> {
    v.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
        refuse(
            -1102,
            &format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
        )
    })
}

fn time_param(v: &Option<String>, name: &str) -> Result<Option<u64>, Refusal> {
    v.as_deref()
        .map(|t| {
            t.parse::<u64>().map_err(|_| {
                refuse(
                    -1100,
                    &format!("Illegal characters found in parameter '{name}'."),
                )
            })
        })
        .transpose()
}

/// `0`, `+0`, `-00:00`, …: an offset of zero (UTC, the only one served here).
fn is_utc(tz: &str) -> bool {
    let t = tz.trim_start_matches(['+', '-']);
    let (h, m) = t.split_once(':').unwrap_or((t, "0"));
    let zero = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b == b'0');
    zero(h) && zero(m)
}

/// The candles of `interval` (rolled up from `minutes`) opening in `start..=end`: the
/// first `limit` from `start` when given, else the last `limit` up to `end`.
pub fn select(
    minutes: &BTreeMap<u64, Kline>,
    interval: Interval,
    start: Option<u64>,
    end: Option<u64>,
    limit: usize,
) -> Vec<Kline> {
    let iv = interval.ms();
    // A candle opens at or after `start`: its first minute does too.
    let lo = match start {
        Some(s) if s % iv == 0 => s,
        Some(s) => match (s - s % iv).checked_add(iv) {
            Some(lo) => lo,
            None => return Vec::new(),
        },
        None => 0,
    };
    // A candle opening at or before `end` holds minutes up to its last millisecond.
    let hi = end.map_or(u64::MAX, |e| interval.start_of(e).saturating_add(iv - 1));
    if lo > hi {
        return Vec::new();
    }
    let in_range = minutes.range(lo..=hi).map(|(_, k)| *k);
    let mut group: Vec<Kline> = Vec::new();
    let mut opens = 0;
    let mut last_open = None;
    // Collect minutes (ascending from `start`, or descending to `end`) until `limit`
    // candles are complete: the minute that would open candle `limit + 1` stops it.
    let mut take = |k: Kline| {
        let open = interval.start_of(k.open_time_ms);
        if last_open != Some(open) {
            opens += 1;
            last_open = Some(open);
        }
        if opens > limit {
            return false;
        }
        group.push(k);
        true
    };
    if start.is_some() {
        for k in in_range {
            if !take(k) {
                break;
            }
        }
    } else {
        for k in in_range.rev() {
            if !take(k) {
                break;
            }
        }
    }
    roll_up(interval, &group)
}

/// Binance's array, quote volumes printed with [`QUOTE_DECIMALS`] like Binance's,
/// truncated (not rounded) from our exact 16.
fn printed(k: &Kline) -> serde_json::Value {
    let cut = 10u128.pow(16 - QUOTE_DECIMALS);
    let mut v = k.to_binance_array();
    v[7] = format_scaled(k.quote / cut, QUOTE_DECIMALS).into();
    v[10] = format_scaled(k.taker_quote / cut, QUOTE_DECIMALS).into();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_shared::Fixed8;

    fn minute(id: u64, at_ms: u64) -> Kline {
        let p = Fixed8::parse("2").unwrap();
        Kline::of_trade(MINUTE_MS, id, p, p, at_ms, false)
    }

    fn book(opens: &[u64]) -> BTreeMap<u64, Kline> {
        opens
            .iter()
            .enumerate()
            .map(|(i, m)| (m * MINUTE_MS, minute(i as u64 + 1, m * MINUTE_MS)))
            .collect()
    }

    fn opens(ks: &[Kline]) -> Vec<u64> {
        ks.iter().map(|k| k.open_time_ms / MINUTE_MS).collect()
    }

    #[test]
    fn selects_by_open_time_from_the_start_or_back_from_the_end() {
        let b = book(&[0, 1, 2, 5, 7, 9, 10]);
        let m = |n: u64| Some(n * MINUTE_MS);
        assert_eq!(
            opens(&select(&b, Interval::M1, m(1), m(7), 1000)),
            [1, 2, 5, 7]
        );
        assert_eq!(opens(&select(&b, Interval::M1, m(1), None, 2)), [1, 2]);
        assert_eq!(opens(&select(&b, Interval::M1, None, m(7), 2)), [5, 7]);
        assert_eq!(opens(&select(&b, Interval::M1, None, None, 3)), [7, 9, 10]);
        // A start inside a minute begins with the next one.
        assert_eq!(opens(&select(&b, Interval::M1, Some(1), None, 1)), [1]);
        // Roll-ups: 3-minute candles [0..2], [3..5], [6..8], [9..11].
        let r = select(&b, Interval::M3, None, None, 1000);
        assert_eq!(opens(&r), [0, 3, 6, 9]);
        assert_eq!(r.iter().map(|k| k.count).collect::<Vec<_>>(), [3, 1, 1, 2]);
        assert_eq!(opens(&select(&b, Interval::M3, m(1), None, 2)), [3, 6]);
        assert_eq!(opens(&select(&b, Interval::M3, None, m(8), 2)), [3, 6]);
        let last = select(&b, Interval::M3, None, None, 1);
        assert_eq!((opens(&last), last[0].count), (vec![9], 2));
        assert!(select(&b, Interval::M1, m(3), m(4), 10).is_empty());
        assert!(select(&b, Interval::M1, Some(u64::MAX), None, 10).is_empty());
    }

    #[test]
    fn quote_volumes_are_printed_with_8_decimals_truncated() {
        let p = Fixed8::parse("1.23456789").unwrap();
        let q = Fixed8::parse("1.5").unwrap();
        let k = Kline::of_trade(MINUTE_MS, 1, p, q, 0, false);
        assert_eq!(k.quote, 18_518_518_350_000_000);
        let v = printed(&k);
        assert_eq!(v[7], "1.85185183");
        assert_eq!(v[10], "1.85185183");
        assert_eq!(v[5], "1.50000000");
    }

    #[test]
    fn only_a_zero_time_zone_is_served() {
        for ok in ["0", "+0", "-0", "00:00", "+00:00", "0:0"] {
            assert!(is_utc(ok), "{ok}");
        }
        for no in ["8", "-1:00", "05:45", "", "x", "0:30"] {
            assert!(!is_utc(no), "{no}");
        }
    }
}
