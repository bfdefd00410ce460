//! The producer against a real Kinesis emulator (kinesis-mock): trades from the
//! synthetic generator and from a replayed capture land exactly once, in trade-id order
//! per symbol, plain or KPL-aggregated (and the aggregates read back with the reference
//! Python `aws_kinesis_agg` library).

use crate::support;

use std::time::Duration;

use clap::Parser;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tradeflow_producer::batcher::Limits;
use tradeflow_producer::config::{Config, OverflowPolicy};
use tradeflow_producer::pipeline::{self, run_with, Settings};
use tradeflow_producer::sink::{KinesisSink, RetryPolicy};
use tradeflow_producer::source::synthetic::Generator;
use tradeflow_producer::source::SourceTrade;
use tradeflow_shared::telemetry::Health;
use tradeflow_shared::testkit;

fn settings(aggregate: Option<usize>) -> Settings {
    Settings {
        limits: Limits {
            aggregate,
            linger: Duration::from_millis(20),
            ..Limits::default()
        },
        max_in_flight: 4,
        buffer_records: 2_000,
        overflow: OverflowPolicy::Block,
        retry: RetryPolicy {
            base: Duration::from_millis(10),
            max: Duration::from_millis(200),
        },
        shard_refresh: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(10),
        stall_timeout: Duration::from_secs(60),
    }
}

/// Sends `count` generated trades, re-sending every 50th one (a rotation overlap).
async fn feed(tx: mpsc::Sender<SourceTrade>, count: usize) -> u64 {
    let syms = support::symbols(&[
        "BTCUSDT", "ETHUSDT", "LTCBTC", "NEOBNB", "BNBETH", "XRPUSDT",
    ]);
    let mut g = Generator::new(&syms, 11);
    let mut dups = 0;
    for i in 0..count {
        let trade = g.next_trade(1_717_000_000_000 + i as u64);
        let st = SourceTrade {
            json: trade.to_json(),
            trade,
        };
        tx.send(st.clone()).await.unwrap();
        if i % 50 == 0 {
            tx.send(st).await.unwrap();
            dups += 1;
        }
    }
    dups
}

async fn run_generated(
    aggregate: Option<usize>,
    count: usize,
) -> (support::ReadRecordsAndReport, testkit::Service) {
    let fk = testkit::kinesis_mock();
    let c = support::client(&fk.endpoint()).await;
    support::create_stream(&c, "trades", 4).await;
    let sink = KinesisSink::new(&c, "trades");
    let (tx, rx) = mpsc::channel(256);
    let feeder = tokio::spawn(feed(tx, count));
    let report = run_with(
        sink,
        rx,
        settings(aggregate),
        CancellationToken::new(),
        Health::new(),
    )
    .await
    .unwrap();
    let dups = feeder.await.unwrap();
    assert_eq!(report.duplicates, dups);
    let records = support::read_stream(&c, "trades").await;
    (support::ReadRecordsAndReport { records, report }, fk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_records_land_exactly_once_in_order() {
    let (out, _fk) = run_generated(None, 3000).await;
    assert_eq!(out.report.accepted, 3000);
    assert_eq!(out.report.written_trades, 3000);
    assert_eq!(out.report.lost, 0);
    assert_eq!(out.records.len(), 3000, "one trade per record");
    let by = support::trades_by_symbol(&out.records);
    assert_eq!(support::assert_exactly_once_in_order(&by), 3000);
    // The JSON is written exactly as generated (what Binance would have sent).
    for r in &out.records {
        assert!(r.data.starts_with(br#"{"e":"trade","E":"#));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_records_round_trip_through_aws_kinesis_agg() {
    let max_agg = 4096;
    let (out, _fk) = run_generated(Some(max_agg), 5000).await;
    assert_eq!(out.report.written_trades, 5000);
    assert_eq!(out.report.lost, 0);
    assert!(
        out.records.len() < 1000,
        "aggregated: {} records",
        out.records.len()
    );
    for r in &out.records {
        assert!(r.data.len() + r.partition_key.len() <= max_agg);
    }
    let by = support::trades_by_symbol(&out.records);
    assert_eq!(support::assert_exactly_once_in_order(&by), 5000);

    // The reference Python library must read the same user records.
    let expected: Vec<String> = out
        .records
        .iter()
        .flat_map(|r| {
            tradeflow_shared::kpl::deaggregate(&r.data)
                .unwrap()
                .iter()
                .map(|u| format!("{}\t{}", u.partition_key, String::from_utf8_lossy(u.data)))
                .collect::<Vec<_>>()
        })
        .collect();
    let got = support::python_deaggregate(&out.records);
    assert_eq!(got.len(), 5000);
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_capture_is_written_and_bad_lines_are_skipped() {
    let fk = testkit::kinesis_mock();
    let c = support::client(&fk.endpoint()).await;
    support::create_stream(&c, "crypto", 2).await;
    let dir = std::env::temp_dir().join(format!("tradeflow-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("capture.jsonl");
    let syms = support::symbols(&["BTCUSDT", "ETHBTC"]);
    let mut g = Generator::new(&syms, 3);
    let mut lines = Vec::new();
    for i in 0..200 {
        let t = g.next_trade(1_717_000_000_000 + i);
        lines.push(if i % 2 == 0 {
            t.to_json()
        } else {
            // Combined-stream envelope, as the websocket sends it.
            format!(
                r#"{{"stream":"{}@trade","data":{}}}"#,
                t.symbol.as_str().to_lowercase(),
                t.to_json()
            )
        });
        if i % 40 == 0 {
            lines.push("{not json".into());
            lines.push(r#"{"result":null,"id":1}"#.into());
        }
    }
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let config = Config::try_parse_from([
        "tradeflow-producer",
        "--source",
        "replay",
        "--replay-file",
        path.to_str().unwrap(),
        "--kinesis-endpoint",
        &fk.endpoint(),
        "--linger",
        "10ms",
    ])
    .unwrap();
    let report = pipeline::run(config, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.accepted, 200);
    assert_eq!(report.written_trades, 200);
    let records = support::read_stream(&c, "crypto").await;
    let by = support::trades_by_symbol(&records);
    assert_eq!(support::assert_exactly_once_in_order(&by), 200);
    // Bytes on the stream are the trade objects exactly as in the capture.
    for r in &records {
        let text = String::from_utf8(r.data.clone()).unwrap();
        assert!(lines
            .iter()
            .any(|l| l == &text || l.contains(&format!(r#""data":{text}}}"#))));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
