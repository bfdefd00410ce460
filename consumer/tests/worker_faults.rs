//! The worker when a part of it fails from inside, on real parts (redis-server,
//! dynalite, ferrokinesis), two workers in this process on one lease table.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;
use tradeflow_consumer::config::Config;
use tradeflow_consumer::lease::LeaseTable;
use tradeflow_consumer::worker::{self, Hooks};
use tradeflow_shared::telemetry::Health;
use tradeflow_shared::testkit;

const FAILOVER: Duration = Duration::from_secs(6);

fn config(worker: &str, stream: &str, redis: &str, kinesis: &str, dynamodb: &str) -> Config {
    Config::try_parse_from([
        "tradeflow-consumer",
        "--stream",
        stream,
        "--application-name",
        &format!("{stream}-app"),
        "--worker-id",
        worker,
        "--redis-url",
        redis,
        "--kinesis-endpoint",
        kinesis,
        "--dynamodb-endpoint",
        dynamodb,
        "--failover-time",
        "6s",
        "--idle-interval",
        "100ms",
        "--checkpoint-interval",
        "1s",
    ])
    .expect("consumer flags")
}

async fn owner(table: &LeaseTable, shard: &str) -> Option<String> {
    table
        .list()
        .await
        .ok()?
        .into_iter()
        .find(|l| l.shard_id == shard)
        .and_then(|l| l.owner)
}

/// Regression (issue #19): a shard task that panicked kept its lease — the join error
/// carried no shard id, so the reader was never reported stopped and the renewer kept
/// renewing a lease nobody read. Now its lease is given up at once: another worker
/// reads the shard within the failover time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_shard_task_gives_its_lease_to_another_worker() {
    testkit::local_aws_env();
    let redis = testkit::redis();
    let dynalite = testkit::dynalite();
    let emulator = testkit::ferrokinesis_volatile(&[]);
    let stream = "panics";
    let args = tradeflow_shared::aws::AwsArgs {
        region: "eu-west-1".into(),
        kinesis_endpoint: Some(emulator.endpoint()),
        dynamodb_endpoint: Some(dynalite.endpoint()),
    };
    let conf = tradeflow_shared::aws::sdk_config(&args).await;
    let kinesis = tradeflow_shared::aws::kinesis_client(&conf, &args);
    let table = LeaseTable::new(
        tradeflow_shared::aws::dynamodb_client(&conf, &args),
        format!("{stream}-app"),
    );
    testkit::create_active_stream(&kinesis, stream, 1)
        .await
        .unwrap();
    let redis_url = format!("redis://127.0.0.1:{}", redis.port);

    // Worker A's shard tasks all panic (a bug of A's, say).
    let panicked = Arc::new(AtomicBool::new(false));
    let p = panicked.clone();
    let hooks = Hooks {
        on_shard_start: Some(Arc::new(move |shard: &str| {
            p.store(true, Ordering::SeqCst);
            panic!("injected panic in the shard task of {shard}");
        })),
    };
    let stop = CancellationToken::new();
    let a = tokio::spawn(worker::run_with_hooks(
        config(
            "A",
            stream,
            &redis_url,
            &emulator.endpoint(),
            &dynalite.endpoint(),
        ),
        Health::new(),
        stop.clone(),
        hooks,
    ));
    for _ in 0..300 {
        if panicked.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        panicked.load(Ordering::SeqCst),
        "worker A never started a shard task"
    );
    let t0 = tokio::time::Instant::now();
    let b = tokio::spawn(worker::run(
        config(
            "B",
            stream,
            &redis_url,
            &emulator.endpoint(),
            &dynalite.endpoint(),
        ),
        Health::new(),
        stop.clone(),
    ));
    let shard = "shardId-000000000000";
    let mut taken_after = None;
    let mut last_owner = None;
    while t0.elapsed() < FAILOVER * 3 {
        last_owner = owner(&table, shard).await;
        if last_owner.as_deref() == Some("B") {
            taken_after = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let taken_after = taken_after.unwrap_or_else(|| {
        panic!(
            "worker B never got the shard in {:?}; its owner is {last_owner:?}",
            FAILOVER * 3
        )
    });
    eprintln!("worker B took the shard {taken_after:?} after A's task panicked");
    assert!(
        taken_after < FAILOVER,
        "B got the shard only after {taken_after:?} (failover time {FAILOVER:?})"
    );
    // And B reads it: a trade put now is counted.
    kinesis
        .put_record()
        .stream_name(stream)
        .partition_key("BTCUSDT")
        .data(aws_sdk_kinesis::primitives::Blob::new(
            r#"{"e":"trade","E":1717000000001,"s":"BTCUSDT","t":7,"p":"61234.5","q":"0.1","T":1717000000001,"m":false,"M":true}"#,
        ))
        .send()
        .await
        .unwrap();
    let mut con = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut count: Option<i64> = None;
    for _ in 0..100 {
        count = con.get("symbol:BTCUSDT").await.unwrap();
        if count == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count, Some(1), "the trade was not counted by worker B");
    stop.cancel();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
}
