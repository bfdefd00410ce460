//! Candles as text: JSON is an array of Binance kline arrays (the order and types of
//! `GET /api/v3/klines`, so kline tooling reads it), CSV has Binance's field names as
//! its header, the table is for people (times in UTC). Pure, so unit-tested here.

use std::fmt::Write as _;

use tradeflow_shared::kline::{Interval, Kline};

use crate::format::{columns, Format};
use crate::when::utc;

/// Binance's kline field names, in its array order (without the trailing "ignore").
pub const CSV_HEADER: [&str; 11] = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
];

/// What was asked: for the table's closing line.
#[derive(Debug, Clone)]
pub struct Asked<'a> {
    pub symbol: &'a str,
    pub interval: Interval,
    /// Open times of the first and the last interval asked for.
    pub first_ms: u64,
    pub last_ms: u64,
}

pub fn render(asked: &Asked, candles: &[Kline], format: Format) -> String {
    match format {
        Format::Json => json(candles),
        Format::Csv => csv(candles),
        Format::Table => table(asked, candles),
    }
}

/// One kline array a line, so long outputs stay readable and diffable.
fn json(candles: &[Kline]) -> String {
    if candles.is_empty() {
        return "[]\n".into();
    }
    let lines: Vec<String> = candles
        .iter()
        .map(|k| format!("  {}", k.to_binance_array()))
        .collect();
    format!("[\n{}\n]\n", lines.join(",\n"))
}

/// The first 11 fields of each Binance array (numbers and decimals need no quoting).
fn csv(candles: &[Kline]) -> String {
    let mut out = CSV_HEADER.join(",") + "\n";
    for k in candles {
        let a = k.to_binance_array();
        let cells: Vec<String> = a
            .as_array()
            .into_iter()
            .flatten()
            .take(11)
            .map(plain)
            .collect();
        let _ = writeln!(out, "{}", cells.join(","));
    }
    out
}

/// A JSON scalar without its quotes.
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn table(asked: &Asked, candles: &[Kline]) -> String {
    let head = [
        "OPEN TIME (UTC)",
        "OPEN",
        "HIGH",
        "LOW",
        "CLOSE",
        "VOLUME",
        "QUOTE VOLUME",
        "TRADES",
        "TAKER BUY VOLUME",
        "TAKER BUY QUOTE VOLUME",
    ];
    let lines: Vec<Vec<String>> = candles
        .iter()
        .map(|k| {
            let a = k.to_binance_array();
            let f = |i: usize| plain(&a[i]);
            vec![
                utc(k.open_time_ms).replace('T', " ").replace('Z', ""),
                f(1),
                f(2),
                f(3),
                f(4),
                f(5),
                f(7),
                f(8),
                f(9),
                f(10),
            ]
        })
        .collect();
    let intervals = (asked.last_ms - asked.first_ms) / asked.interval.ms() + 1;
    let span = format!(
        "{} {} from {} to {}",
        asked.symbol,
        asked.interval,
        utc(asked.first_ms),
        utc(asked.last_ms + asked.interval.ms()),
    );
    if candles.is_empty() {
        return format!("no trades: {span} ({intervals} intervals)\n");
    }
    let mut out = columns(&head, &lines, |c| c == 0);
    let trades: u64 = candles.iter().map(|k| k.count).sum();
    let _ = writeln!(
        out,
        "\n{span}: {} candles ({intervals} intervals; those without a trade are left out), {trades} trades",
        candles.len(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_shared::kline::MINUTE_MS;
    use tradeflow_shared::Fixed8;

    fn p(s: &str) -> Fixed8 {
        Fixed8::parse(s).unwrap()
    }

    const T0: u64 = 1_717_243_200_000; // 2024-06-01T12:00:00Z

    fn candles() -> Vec<Kline> {
        let mut a = Kline::of_trade(MINUTE_MS, 7, p("10.5"), p("2"), T0 + 1_000, false);
        a.merge(&Kline::of_trade(
            MINUTE_MS,
            8,
            p("9"),
            p("1"),
            T0 + 2_000,
            true,
        ));
        let b = Kline::of_trade(MINUTE_MS, 9, p("11"), p("0.001"), T0 + 120_500, false);
        vec![a, b]
    }

    fn asked() -> Asked<'static> {
        Asked {
            symbol: "BTCUSDT",
            interval: Interval::M1,
            first_ms: T0,
            last_ms: T0 + 4 * MINUTE_MS,
        }
    }

    #[test]
    fn json_is_binance_arrays() {
        let text = render(&asked(), &candles(), Format::Json);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[0], candles()[0].to_binance_array());
        assert_eq!(v[0][0], T0);
        assert_eq!(v[0][1], "10.50000000");
        assert_eq!(v[0][8], 2);
        assert_eq!(text.lines().count(), 4, "{text}");
        assert_eq!(render(&asked(), &[], Format::Json), "[]\n");
    }

    #[test]
    fn csv_has_binance_names() {
        let text = render(&asked(), &candles(), Format::Csv);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "open_time,open,high,low,close,volume,close_time,quote_volume,trades,\
             taker_buy_base_volume,taker_buy_quote_volume"
        );
        assert_eq!(
            lines[1],
            "1717243200000,10.50000000,10.50000000,9.00000000,9.00000000,3.00000000,\
             1717243259999,30.0000000000000000,2,2.00000000,21.0000000000000000"
        );
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn table_in_utc_with_a_summary() {
        let text = render(&asked(), &candles(), Format::Table);
        let head: Vec<&str> = text
            .lines()
            .next()
            .unwrap()
            .split("  ")
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(head[..3], ["OPEN TIME (UTC)", " OPEN", " HIGH"], "{text}");
        assert!(
            text.contains("\n2024-06-01 12:00:00  10.50000000"),
            "{text}"
        );
        assert!(text.contains("\n2024-06-01 12:02:00"), "{text}");
        assert!(
            text.contains(
                "BTCUSDT 1m from 2024-06-01T12:00:00Z to 2024-06-01T12:05:00Z: 2 candles \
                 (5 intervals; those without a trade are left out), 3 trades"
            ),
            "{text}"
        );
        assert_eq!(
            render(&asked(), &[], Format::Table),
            "no trades: BTCUSDT 1m from 2024-06-01T12:00:00Z to 2024-06-01T12:05:00Z (5 intervals)\n"
        );
    }
}
