//! A run as a table for people, or JSON (one line: the hourly job appends it to a
//! JSON-lines file) or CSV (one row per differing minute; the summary on stderr) for
//! scripts. Volume differences are the exchange's value minus ours, exact decimals.

use std::fmt::Write as _;

use serde_json::{json, Value};
use tradeflow_shared::decimal::format_scaled;

use super::compare::{Difference, Kind};
use super::verdict::Run;
use crate::format::{columns, Format};
use crate::when::utc;

/// The run in `format`; for CSV also the lines meant for stderr.
pub fn render(run: &Run, format: Format) -> (String, String) {
    match format {
        Format::Table => (table(run), String::new()),
        Format::Json => (json(run).to_string() + "\n", String::new()),
        Format::Csv => (csv(run), summary(run)),
    }
}

fn kind(k: Kind) -> &'static str {
    match k {
        Kind::Missing => "missing",
        Kind::Extra => "extra",
        Kind::Differs => "differs",
    }
}

/// A signed exact decimal: `scale` digits, trailing zeros past 8 dropped.
fn signed(v: i128, scale: u32) -> String {
    let text = format_scaled(v.unsigned_abs(), scale);
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut frac = frac.trim_end_matches('0').to_string();
    while frac.len() < 8.min(scale as usize) {
        frac.push('0');
    }
    let sign = if v < 0 {
        "-"
    } else if v > 0 {
        "+"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

fn trades_diff(d: &Difference) -> i128 {
    d.their_count() as i128 - d.our_count() as i128
}

fn json(run: &Run) -> Value {
    let symbols: Vec<Value> = run
        .symbols
        .iter()
        .map(|s| {
            json!({
                "symbol": s.symbol,
                "minutes_checked": s.outcome.minutes_checked,
                "minutes_differing": s.outcome.differences.len(),
                "trades_missing": s.outcome.trades_missing(),
                "trades_extra": s.outcome.trades_extra(),
                "error": s.error,
            })
        })
        .collect();
    let differences: Vec<Value> = run
        .symbols
        .iter()
        .flat_map(|s| s.outcome.differences.iter().map(move |d| (s, d)))
        .map(|(s, d)| {
            json!({
                "symbol": s.symbol,
                "open_time_ms": d.open_time_ms,
                "open_time": utc(d.open_time_ms),
                "kind": kind(d.kind),
                "trades_diff": trades_diff(d),
                "volume_diff": signed(d.base_diff(), 8),
                "quote_volume_diff": signed(d.quote_diff(), 16),
                "fields": d.fields,
                // Binance's kline arrays (ours with 16-decimal quote volumes).
                "exchange": d.theirs.map(|t| t.kline.to_binance_array()),
                "ours": d.ours.map(|k| k.to_binance_array()),
            })
        })
        .collect();
    json!({
        "verdict": run.verdict(),
        "exit_status": run.exit_status(),
        "since": utc(run.since_ms),
        "until": utc(run.until_ms),
        "first_minute_ms": run.window.map(|w| w.first_ms),
        "last_minute_ms": run.window.map(|w| w.last_ms),
        "settle_s": run.settle_s,
        "exchange": run.exchange,
        "minutes_checked": run.minutes_checked(),
        "minutes_differing": run.minutes_differing(),
        "trades_missing": run.trades_missing(),
        "trades_extra": run.trades_extra(),
        "symbols": symbols,
        "differences": differences,
        "problems": run.problems(),
    })
}

fn summary(run: &Run) -> String {
    let mut out = format!(
        "{}: {} minutes checked, {} differing, {} trades missing, {} extra\n",
        run.verdict().to_uppercase(),
        run.minutes_checked(),
        run.minutes_differing(),
        run.trades_missing(),
        run.trades_extra()
    );
    for p in run.problems() {
        let _ = writeln!(out, "not checked: {p}");
    }
    out
}

fn table(run: &Run) -> String {
    let mut out = String::new();
    let _ = write!(out, "reconcile with {}: ", run.exchange);
    match run.window {
        Some(w) => {
            let _ = writeln!(
                out,
                "settled minutes {} .. {} (closed before --until and now - {} s)",
                utc(w.first_ms),
                utc(w.last_ms),
                run.settle_s
            );
        }
        None => out.push_str("no settled minute\n"),
    }
    if !run.symbols.is_empty() {
        let lines: Vec<Vec<String>> = run
            .symbols
            .iter()
            .map(|s| {
                vec![
                    s.symbol.clone(),
                    s.outcome.minutes_checked.to_string(),
                    s.outcome.differences.len().to_string(),
                    s.outcome.trades_missing().to_string(),
                    s.outcome.trades_extra().to_string(),
                    if s.error.is_some() {
                        "NOT CHECKED (below)"
                    } else {
                        ""
                    }
                    .into(),
                ]
            })
            .collect();
        let head = ["symbol", "minutes", "differing", "missing", "extra", ""];
        out.push_str(&columns(&head, &lines, |c| c == 0 || c == 5));
    }
    if run.minutes_differing() > 0 {
        let lines: Vec<Vec<String>> = run
            .symbols
            .iter()
            .flat_map(|s| s.outcome.differences.iter().map(move |d| (s, d)))
            .map(|(s, d)| {
                vec![
                    s.symbol.clone(),
                    utc(d.open_time_ms),
                    kind(d.kind).into(),
                    d.their_count().to_string(),
                    d.our_count().to_string(),
                    signed(trades_diff(d), 0),
                    signed(d.base_diff(), 8),
                    signed(d.quote_diff(), 16),
                    d.fields.join(","),
                ]
            })
            .collect();
        let head = [
            "symbol",
            "minute (UTC)",
            "kind",
            "exchange",
            "ours",
            "trades",
            "volume",
            "quote volume",
            "fields",
        ];
        out.push_str("\ndiffering minutes (exchange minus ours):\n");
        out.push_str(&columns(&head, &lines, |c| matches!(c, 0 | 1 | 2 | 8)));
    }
    out.push('\n');
    out.push_str(&summary(run));
    out
}

fn csv(run: &Run) -> String {
    let mut out = String::from(
        "symbol,open_time_ms,open_time,kind,exchange_trades,our_trades,trades_diff,volume_diff,quote_volume_diff,fields\n",
    );
    for s in &run.symbols {
        for d in &s.outcome.differences {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{}",
                s.symbol,
                d.open_time_ms,
                utc(d.open_time_ms),
                kind(d.kind),
                d.their_count(),
                d.our_count(),
                trades_diff(d),
                signed(d.base_diff(), 8),
                signed(d.quote_diff(), 16),
                d.fields.join(" ")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_signed_exact_decimals() {
        assert_eq!(signed(300_000_000, 8), "+3.00000000");
        assert_eq!(signed(-1, 8), "-0.00000001");
        assert_eq!(signed(31 * 10i128.pow(16), 16), "+31.00000000");
        assert_eq!(signed(-5, 16), "-0.0000000000000005");
        assert_eq!(signed(0, 16), "0.00000000");
        assert_eq!(signed(-3, 0), "-3");
    }
}
