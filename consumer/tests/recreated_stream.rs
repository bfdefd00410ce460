//! A stream deleted and created again under the same name (issue #20, hole 6b): its
//! shard ids start over, and the positions Redis and the lease table hold name records
//! of the old stream. The worker must notice instead of resuming from them, say what to
//! do, and with `--reset-recreated-stream` read the new stream from its start — the
//! per-symbol dedupe keeps trades already counted from being counted again.
//! redis-server, dynalite and ferrokinesis; the worker in this process.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tradeflow_consumer::config::Config;
use tradeflow_consumer::worker;
use tradeflow_shared::telemetry::Health;
use tradeflow_shared::testkit;

use super::worker_support::{redis_con, wait_count, Aws};

const STREAM: &str = "again";

fn config(aws: &Aws, redis_url: &str, extra: &[&str]) -> Config {
    let mut flags = vec![
        "--checkpoint-interval",
        "200ms",
        "--initial-position",
        "trim-horizon",
    ];
    flags.extend_from_slice(extra);
    aws.config(redis_url, STREAM, "A", &flags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_stream_is_noticed_and_read_from_its_start_on_request() {
    let redis = testkit::redis();
    let aws = Aws::start().await;
    let kinesis = &aws.kinesis;
    let redis_url = format!("redis://127.0.0.1:{}", redis.port);
    let mut con = redis_con(&redis_url).await;

    // The first stream: 5 trades counted, the worker stopped.
    aws.create_stream(STREAM, 1).await;
    aws.put(STREAM, 1..=5).await;
    let stop = CancellationToken::new();
    let w = tokio::spawn(worker::run(
        config(&aws, &redis_url, &[]),
        Health::new(),
        stop.clone(),
    ));
    assert_eq!(wait_count(&mut con, 5).await, 5);
    stop.cancel();
    w.await.unwrap().unwrap();

    // Deleted and created again; the producer writes 4..=10 into it (4 and 5 again).
    kinesis
        .delete_stream()
        .stream_name(STREAM)
        .send()
        .await
        .unwrap();
    for _ in 0..100 {
        if kinesis
            .describe_stream_summary()
            .stream_name(STREAM)
            .send()
            .await
            .is_err()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Creation times are kept in seconds by some servers: make the new one differ.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    aws.create_stream(STREAM, 1).await;
    aws.put(STREAM, 4..=10).await;

    // Without the flag: the worker stops and says why (it does not resume from the old
    // stream's positions, nor loop on them).
    let stop = CancellationToken::new();
    let run = worker::run(config(&aws, &redis_url, &[]), Health::new(), stop.clone());
    let outcome = tokio::time::timeout(Duration::from_secs(20), run).await;
    let counted = wait_count(&mut con, 5).await;
    stop.cancel();
    let err = match outcome {
        Ok(Err(e)) => format!("{e:#}"),
        other => panic!(
            "the worker did not stop on the recreated stream within 20 s ({other:?}); Redis counts {counted} of 10"
        ),
    };
    assert!(
        err.contains("recreated") && err.contains("--reset-recreated-stream"),
        "{err}"
    );
    assert_eq!(counted, 5, "nothing of the new stream may be counted yet");

    // With the flag: the new stream is read from its start, 4 and 5 are not counted twice.
    let stop = CancellationToken::new();
    let w = tokio::spawn(worker::run(
        config(&aws, &redis_url, &["--reset-recreated-stream"]),
        Health::new(),
        stop.clone(),
    ));
    assert_eq!(wait_count(&mut con, 10).await, 10);
    stop.cancel();
    w.await.unwrap().unwrap();
    // And a later plain start goes on without the flag.
    aws.put(STREAM, 11..=12).await;
    let stop = CancellationToken::new();
    let w = tokio::spawn(worker::run(
        config(&aws, &redis_url, &[]),
        Health::new(),
        stop.clone(),
    ));
    assert_eq!(wait_count(&mut con, 12).await, 12);
    stop.cancel();
    w.await.unwrap().unwrap();
}
