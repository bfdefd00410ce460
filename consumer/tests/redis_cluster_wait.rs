//! What the shard's position may cover on a Redis Cluster: only symbol writes a replica
//! holds (issue #20, holes 1 and 2). A replica is frozen with SIGSTOP (its primary still
//! counts it connected, it just acknowledges nothing new) or killed (its primary has
//! none left).

use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tradeflow_consumer::apply::{fold, RedisSink, SinkConfig};
use tradeflow_shared::testkit::{self, ClusterSecurity, RedisCluster};

use super::redis_common::*;
use super::{apply_until_done, owner};

const SHARD: &str = "shardId-000000000000";

async fn waiting_sink(url: &str) -> RedisSink {
    let cfg = SinkConfig {
        wait_replicas: 1,
        wait_timeout: Duration::from_millis(500),
        ..SinkConfig::default()
    };
    cluster_sink(url, cfg).await
}

/// Index of the replica of the primary at `primary` (from its `INFO replication`).
fn replica_of(c: &RedisCluster, primary: usize) -> usize {
    let info = c.cli_at(
        c.nodes[primary].port,
        &["INFO".to_string(), "replication".to_string()],
    );
    let port: u16 = info
        .lines()
        .find_map(|l| l.strip_prefix("slave0:"))
        .and_then(|l| l.split(',').find_map(|kv| kv.strip_prefix("port=")))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no replica in:\n{info}"));
    c.nodes
        .iter()
        .position(|s| s.port == port)
        .expect("replica node")
}

fn signal(c: &RedisCluster, node: usize, sig: &str) {
    let pid = c.nodes[node].pid().expect("node running");
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// A symbol on another primary than `not`.
fn symbol_not_on(c: &RedisCluster, not: usize) -> String {
    (0..100)
        .map(|i| format!("X{i:02}USDT"))
        .find(|s| owner(c, s) != not)
        .expect("a symbol elsewhere")
}

/// 3 primaries with a replica each, on valkey 8 (Redis 7.2-compatible): redis-server
/// 7.0 counts a read-only script call as a write for `WAIT`, which hides hole 1.
fn valkey_cluster() -> RedisCluster {
    let security = ClusterSecurity {
        server: Some(testkit::valkey_server()),
        ..ClusterSecurity::default()
    };
    RedisCluster::start_secured(3, 1, security)
}

/// Hole 1: worker A wrote a batch on primary P whose replica has not acknowledged it
/// (A's WAIT fails, A retries later). The same batch applied through another
/// connection — worker B after a steal, or A after its cluster connection was rebuilt —
/// finds every trade a duplicate. Its WAIT must still cover A's writes on P before the
/// position moves past them: else a failover of P now loses those trades for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_re_applied_through_another_connection_waits_for_the_replica() {
    let cluster = tokio::task::spawn_blocking(valkey_cluster).await.unwrap();
    let url = cluster.url();
    let sym = "S00USDT";
    let p = owner(&cluster, sym);
    let r = replica_of(&cluster, p);
    let batch = fold(&shard_of(
        &(1..=10).map(|i| trade(sym, i)).collect::<Vec<_>>(),
    ));
    let a = waiting_sink(&url).await;
    let b = waiting_sink(&url).await;
    signal(&cluster, r, "-STOP");
    let by_a = a.apply(STREAM, SHARD, &batch).await;
    let by_b = b.apply(STREAM, SHARD, &batch).await;
    let position = b.stored_position(STREAM, SHARD).await;
    signal(&cluster, r, "-CONT");
    let e = by_a.expect_err("A's WAIT cannot succeed with P's replica stopped");
    assert!(e.is_retryable(), "{e}");
    assert!(
        by_b.is_err() && matches!(position, Ok(None)),
        "the position moved past trades only P holds (its replica stopped): B's apply {by_b:?}, position {position:?}"
    );
    // Once the replica is back the batch goes through, once.
    let errors = AtomicU64::new(0);
    apply_until_done(&b, SHARD, &shard_of(&[trade(sym, 11)]), &errors).await;
    assert!(b.stored_position(STREAM, SHARD).await.unwrap().is_some());
    drop(cluster);
}

/// Hole 2: a primary without a replica stalls only the batches that write to it, not
/// every shard of the fleet (WAIT goes to the primaries of the batch's slots only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_without_a_replica_stalls_only_its_own_slots() {
    let mut cluster = start_cluster(3, 1).await;
    let url = cluster.url();
    let lonely = owner(&cluster, "S00USDT");
    let r = replica_of(&cluster, lonely);
    cluster.nodes[r].kill();
    // The primary sees its replica gone at once (the link closes).
    for _ in 0..100 {
        let info = cluster.cli_at(
            cluster.nodes[lonely].port,
            &["INFO".to_string(), "replication".to_string()],
        );
        if info.contains("connected_slaves:0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sink = waiting_sink(&url).await;
    let elsewhere = symbol_not_on(&cluster, lonely);
    let other = fold(&shard_of(
        &(1..=10).map(|i| trade(&elsewhere, i)).collect::<Vec<_>>(),
    ));
    let o = sink.apply(STREAM, "shardId-other", &other).await;
    assert!(
        matches!(o, Ok(ref o) if o.trades_applied == 10),
        "a batch for {elsewhere} (not on the replica-less primary) failed: {o:?}"
    );
    let own = fold(&shard_of(
        &(1..=10).map(|i| trade("S00USDT", i)).collect::<Vec<_>>(),
    ));
    let e = sink
        .apply(STREAM, "shardId-own", &own)
        .await
        .expect_err("a batch written to the replica-less primary is not acknowledged");
    assert!(e.is_retryable(), "{e}");
    assert!(sink
        .stored_position(STREAM, "shardId-own")
        .await
        .unwrap()
        .is_none());
    drop(cluster);
}
