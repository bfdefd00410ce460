//! The report against a real redis-server: the snapshot matches what the sink wrote,
//! `reset` zeroes totals without breaking exactly-once, and the binary prints JSON/CSV.

use crate::redis_common;

use redis_common::*;
use tradeflow_consumer::apply::fold;
use tradeflow_report::{build, render, reset, Format, Reader, SortBy};
use tradeflow_shared::kline::Bucket;
use tradeflow_shared::testkit;

const P: &str = "tradeflow:";

#[tokio::test]
async fn snapshot_reset_and_exactly_once_across_it() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await;
    let mut trades = Vec::new();
    for i in 1..=30u64 {
        trades.push(trade("BTCUSDT", i));
    }
    for i in 1..=10u64 {
        trades.push(trade("ETHBTC", i));
    }
    let shard = shard_of(&trades);
    apply_in_batches(&sink, "shardId-0", &shard, 8).await;

    let reader = Reader::connect(&url(&redis), P).await.unwrap();
    let snap = reader.snapshot().await.unwrap();
    let want = expected(&trades);
    assert_eq!(snap.len(), 2);
    for s in &snap {
        assert_eq!(s.count, want[&s.symbol].count);
        assert_eq!(s.base, want[&s.symbol].base);
        assert_eq!(s.quote, want[&s.symbol].quote);
        assert!(s.last_price.is_some());
    }
    let report = build(&snap, SortBy::Trades, 10);
    assert_eq!(report.rows[0].symbol, "BTCUSDT");
    assert_eq!(report.total_trades, 40);
    // ETH is valued through BTC (no ETHUSDT pair).
    assert!(report.rows[1].usd_value.is_some());
    assert!(render(&report, Format::Csv, false).contains("BTCUSDT"));

    // Candles before: what the trades make.
    let btc = tradeflow_shared::Symbol::new("BTCUSDT").unwrap();
    let minutes = |r: &Reader| {
        let r = r.clone();
        async move {
            r.buckets(&btc, Bucket::Minute, T0 / 60_000 - 1, T0 / 60_000 + 10)
                .await
                .unwrap()
        }
    };
    let btc_trades: Vec<_> = trades.iter().filter(|t| t.symbol == btc).copied().collect();
    assert_eq!(minutes(&reader).await, plain_klines(&btc_trades, 60_000));

    // Reset, then replay everything plus 5 new trades: only the new ones count, in the
    // totals and in the candles alike.
    let done = reset(&reader).await.unwrap();
    assert_eq!(done.symbols, 2);
    // Each symbol's minute bucket and its hours pending the roll-up.
    assert!(done.buckets >= 2 * 2, "{done:?}");
    assert_eq!(minutes(&reader).await, vec![]);
    let mut con = raw(&redis).await;
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{P}*:*:*"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        left.iter()
            .all(|k| !k.contains("min:") && !k.contains("hour:") && !k.contains("day:")),
        "{left:?}"
    );
    let zero = reader.snapshot().await.unwrap();
    assert!(zero.iter().all(|s| s.count == 0 && s.base == "0.00000000"));
    let more: Vec<_> = (31..=35u64).map(|i| trade("BTCUSDT", i)).collect();
    let mut all = trades.clone();
    all.extend_from_slice(&more);
    // A replay from scratch on another shard name (the position does not help here).
    apply_in_batches(&sink, "shardId-9", &shard_of(&all), 6).await;
    let after = reader.snapshot().await.unwrap();
    let btc = after.iter().find(|s| s.symbol == "BTCUSDT").unwrap();
    assert_eq!(btc.count, 5);
    assert_eq!(btc.base, expected(&more)["BTCUSDT"].base);
    let sym = tradeflow_shared::Symbol::new("BTCUSDT").unwrap();
    sink.seal_hours(T0 / 3_600_000 + 1).await.unwrap();
    let after_reset = reader
        .buckets(&sym, Bucket::Hour, T0 / 3_600_000 - 1, T0 / 3_600_000 + 1)
        .await
        .unwrap();
    assert_eq!(after_reset, plain_klines(&more, 3_600_000));
    assert_eq!(
        after.iter().find(|s| s.symbol == "ETHBTC").unwrap().count,
        0
    );
    // The legacy MGET view sees the same counts.
    let counts: Vec<u64> = redis::cmd("MGET")
        .arg("symbol:BTCUSDT")
        .arg("symbol:ETHBTC")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(counts, vec![5, 0]);
}

