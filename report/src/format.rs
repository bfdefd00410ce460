//! Pure shaping of a snapshot into a report: ranking, valuation with a given set of
//! prices, and rendering as a table (with an optional bar column for the share of
//! trades), JSON or CSV.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;
use tradeflow_shared::decimal::format_scaled;
use tradeflow_shared::snapshot::SymbolTotals;

use super::prices::{PriceSet, PriceSource};
use super::value::{parse_scaled, split_symbol, usd_price, usd_value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    /// Number of trades.
    Trades,
    /// USD value of the traded quantity (symbols without a price last).
    Usd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub rank: usize,
    pub symbol: String,
    pub trades: u64,
    /// Share of all trades in basis points (1/100 of a percent).
    pub share_bp: u64,
    pub base_volume: String,
    pub quote_volume: String,
    pub last_price: Option<String>,
    pub last_time_ms: Option<u64>,
    /// USD value of the traded quantity, 2 decimals (truncated); `None` if no price.
    pub usd_value: Option<String>,
    /// USD price of one unit of the base asset used for `usd_value`, 8 decimals.
    pub usd_price: Option<String>,
    #[serde(skip)]
    usd_units: Option<u128>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub symbols: usize,
    pub total_trades: u64,
    /// Sum over symbols with a USD price, 2 decimals.
    pub total_usd_value: String,
    /// Where the USD prices came from.
    pub price_source: PriceSource,
    /// The REST endpoint asked, for `binance`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_url: Option<String>,
    /// When the prices were read (ms since the epoch).
    pub prices_at_ms: u64,
    pub rows: Vec<Row>,
    /// Symbols whose keys hold values tradeflow did not write: not in `rows` nor the
    /// totals, named here with the reason (sorted by symbol).
    pub unreadable: Vec<Unreadable>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub symbol: String,
    pub reason: String,
}

/// Ranks and values the snapshot with its own last prices (read now); keeps the top
/// `top` rows (totals cover all symbols).
pub fn build(snapshot: &[SymbolTotals], sort: SortBy, top: usize) -> Report {
    let prices = PriceSet::from_redis(snapshot, tradeflow_shared::telemetry::now_ms());
    build_priced(snapshot, &prices, sort, top)
}

/// Ranks and values the snapshot with `prices`; keeps the top `top` rows.
pub fn build_priced(
    snapshot: &[SymbolTotals],
    prices: &PriceSet,
    sort: SortBy,
    top: usize,
) -> Report {
    let last: &HashMap<String, u64> = &prices.prices;
    let unreadable: Vec<Unreadable> = snapshot
        .iter()
        .filter_map(|s| {
            Some(Unreadable {
                symbol: s.symbol.clone(),
                reason: s.unreadable.clone()?,
            })
        })
        .collect();
    let snapshot: Vec<&SymbolTotals> = snapshot.iter().filter(|s| s.unreadable.is_none()).collect();
    let total_trades: u64 = snapshot.iter().map(|s| s.count).sum();
    let mut total_usd: u128 = 0;
    let mut rows: Vec<Row> = snapshot
        .iter()
        .map(|s| {
            let price = split_symbol(&s.symbol).and_then(|(base, _)| usd_price(base, last));
            let usd_units = price.and_then(|p| usd_value(parse_scaled(&s.base, 8)?, p));
            total_usd = total_usd.saturating_add(usd_units.unwrap_or(0));
            Row {
                rank: 0,
                symbol: s.symbol.clone(),
                trades: s.count,
                share_bp: (s.count as u128 * 10_000)
                    .checked_div(total_trades as u128)
                    .unwrap_or(0) as u64,
                base_volume: s.base.clone(),
                quote_volume: s.quote.clone(),
                last_price: s.last_price.clone(),
                last_time_ms: s.last_time_ms,
                usd_value: usd_units.map(usd_text),
                usd_price: price.map(|p| format_scaled(p, 8)),
                usd_units,
            }
        })
        .collect();
    match sort {
        SortBy::Trades => rows.sort_by(|a, b| {
            b.trades
                .cmp(&a.trades)
                .then_with(|| a.symbol.cmp(&b.symbol))
        }),
        SortBy::Usd => rows.sort_by(|a, b| {
            b.usd_units
                .cmp(&a.usd_units)
                .then_with(|| b.trades.cmp(&a.trades))
                .then_with(|| a.symbol.cmp(&b.symbol))
        }),
    }
    rows.truncate(top);
    for (i, r) in rows.iter_mut().enumerate() {
        r.rank = i + 1;
    }
    Report {
        symbols: snapshot.len(),
        total_trades,
        total_usd_value: usd_text(total_usd),
        price_source: prices.source,
        price_url: prices.url.clone(),
        prices_at_ms: prices.fetched_ms,
        rows,
        unreadable,
    }
}

