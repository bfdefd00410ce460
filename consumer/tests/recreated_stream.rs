//! A stream deleted and created again under the same name (issue #20, hole 6b): its
//! shard ids start over, and the positions Redis and the lease table hold name records
//! of the old stream. The worker must notice instead of resuming from them, say what to
//! do, and with `--reset-recreated-stream` read the new stream from its start — the
//! per-symbol dedupe keeps trades already counted from being counted again.
//! redis-server, dynalite and ferrokinesis; the worker in this process.

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use clap::Parser;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;
use tradeflow_consumer::config::Config;
use tradeflow_consumer::worker;
use tradeflow_shared::telemetry::Health;
use tradeflow_shared::testkit;

const STREAM: &str = "again";

fn config(redis: &str, kinesis: &str, dynamodb: &str, extra: &[&str]) -> Config {
    let mut args = vec![
        "tradeflow-consumer",
        "--stream",
        STREAM,
        "--application-name",
        "again-app",
        "--worker-id",
        "A",
        "--redis-url",
        redis,
        "--kinesis-endpoint",
        kinesis,
        "--dynamodb-endpoint",
        dynamodb,
        "--idle-interval",
        "100ms",
        "--checkpoint-interval",
        "200ms",
        "--initial-position",
        "trim-horizon",
    ];
    args.extend_from_slice(extra);
    Config::try_parse_from(args).expect("consumer flags")
}

async fn put(kinesis: &aws_sdk_kinesis::Client, ids: std::ops::RangeInclusive<u64>) {
    for id in ids {
        kinesis
            .put_record()
            .stream_name(STREAM)
            .partition_key("BTCUSDT")
            .data(Blob::new(format!(
                r#"{{"e":"trade","E":1717000000001,"s":"BTCUSDT","t":{id},"p":"61234.5","q":"0.1","T":1717000000001,"m":false,"M":true}}"#
            )))
            .send()
            .await
            .unwrap();
    }
}

async fn wait_count(con: &mut redis::aio::MultiplexedConnection, want: i64) -> i64 {
    let mut c = 0;
    for _ in 0..150 {
        c = con
            .get::<_, Option<i64>>("symbol:BTCUSDT")
            .await
            .unwrap()
            .unwrap_or(0);
        if c == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_stream_is_noticed_and_read_from_its_start_on_request() {
    testkit::local_aws_env();
    let redis = testkit::redis();
    let dynalite = testkit::dynalite();
    let emulator = testkit::ferrokinesis_volatile(&[]);
    let args = tradeflow_shared::aws::AwsArgs {
        region: "eu-west-1".into(),
        kinesis_endpoint: Some(emulator.endpoint()),
        dynamodb_endpoint: Some(dynalite.endpoint()),
    };
    let conf = tradeflow_shared::aws::sdk_config(&args).await;
    let kinesis = tradeflow_shared::aws::kinesis_client(&conf, &args);
    let redis_url = format!("redis://127.0.0.1:{}", redis.port);
    let mut con = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let (k, d) = (emulator.endpoint(), dynalite.endpoint());

    // The first stream: 5 trades counted, the worker stopped.
    testkit::create_active_stream(&kinesis, STREAM, 1)
        .await
        .unwrap();
    put(&kinesis, 1..=5).await;
    let stop = CancellationToken::new();
    let w = tokio::spawn(worker::run(
        config(&redis_url, &k, &d, &[]),
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
    testkit::create_active_stream(&kinesis, STREAM, 1)
        .await
        .unwrap();
    put(&kinesis, 4..=10).await;

    // Without the flag: the worker stops and says why (it does not resume from the old
    // stream's positions, nor loop on them).
    let stop = CancellationToken::new();
    let run = worker::run(config(&redis_url, &k, &d, &[]), Health::new(), stop.clone());
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
        config(&redis_url, &k, &d, &["--reset-recreated-stream"]),
        Health::new(),
        stop.clone(),
    ));
    assert_eq!(wait_count(&mut con, 10).await, 10);
    stop.cancel();
    w.await.unwrap().unwrap();
    // And a later plain start goes on without the flag.
    put(&kinesis, 11..=12).await;
    let stop = CancellationToken::new();
    let w = tokio::spawn(worker::run(
        config(&redis_url, &k, &d, &[]),
        Health::new(),
        stop.clone(),
    ));
    assert_eq!(wait_count(&mut con, 12).await, 12);
    stop.cancel();
    w.await.unwrap().unwrap();
}
