//! The exactly-once Redis sink against a real redis-server (AOF on), one fault case per
//! test: replays, racing appliers, producer duplicates, out-of-order ids, reshards,
//! restarts, poison records, key safety and password redaction.

use crate::redis_common;

use redis_common::*;
use tradeflow_consumer::apply::{fold, RedisSink, SinkConfig, SinkError};
use tradeflow_consumer::record::{DecodedRecord, Item};
use tradeflow_shared::testkit;
use tradeflow_shared::{Position, Trade};

const P: &str = "tradeflow:";

fn mixed_trades(n: u64) -> Vec<Trade> {
    (1..=n)
        .map(|i| match i % 3 {
            0 => trade("BTCUSDT", 1_000_000 + i),
            1 => trade("ETHBTC", 50 + i),
            _ => trade("币安人生USDT", i),
        })
        .collect()
}

#[tokio::test]
async fn replay_with_other_batch_sizes_changes_nothing() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await;
    let trades = mixed_trades(600);
    let shard = shard_of(&trades);
    let first = apply_in_batches(&sink, "shardId-000000000000", &shard, 7).await;
    assert_eq!(first.trades_applied, 600);
    let want = expected(&trades);
    assert_eq!(actual(&redis, P).await, want);
    // Replays from other starting points and with other batch sizes.
    let again = apply_in_batches(&sink, "shardId-000000000000", &shard, 50).await;
    assert_eq!(again.trades_applied, 0);
    let again = apply_in_batches(&sink, "shardId-000000000000", &shard[3..], 13).await;
    assert_eq!(again.trades_applied, 0);
    assert_eq!(actual(&redis, P).await, want);
    // The same records read under a new lease after Redis lost its position (or by a
    // worker with a stale checkpoint) on another shard name hit the per-symbol dedupe.
    let other = apply_in_batches(&sink, "shardId-000000000009", &shard, 33).await;
    assert_eq!((other.trades_applied, other.duplicates), (0, 600));
    assert_eq!(actual(&redis, P).await, want);
    let pos = sink
        .stored_position(STREAM, "shardId-000000000000")
        .await
        .unwrap();
    assert_eq!(pos, Some(Position::new(seq(600), 0)));
    assert_eq!(
        sink.stored_position(STREAM, "shardId-000000000005")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn racing_appliers_on_one_shard_count_each_trade_once() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await;
    let trades = mixed_trades(900);
    let shard = std::sync::Arc::new(shard_of(&trades));
    // What a checkpoint covers is applied; every applier starts at such a point (a
    // checkpoint or the stored position) and goes in order — the sink's invariant.
    let pre = apply_in_batches(&sink, "shardId-000000000001", &shard[..40], 8).await;
    let mut tasks = Vec::new();
    for (k, size) in [5usize, 17, 64, 3].into_iter().enumerate() {
        let sink = sink.clone();
        let shard = shard.clone();
        tasks.push(tokio::spawn(async move {
            // Each starts from a different (old) checkpoint, like a stolen lease.
            apply_in_batches(&sink, "shardId-000000000001", &shard[k * 10..], size).await
        }));
    }
    let mut applied = pre.trades_applied;
    for t in tasks {
        applied += t.await.unwrap().trades_applied;
    }
    assert_eq!(applied, 900);
    assert_eq!(actual(&redis, P).await, expected(&trades));
}

#[tokio::test]
async fn producer_duplicates_with_new_sequence_numbers_count_once() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await;
    let trades = mixed_trades(300);
    // The producer retried: the second half of the stream repeats trades 100..250
    // under later sequence numbers, partly interleaved with new ones.
    let mut written: Vec<Trade> = trades[..200].to_vec();
    written.extend_from_slice(&trades[100..250]);
    written.extend_from_slice(&trades[200..]);
    let shard = shard_of(&written);
    let o = apply_in_batches(&sink, "shardId-000000000002", &shard, 40).await;
    assert_eq!(o.trades_applied, 300);
    assert_eq!(o.duplicates, 150);
    assert_eq!(actual(&redis, P).await, expected(&trades));
}