/// One line per unreadable symbol (empty when there is none): for the table, and for
/// stderr beside CSV.
pub fn unreadable_note(report: &Report) -> String {
    report
        .unreadable
        .iter()
        .map(|u| format!("unreadable: {} ({})\n", u.symbol, u.reason))
        .collect()
}

/// `USD prices: binance (https://…/api/v3/ticker/price) at 2026-11-23T21:00:00Z`.
pub fn price_note(report: &Report) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(report.prices_at_ms);
    let url = report
        .price_url
        .as_deref()
        .map(|u| format!(" ({u})"))
        .unwrap_or_default();
    format!(
        "USD prices: {}{url} at {}",
        report.price_source.name(),
        humantime::format_rfc3339_seconds(at)
    )
}

/// 1e-8 USD units → `"1234.56"` (truncated to cents).
fn usd_text(units: u128) -> String {
    format_scaled(units / 1_000_000, 2)
}

fn share_text(bp: u64) -> String {
    format!("{}.{:02}%", bp / 100, bp % 100)
}

/// A bar of `width` cells for a share in basis points (eighth-cell resolution).
pub fn bar(share_bp: u64, width: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (share_bp.min(10_000) as usize * width * 8) / 10_000;
    let mut s: String = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        s.push(PARTS[eighths % 8]);
    }
    let used = s.chars().count();
    s.extend(std::iter::repeat_n(' ', width.saturating_sub(used)));
    s
}

/// Renders the report. `with_bar` adds the share-of-trades bar (watch mode).
pub fn render(report: &Report, format: Format, with_bar: bool) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        Format::Csv => {
            let mut out = String::from(
                "rank,symbol,trades,share_percent,base_volume,quote_volume,last_price,usd_value\n",
            );
            for r in &report.rows {
                // Symbols are letters and digits, numbers are plain: nothing to quote.
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{}",
                    r.rank,
                    r.symbol,
                    r.trades,
                    share_text(r.share_bp).trim_end_matches('%'),
                    r.base_volume,
                    r.quote_volume,
                    r.last_price.as_deref().unwrap_or(""),
                    r.usd_value.as_deref().unwrap_or("")
                );
            }
            out
        }
        Format::Table => table(report, with_bar),
    }
}

fn table(report: &Report, with_bar: bool) -> String {
    let mut head = vec!["#", "SYMBOL", "TRADES", "SHARE"];
    if with_bar {
        head.push("");
    }
    head.extend(["BASE VOLUME", "QUOTE VOLUME", "LAST PRICE", "USD VALUE"]);
    let lines: Vec<Vec<String>> = report
        .rows
        .iter()
        .map(|r| {
            let mut l = vec![
                r.rank.to_string(),
                r.symbol.clone(),
                r.trades.to_string(),
                share_text(r.share_bp),
            ];
            if with_bar {
                l.push(bar(r.share_bp, 20));
            }
            l.extend([
                r.base_volume.clone(),
                r.quote_volume.clone(),
                r.last_price.clone().unwrap_or_else(|| "-".into()),
                r.usd_value.clone().unwrap_or_else(|| "-".into()),
            ]);
            l
        })
        .collect();
    let text_col = |c: usize| c == 1 || (with_bar && c == 4);
    let mut out = columns(&head, &lines, text_col);
    let _ = writeln!(
        out,
        "\n{} symbols, {} trades, {} USD traded (priced symbols)\n{}",
        report.symbols,
        report.total_trades,
        report.total_usd_value,
        price_note(report)
    );
    out.push_str(&unreadable_note(report));
    out
}