#[tokio::test]
async fn binary_prints_json_and_csv_and_resets_with_yes() {
    let redis = testkit::redis();
    let sink = sink(&redis, "tf:").await;
    let trades: Vec<_> = (1..=12u64).map(|i| trade("BNBUSDT", i)).collect();
    sink.apply(STREAM, "shardId-0", &fold(&shard_of(&trades)))
        .await
        .unwrap();
    let bin = env!("CARGO_BIN_EXE_tradeflow-report");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .env("TRADEFLOW_REDIS_URL", url(&redis))
            .env("TRADEFLOW_KEY_PREFIX", "tf:")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&run(&["--format", "json"])).unwrap();
    assert_eq!(json["total_trades"], 12);
    assert_eq!(json["rows"][0]["symbol"], "BNBUSDT");
    let csv = run(&["--format", "csv", "--sort", "usd"]);
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("1,BNBUSDT,12,100.00,"),
        "{csv}"
    );
    assert!(run(&[]).contains("BNBUSDT"));
    // Without --yes and no "yes" on stdin nothing is reset.
    assert!(run(&["reset"]).contains("cancelled"));
    assert!(run(&["reset", "--yes"]).contains("1 symbols"));
    let json: serde_json::Value = serde_json::from_str(&run(&["--format", "json"])).unwrap();
    assert_eq!(json["total_trades"], 0);
}

/// Regression (#20, the report's side of foreign writes): the `symbol:` namespace is
/// shared with the legacy jobs, so a foreign value can sit in one symbol's count (or its
/// stats key can be of another type). The report used to fail as a whole; it must show
/// every other symbol and name the one it cannot read, and why.
#[tokio::test]
async fn a_foreign_value_marks_its_symbol_and_the_rest_is_reported() {
    let redis = testkit::redis();
    let sink = sink(&redis, P).await;
    let mut trades: Vec<_> = (1..=7u64).map(|i| trade("ETHUSDT", i)).collect();
    trades.extend((1..=5u64).map(|i| trade("BTCUSDT", i)));
    trades.extend((1..=3u64).map(|i| trade("BNBUSDT", i)));
    sink.apply(STREAM, "shardId-0", &fold(&shard_of(&trades)))
        .await
        .unwrap();
    let mut con = raw(&redis).await;
    let _: () = redis::cmd("SET")
        .arg("symbol:BTCUSDT")
        .arg("not-a-count")
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{P}stats:BNBUSDT"))
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg(format!("{P}stats:BNBUSDT"))
        .arg("x")
        .query_async(&mut con)
        .await
        .unwrap();

    let reader = Reader::connect(&url(&redis), P).await.unwrap();
    let snap = reader
        .snapshot()
        .await
        .expect("the snapshot reads the rest");
    let by: std::collections::BTreeMap<_, _> =
        snap.iter().map(|s| (s.symbol.as_str(), s)).collect();
    assert_eq!(by["ETHUSDT"].count, 7);
    assert_eq!(by["ETHUSDT"].unreadable, None);
    let btc = by["BTCUSDT"].unreadable.as_deref().expect("BTCUSDT marked");
    assert!(
        btc.contains("symbol:BTCUSDT") && btc.contains("not-a-count"),
        "{btc}"
    );
    let bnb = by["BNBUSDT"].unreadable.as_deref().expect("BNBUSDT marked");
    assert!(bnb.contains("stats:BNBUSDT"), "{bnb}");

    let report = build(&snap, SortBy::Trades, 10);
    assert_eq!(report.total_trades, 7, "only readable counts are summed");
    assert_eq!(report.rows.len(), 1);
    assert_eq!(report.unreadable.len(), 2);
    let table = render(&report, Format::Table, false);
    assert!(
        table.contains("BTCUSDT") && table.contains("unreadable"),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&render(&report, Format::Json, false)).unwrap();
    assert_eq!(json["unreadable"][0]["symbol"], "BNBUSDT");
    assert_eq!(json["unreadable"][1]["symbol"], "BTCUSDT");
}