#[tokio::test]
async fn out_of_order_ids_are_all_counted_once() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await;
    let t = |id| trade("BNBUSDT", id);
    // Read as 1,2,4 | 3,4,5: the second batch's run 3..5 straddles hwm 4 → split path.
    let shard = shard_of(&[t(1), t(2), t(4), t(3), t(4), t(5)]);
    let a = apply_retrying(&sink, "shardId-000000000003", &fold(&shard[..3])).await;
    assert_eq!((a.trades_applied, a.round_trips), (3, 1));
    let b = apply_retrying(&sink, "shardId-000000000003", &fold(&shard[3..])).await;
    assert_eq!((b.trades_applied, b.duplicates, b.round_trips), (2, 1, 2));
    // And the plain 1,2,4,3,5 one record per batch.
    let shard2 = shard_of(&[t(11), t(12), t(14), t(13), t(15)]);
    let c = apply_in_batches(&sink, "shardId-000000000004", &shard2, 1).await;
    assert_eq!(c.trades_applied, 5);
    let all = [1, 2, 3, 4, 5, 11, 12, 13, 14, 15].map(t);
    assert_eq!(actual(&redis, P).await, expected(&all));
    let mut con = raw(&redis).await;
    // Gap 6..10 is still open, and ids below the first one seen stay welcome.
    let gaps: Vec<String> = redis::cmd("ZRANGE")
        .arg("tradeflow:gaps:BNBUSDT")
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(gaps, vec!["0:0".to_string(), "6:10".to_string()]);
}

#[tokio::test]
async fn reshard_parent_then_children_is_exact() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await;
    let trades = mixed_trades(400);
    // Parent holds the first 250; after the split the producer's in-flight retries put
    // 230..250 again on the children, which continue the symbols.
    let parent = shard_of(&trades[..250]);
    let child_a: Vec<DecodedRecord> = trades[230..]
        .iter()
        .step_by(2)
        .enumerate()
        .map(|(i, t)| rec(i as u64 + 1, *t))
        .collect();
    let child_b: Vec<DecodedRecord> = trades[231..]
        .iter()
        .step_by(2)
        .enumerate()
        .map(|(i, t)| rec(i as u64 + 1, *t))
        .collect();
    apply_in_batches(&sink, "shardId-000000000000", &parent, 32).await;
    let a = apply_in_batches(&sink, "shardId-000000000001", &child_a, 9);
    let b = apply_in_batches(&sink, "shardId-000000000002", &child_b, 11);
    let (a, b) = tokio::join!(a, b);
    assert_eq!(a.trades_applied + b.trades_applied, 150);
    assert_eq!(actual(&redis, P).await, expected(&trades));
}