/// Cells in columns as wide as their widest cell, two spaces apart, one line per row
/// after the head: the one table layout of the report's outputs. `text_col(c)` columns
/// are left-aligned, the others (numbers) right-aligned.
pub fn columns(head: &[&str], lines: &[Vec<String>], text_col: impl Fn(usize) -> bool) -> String {
    let widths: Vec<usize> = (0..head.len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .chain([head[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut row = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(c, v)| {
                let pad = widths[c].saturating_sub(v.chars().count());
                if text_col(c) {
                    format!("{v}{}", " ".repeat(pad))
                } else {
                    format!("{}{v}", " ".repeat(pad))
                }
            })
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    row(&head.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    for l in lines {
        row(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(sym: &str, count: u64, base: &str, price: Option<&str>) -> SymbolTotals {
        SymbolTotals {
            symbol: sym.into(),
            count,
            base: base.into(),
            quote: "0.0000000000000000".into(),
            last_price: price.map(Into::into),
            last_time_ms: None,
            unreadable: None,
        }
    }

    fn snapshot() -> Vec<SymbolTotals> {
        vec![
            t("BTCUSDT", 300, "2.00000000", Some("60000.00000000")),
            t("ETHBTC", 100, "10.00000000", Some("0.05000000")),
            t("XYZQQQ", 600, "1.00000000", Some("1.00000000")),
        ]
    }

    #[test]
    fn ranks_and_values() {
        let r = build(&snapshot(), SortBy::Trades, 10);
        assert_eq!(r.total_trades, 1000);
        assert_eq!(r.rows[0].symbol, "XYZQQQ");
        assert_eq!(r.rows[0].share_bp, 6000);
        assert_eq!(r.rows[0].usd_value, None);
        let eth = r.rows.iter().find(|x| x.symbol == "ETHBTC").unwrap();
        // 10 ETH × 0.05 BTC × 60000 USD.
        assert_eq!(eth.usd_value.as_deref(), Some("30000.00"));
        assert_eq!(r.total_usd_value, "150000.00");
        let by_usd = build(&snapshot(), SortBy::Usd, 2);
        assert_eq!(by_usd.rows.len(), 2);
        assert_eq!(by_usd.rows[0].symbol, "BTCUSDT");
        assert_eq!(by_usd.rows[1].rank, 2);
    }

    #[test]
    fn empty_snapshot() {
        let r = build(&[], SortBy::Trades, 5);
        assert_eq!((r.total_trades, r.rows.len()), (0, 0));
        assert!(render(&r, Format::Table, true).contains("0 symbols"));
    }

    #[test]
    fn renders_all_formats() {
        let r = build(&snapshot(), SortBy::Trades, 10);
        let csv = render(&r, Format::Csv, false);
        assert_eq!(csv.lines().count(), 4);
        assert!(csv.contains("2,BTCUSDT,300,30.00,2.00000000,"), "{csv}");
        let json: serde_json::Value =
            serde_json::from_str(&render(&r, Format::Json, false)).unwrap();
        assert_eq!(json["rows"][0]["symbol"], "XYZQQQ");
        assert_eq!(json["total_trades"], 1000);
        let table = render(&r, Format::Table, true);
        assert!(table.starts_with("#  SYMBOL"), "{table}");
        assert!(table.contains("████████████"), "{table}");
    }

    #[test]
    fn values_with_given_prices_and_says_which() {
        let snap = snapshot();
        let prices = PriceSet {
            source: PriceSource::Binance,
            url: Some("http://x/api/v3/ticker/price".into()),
            fetched_ms: 1_700_000_000_000,
            // BTC at 50,000.5; ETHBTC absent, so ETH is unpriced; XYZ priced directly.
            prices: [("BTCUSDT", 5_000_050_000_000u64), ("XYZUSDT", 300_000_000)]
                .into_iter()
                .map(|(s, p)| (s.to_string(), p))
                .collect(),
        };
        let r = build_priced(&snap, &prices, SortBy::Usd, 10);
        let row = |s: &str| r.rows.iter().find(|x| x.symbol == s).unwrap();
        assert_eq!(row("BTCUSDT").usd_value.as_deref(), Some("100001.00"));
        assert_eq!(row("BTCUSDT").usd_price.as_deref(), Some("50000.50000000"));
        assert_eq!(row("ETHBTC").usd_value, None);
        // XYZQQQ: base XYZ? No: QQQ is not a quote asset, so unpriced.
        assert_eq!(row("XYZQQQ").usd_value, None);
        assert_eq!(r.total_usd_value, "100001.00");
        assert_eq!(r.price_source, PriceSource::Binance);
        let table = render(&r, Format::Table, false);
        assert!(
            table.contains(
                "USD prices: binance (http://x/api/v3/ticker/price) at 2023-11-14T22:13:20Z"
            ),
            "{table}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&r, Format::Json, false)).unwrap();
        assert_eq!(json["price_source"], "binance");
        assert_eq!(json["prices_at_ms"], 1_700_000_000_000u64);
        assert_eq!(json["price_url"], "http://x/api/v3/ticker/price");
    }

    #[test]
    fn bars() {
        assert_eq!(bar(10_000, 4), "████");
        assert_eq!(bar(0, 3), "   ");
        assert_eq!(bar(5_000, 3), "█▌ ");
        assert_eq!(bar(20_000, 2), "██");
    }
}
