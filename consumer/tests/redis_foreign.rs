//! Foreign values in tradeflow's keys (a legacy job writing `symbol:<SYM>`, a hand edit,
//! a key of the wrong type) against a real redis-server: the script checks them before
//! any write, the symbol's trades of the batch are kept aside in the dead-letter stream
//! with the reason (never a half-applied batch, never silent loss), the other symbols
//! count on, and the symbol counts exactly again once the key is repaired.

use crate::redis_common;

use std::collections::BTreeMap;

use redis_common::*;
use tradeflow_consumer::apply::fold;
use tradeflow_consumer::record::DecodedRecord;
use tradeflow_shared::testkit;
use tradeflow_shared::Trade;

const P: &str = "tradeflow:";

/// Every entry of a dead-letter stream, as field maps.
pub async fn dead_letters(
    con: &mut impl redis::aio::ConnectionLike,
    key: &str,
) -> Vec<BTreeMap<String, String>> {
    let entries: Vec<(String, BTreeMap<String, String>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(con)
        .await
        .unwrap();
    entries.into_iter().map(|(_, f)| f).collect()
}

fn trades(sym: &str, ids: std::ops::RangeInclusive<u64>) -> Vec<Trade> {
    ids.map(|i| trade(sym, i)).collect()
}

/// Records at positions `from..` for the given trades.
fn at(from: u64, trades: &[Trade]) -> Vec<DecodedRecord> {
    trades
        .iter()
        .enumerate()
        .map(|(i, t)| rec(from + i as u64, *t))
        .collect()
}

async fn cmd<T: redis::FromRedisValue>(
    con: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(con).await.unwrap()
}

const CLEAN: &str = "CLEANUSDT";
/// Symbol, what is broken, the commands that break it (after its first trades).
const BROKEN: &[(&str, &str, &[&[&str]])] = &[
    // The case: the shared `symbol:` namespace, a non-integer from an old job.
    (
        "COUNTUSDT",
        "symbol:COUNTUSDT",
        &[&["SET", "symbol:COUNTUSDT", "n/a"]],
    ),
    (
        "TYPEUSDT",
        "symbol:TYPEUSDT",
        &[
            &["DEL", "symbol:TYPEUSDT"],
            &["HSET", "symbol:TYPEUSDT", "n", "1"],
        ],
    ),
    (
        "STATSUSDT",
        "tradeflow:stats:STATSUSDT",
        &[&["HSET", "tradeflow:stats:STATSUSDT", "base", "12.5"]],
    ),
    (
        "HWMUSDT",
        "tradeflow:dedupe:HWMUSDT",
        &[&["HSET", "tradeflow:dedupe:HWMUSDT", "hwm", "abc"]],
    ),
    (
        "GAPSUSDT",
        "tradeflow:gaps:GAPSUSDT",
        &[
            &["DEL", "tradeflow:gaps:GAPSUSDT"],
            &["SET", "tradeflow:gaps:GAPSUSDT", "junk"],
        ],
    ),
    (
        "MINUSDT",
        "tradeflow:min:MINUSDT:28616667",
        &[
            &["DEL", "tradeflow:min:MINUSDT:28616667"],
            &["SET", "tradeflow:min:MINUSDT:28616667", "x"],
        ],
    ),
    // Candles: a price in a minute bucket (packed, and in the older layout of a field
    // each), the pending hours' type, the roll-up mark.
    (
        "HIGHUSDT",
        "tradeflow:min:HIGHUSDT:28616667",
        &[&[
            "HSET",
            "tradeflow:min:HIGHUSDT:28616667",
            "k",
            "0 1 0 1 0 0 0 0 1.00000000 1 1.00000000 1 1e5 1.00000000",
        ]],
    ),
    (
        "OLDKUSDT",
        "tradeflow:min:OLDKUSDT:28616667",
        &[
            &["DEL", "tradeflow:min:OLDKUSDT:28616667"],
            &[
                "HSET",
                "tradeflow:min:OLDKUSDT:28616667",
                "count",
                "10",
                "high",
                "1e5",
            ],
        ],
    ),
    (
        "PENDUSDT",
        "tradeflow:pending:PENDUSDT",
        &[
            &["DEL", "tradeflow:pending:PENDUSDT"],
            &["SET", "tradeflow:pending:PENDUSDT", "x"],
        ],
    ),
    (
        "SEALUSDT",
        "tradeflow:dedupe:SEALUSDT",
        &[&["HSET", "tradeflow:dedupe:SEALUSDT", "sealed", "-3"]],
    ),
];

/// Saves a key (DUMP) so the test can repair it as an operator would.
async fn dump(con: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("DUMP").arg(key).query_async(con).await.unwrap()
}

async fn restore(con: &mut redis::aio::MultiplexedConnection, key: &str, v: Option<Vec<u8>>) {
    let _: () = redis::cmd("DEL").arg(key).query_async(con).await.unwrap();
    if let Some(v) = v {
        let _: () = redis::cmd("RESTORE")
            .arg(key)
            .arg(0)
            .arg(v)
            .query_async(con)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn foreign_values_keep_their_symbols_trades_aside_and_counting_resumes_after_repair() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await;
    let mut con = raw(&redis).await;
    let mut names = vec![CLEAN];
    names.extend(BROKEN.iter().map(|b| b.0));
    let round = |ids: std::ops::RangeInclusive<u64>| -> Vec<Trade> {
        names.iter().flat_map(|s| trades(s, ids.clone())).collect()
    };
    let (r1, r2, r3) = (round(1..=10), round(11..=20), round(21..=30));
    let n = names.len() as u64;
    let o = apply_retrying(&sink, "shardId-0", &fold(&at(1, &r1))).await;
    assert_eq!(o.trades_applied, 10 * n);

    // Foreign writes; each key saved first, for the repair below.
    let mut saved = Vec::new();
    for (_, key, cmds) in BROKEN {
        saved.push((*key, dump(&mut con, key).await));
        for c in *cmds {
            let _: redis::Value = cmd(&mut con, c).await;
        }
    }

    // The batch goes through: the clean symbol counts, the broken ones' trades are kept
    // aside with the reason, and nothing of theirs is written.
    let batch2 = fold(&at(1000, &r2));
    let o = sink
        .apply(STREAM, "shardId-0", &batch2)
        .await
        .expect("a foreign value is a poison condition, not a batch error");
    let broken = BROKEN.len() as u64;
    assert_eq!(o.trades_applied, 10, "only {CLEAN} applied: {o:?}");
    assert_eq!(o.foreign_trades, 10 * broken, "{o:?}");
    assert_eq!(o.poison, 10 * broken, "{o:?}");
    let dl = dead_letters(&mut con, "tradeflow:dead_letter").await;
    assert_eq!(dl.len() as u64, 10 * broken);
    for (sym, key, _) in BROKEN {
        let mine: Vec<_> = dl
            .iter()
            .filter(|e| e["data"].contains(&format!("\"s\":\"{sym}\"")))
            .collect();
        assert_eq!(mine.len(), 10, "{sym}: {dl:?}");
        for e in mine {
            assert_eq!(e["kind"], "foreign_value");
            assert!(e["reason"].contains(key), "{sym}: {}", e["reason"]);
            assert_eq!(
                (e["stream"].as_str(), e["shard"].as_str()),
                (STREAM, "shardId-0")
            );
        }
        // Nothing of the symbol moved: its high-water mark is where it was.
        if *sym != "HWMUSDT" {
            let hwm: String = cmd(&mut con, &["HGET", &format!("{P}dedupe:{sym}"), "hwm"]).await;
            assert_eq!(hwm, "10", "{sym}");
        }
    }
    let foreign: String = cmd(&mut con, &["GET", "symbol:COUNTUSDT"]).await;
    assert_eq!(foreign, "n/a", "the foreign value is left for a human");
    // A redelivery of the batch changes nothing and keeps nothing aside twice.
    let again = apply_retrying(&sink, "shardId-0", &batch2).await;
    assert!(again.batch_skipped);
    assert_eq!(
        dead_letters(&mut con, "tradeflow:dead_letter").await.len(),
        dl.len()
    );

    // Repaired: each symbol counts exactly from there on.
    for (key, v) in saved {
        restore(&mut con, key, v).await;
    }
    let o = apply_retrying(&sink, "shardId-0", &fold(&at(2000, &r3))).await;
    assert_eq!((o.trades_applied, o.foreign_trades), (10 * n, 0));
    let mut want_now: Vec<Trade> = r1.clone();
    want_now.extend(&r3);
    want_now.extend(r2.iter().filter(|t| t.symbol.as_str() == CLEAN));
    assert_eq!(actual(&redis, P).await, expected(&want_now));
    // The trades kept aside are remembered as never applied (a gap): re-applying them
    // (a replay, say) counts each exactly once.
    let o = apply_retrying(&sink, "shardId-replay", &fold(&at(1, &r2))).await;
    assert_eq!((o.trades_applied, o.duplicates), (10 * broken, 10));
    let mut all = r1;
    all.extend(r2);
    all.extend(r3);
    assert_eq!(actual(&redis, P).await, expected(&all));
    let minute: u64 = cmd(
        &mut con,
        &["HGET", "tradeflow:min:MINUSDT:28616667", "count"],
    )
    .await;
    assert_eq!(minute, 30);
}

/// A foreign value in a key of the whole shard (the symbols index): the batch fails
/// before any write — retried, nothing half-applied — and goes through once repaired.
#[tokio::test]
async fn foreign_shard_key_fails_the_batch_before_any_write() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await;
    let mut con = raw(&redis).await;
    let first = trades("BTCUSDT", 1..=5);
    apply_retrying(&sink, "shardId-0", &fold(&at(1, &first))).await;
    let _: () = cmd(&mut con, &["DEL", "tradeflow:symbols"]).await;
    let _: () = cmd(&mut con, &["SET", "tradeflow:symbols", "oops"]).await;
    let next = trades("BTCUSDT", 6..=9);
    let batch = fold(&at(100, &next));
    let err = sink.apply(STREAM, "shardId-0", &batch).await.unwrap_err();
    assert!(err.to_string().contains("tradeflow:symbols"), "{err}");
    assert_eq!(err.kind(), "foreign_value");
    let count: u64 = cmd(&mut con, &["GET", "symbol:BTCUSDT"]).await;
    let hwm: u64 = cmd(&mut con, &["HGET", "tradeflow:dedupe:BTCUSDT", "hwm"]).await;
    assert_eq!((count, hwm), (5, 5), "nothing written before the check");
    let _: () = cmd(&mut con, &["DEL", "tradeflow:symbols"]).await;
    let _: () = cmd(&mut con, &["SADD", "tradeflow:symbols", "BTCUSDT"]).await;
    let o = apply_retrying(&sink, "shardId-0", &batch).await;
    assert_eq!(o.trades_applied, 4);
    let mut all = first;
    all.extend(next);
    assert_eq!(actual(&redis, P).await, expected(&all));
}
