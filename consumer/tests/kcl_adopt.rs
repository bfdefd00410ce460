//! Migrating from a real KCL 3.x application (kcl-rs, a Rust port of the KCL 3.x with
//! Python bindings) to tradeflow-consumer on the same lease table and Redis, as a user
//! of the seed pipeline would: the KCL app counts trades (`INCR symbol:<SYM>`) through a
//! split and a merge, and is stopped; tradeflow adopts the table and counts what came
//! after; then the KCL app takes the table back. Every trade must be counted exactly
//! once: nothing the KCL counted is read again (its parents included, whether the KCL
//! deleted their finished leases — its default, after about five minutes — or not yet),
//! nothing is lost.
//!
//! Slow by nature: the KCL starts in ~30 s, takes one lease per ~20 s pass, and deletes
//! finished parents only on its five-minute cleanup cycle.

mod e2e_support;
mod kcl_support;

use std::time::Duration;

use kcl_support::*;

const SHARD0: &str = "shardId-000000000000";
const SHARD1: &str = "shardId-000000000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_a_kcl_table_whose_finished_parents_were_deleted() {
    migrate(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_a_kcl_table_that_still_has_its_finished_parents() {
    migrate(false).await;
}

async fn migrate(wait_for_parent_cleanup: bool) {
    let mut m = Migration::start().await;
    m.write_trades(600).await;
    let mut kcl = m.kcl("kcl-1", "kcl-worker-1");

    // The legacy application counts everything, through a split and a merge.
    m.assert_counted("KCL before resharding", &kcl, 180, 0)
        .await;
    let (low, high) = m.split(SHARD0).await;
    m.write_trades(600).await;
    m.assert_counted("KCL after the split", &kcl, 180, 0).await;
    // `high` holds the upper half of shard 0's range: adjacent to shard 1.
    let merged = m.merge(&high, SHARD1).await;
    m.write_trades(600).await;
    m.assert_counted("KCL after the merge", &kcl, 180, 0).await;

    let parents = [SHARD0, SHARD1, high.as_str()];
    // The KCL finishes the parents (SHARD_END) once its children started.
    wait_until(
        "the KCL to finish every parent",
        Duration::from_secs(120),
        || async {
            let items = m.items().await;
            parents.iter().all(|p| {
                items
                    .get(*p)
                    .is_none_or(|i| s(i, "checkpoint").as_deref() == Some("SHARD_END"))
            })
        },
    )
    .await;
    if wait_for_parent_cleanup {
        // Its LeaseCleanupManager deletes them (default: every 5 minutes, once every
        // child's checkpoint left TRIM_HORIZON).
        wait_until(
            "the KCL to delete its finished parents' leases",
            Duration::from_secs(600),
            || async {
                let items = m.items().await;
                parents.iter().all(|p| !items.contains_key(*p))
            },
        )
        .await;
    }
    assert!(
        kcl.terminate(Duration::from_secs(60)),
        "KCL app did not stop cleanly:\n{}",
        kcl.output()
    );
    let kcl_items = m.items().await;
    for p in parents {
        assert_eq!(
            kcl_items.contains_key(p),
            !wait_for_parent_cleanup,
            "parent {p} in the KCL's table: {kcl_items:?}"
        );
    }
    for child in [low.as_str(), merged.as_str()] {
        let cp = s(&kcl_items[child], "checkpoint").unwrap_or_default();
        assert!(
            cp.bytes().all(|b| b.is_ascii_digit()) && !cp.is_empty(),
            "{child} checkpointed by the KCL at {cp}"
        );
        assert_eq!(s(&kcl_items[child], "entityType").as_deref(), Some("LEASE"));
    }
    assert_eq!(m.counts().await, m.written, "KCL stopped");

    // tradeflow takes over: only what was written since must be counted.
    m.write_trades(600).await;
    let mut tf = m.tradeflow("tradeflow-1");
    m.assert_counted("tradeflow after adopting", &tf, 120, 8)
        .await;
    let items = m.items().await;
    for p in parents {
        let row = &items[p];
        assert_eq!(s(row, "checkpoint").as_deref(), Some("SHARD_END"), "{p}");
        // A parent is never taken, let alone read: tradeflow recorded what it inferred.
        assert_ne!(s(row, "leaseOwner").as_deref(), Some("tradeflow-1"), "{p}");
    }
    for child in [low.as_str(), merged.as_str()] {
        assert_eq!(
            s(&items[child], "leaseOwner").as_deref(),
            Some("tradeflow-1"),
            "{child}"
        );
    }
    assert!(
        tf.terminate(Duration::from_secs(30)),
        "tradeflow did not stop cleanly:\n{}",
        tf.output()
    );

    // KCL 3.x attributes on the rows tradeflow wrote to survive its writes.
    let items = m.items().await;
    for (key, before) in &kcl_items {
        let after = &items[key];
        for (attr, v) in before {
            if ![
                "leaseOwner",
                "leaseCounter",
                "checkpoint",
                "checkpointSubSequenceNumber",
            ]
            .contains(&attr.as_str())
                && attr != "ownerSwitchesSinceCheckpoint"
            {
                assert_eq!(after.get(attr), Some(v), "{key}.{attr} after tradeflow");
            }
        }
    }

    // And the KCL application can take its table back, from tradeflow's checkpoints.
    m.write_trades(300).await;
    let mut kcl = m.kcl("kcl-2", "kcl-worker-2");
    m.assert_counted("KCL taking the table back", &kcl, 240, 8)
        .await;
    assert!(
        kcl.terminate(Duration::from_secs(60)),
        "KCL app did not stop cleanly:\n{}",
        kcl.output()
    );
}
