//! `tradeflow-report candles SYMBOL --interval 1m|…|1d`: a symbol's exact klines from
//! Redis (the consumer's minute, hour and day buckets, rolled up by
//! `tradeflow_shared::snapshot::Reader::candles`), as a table, Binance kline arrays
//! (JSON) or CSV.
//!
//! Which intervals: those whose open time lies from the interval holding `--since` to
//! the one holding `--until` (default: now). Without `--since`, the last `--limit`
//! (default 60) intervals up to `--until`; with it, `--limit` keeps the first `--limit`
//! intervals from `--since` (as Binance's `startTime` + `limit`). Intervals without a
//! trade are left out, as Binance does. At most `MAX_CANDLES` intervals a read.

pub mod render;

use tradeflow_shared::kline::{Interval, Kline};
use tradeflow_shared::snapshot::{ReadError, Reader, MAX_CANDLES};
use tradeflow_shared::Symbol;

use crate::error::ReportError;
use crate::format::Format;
use crate::when::When;
use render::Asked;

/// Intervals shown when neither `--since` nor `--limit` says otherwise.
pub const DEFAULT_LIMIT: u64 = 60;

#[derive(Debug, Clone, clap::Args)]
pub struct CandleArgs {
    /// The symbol, as the exchange names it (`BTCUSDT`; lower case is taken too).
    pub symbol: String,
    /// Binance's interval name: 1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 8h, 12h, 1d.
    #[arg(long)]
    pub interval: Interval,
    /// From the interval holding this time: RFC 3339, Unix ms, or a duration back from
    /// now (`2h`).
    #[arg(long)]
    pub since: Option<When>,
    /// Up to the interval holding this time (same forms; default: now).
    #[arg(long)]
    pub until: Option<When>,
    /// How many intervals (default 60 without `--since`; at most 1000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_CANDLES))]
    pub limit: Option<u64>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// The open times of the first and the last interval asked for (see the module docs).
pub fn window(
    interval: Interval,
    since: Option<u64>,
    until: Option<u64>,
    limit: Option<u64>,
    now_ms: u64,
) -> Result<(u64, u64), String> {
    let until = until.unwrap_or(now_ms);
    let mut last = interval.start_of(until);
    let first = match since {
        None => {
            let back = limit.unwrap_or(DEFAULT_LIMIT).saturating_sub(1);
            last.saturating_sub(back * interval.ms())
        }
        Some(since) if since > until => {
            return Err(format!(
                "--since ({since} ms) is after --until or now ({until} ms)"
            ));
        }
        Some(since) => {
            let first = interval.start_of(since);
            if let Some(n) = limit {
                last = last.min(first + (n - 1) * interval.ms());
            }
            first
        }
    };
    Ok((first, last))
}

/// A symbol as typed (upper-cased: the exchange's names are upper case).
pub fn parse_symbol(s: &str) -> Result<Symbol, String> {
    let up = s.to_ascii_uppercase();
    Symbol::new(&up).map_err(|e| format!("{s:?} is not a symbol: {e}"))
}

/// Whether `sym` is in the symbols index, and its newest trade time (`last_time_ms`
/// of its stats; `None` if absent or unreadable: it only places a chart's window, so a
/// foreign value there must not fail the read). The two commands are sent at once
/// (one round trip on one Redis; on a cluster their keys are in different slots, so
/// they cannot share a pipeline).
pub async fn lookup(reader: &Reader, sym: &Symbol) -> Result<(bool, Option<u64>), ReadError> {
    let (con, keys) = reader.connection();
    let (mut a, mut b) = (con.clone(), con);
    let member = redis::cmd("SISMEMBER")
        .arg(keys.symbols())
        .arg(sym.as_str())
        .to_owned();
    let newest = redis::cmd("HGET")
        .arg(keys.stats(sym))
        .arg("last_time_ms")
        .to_owned();
    let (known, newest) = futures_util::future::join(
        member.query_async::<bool>(&mut a),
        newest.query_async::<Option<String>>(&mut b),
    )
    .await;
    let known = known.map_err(|e| reader.error(e))?;
    Ok((known, newest.ok().flatten().and_then(|t| t.parse().ok())))
}

/// The error for a symbol Redis does not know.
pub fn unknown(reader: &Reader, sym: &Symbol) -> ReportError {
    ReportError::UnknownSymbol {
        symbol: sym.to_string(),
        key: reader.connection().1.symbols(),
    }
}

/// The candles of `sym` over the intervals `first_ms..=last_ms` (open times), after
/// checking that Redis knows the symbol.
pub async fn read(
    reader: &Reader,
    sym: &Symbol,
    interval: Interval,
    first_ms: u64,
    last_ms: u64,
) -> Result<Vec<Kline>, ReportError> {
    if !lookup(reader, sym).await?.0 {
        return Err(unknown(reader, sym));
    }
    Ok(reader.candles(sym, interval, first_ms, last_ms).await?)
}

/// Runs `candles`: the rendered text, or why not.
pub async fn run(reader: &Reader, args: &CandleArgs, now_ms: u64) -> Result<String, ReportError> {
    let sym = parse_symbol(&args.symbol).map_err(ReportError::Config)?;
    let (first, last) = window(
        args.interval,
        args.since.map(|w| w.resolve(now_ms)),
        args.until.map(|w| w.resolve(now_ms)),
        args.limit,
        now_ms,
    )
    .map_err(ReportError::Config)?;
    let candles = read(reader, &sym, args.interval, first, last).await?;
    let asked = Asked {
        symbol: sym.as_str(),
        interval: args.interval,
        first_ms: first,
        last_ms: last,
    };
    Ok(render::render(&asked, &candles, args.format))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_shared::kline::{HOUR_MS, MINUTE_MS};

    const NOW: u64 = 1_717_243_212_345; // 2024-06-01T12:00:12.345Z
    const H: u64 = 1_717_243_200_000;

    #[test]
    fn default_is_the_last_60_intervals_up_to_now() {
        let (f, l) = window(Interval::M1, None, None, None, NOW).unwrap();
        assert_eq!((f, l), (H - 59 * MINUTE_MS, H));
        let (f, l) = window(Interval::H1, None, None, Some(3), NOW).unwrap();
        assert_eq!((f, l), (H - 2 * HOUR_MS, H));
        let (f, l) = window(Interval::M5, None, Some(H - 1), Some(1), NOW).unwrap();
        assert_eq!((f, l), (H - 5 * MINUTE_MS, H - 5 * MINUTE_MS));
    }

    #[test]
    fn since_reads_forward_and_limit_keeps_the_first() {
        let (f, l) = window(Interval::M1, Some(H - 90_000), None, None, NOW).unwrap();
        assert_eq!((f, l), (H - 2 * MINUTE_MS, H));
        let (f, l) = window(Interval::M1, Some(H - HOUR_MS), None, Some(2), NOW).unwrap();
        assert_eq!((f, l), (H - HOUR_MS, H - HOUR_MS + MINUTE_MS));
        // A limit past --until stops at --until.
        let (f, l) = window(Interval::M1, Some(H - 60_000), Some(H), Some(50), NOW).unwrap();
        assert_eq!((f, l), (H - MINUTE_MS, H));
        let e = window(Interval::M1, Some(H), Some(H - 1), None, NOW).unwrap_err();
        assert!(e.contains("after --until"), "{e}");
    }

    #[test]
    fn symbols_are_checked_and_upper_cased() {
        assert_eq!(parse_symbol("btcusdt").unwrap().as_str(), "BTCUSDT");
        assert!(parse_symbol("BTC-USDT")
            .unwrap_err()
            .contains("not a symbol"));
        assert!(parse_symbol("").is_err());
    }
}