#[tokio::test]
async fn volumes_are_exact_decimal_sums() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await;
    // Large amounts: each trade's quote value near the 1e12 sanity bound, so the sum
    // quickly passes 2^53 and u64 units.
    let trades: Vec<Trade> = (1..=200u64)
        .map(|i| {
            let mut t = trade("BTCUSDT", i);
            t.price = tradeflow_shared::Fixed8(99_999_999_999_999 - i);
            t.qty = tradeflow_shared::Fixed8(999_999_999_999 + i * 3);
            t
        })
        .collect();
    apply_in_batches(&sink, "shardId-000000000000", &shard_of(&trades), 23).await;
    let got = actual(&redis, P).await;
    let mut base = "0.00000000".to_string();
    let mut quote = format!("0.{}", "0".repeat(16));
    for t in &trades {
        base = tradeflow_shared::decimal::add_decimal_strings(&base, &t.qty.to_string()).unwrap();
        let q = tradeflow_shared::decimal::format_scaled(t.quote_units(), 16);
        quote = tradeflow_shared::decimal::add_decimal_strings(&quote, &q).unwrap();
    }
    assert_eq!(got["BTCUSDT"].base, base);
    assert_eq!(got["BTCUSDT"].quote, quote);
    assert_eq!(got["BTCUSDT"].count, 200);
    // Last price/time are those of the highest id; minute buckets add up to the total.
    let mut con = raw(&redis).await;
    let (lp, lid): (String, u64) = redis::cmd("HMGET")
        .arg("tradeflow:stats:BTCUSDT")
        .arg("last_price")
        .arg("last_trade_id")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!((lp, lid), (trades[199].price.to_string(), 200));
    let mut minute_count = 0u64;
    let first_min = trades[0].trade_time_ms / 60_000;
    let last_min = trades[199].trade_time_ms / 60_000;
    for m in first_min..=last_min {
        let key = format!("tradeflow:min:BTCUSDT:{m}");
        let c: Option<u64> = redis::cmd("HGET")
            .arg(&key)
            .arg("count")
            .query_async(&mut con)
            .await
            .unwrap();
        minute_count += c.unwrap_or(0);
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 3600, "{key} ttl {ttl}");
    }
    assert_eq!(minute_count, 200);
}

#[tokio::test]
async fn redis_restart_mid_run_loses_and_doubles_nothing() {
    let mut redis = testkit::redis();
    let sink = sink(&redis, P).await;
    let trades = mixed_trades(500);
    let shard = shard_of(&trades);
    apply_in_batches(&sink, "shardId-000000000000", &shard[..200], 25).await;
    // Polite restart (AOF flushed): the sink reconnects; the script is reloaded on
    // NOSCRIPT. The worker replays from its (older) checkpoint.
    redis.restart();
    apply_in_batches(&sink, "shardId-000000000000", &shard[150..350], 25).await;
    // Hard kill: the last second of writes may be lost. The worker resumes from what
    // Redis durably holds, as the consumer does.
    redis.kill();
    redis.start();
    let pos = loop {
        match sink.stored_position(STREAM, "shardId-000000000000").await {
            Ok(p) => break p,
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    let from = shard
        .iter()
        .position(|r| Some(&r.pos) > pos.as_ref())
        .unwrap_or(shard.len());
    apply_in_batches(&sink, "shardId-000000000000", &shard[from..], 40).await;
    assert_eq!(actual(&redis, P).await, expected(&trades));
}

#[tokio::test]
async fn noscript_after_script_flush_is_handled() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await;
    let mut con = raw(&redis).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut con)
        .await
        .unwrap();
    let o = apply_retrying(
        &sink,
        "shardId-000000000000",
        &fold(&shard_of(&mixed_trades(9))),
    )
    .await;
    assert_eq!(o.trades_applied, 9);
}

#[tokio::test]
async fn poison_is_dead_lettered_once_even_when_replayed() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await;
    let mut records: Vec<DecodedRecord> = Vec::new();
    for i in 1..=60u64 {
        if i % 10 == 0 {
            records.push(poison_rec(i, &format!("bad record {i}")));
        } else {
            records.push(rec(i, trade("LTCBTC", i)));
        }
    }
    let o = apply_in_batches(&sink, "shardId-000000000000", &records, 7).await;
    assert_eq!(o.poison, 6);
    let o = apply_in_batches(&sink, "shardId-000000000000", &records[15..], 4).await;
    assert_eq!(o.poison, 0);
    let mut con = raw(&redis).await;
    let n: u64 = redis::cmd("XLEN")
        .arg("tradeflow:dead_letter")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(n, 6);
    let entries: redis::Value = redis::cmd("XRANGE")
        .arg("tradeflow:dead_letter")
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut con)
        .await
        .unwrap();
    let text = format!("{entries:?}");
    for needle in ["shardId-000000000000", "bad record 10", "json", "trades"] {
        assert!(text.contains(needle), "{needle} missing in {text}");
    }
    assert_eq!(actual(&redis, P).await["LTCBTC"].count, 54);
}

