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

/// Buckets written by the consumer before the `count` + `k` layout (a field each, see
/// `kline::FIELDS`) are read as such and packed by the next write: the candles stay
/// exact across the upgrade, and no bucket keeps the older fields.
#[tokio::test]
async fn buckets_of_the_older_layout_are_read_and_packed() {
    let redis = testkit::redis();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let prefix = "up:";
    // A trade every 30 s from half an hour before midnight; ids 1..=40 stored the older
    // way, their hour rolled up already, so ids 41..=59 are merged into it directly.
    let trades: Vec<Trade> = (1..=100)
        .map(|id| trade_at("UPGUSDT", id, 30_000))
        .collect();
    let records = shard_of(&trades);
    let sink = sink(&redis, prefix).await;
    let first_hour = START / HOUR_MS;
    apply_varied(&sink, &records[..40], &[7], &[(3, first_hour)]).await;

    // What the older consumer would have stored: every bucket as 15 fields.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*:UPGUSDT:*"))
        .query_async(&mut con)
        .await
        .unwrap();
    let kinds = |keys: &[String], kind: &str| keys.iter().filter(|k| k.contains(kind)).count();
    assert!(
        kinds(&keys, ":min:") > 10 && kinds(&keys, ":hour:") > 0,
        "{keys:?}"
    );
    for key in &keys {
        let (count, k): (String, String) = redis::cmd("HMGET")
            .arg(key)
            .arg("count")
            .arg("k")
            .query_async(&mut con)
            .await
            .unwrap();
        let mut cmd = redis::cmd("HSET");
        cmd.arg(key).arg("count").arg(count);
        for (name, v) in tradeflow_shared::kline::FIELDS[1..]
            .iter()
            .zip(k.split(' '))
        {
            cmd.arg(*name).arg(v);
        }
        let _: () = redis::cmd("HDEL")
            .arg(key)
            .arg("k")
            .query_async(&mut con)
            .await
            .unwrap();
        let _: () = cmd.query_async(&mut con).await.unwrap();
    }

    // The rest, with a replay of ids 31..=40, then every hour rolled up.
    apply_varied(&sink, &records[30..], &[9], &[]).await;
    sink.seal_hours((START + DAY_MS) / HOUR_MS).await.unwrap();
    let reader = Reader::connect(&url, prefix).await.unwrap();
    let sym = Symbol::new("UPGUSDT").unwrap();
    for bucket in [Bucket::Minute, Bucket::Hour, Bucket::Day] {
        assert_eq!(
            stored(&reader, &sym, bucket).await,
            plain_klines(&trades, bucket.ms()),
            "{bucket:?}"
        );
    }
    // A bucket written since is packed; one that got no new trade keeps its fields.
    let newer: std::collections::BTreeSet<String> = trades[40..]
        .iter()
        .map(|t| format!("{prefix}min:UPGUSDT:{}", t.trade_time_ms / 60_000))
        .collect();
    for key in &keys {
        let mut fields: Vec<String> = redis::cmd("HKEYS")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap();
        fields.sort();
        let packed = fields == ["count", "k"];
        let written = !key.contains(":min:") || newer.contains(key);
        assert_eq!(packed, written, "{key}: {fields:?}");
        if !packed {
            assert_eq!(fields.len(), 15, "{key}: {fields:?}");
        }
    }
    assert!(
        keys.iter().any(|k| newer.contains(k)),
        "a minute of both layouts"
    );
}
