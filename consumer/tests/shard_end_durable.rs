//! A SHARD_END checkpoint is final: no later reader compares it with Redis's position,
//! and the children are read after it. So it is written only once the parent's last
//! writes are durable in Redis (issue #20, hole 3): `WAITAOF` on Redis >= 7.2 (local
//! AOF fsync, and the replicas a primary has). Runs on valkey 8 (Redis 7.2-compatible)
//! with one replica, dynalite and ferrokinesis, the worker in this process.

use std::process::Command;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tradeflow_consumer::lease::LeaseTable;
use tradeflow_consumer::worker;
use tradeflow_shared::telemetry::Health;
use tradeflow_shared::testkit;

use super::worker_support::{lease, redis_con, wait_count, Aws};

const PARENT: &str = "shardId-000000000000";

async fn parent_checkpoint(table: &LeaseTable) -> Option<String> {
    lease(table, PARENT).await.and_then(|l| l.checkpoint)
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill")
        .success());
}

/// Regression (#20 hole 3): with the primary's replica frozen (SIGSTOP: still
/// connected, acknowledging nothing), the parent's last trades are only on the primary.
/// A SHARD_END written now would make a failover to that replica lose them for good.
/// It must wait until the replica holds them, then follow at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_end_waits_until_the_parents_last_writes_are_durable() {
    let primary = testkit::valkey(None);
    let replica = testkit::valkey(Some(primary.port));
    let aws = Aws::start().await;
    let redis_url = format!("redis://127.0.0.1:{}", primary.port);
    let mut con = redis_con(&redis_url).await;
    for _ in 0..200 {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut con)
            .await
            .unwrap();
        if info.contains("state=online") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stream = "ends";
    let kinesis = &aws.kinesis;
    let table = aws.table(stream);
    aws.create_stream(stream, 1).await;
    aws.put(stream, 1..=5).await;
    let flags = ["--shard-end-settle", "0s", "--redis-wait-timeout", "500ms"];
    let cfg = aws.config(&redis_url, stream, "A", &flags);
    let stop = CancellationToken::new();
    let w = tokio::spawn(worker::run(cfg, Health::new(), stop.clone()));
    assert_eq!(
        wait_count(&mut con, 5).await,
        5,
        "the first trades were not counted"
    );

    // The replica stops acknowledging; the parent's last trades, then its end.
    let replica_pid = replica.pid().expect("replica running");
    signal(replica_pid, "-STOP");
    aws.put(stream, 6..=8).await;
    let shard = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap()
        .shards()[0]
        .clone();
    let r = shard.hash_key_range().unwrap();
    let lo: u128 = r.starting_hash_key().parse().unwrap();
    let hi: u128 = r.ending_hash_key().parse().unwrap();
    kinesis
        .split_shard()
        .stream_name(stream)
        .shard_to_split(PARENT)
        .new_starting_hash_key((lo + (hi - lo) / 2 + 1).to_string())
        .send()
        .await
        .expect("SplitShard");
    let counted = wait_count(&mut con, 8).await;
    // The worker has read the parent to its end; watch its checkpoint for a while.
    let mut early = None;
    for _ in 0..30 {
        let cp = parent_checkpoint(&table).await;
        if cp.as_deref() == Some("SHARD_END") {
            early = cp;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(replica_pid, "-CONT");
    assert_eq!(counted, 8, "the parent's last trades were not counted");
    assert_eq!(
        early, None,
        "SHARD_END was checkpointed while the parent's last trades were on the primary only (its replica stopped)"
    );
    // Once the replica holds them, the parent ends (after the retry's current backoff,
    // up to 5 s, and the lease's next renewal: allow for a busy machine).
    let mut ended = false;
    for _ in 0..300 {
        if parent_checkpoint(&table).await.as_deref() == Some("SHARD_END") {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ended,
        "the parent never ended after its replica resumed: {:?}",
        parent_checkpoint(&table).await
    );
    stop.cancel();
    w.await.unwrap().unwrap();
}

/// The check itself, on the servers it meets: Redis 7.0 (no WAITAOF: unconfirmed, said
/// so), valkey 8 with AOF (durable), and a Redis that lost the shard's last batch
/// (behind: re-read). No worker; seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shard_end_check_on_each_kind_of_server() {
    use tradeflow_consumer::apply::{fold, ShardEndCheck, SinkError};

    use super::redis_common::{config, shard_of, trade as t, STREAM};

    let old = testkit::redis();
    let new = testkit::valkey(None);
    let batch = shard_of(&[t("ETHUSDT", 1), t("ETHUSDT", 2)]);
    let last = batch.last().unwrap().pos.clone();
    for (server, want) in [
        (
            &old,
            ShardEndCheck::Unconfirmed("Redis older than 7.2 has no WAITAOF"),
        ),
        (&new, ShardEndCheck::Durable),
    ] {
        let sink = tradeflow_consumer::apply::RedisSink::connect(&config(server, "tf:"))
            .await
            .unwrap();
        sink.apply(STREAM, PARENT, &fold(&batch)).await.unwrap();
        let got = sink
            .check_shard_end(STREAM, PARENT, Some(&last))
            .await
            .unwrap();
        assert_eq!(got, want, "{}", server.name);
        // Redis holds less than this worker applied (it lost the batch): behind.
        let mut con = super::redis_common::raw(server).await;
        let _: () = redis::cmd("DEL")
            .arg(format!("tf:pos:{STREAM}:{PARENT}"))
            .query_async(&mut con)
            .await
            .unwrap();
        let e = sink
            .check_shard_end(STREAM, PARENT, Some(&last))
            .await
            .unwrap_err();
        assert!(matches!(e, SinkError::Behind { stored: None }), "{e:?}");
    }
}