#[tokio::test]
async fn key_breaking_names_never_reach_redis() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await;
    // The decoder (and Symbol) reject such symbols before anything else.
    for bad in ["A:B", "BTC*", "X Y", "{x}", "a\r\nFLUSHALL"] {
        assert!(tradeflow_shared::Symbol::new(bad).is_err(), "{bad:?}");
    }
    let batch = fold(&shard_of(&mixed_trades(3)));
    for (stream, shard) in [
        ("tr:ades", "shardId-1"),
        ("trades", "shard*"),
        ("t", "a b\r\n"),
    ] {
        let err = sink.apply(stream, shard, &batch).await.unwrap_err();
        assert!(matches!(err, SinkError::Key(_)), "{err}");
        assert!(!err.is_retryable());
    }
    assert!(RedisSink::connect(&SinkConfig {
        key_prefix: "symbol:".into(),
        ..config(&redis, P)
    })
    .await
    .is_err());
    let mut con = raw(&redis).await;
    let n: u64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    assert_eq!(n, 0);
    // A record that is not a trade never creates a symbol key either.
    let only_ignored = vec![DecodedRecord {
        pos: Position::new(seq(1), 0),
        item: Item::Ignored,
    }];
    sink.apply(STREAM, "shardId-1", &fold(&only_ignored))
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(keys, vec!["tradeflow:pos:trades:shardId-1".to_string()]);
}

#[tokio::test]
async fn password_never_appears_in_errors() {
    let redis = testkit::redis();
    let mut con = raw(&redis).await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("right-Secret-42")
        .query_async(&mut con)
        .await
        .unwrap();
    let wrong = SinkConfig {
        url: format!("redis://:wrong-Secret-17@127.0.0.1:{}/0", redis.port),
        ..config(&redis, P)
    };
    let err = RedisSink::connect(&wrong).await.err().expect("must fail");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("wrong-Secret-17"), "{shown}");
    assert!(shown.contains(":***@127.0.0.1"), "{shown}");
    assert!(!err.is_retryable(), "{shown}");
    // Nobody listening: retryable, still redacted.
    let down = SinkConfig {
        url: format!(
            "redis://user:wrong-Secret-17@127.0.0.1:{}",
            testkit::free_port()
        ),
        ..config(&redis, P)
    };
    let err = RedisSink::connect(&down).await.err().expect("must fail");
    let shown = format!("{err} {err:?} {down:?}");
    assert!(!shown.contains("wrong-Secret-17"), "{shown}");
    assert!(err.is_retryable(), "{shown}");
    // The right password works.
    let ok = SinkConfig {
        url: format!("redis://:right-Secret-42@127.0.0.1:{}", redis.port),
        ..config(&redis, P)
    };
    let sink = RedisSink::connect(&ok).await.unwrap();
    assert!(!sink.url().contains("right-Secret-42"));
    let o = apply_retrying(&sink, "shardId-0", &fold(&shard_of(&mixed_trades(4)))).await;
    assert_eq!(o.trades_applied, 4);
}

#[tokio::test]
async fn evicted_gaps_make_late_trades_counted_not_applied() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await.with_max_gaps(2);
    let t = |id| trade("NEOBTC", id);
    // Ids 10, 20, 30, 40: gaps 0..9, 11..19, 21..29, 31..39 → only the newest 2 kept
    // (floor 19). 15 is late. 35 fills and splits 31..39, which evicts 21..29 (floor
    // 29), so 25 is late too; 33 still fills a kept gap.
    let shard = shard_of(&[t(10), t(20), t(30), t(40), t(15), t(35), t(25), t(33)]);
    let o = apply_in_batches(&sink, "shardId-0", &shard, 1).await;
    assert_eq!((o.trades_applied, o.late_dropped), (6, 2));
    let got = actual(&redis, P).await;
    let applied = [t(10), t(20), t(30), t(40), t(35), t(33)];
    assert_eq!(got["NEOBTC"], expected(&applied)["NEOBTC"]);
}

