//! Partial PutRecords failures and throttled / failing calls, injected by a proxy of our
//! own between the producer and kinesis-mock (the emulator the issue names; the same
//! scenarios pass on ferrokinesis): every trade still lands exactly once and in
//! trade-id order per symbol.

use crate::support;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tradeflow_producer::batcher::Limits;
use tradeflow_producer::config::OverflowPolicy;
use tradeflow_producer::pipeline::{run_with, Settings};
use tradeflow_producer::sink::{KinesisSink, RetryPolicy};
use tradeflow_shared::telemetry::Health;
use tradeflow_shared::testkit;

fn settings(aggregate: Option<usize>, per_key_limit: usize) -> Settings {
    Settings {
        limits: Limits {
            aggregate,
            per_key_limit,
            linger: Duration::from_millis(10),
            ..Limits::default()
        },
        max_in_flight: 4,
        buffer_records: 1_000,
        overflow: OverflowPolicy::Block,
        retry: RetryPolicy {
            base: Duration::from_millis(2),
            max: Duration::from_millis(20),
        },
        shard_refresh: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(10),
        stall_timeout: Duration::from_secs(60),
    }
}

async fn run_through_proxy(plan: support::proxy::Plan, aggregate: Option<usize>, count: usize) {
    let fk = testkit::kinesis_mock();
    let direct = support::client(&fk.endpoint()).await;
    support::create_stream(&direct, "trades", 3).await;
    let proxy = support::proxy::start(fk.port, plan.clone()).await;
    let via_proxy = support::client(&proxy.endpoint()).await;
    let sink = KinesisSink::new(&via_proxy, "trades");
    let (tx, rx) = mpsc::channel(256);
    let feeder = support::feed::spawn(tx, count, None);
    let report = run_with(
        sink,
        rx,
        settings(aggregate, 1),
        CancellationToken::new(),
        Health::new(),
    )
    .await
    .unwrap();
    feeder.await.unwrap();
    assert_eq!(report.accepted, count as u64);
    assert_eq!(report.written_trades, count as u64);
    assert_eq!(report.lost, 0);
    let stats = proxy.stats();
    assert!(
        stats.other_content_types.is_empty(),
        "the SDK spoke {:?}, not awsJson",
        stats.other_content_types
    );
    if plan.fail_entry_every.is_some() {
        assert!(stats.entries_failed > 10, "faults injected: {stats:?}");
    }
    if plan.fail_call_every.is_some() {
        assert!(
            stats.calls_throttled > 0 && stats.calls_500 > 0,
            "faults injected: {stats:?}"
        );
    }
    let records = support::read_stream(&direct, "trades").await;
    let by = support::trades_by_symbol(&records);
    assert_eq!(support::assert_exactly_once_in_order(&by), count as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_entries_are_retried_alone_and_order_holds() {
    let plan = support::proxy::Plan {
        fail_entry_every: Some(3),
        fail_call_every: None,
    };
    run_through_proxy(plan, None, 1500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_and_failing_calls_slow_down_but_lose_nothing() {
    let plan = support::proxy::Plan {
        fail_entry_every: None,
        fail_call_every: Some(4),
    };
    run_through_proxy(plan, None, 1500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_survive_both_kinds_of_faults() {
    let plan = support::proxy::Plan {
        fail_entry_every: Some(2),
        fail_call_every: Some(5),
    };
    run_through_proxy(plan, Some(2048), 3000).await;
}
