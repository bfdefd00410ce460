//! The candle tests' data: trades, applied through the consumer's real sink (which
//! writes the minute, hour and day kline buckets), and the candles expected of them
//! computed the plain way from the trades.

use crate::redis_common::{self, apply_in_batches, plain_klines, shard_of};

use serde_json::Value;
use tradeflow_shared::kline::{Interval, Kline};
use tradeflow_shared::testkit::Service;
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

/// Applies `trades` (of any symbols) to one Redis through the consumer's real sink:
/// one shard, batches of 50.
pub async fn apply(redis: &Service, trades: &[Trade]) {
    let sink = redis_common::sink(redis, "tradeflow:").await;
    apply_in_batches(&sink, "shardId-0", &shard_of(trades), 50).await;
}

/// The same from synchronous tests.
pub fn apply_blocking(redis: &Service, trades: &[Trade]) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(apply(redis, trades));
}

/// The `interval` candles of `trades` as Binance kline arrays, ascending: the plain
/// computation over the trades sorted by id (`redis_common::plain_klines`).
pub fn expected(interval: Interval, trades: &[Trade]) -> Vec<Value> {
    plain_klines(trades, interval.ms())
        .iter()
        .map(Kline::to_binance_array)
        .collect()
}

/// The expected candles whose open time lies in `first..=last`.
pub fn within(candles: Vec<Value>, first: u64, last: u64) -> Vec<Value> {
    candles
        .into_iter()
        .filter(|k| (first..=last).contains(&k[0].as_u64().unwrap()))
        .collect()
}
