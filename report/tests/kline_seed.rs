//! The candle tests' data: trades, their kline buckets written as the consumer writes
//! them (every field of `kline::FIELDS` in the minute, hour and day hashes `Keys`
//! names, plus the index, count and stats; the consumer's kline sink is not on main
//! yet, so the layout is written here, through `Kline::of_trade`/`merge` like the
//! sink's fold), and the candles expected of them computed straight from the trades
//! sorted by id, not through `Kline::merge`.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tradeflow_shared::decimal::format_scaled;
use tradeflow_shared::kline::{Bucket, Interval, Kline, FIELDS};
use tradeflow_shared::redis_keys::Keys;
use tradeflow_shared::{Fixed8, Symbol, Trade};

pub const ONE: u64 = 100_000_000;

/// `per_minute` trades of `sym` in each of `minutes` minutes from `from_ms` (a minute
/// start), ids ascending from `first_id`. Inside a minute the times are shuffled
/// against the ids (open and close go by id, not time); prices wander around `around`
/// (units of 1e-8, at least 11 whole units), every third trade has the buyer as maker.
pub fn trades(
    sym: &str,
    first_id: u64,
    from_ms: u64,
    minutes: u64,
    per_minute: u64,
    around: u64,
) -> Vec<Trade> {
    let symbol = Symbol::new(sym).unwrap();
    let mut out = Vec::new();
    for m in 0..minutes {
        for j in 0..per_minute {
            let id = first_id + m * per_minute + j;
            let slot = (j * 7 + 3) % per_minute;
            let time = from_ms + m * 60_000 + slot * (60_000 / per_minute) + 17;
            // -10.00 .. +10.00 around the centre, cents.
            let price = around + (id * 7_919) % 2_001 * ONE / 100 - 10 * ONE;
            let qty = 1 + (id * 104_729) % 5_000_000;
            out.push(Trade {
                symbol,
                trade_id: id,
                price: Fixed8(price),
                qty: Fixed8(qty),
                trade_time_ms: time,
                event_time_ms: time,
                buyer_is_maker: id.is_multiple_of(3),
            });
        }
    }
    out
}

/// A bucket's fields in `FIELDS` order, as the consumer writes them.
fn fields(k: &Kline) -> Vec<(&'static str, String)> {
    let f = vec![
        ("count", k.count.to_string()),
        ("base", format_scaled(k.base, 8)),
        ("quote", format_scaled(k.quote, 16)),
        ("tbase", format_scaled(k.taker_base, 8)),
        ("tquote", format_scaled(k.taker_quote, 16)),
        ("open", k.open.to_string()),
        ("open_id", k.open_id.to_string()),
        ("close", k.close.to_string()),
        ("close_id", k.close_id.to_string()),
        ("high", k.high.to_string()),
        ("low", k.low.to_string()),
    ];
    let names: Vec<&str> = f.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, FIELDS, "the seed writes every kline field");
    f
}

/// The commands writing `trades` (all of one symbol) as the consumer does: the symbols
/// index (its own pipeline: another slot on a cluster), then the count, stats and every
/// minute, hour and day bucket, all in the symbol's slot.
pub fn seed_pipes(keys: &Keys, trades: &[Trade]) -> (redis::Pipeline, redis::Pipeline) {
    let sym = trades[0].symbol;
    let mut index = redis::pipe();
    index.cmd("SADD").arg(keys.symbols()).arg(sym.as_str());
    let mut p = redis::pipe();
    p.cmd("INCRBY").arg(keys.count(&sym)).arg(trades.len());
    let last = trades.iter().max_by_key(|t| t.trade_id).unwrap();
    let newest = trades.iter().map(|t| t.trade_time_ms).max().unwrap();
    let base: u128 = trades.iter().map(|t| t.qty.0 as u128).sum();
    let quote: u128 = trades.iter().map(|t| t.price.times(t.qty)).sum();
    p.cmd("HSET")
        .arg(keys.stats(&sym))
        .arg("base")
        .arg(format_scaled(base, 8))
        .arg("quote")
        .arg(format_scaled(quote, 16))
        .arg("last_price")
        .arg(last.price.to_string())
        .arg("last_time_ms")
        .arg(newest)
        .arg("last_trade_id")
        .arg(last.trade_id);
    for bucket in [Bucket::Minute, Bucket::Hour, Bucket::Day] {
        let mut klines: BTreeMap<u64, Kline> = BTreeMap::new();
        for t in trades {
            let k = Kline::of_trade(
                bucket.ms(),
                t.trade_id,
                t.price,
                t.qty,
                t.trade_time_ms,
                t.buyer_is_maker,
            );
            klines
                .entry(t.trade_time_ms / bucket.ms())
                .and_modify(|b| b.merge(&k))
                .or_insert(k);
        }
        for (n, k) in &klines {
            let cmd = p.cmd("HSET").arg(keys.bucket(&sym, bucket, *n));
            for (name, value) in fields(k) {
                cmd.arg(name).arg(value);
            }
        }
    }
    (index, p)
}

/// Writes `trades` into one Redis (see [`seed_pipes`]).
pub fn seed(con: &mut redis::Connection, trades: &[Trade]) {
    let (index, symbol) = seed_pipes(&Keys::new("tradeflow:").unwrap(), trades);
    index.query::<()>(con).unwrap();
    symbol.query::<()>(con).unwrap();
}

/// The `interval` candles of `trades`, as Binance kline arrays, ascending: computed
/// from the trades of each interval sorted by id.
pub fn expected(interval: Interval, trades: &[Trade]) -> Vec<Value> {
    let ms = interval.ms();
    let mut by_open: BTreeMap<u64, Vec<&Trade>> = BTreeMap::new();
    for t in trades {
        by_open
            .entry(t.trade_time_ms - t.trade_time_ms % ms)
            .or_default()
            .push(t);
    }
    by_open
        .into_iter()
        .map(|(open_time, mut ts)| {
            ts.sort_by_key(|t| t.trade_id);
            let price = |t: &Trade| t.price.to_string();
            let high = ts.iter().map(|t| t.price).max().unwrap();
            let low = ts.iter().map(|t| t.price).min().unwrap();
            let base: u128 = ts.iter().map(|t| t.qty.0 as u128).sum();
            let quote: u128 = ts.iter().map(|t| t.price.0 as u128 * t.qty.0 as u128).sum();
            let takers: Vec<&&Trade> = ts.iter().filter(|t| !t.buyer_is_maker).collect();
            let tbase: u128 = takers.iter().map(|t| t.qty.0 as u128).sum();
            let tquote: u128 = takers
                .iter()
                .map(|t| t.price.0 as u128 * t.qty.0 as u128)
                .sum();
            json!([
                open_time,
                price(ts[0]),
                high.to_string(),
                low.to_string(),
                price(ts[ts.len() - 1]),
                format_scaled(base, 8),
                open_time + ms - 1,
                format_scaled(quote, 16),
                ts.len(),
                format_scaled(tbase, 8),
                format_scaled(tquote, 16),
                "0"
            ])
        })
        .collect()
}

/// The expected candles whose open time lies in `first..=last`.
pub fn within(candles: Vec<Value>, first: u64, last: u64) -> Vec<Value> {
    candles
        .into_iter()
        .filter(|k| (first..=last).contains(&k[0].as_u64().unwrap()))
        .collect()
}
