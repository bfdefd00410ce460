//! The worker when a part of it fails from inside, on real parts (redis-server,
//! dynalite, ferrokinesis), two workers in this process on one lease table.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tradeflow_consumer::config::Config;
use tradeflow_consumer::worker::{self, Hooks};
use tradeflow_shared::telemetry::Health;
use tradeflow_shared::testkit;

use super::worker_support::{lease, redis_con, wait_count, Aws};

const FAILOVER: Duration = Duration::from_secs(6);

fn config(aws: &Aws, redis_url: &str, stream: &str, worker: &str) -> Config {
    let flags = ["--failover-time", "6s", "--checkpoint-interval", "1s"];
    aws.config(redis_url, stream, worker, &flags)
}

/// Regression (issue #19): a shard task that panicked kept its lease — the join error
/// carried no shard id, so the reader was never reported stopped and the renewer kept
/// renewing a lease nobody read. Now its lease is given up at once: another worker
/// reads the shard within the failover time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_shard_task_gives_its_lease_to_another_worker() {
    let redis = testkit::redis();
    let aws = Aws::start().await;
    let stream = "panics";
    let table = aws.table(stream);
    aws.create_stream(stream, 1).await;
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
        config(&aws, &redis_url, stream, "A"),
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
        config(&aws, &redis_url, stream, "B"),
        Health::new(),
        stop.clone(),
    ));
    let shard = "shardId-000000000000";
    let mut taken_after = None;
    let mut last_owner = None;
    while t0.elapsed() < FAILOVER * 3 {
        last_owner = lease(&table, shard).await.and_then(|l| l.owner);
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
    aws.put(stream, 7..=7).await;
    let mut con = redis_con(&redis_url).await;
    assert_eq!(
        wait_count(&mut con, 1).await,
        1,
        "the trade was not counted by worker B"
    );
    stop.cancel();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
}
