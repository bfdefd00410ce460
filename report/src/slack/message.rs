//! The report as a Slack message (Block Kit), pure: from the snapshot the live page
//! shows ([`WebSnapshot`]) to `text` (the notification and screen-reader fallback) and
//! `blocks`, short lines that read on a phone. Slack's limits are kept by construction:
//! at most 50 blocks, sections of at most 3000 characters, header 150, fields 10 of
//! 2000; lists longer than that end in "and N more symbols".

use serde_json::{json, Value};

use crate::chart::minutes::hhmm;
use crate::chart::thousands;
use crate::value::parse_scaled;
use crate::web::snapshot::{WebSnapshot, WebSymbol};

/// Slack's limits (Block Kit reference), with room to spare for the "and N more" line.
pub const MAX_SECTION: usize = 3000;
pub const MAX_HEADER: usize = 150;
const SECTION_BUDGET: usize = MAX_SECTION - 100;
/// Unvalued symbols are listed by name only, up to this many.
const MAX_UNVALUED: usize = 40;
/// No trade for this long: the message says the stream may have stopped.
const STALE_MS: u64 = 5 * 60_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub text: String,
    pub blocks: Value,
}

/// How many symbols each list shows (`--top`).
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub top: usize,
}

/// The report: totals, top symbols by trades and by USD value, unvalued symbols, trades
/// per minute of the last hour, freshness. `snap` must be `ok` with trades.
pub fn report(snap: &WebSnapshot, shape: Shape, charts_note: Option<&str>) -> Message {
    let mut blocks = vec![header("tradeflow · hourly report")];
    blocks.push(json!({"type": "section", "fields": [
        mrkdwn(&format!("*Trades*\n{}", thousands(snap.total_trades))),
        mrkdwn(&format!("*Symbols*\n{}", thousands(snap.symbols.len() as u64))),
        mrkdwn(&format!("*USD traded*\n${} (priced symbols)", usd(&snap.total_usd_value))),
        mrkdwn(&format!("*Newest trade*\n{}", freshness(snap))),
    ]}));
    if snap.age_ms.is_some_and(|a| a > STALE_MS) {
        blocks.push(section(&format!(
            ":warning: No new trade for {}: the stream may have stopped.",
            age(snap.age_ms.unwrap_or(0))
        )));
    }
    blocks.push(json!({"type": "divider"}));

    let traded: Vec<&WebSymbol> = snap.symbols.iter().filter(|s| s.trades > 0).collect();
    let by_trades = traded.iter().map(|s| {
        let share = s.trades as f64 * 100.0 / snap.total_trades.max(1) as f64;
        format!(
            "*{}* {} · {share:.1} %",
            esc(&s.symbol),
            thousands(s.trades)
        )
    });
    blocks.push(section(&ranked(
        "trades",
        by_trades,
        traded.len(),
        shape.top,
    )));

    let mut valued: Vec<(&WebSymbol, u128)> = traded
        .iter()
        .filter_map(|s| Some((*s, parse_scaled(s.usd_value.as_deref()?, 2)?)))
        .collect();
    valued.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.symbol.cmp(&b.0.symbol)));
    if !valued.is_empty() {
        let lines = valued.iter().map(|(s, _)| {
            format!(
                "*{}* ${} · {} trades",
                esc(&s.symbol),
                usd(s.usd_value.as_deref().unwrap_or("0")),
                thousands(s.trades)
            )
        });
        blocks.push(section(&ranked(
            "USD value",
            lines,
            valued.len(),
            shape.top,
        )));
    }
    let unvalued: Vec<&str> = traded
        .iter()
        .filter(|s| s.usd_value.is_none())
        .map(|s| s.symbol.as_str())
        .collect();
    if !unvalued.is_empty() {
        blocks.push(section(&names(
            &format!(
                "*Unvalued* ({} without a USD price)",
                thousands(unvalued.len() as u64)
            ),
            &unvalued,
        )));
    }
    if !snap.unreadable.is_empty() {
        let symbols: Vec<&str> = snap.unreadable.iter().map(|u| u.symbol.as_str()).collect();
        blocks.push(section(&names(
            &format!(
                ":warning: *Unreadable* ({}: their keys hold values tradeflow did not write; see `tradeflow-report` for the keys)",
                thousands(symbols.len() as u64)
            ),
            &symbols,
        )));
    }
    if let Some(m) = minutes(snap) {
        blocks.push(section(&m));
    }
    let mut ctx = vec![mrkdwn(&price_note(snap))];
    if let Some(note) = charts_note {
        ctx.push(mrkdwn(note));
    }
    blocks.push(json!({"type": "context", "elements": ctx}));
    let text = format!(
        "tradeflow report: {} trades in {} symbols, ${} traded (priced symbols); newest trade {}",
        thousands(snap.total_trades),
        thousands(snap.symbols.len() as u64),
        usd(&snap.total_usd_value),
        freshness(snap),
    );
    Message {
        text,
        blocks: Value::Array(blocks),
    }
}

/// Redis answered, but holds no trade: say so (no chart of nothing).
pub fn empty(snap: &WebSnapshot) -> Message {
    let what = if snap.symbols.is_empty() {
        "Redis holds no trades yet: no symbol has been counted.".to_string()
    } else {
        format!(
            "Redis holds no trades: {} symbols known, none with a trade (after a reset, or before the first trade).",
            thousands(snap.symbols.len() as u64)
        )
    };
    Message {
        text: format!("tradeflow report: {what}"),
        blocks: json!([
            header("tradeflow · hourly report"),
            section(&format!(":information_source: {}", esc(&what))),
            {"type": "context", "elements": [mrkdwn(&format!("read {} UTC", clock(snap.server_time_ms)))]},
        ]),
    }
}

