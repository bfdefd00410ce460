//! Pure shaping of what the page shows: the JSON served at `/api/snapshot`, built from
//! the report's snapshot (counts, valuation) and the per-minute counts of the top
//! symbols. No I/O here, so it is unit-tested without Redis.

use serde::Serialize;

use crate::format::{build_priced, SortBy, Unreadable};
use crate::prices::{PriceSet, PriceSource};
use tradeflow_shared::snapshot::SymbolTotals;

/// Minutes shown in the per-minute chart (the last hour, ending at the anchor minute).
pub const MINUTES: u64 = 60;

/// The whole page's data, also the `/api/snapshot` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebSnapshot {
    pub ok: bool,
    /// Why the data could not be read (the page shows it as a notice).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub server_time_ms: u64,
    pub total_trades: u64,
    /// Sum of the USD value over symbols with a USD price, 2 decimals.
    pub total_usd_value: String,
    /// Where the USD prices came from, and when they were read (ms since the epoch).
    pub price_source: PriceSource,
    pub prices_at_ms: u64,
    /// Trade time of the newest trade of any symbol.
    pub newest_trade_ms: Option<u64>,
    /// `server_time_ms - newest_trade_ms` (0 if the trade looks to be in the future).
    pub age_ms: Option<u64>,
    /// Every symbol, most trades first (ties by name).
    pub symbols: Vec<WebSymbol>,
    pub minutes: MinuteSeries,
    /// Symbols whose keys hold values tradeflow did not write (not in `symbols`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<Unreadable>,
}

/// One symbol on the page: the report's row (rank, trades, share, volumes, last price,
/// USD value), so the page, Slack and the CLI show the same figures.
pub type WebSymbol = crate::format::Row;

/// Trades per minute of the top symbols: `counts[i]` is minute `start_minute + i`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MinuteSeries {
    pub start_minute: u64,
    pub series: Vec<SymbolMinutes>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SymbolMinutes {
    pub symbol: String,
    pub counts: Vec<u64>,
}

/// The chart ends at the newest trade's minute: with live data that is now; with a
/// replayed or stalled feed the chart still shows the last hour *of data* (the
/// freshness line says how old it is). Without any trade, the current minute.
pub fn anchor_minute(newest_trade_ms: Option<u64>, now_ms: u64) -> u64 {
    newest_trade_ms.unwrap_or(now_ms) / 60_000
}

/// The minutes of the chart, oldest first (`MINUTES` of them, ending at `anchor`).
pub fn minute_window(anchor: u64) -> std::ops::RangeInclusive<u64> {
    anchor.saturating_sub(MINUTES - 1)..=anchor
}

pub fn newest_trade(totals: &[SymbolTotals]) -> Option<u64> {
    totals.iter().filter_map(|t| t.last_time_ms).max()
}

/// The `n` symbols with the most trades (ties by name), those with at least one trade.
pub fn top_symbols(totals: &[SymbolTotals], n: usize) -> Vec<String> {
    let mut v: Vec<&SymbolTotals> = totals.iter().filter(|t| t.count > 0).collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.symbol.cmp(&b.symbol)));
    v.into_iter().take(n).map(|t| t.symbol.clone()).collect()
}

/// Builds the page data. `minutes` are the series of [`top_symbols`] over
/// [`minute_window`] of `anchor_minute`.
pub fn build_snapshot(
    totals: &[SymbolTotals],
    prices: &PriceSet,
    minutes: MinuteSeries,
    now_ms: u64,
) -> WebSnapshot {
    let report = build_priced(totals, prices, SortBy::Trades, usize::MAX);
    let newest = newest_trade(totals);
    WebSnapshot {
        ok: true,
        error: None,
        server_time_ms: now_ms,
        total_trades: report.total_trades,
        total_usd_value: report.total_usd_value,
        price_source: report.price_source,
        prices_at_ms: report.prices_at_ms,
        newest_trade_ms: newest,
        age_ms: newest.map(|t| now_ms.saturating_sub(t)),
        symbols: report.rows,
        minutes,
        unreadable: report.unreadable,
    }
}