/// Ordinary redeliveries of trades applied long ago, at or below an evicted gap, are
/// duplicates; only ids of an evicted gap itself are late.
#[tokio::test]
async fn redeliveries_below_an_evicted_gap_are_duplicates_not_late() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await.with_max_gaps(2);
    let t = |id| trade("NEOBTC", id);
    // Gaps 0..9, 11..19, 21..29, 31..39: the two lowest are evicted.
    let applied = [t(10), t(20), t(30), t(40)];
    apply_in_batches(&sink, "shardId-0", &shard_of(&applied), 1).await;
    // A re-read of the shard elsewhere (a reshard child, a replay): all applied before.
    let o = apply_in_batches(&sink, "shardId-1", &shard_of(&applied), 4).await;
    assert_eq!((o.trades_applied, o.duplicates, o.late_dropped), (0, 4, 0));
    // A trade of an evicted gap is late; one next to it, applied long ago, is not.
    let o = apply_in_batches(&sink, "shardId-2", &shard_of(&[t(15), t(10), t(5)]), 3).await;
    assert_eq!((o.trades_applied, o.duplicates, o.late_dropped), (0, 1, 2));
    assert_eq!(actual(&redis, P).await, expected(&applied));
}

#[tokio::test]
async fn empty_batch_costs_nothing() {
    let redis = testkit::redis();
    let sink = sink(&redis, "tf:").await;
    let o = sink.apply(STREAM, "shardId-0", &fold(&[])).await.unwrap();
    assert_eq!(o.round_trips, 0);
}

/// An applier that knows it applied a shard up to P, finding Redis below P (it lost
/// its last writes), gets `Behind` with Redis's position and nothing is written; going
/// on from that position counts every trade once.
#[tokio::test]
async fn lost_writes_are_detected_and_replayed_from_redis_position() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await;
    let trades = mixed_trades(300);
    let shard = shard_of(&trades);
    let id = "shardId-000000000000";
    let b1 = fold(&shard[..100]);
    let b2 = fold(&shard[100..200]);
    sink.apply_after(STREAM, id, None, &b1).await.unwrap();
    let after_b1 = b1.last.clone();
    sink.apply_after(STREAM, id, after_b1.as_ref(), &b2)
        .await
        .unwrap();
    // Redis "loses" batch 2's position (as after a restart that lost its last second of
    // writes); the per-symbol dedupe still holds batch 2, which makes the re-read below
    // a run of duplicates — the detection is what is tested.
    let mut raw = raw(&redis).await;
    let b1_last = after_b1.clone().unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{P}pos:{STREAM}:{id}"))
        .arg("seq")
        .arg(b1_last.seq.as_str())
        .arg("sub")
        .arg(b1_last.sub)
        .query_async(&mut raw)
        .await
        .unwrap();
    let b3 = fold(&shard[200..]);
    match sink.apply_after(STREAM, id, b2.last.as_ref(), &b3).await {
        Err(SinkError::Behind { stored }) => {
            assert_eq!(stored, after_b1)
        }
        other => panic!("expected Behind, got {other:?}"),
    }
    // Nothing of batch 3 was written.
    let before: u64 = actual(&redis, P).await.values().map(|t| t.count).sum();
    assert_eq!(before, 200);
    // Re-reading from Redis's position: batch 2 again (duplicates), then batch 3.
    sink.apply_after(STREAM, id, after_b1.as_ref(), &b2)
        .await
        .unwrap();
    sink.apply_after(STREAM, id, b2.last.as_ref(), &b3)
        .await
        .unwrap();
    assert_eq!(actual(&redis, P).await, expected(&trades));
}