/// The run failed: say why (the reason names no secret: errors are redacted where made).
pub fn failure(reason: &str, now_ms: u64) -> Message {
    let reason: String = reason.chars().take(SECTION_BUDGET - 200).collect();
    Message {
        text: format!("tradeflow report failed: {reason}"),
        blocks: json!([
            header("tradeflow · report failed"),
            section(&format!(":x: The hourly report could not be made:\n```{}```", esc(&reason))),
            {"type": "context", "elements": [mrkdwn(&format!(
                "at {} UTC · details: `journalctl -u tradeflow-report`", clock(now_ms)))]},
        ]),
    }
}

/// "*Top N by `by`*" then `1. line` for the first `top` lines, within a section's budget, and
/// "…and N more symbols" for the rest.
fn ranked(by: &str, lines: impl Iterator<Item = String>, total: usize, top: usize) -> String {
    let mut out = format!("*Top {} by {by}*", top.min(total));
    let mut shown = 0;
    for (i, l) in lines.take(top).enumerate() {
        let line = format!("\n{}. {l}", i + 1);
        if out.chars().count() + line.chars().count() > SECTION_BUDGET {
            break;
        }
        out.push_str(&line);
        shown += 1;
    }
    more(&mut out, total - shown);
    out
}

/// "*Title*" then names separated by commas, bounded, with "…and N more symbols".
fn names(title: &str, all: &[&str]) -> String {
    let mut out = format!("{title}\n");
    let mut shown = 0;
    for n in all.iter().take(MAX_UNVALUED) {
        let piece = if shown == 0 {
            esc(n)
        } else {
            format!(", {}", esc(n))
        };
        if out.chars().count() + piece.chars().count() > SECTION_BUDGET {
            break;
        }
        out.push_str(&piece);
        shown += 1;
    }
    more(&mut out, all.len() - shown);
    out
}

fn more(out: &mut String, rest: usize) {
    if rest > 0 {
        let s = if rest == 1 { "" } else { "s" };
        out.push_str(&format!("\n…and {} more symbol{s}", thousands(rest as u64)));
    }
}

/// Trades per minute of the top symbols over the hour: in the hour, average, peak
/// minute, last minute; and a sparkline of all of them together.
fn minutes(snap: &WebSnapshot) -> Option<String> {
    let m = &snap.minutes;
    let n = m.series.first()?.counts.len();
    if n == 0 {
        return None;
    }
    let end = m.start_minute + n as u64 - 1;
    let mut out = format!(
        "*Trades per minute, last hour* ({}–{} UTC)",
        hhmm(m.start_minute),
        hhmm(end)
    );
    for s in &m.series {
        let total: u64 = s.counts.iter().sum();
        let (peak_at, peak) = s
            .counts
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
            .map(|(i, c)| (i, *c))
            .unwrap_or((0, 0));
        out.push_str(&format!(
            "\n*{}* {} in the hour · avg {}/min · peak {} at {} · last {}",
            esc(&s.symbol),
            thousands(total),
            thousands(total / n as u64),
            thousands(peak),
            hhmm(m.start_minute + peak_at as u64),
            thousands(*s.counts.last().unwrap_or(&0)),
        ));
    }
    let sum: Vec<u64> = (0..n)
        .map(|k| {
            m.series
                .iter()
                .map(|s| s.counts.get(k).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    out.push_str(&format!("\n`{}`", sparkline(&sum)));
    Some(out.chars().take(MAX_SECTION).collect())
}

/// One block character per value, scaled to the largest.
pub fn sparkline(values: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    values
        .iter()
        .map(|&v| BARS[((v * 7 + max / 2) / max).min(7) as usize])
        .collect()
}

fn freshness(snap: &WebSnapshot) -> String {
    match (snap.newest_trade_ms, snap.age_ms) {
        (Some(t), Some(a)) => format!("{} ago ({} UTC)", age(a), clock(t)),
        _ => "none yet".into(),
    }
}

fn price_note(snap: &WebSnapshot) -> String {
    format!(
        "USD prices: {} at {} UTC · read {} UTC",
        snap.price_source.name(),
        clock(snap.prices_at_ms),
        clock(snap.server_time_ms)
    )
}

/// The page's `age()`: ms, s, min, h.
pub fn age(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..120_000 => format!("{:.1} s", ms as f64 / 1000.0),
        120_000..7_200_000 => format!("{} min", (ms + 30_000) / 60_000),
        _ => format!("{:.1} h", ms as f64 / 3_600_000.0),
    }
}

/// `YYYY-MM-DD HH:MM:SS` of ms since the epoch.
fn clock(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

/// `"1234567.89"` → `"1,234,567.89"`.
fn usd(v: &str) -> String {
    let (int, frac) = v.split_once('.').unwrap_or((v, "00"));
    match int.parse::<u64>() {
        Ok(i) => format!("{}.{frac}", thousands(i)),
        Err(_) => v.to_string(),
    }
}

/// mrkdwn's three control characters (Slack: "escape &, < and >").
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn header(t: &str) -> Value {
    json!({"type": "header", "text": {"type": "plain_text", "text": t.chars().take(MAX_HEADER).collect::<String>()}})
}

fn section(t: &str) -> Value {
    json!({"type": "section", "text": mrkdwn(t)})
}

fn mrkdwn(t: &str) -> Value {
    json!({"type": "mrkdwn", "text": t})
}
