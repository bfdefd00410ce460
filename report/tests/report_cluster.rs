//! The report on a real Redis Cluster (3 primaries, no replicas): the binary and
//! `serve` take a `redis+cluster://` URL, the page's per-minute chart reads buckets in
//! each symbol's slot, and `reset` zeroes every node while exactly-once holds across it.

use crate::redis_common;

use std::time::Duration;

use redis_common::*;
use tradeflow_consumer::apply::fold;
use tradeflow_report::web::{Source, SourceConfig};
use tradeflow_report::{reset, PriceArgs, PriceFeed, PriceSource, Reader};
use tradeflow_shared::Trade;

const P: &str = "tradeflow:";

fn web_source(url: &str) -> Source {
    let args = PriceArgs {
        prices: PriceSource::Redis,
        binance_rest_url: "http://127.0.0.1:9".into(),
        binance_timeout: Duration::from_secs(1),
        prices_refresh: Duration::from_secs(30),
    };
    Source::new(SourceConfig {
        redis_url: url.to_string(),
        ca_file: None,
        key_prefix: P.into(),
        top_series: 5,
        min_interval: Duration::ZERO,
        timeout: Duration::from_secs(20),
        prices: PriceFeed::new(&args, Duration::from_secs(30)).unwrap(),
    })
}

/// `tradeflow-report` and `tradeflow-report serve` take a `redis+cluster://` URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_and_serve_read_a_cluster() {
    let cluster = start_cluster(3, 0).await;
    let url = cluster.url();
    let sink = cluster_sink(&url, without_replicas()).await;
    let trades: Vec<Trade> = (1..=30)
        .map(|i| trade(&format!("S{:02}USDT", i % 6), 100 + i))
        .collect();
    apply_retrying(&sink, "shardId-0", &fold(&shard_of(&trades))).await;

    // The page's source reads the totals and the per-minute chart, whose buckets live
    // in each symbol's slot.
    let page = web_source(&url).snapshot().await;
    assert!(page.ok, "{:?}", page.error);
    assert_eq!(page.total_trades, 30);
    assert_eq!(page.symbols.len(), 6);
    let top: Vec<&str> = page
        .minutes
        .series
        .iter()
        .map(|s| s.symbol.as_str())
        .collect();
    assert_eq!(top.len(), 5);
    let charted: u64 = page
        .minutes
        .series
        .iter()
        .map(|s| s.counts.iter().sum::<u64>())
        .sum();
    // The trades span 7.5 s, inside the chart's hour: all 5 of each top symbol's.
    assert_eq!(charted, 25, "{top:?}");

    let report = env!("CARGO_BIN_EXE_tradeflow-report");
    let out = tokio::process::Command::new(report)
        .args(["--redis-url", &url, "--format", "json"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(json["total_trades"], 30);

    let port = tradeflow_shared::testkit::free_port();
    let mut child = tokio::process::Command::new(report)
        .args(["--redis-url", &url])
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().await.unwrap();
            panic!(
                "serve exited ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        match tradeflow_shared::testkit::http_get(port, "/api/snapshot") {
            Ok((200, body)) => break body,
            other => assert!(
                std::time::Instant::now() < deadline,
                "no snapshot: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    child.kill().await.unwrap();
    let snap: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(snap["ok"], true, "{snap}");
    assert_eq!(snap["total_trades"], 30);

    // reset zeroes counts and volumes on every node and keeps the dedupe state: a
    // replay stays 0, new trades count from zero.
    let reader = Reader::connect(&url, P).await.expect("reader");
    let done = reset(&reader).await.unwrap();
    assert_eq!(done.symbols, 6);
    // Every symbol's candles went with its counts (at least its minute bucket).
    assert!(done.buckets >= 6, "{done:?}");
    let s00 = tradeflow_shared::Symbol::new("S00USDT").unwrap();
    let m = T0 / 60_000;
    assert_eq!(
        reader
            .buckets(&s00, tradeflow_shared::kline::Bucket::Minute, m - 1, m + 60)
            .await
            .unwrap(),
        vec![]
    );
    let zeroed = reader.snapshot().await.unwrap();
    assert_eq!(zeroed.len(), 6);
    assert!(zeroed
        .iter()
        .all(|t| t.count == 0 && t.base == "0.00000000"));
    let o = apply_retrying(&sink, "shardId-replay", &fold(&shard_of(&trades))).await;
    assert_eq!(o.trades_applied, 0);
    let fresh: Vec<Trade> = (0..5).map(|k| trade("S00USDT", 20_000 + k)).collect();
    let o = apply_retrying(&sink, "shardId-0", &fold(&shard_of_from(1_000, &fresh))).await;
    assert_eq!(o.trades_applied, 5);
    let s00 = reader
        .snapshot()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.symbol == "S00USDT")
        .unwrap();
    assert_eq!(s00.count, 5);
    drop(cluster);
}

/// `trades` at positions after `from` (past those of an earlier batch of the shard).
fn shard_of_from(from: u64, trades: &[Trade]) -> Vec<tradeflow_consumer::record::DecodedRecord> {
    trades
        .iter()
        .enumerate()
        .map(|(i, t)| rec(from + i as u64, *t))
        .collect()
}
