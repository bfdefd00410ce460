//! Candles: whatever the delivery (ids out of order, trades written several times, any
//! batch boundaries, replays) and wherever the hourly roll-up runs in between (so
//! trades arrive for hours already rolled up), the candles read back and the minute,
//! hour and day buckets Redis holds equal a straightforward computation over the
//! distinct trades sorted by id — and every longer bucket is the exact roll-up of its
//! minutes, across hour and day boundaries. One real redis-server; each case has its
//! own prefix.

use crate::proptest_support::{case_runner, current_thread_runtime};
use crate::redis_common;

use proptest::prelude::*;
use redis_common::*;
use tradeflow_shared::kline::{roll_up, Bucket, Interval, Kline, DAY_MS, HOUR_MS};
use tradeflow_shared::snapshot::Reader;
use tradeflow_shared::testkit;
use tradeflow_shared::{Fixed8, Symbol, Trade};

/// Half an hour before a UTC midnight: the trades below cross an hour and a day.
const START: u64 = 1_717_027_200_000 - 30 * 60_000;

fn trade_at(sym: &str, id: u64, step_ms: u64) -> Trade {
    let price = 100_000_000 + (id * 7_919_003) % 900_000_000;
    let qty = 1 + (id * 104_729) % 10_000_000_000;
    let t = START + id * step_ms;
    Trade {
        symbol: Symbol::new(sym).unwrap(),
        trade_id: id,
        price: Fixed8(price),
        qty: Fixed8(qty),
        trade_time_ms: t,
        event_time_ms: t,
        buyer_is_maker: (id * 31).is_multiple_of(3),
    }
}

async fn stored(reader: &Reader, sym: &Symbol, bucket: Bucket) -> Vec<Kline> {
    let (from, to) = (START / bucket.ms(), (START + 2 * DAY_MS) / bucket.ms());
    reader.buckets(sym, bucket, from, to).await.unwrap()
}

#[test]
fn arbitrary_delivery_gives_exact_candles_and_their_roll_ups() {
    let redis = testkit::redis();
    let rt = current_thread_runtime();
    // Ids 1..80, a trade every 10..110 s: 13 min to 2.4 h, across midnight.
    let strategy = (
        prop::collection::vec((0usize..2, 1u64..80), 1..160),
        prop::collection::vec(1usize..25, 1..5),
        prop::collection::vec((0usize..160, 1usize..30), 0..3),
        10_000u64..110_000,
        // Roll-ups: after which batch, up to which hour (from the first one).
        prop::collection::vec((0usize..40, 0u64..4), 0..4),
    );
    let mut runner = case_runner(64);
    let counter = std::sync::atomic::AtomicU32::new(0);
    runner
        .run(&strategy, |(stream, sizes, replays, step, seals)| {
            let case = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let prefix = format!("k{case}:");
            let names: Vec<String> = (0..2).map(|k| format!("K{case}S{k}")).collect();
            let trades: Vec<Trade> = stream
                .iter()
                .map(|&(s, id)| trade_at(&names[s], id, step))
                .collect();
            let records = shard_of(&trades);
            rt.block_on(async {
                let sink = sink(&redis, &prefix).await;
                let first_hour = START / HOUR_MS;
                let seals: Vec<(usize, u64)> =
                    seals.iter().map(|&(k, h)| (k, first_hour + h)).collect();
                apply_varied(&sink, &records, &sizes, &seals).await;
                for &(from, size) in &replays {
                    let from = from.min(records.len());
                    apply_varied(&sink, &records[from..], &[size], &seals).await;
                }
                let url = format!("redis://127.0.0.1:{}", redis.port);
                let reader = Reader::connect(&url, &prefix).await.unwrap();
                // Read back whatever was rolled up so far: hours from their buckets or
                // their minutes.
                let to = START + 2 * DAY_MS;
                for name in &names {
                    let sym = Symbol::new(name).unwrap();
                    let mine: Vec<Trade> =
                        trades.iter().filter(|t| t.symbol == sym).copied().collect();
                    for i in [Interval::M15, Interval::H1, Interval::H4, Interval::D1] {
                        let got = reader.candles(&sym, i, START, to).await.unwrap();
                        prop_assert_eq!(&got, &plain_klines(&mine, i.ms()), "{}", i);
                    }
                }
                // Then every hour rolled up: the stored buckets themselves.
                sink.seal_hours(to / HOUR_MS).await.unwrap();
                for name in &names {
                    let sym = Symbol::new(name).unwrap();
                    let mine: Vec<Trade> =
                        trades.iter().filter(|t| t.symbol == sym).copied().collect();
                    let minutes = stored(&reader, &sym, Bucket::Minute).await;
                    let hours = stored(&reader, &sym, Bucket::Hour).await;
                    let days = stored(&reader, &sym, Bucket::Day).await;
                    prop_assert_eq!(&minutes, &plain_klines(&mine, Bucket::Minute.ms()));
                    prop_assert_eq!(&hours, &plain_klines(&mine, Bucket::Hour.ms()));
                    prop_assert_eq!(&days, &plain_klines(&mine, Bucket::Day.ms()));
                    // Roll-ups: each hour and day is its minutes rolled up.
                    prop_assert_eq!(&roll_up(Interval::H1, &minutes), &hours);
                    prop_assert_eq!(&roll_up(Interval::D1, &minutes), &days);
                    prop_assert_eq!(&roll_up(Interval::D1, &hours), &days);
                    // What the report reads: 15m from minutes, 4h from hours.
                    let m15 = reader
                        .candles(&sym, Interval::M15, START, to)
                        .await
                        .unwrap();
                    prop_assert_eq!(&m15, &plain_klines(&mine, Interval::M15.ms()));
                    let h4 = reader.candles(&sym, Interval::H4, START, to).await.unwrap();
                    prop_assert_eq!(&h4, &plain_klines(&mine, Interval::H4.ms()));
                }
                Ok(())
            })
        })
        .unwrap();
}

/// Applies `records` (one shard) in order with batch sizes cycling through `sizes`,
/// rolling hours up to `h` after batch `k` for each `(k, h)` of `seals`.
async fn apply_varied(
    sink: &tradeflow_consumer::apply::RedisSink,
    records: &[tradeflow_consumer::record::DecodedRecord],
    sizes: &[usize],
    seals: &[(usize, u64)],
) {
    let mut i = 0;
    let mut k = 0;
    while i < records.len() {
        let n = sizes[k % sizes.len()].max(1).min(records.len() - i);
        let batch = tradeflow_consumer::apply::fold(&records[i..i + n]);
        apply_retrying(sink, "shardId-0", &batch).await;
        for &(_, h) in seals.iter().filter(|s| s.0 == k) {
            sink.seal_hours(h).await.unwrap();
        }
        i += n;
        k += 1;
    }
}