/// The body served when Redis cannot be read: the page keeps its last numbers and
/// shows `error` as a notice.
pub fn error_snapshot(error: String, now_ms: u64) -> WebSnapshot {
    WebSnapshot {
        ok: false,
        error: Some(error),
        server_time_ms: now_ms,
        total_trades: 0,
        total_usd_value: "0.00".into(),
        price_source: PriceSource::Redis,
        prices_at_ms: 0,
        newest_trade_ms: None,
        age_ms: None,
        symbols: Vec::new(),
        minutes: MinuteSeries::default(),
        unreadable: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(
        sym: &str,
        count: u64,
        base: &str,
        price: Option<&str>,
        time: Option<u64>,
    ) -> SymbolTotals {
        SymbolTotals {
            symbol: sym.into(),
            count,
            base: base.into(),
            quote: "0.0000000000000000".into(),
            last_price: price.map(Into::into),
            last_time_ms: time,
            unreadable: None,
        }
    }

    #[test]
    fn ranks_values_and_ages() {
        let totals = vec![
            t("ETHBTC", 10, "2.00000000", Some("0.05000000"), Some(1_000)),
            t(
                "BTCUSDT",
                30,
                "0.50000000",
                Some("60000.00000000"),
                Some(5_000),
            ),
            t("XYZ", 10, "1.00000000", None, None),
            t("IDLEUSDT", 0, "0.00000000", None, None),
        ];
        let s = build_snapshot(
            &totals,
            &PriceSet::from_redis(&totals, 6_000),
            MinuteSeries::default(),
            6_500,
        );
        assert!(s.ok);
        assert_eq!(s.total_trades, 50);
        let names: Vec<_> = s.symbols.iter().map(|x| x.symbol.as_str()).collect();
        assert_eq!(names, ["BTCUSDT", "ETHBTC", "XYZ", "IDLEUSDT"]);
        assert_eq!(s.symbols[0].usd_value.as_deref(), Some("30000.00"));
        // 2 ETH × 0.05 BTC × 60000 USD.
        assert_eq!(s.symbols[1].usd_value.as_deref(), Some("6000.00"));
        assert_eq!(s.symbols[2].usd_value, None);
        assert_eq!(s.total_usd_value, "36000.00");
        assert_eq!(s.newest_trade_ms, Some(5_000));
        assert_eq!(s.age_ms, Some(1_500));
        // Idle symbols are not charted per minute; ties go by name.
        assert_eq!(top_symbols(&totals, 3), ["BTCUSDT", "ETHBTC", "XYZ"]);
        assert_eq!(top_symbols(&totals, 9).len(), 3);
    }

    #[test]
    fn window_ends_at_the_newest_trade() {
        assert_eq!(anchor_minute(Some(120_000 * 60_000 + 59_999), 0), 120_000);
        assert_eq!(anchor_minute(None, 61_000), 1);
        let w = minute_window(1_000);
        assert_eq!((*w.start(), *w.end()), (941, 1_000));
        assert_eq!(w.count() as u64, MINUTES);
        assert_eq!(*minute_window(3).start(), 0);
    }

    #[test]
    fn future_trades_have_age_zero_and_errors_serialize() {
        let totals = [t("BTCUSDT", 1, "1.00000000", None, Some(9_000))];
        let s = build_snapshot(
            &totals,
            &PriceSet::from_redis(&totals, 0),
            MinuteSeries::default(),
            1_000,
        );
        assert_eq!(s.age_ms, Some(0));
        let e = serde_json::to_value(error_snapshot("Redis unreachable".into(), 5)).unwrap();
        assert_eq!(e["ok"], false);
        assert_eq!(e["error"], "Redis unreachable");
        assert!(serde_json::to_value(&s).unwrap().get("error").is_none());
    }
}
