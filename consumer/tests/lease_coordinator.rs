//! Coordinators (several per process, distinct worker ids, short failover) against
//! real dynalite and ferrokinesis: balancing, stealing without churn, fencing,
//! graceful release, adoption of a Java KCL table, parent before child.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use tokio_util::sync::CancellationToken;
use tradeflow_consumer::lease::{
    Checkpoint, HeldLease, LeaseConfig, LeaseCoordinator, LeaseError, LeaseHandle, LeaseTable,
    Write,
};
use tradeflow_shared::testkit::{self, wait_until};
use tradeflow_shared::{Position, SequenceNumber};

/// The servers and clients of one test, and the lease table of its application.
struct Env {
    _ddb: testkit::Service,
    _kin: testkit::Service,
    ddb: aws_sdk_dynamodb::Client,
    kin: aws_sdk_kinesis::Client,
    stream: String,
    app: String,
    table: LeaseTable,
}

/// dynalite and ferrokinesis with `stream` of `shards` shards; `app`'s lease table.
async fn env(stream: &str, app: &str, shards: i32) -> Env {
    testkit::local_aws_env();
    let ddb_s = testkit::dynalite();
    let kin_s = testkit::ferrokinesis(&[]);
    let (kin, ddb) = testkit::clients_at(&kin_s.endpoint(), &ddb_s.endpoint()).await;
    testkit::create_active_stream(&kin, stream, shards)
        .await
        .expect("stream active");
    Env {
        table: LeaseTable::new(ddb.clone(), app),
        ddb,
        kin,
        stream: stream.into(),
        app: app.into(),
        _ddb: ddb_s,
        _kin: kin_s,
    }
}

impl Env {
    /// Worker `id`'s configuration on the application's table.
    fn cfg(&self, id: &str, failover_ms: u64) -> LeaseConfig {
        LeaseConfig::with_failover(&self.app, id, Duration::from_millis(failover_ms))
    }
}

/// A worker stand-in: records acquired leases, drops them when lost.
struct Worker {
    handle: LeaseHandle,
    task: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
    acquired: Arc<Mutex<Vec<HeldLease>>>,
}

/// A coordinator on the test's stream with the table and worker id of `cfg`.
async fn worker(e: &Env, cfg: LeaseConfig) -> Worker {
    let shutdown = CancellationToken::new();
    let (handle, task) = LeaseCoordinator::start(
        LeaseTable::new(e.ddb.clone(), &cfg.table_name),
        e.kin.clone(),
        e.stream.clone(),
        cfg,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let acquired = Arc::new(Mutex::new(Vec::new()));
    let (h, a) = (handle.clone(), acquired.clone());
    tokio::spawn(async move {
        while let Some(l) = h.next_acquired().await {
            a.lock().unwrap().push(l);
        }
    });
    Worker {
        handle,
        task,
        shutdown,
        acquired,
    }
}

impl Worker {
    /// Waits until its coordinator holds `n` leases.
    async fn wait_holding(&self, n: usize, limit: Duration) {
        let what = format!("the worker to hold {n} leases");
        wait_until(&what, limit, || async { self.handle.held_count() == n }).await
    }

    /// Stops taking, releases what it holds (how many) and waits for its coordinator.
    async fn stop(self) -> usize {
        self.shutdown.cancel();
        let released = self.handle.release_all().await.unwrap();
        self.task.await.unwrap();
        released
    }
}

async fn owners(t: &LeaseTable) -> HashMap<String, Option<String>> {
    t.list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.shard_id, l.owner))
        .collect()
}

fn loads(o: &HashMap<String, Option<String>>) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for w in o.values().flatten() {
        *m.entry(w.clone()).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_balance_then_a_fourth_rebalances_without_churn() {
    let e = env("trades", "balance-app", 8).await;
    let mut ws = Vec::new();
    for id in ["w1", "w2", "w3"] {
        ws.push(worker(&e, e.cfg(id, 2000)).await);
    }
    wait_until(
        "3 workers share 8 leases",
        Duration::from_secs(30),
        || async {
            let o = owners(&e.table).await;
            let l = loads(&o);
            o.len() == 8
                && l.values().sum::<usize>() == 8
                && l.len() == 3
                && l.values().all(|n| (2..=3).contains(n))
        },
    )
    .await;
    // Workers that were stolen from notice at their next renewal.
    wait_until("handles agree on 8", Duration::from_secs(10), || async {
        ws.iter().map(|w| w.handle.held_count()).sum::<usize>() == 8
    })
    .await;

    ws.push(worker(&e, e.cfg("w4", 2000)).await);
    wait_until("4 workers hold 2 each", Duration::from_secs(30), || async {
        let l = loads(&owners(&e.table).await);
        l.len() == 4 && l.values().all(|n| *n == 2)
    })
    .await;
    // No churn: over several failover times, nobody moves anything.
    let before = owners(&e.table).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(owners(&e.table).await, before, "leases moved after balance");
    // The handles agree with the table.
    for w in &ws {
        w.wait_holding(2, Duration::from_secs(5)).await;
    }
    // A lease a worker lost is signalled to its reader.
    let lost: usize = ws
        .iter()
        .map(|w| {
            w.acquired
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.lost.is_cancelled())
                .count()
        })
        .sum();
    let taken: usize = ws.iter().map(|w| w.acquired.lock().unwrap().len()).sum();
    assert_eq!(taken - lost, 8);

    // Stop every taker first, or the others would take what one releases.
    for w in &ws {
        w.shutdown.cancel();
    }
    for w in ws {
        w.stop().await;
    }
    // Normally all are free now. A lease whose renewal was delayed past the failover
    // on a loaded machine was already dropped locally and is left to expire; it must
    // at least not be renewed by anyone any more.
    let left: Vec<_> = e
        .table
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.owner.is_some())
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for l in left {
        assert_eq!(
            e.table.get(&l.shard_id).await.unwrap().unwrap().counter,
            l.counter
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_and_renew_after_a_steal_report_lost() {
    let e = env("fence", "fence-app", 2).await;
    let a = worker(&e, e.cfg("a", 1500)).await;
    a.wait_holding(2, Duration::from_secs(20)).await;
    let shards = a.handle.held_shards();
    let seq = SequenceNumber::parse("12345678901234567890123").unwrap();
    a.handle
        .checkpoint(&shards[0], Checkpoint::At(Position::new(seq.clone(), 0)))
        .await
        .unwrap();

    // A thief takes both at the counters it reads.
    for s in &shards {
        let l = e.table.get(s).await.unwrap().unwrap();
        e.table.take(s, l.counter, "thief").await.unwrap();
    }
    let r = a
        .handle
        .checkpoint(&shards[0], Checkpoint::At(Position::new(seq, 1)))
        .await;
    assert!(matches!(r, Err(LeaseError::Lost { .. })), "{r:?}");
    // The other one: the renewer notices and signals the reader.
    let other = a
        .acquired
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.shard_id == shards[1])
        .cloned()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), other.lost.cancelled())
        .await
        .expect("renewer reports the stolen lease as lost");
    assert_eq!(a.handle.held_count(), 0);
    a.stop().await;
    // The thief's ownership was never disturbed.
    assert!(owners(&e.table)
        .await
        .values()
        .all(|o| o.as_deref() == Some("thief")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_leases_move_long_before_the_failover_time() {
    let e = env("handover", "handover-app", 4).await;
    // A long failover: if b gets the leases in the wait below, it was the release.
    let mut ca = e.cfg("a", 60_000);
    ca.take_interval = Duration::from_millis(300);
    let a = worker(&e, ca).await;
    a.wait_holding(4, Duration::from_secs(20)).await;
    let mut cb = e.cfg("b", 60_000);
    cb.take_interval = Duration::from_millis(300);
    let b = worker(&e, cb).await;
    // b steals its share (2), one per pass.
    b.wait_holding(2, Duration::from_secs(15)).await;
    assert_eq!(a.stop().await, 2);
    b.wait_holding(4, Duration::from_secs(15)).await;
    assert!(owners(&e.table)
        .await
        .values()
        .all(|o| o.as_deref() == Some("b")));
    b.stop().await;
}

/// A settled table is scanned at the slow pace, but once leases move the passes come
/// quickly: a joining worker's steals (one a pass) do not wait a settled interval each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steals_follow_each_other_at_the_quick_pace() {
    let e = env("quickpace", "quickpace-app", 4).await;
    let pace = |mut c: LeaseConfig| {
        c.take_interval = Duration::from_secs(60);
        c.unsettled_take_interval = Duration::from_millis(300);
        c
    };
    let a = worker(&e, pace(e.cfg("a", 60_000))).await;
    // The first pass takes all four at once.
    a.wait_holding(4, Duration::from_secs(20)).await;
    let b = worker(&e, pace(e.cfg("b", 60_000))).await;
    // Two steals: the first at b's first pass, the second at the quick pace after it
    // (at the settled pace it would come a minute later).
    b.wait_holding(2, Duration::from_secs(15)).await;
    let owners = owners(&e.table).await;
    assert_eq!(
        owners
            .values()
            .filter(|o| o.as_deref() == Some("b"))
            .count(),
        2
    );
    b.stop().await;
    a.stop().await;
}

/// A write of ours that landed without its answer being kept (a renewal dropped half-way
/// when the release began) must not keep the release from happening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_goes_through_after_a_write_whose_answer_was_lost() {
    let e = env("lostanswer", "lostanswer-app", 2).await;
    let a = worker(&e, e.cfg("a", 60_000)).await;
    a.wait_holding(2, Duration::from_secs(20)).await;
    // Bump one lease's counter as a's own renewal would, behind the coordinator's back.
    let (shard, lease) = owners(&e.table).await.into_iter().next().unwrap();
    assert_eq!(lease.as_deref(), Some("a"));
    let counter = e.table.get(&shard).await.unwrap().unwrap().counter;
    assert!(matches!(
        e.table.renew(&shard, counter, "a").await.unwrap(),
        Write::Done { .. }
    ));
    assert_eq!(a.stop().await, 2);
    assert!(owners(&e.table).await.values().all(|o| o.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_a_java_kcl_table_and_resumes_from_its_checkpoints() {
    let e = env("adopt", "java-app", 2).await;
    let shards: Vec<String> = e
        .kin
        .list_shards()
        .stream_name("adopt")
        .send()
        .await
        .unwrap()
        .shards()
        .iter()
        .map(|s| s.shard_id().to_string())
        .collect();
    e.table.ensure_table().await.unwrap();
    let s = |v: &str| AttributeValue::S(v.into());
    let n = |v: &str| AttributeValue::N(v.into());
    let seqs = [
        "49590338271490256608559692538361571095921575989136588898",
        "49590338271490256608559692538361571095921575989136588999",
    ];
    for (i, shard) in shards.iter().enumerate() {
        let mut item: HashMap<String, AttributeValue> = [
            ("leaseKey", s(shard)),
            ("leaseOwner", s("java-host@1")),
            ("leaseCounter", n("77")),
            ("checkpoint", s(seqs[i])),
            ("checkpointSubSequenceNumber", n(&i.to_string())),
            ("ownerSwitchesSinceCheckpoint", n("0")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if i == 1 {
            item.insert("entityType".into(), s("LEASE"));
            item.insert("throughputKBps".into(), n("3.25"));
        }
        e.ddb
            .put_item()
            .table_name("java-app")
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
    // The Java worker is gone; its leases expire by our clock after the failover.
    let w = worker(&e, e.cfg("rust-1", 1000)).await;
    wait_until("rust took both", Duration::from_secs(20), || async {
        w.acquired.lock().unwrap().len() == 2
    })
    .await;
    let got: HashMap<String, Checkpoint> = w
        .acquired
        .lock()
        .unwrap()
        .iter()
        .map(|l| (l.shard_id.clone(), l.checkpoint.clone()))
        .collect();
    for (i, shard) in shards.iter().enumerate() {
        assert_eq!(
            got[shard],
            Checkpoint::At(Position::new(
                SequenceNumber::parse(seqs[i]).unwrap(),
                i as u64
            ))
        );
    }
    w.handle
        .checkpoint(&shards[1], Checkpoint::ShardEnd)
        .await
        .unwrap();
    let item = e
        .ddb
        .get_item()
        .table_name("java-app")
        .key("leaseKey", s(&shards[1]))
        .send()
        .await
        .unwrap()
        .item()
        .cloned()
        .unwrap();
    assert_eq!(item["throughputKBps"].as_n().unwrap(), "3.25");
    assert_eq!(item["entityType"].as_s().unwrap(), "LEASE");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_start_only_after_their_parent_ends() {
    let e = env("split", "split-app", 1).await;
    let mut c = e.cfg("w", 1000);
    c.shard_sync_interval = Duration::from_millis(500);
    let w = worker(&e, c).await;
    w.wait_holding(1, Duration::from_secs(20)).await;
    let parent = w.handle.held_shards()[0].clone();
    e.kin
        .split_shard()
        .stream_name("split")
        .shard_to_split(&parent)
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .unwrap();
    // The split completes asynchronously; the periodic sync (short here) finds it.
    wait_until("children rows exist", Duration::from_secs(20), || async {
        e.table.list().await.unwrap().len() == 3
    })
    .await;
    // Several passes: the children must wait for the parent.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(w.handle.held_shards(), vec![parent.clone()]);
    let rows = e.table.list().await.unwrap();
    for c in rows.iter().filter(|l| l.shard_id != parent) {
        assert_eq!(c.parents, vec![parent.clone()]);
        assert_eq!(c.checkpoint.as_deref(), Some("TRIM_HORIZON"));
    }
    w.handle.shard_ended(&parent, &[]).await.unwrap();
    wait_until("children taken", Duration::from_secs(20), || async {
        w.acquired.lock().unwrap().len() == 3
    })
    .await;
    let p = e.table.get(&parent).await.unwrap().unwrap();
    assert!(p.is_shard_end());
    assert_eq!(p.children.len(), 2);
    assert_eq!(w.stop().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_rows_of_aged_out_shards_are_deleted_and_nothing_else() {
    use tradeflow_consumer::lease::InitialPosition;
    use tradeflow_consumer::shard::discovery::sync_leases;

    let e = env("cleanup", "cleanup-leases", 2).await;
    let table = &e.table;
    table.ensure_table().await.unwrap();
    // Rows as months of resharding leave them: a finished shard that is past retention
    // (not listed any more), one that expired unread, and a finished but listed one.
    let gone_done =
        tradeflow_consumer::lease::Lease::new("shardId-000000000777", &Checkpoint::ShardEnd);
    let gone_unread =
        tradeflow_consumer::lease::Lease::new("shardId-000000000778", &Checkpoint::TrimHorizon);
    let listed_done =
        tradeflow_consumer::lease::Lease::new("shardId-000000000000", &Checkpoint::ShardEnd);
    for l in [&gone_done, &gone_unread, &listed_done] {
        assert!(table.create_if_absent(l).await.unwrap());
    }
    let rows = table.list().await.unwrap();
    let sync = || {
        sync_leases(
            table,
            &e.kin,
            "cleanup",
            &rows,
            InitialPosition::TrimHorizon,
        )
    };
    let out = sync().await.unwrap();
    assert_eq!(out.deleted, vec!["shardId-000000000777".to_string()]);
    let mut left: Vec<String> = table
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.shard_id)
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            "shardId-000000000000".to_string(),
            "shardId-000000000001".to_string(),
            "shardId-000000000778".to_string(),
        ]
    );
    // A second sync, with the stale scan still naming the deleted row, changes nothing.
    let out = sync().await.unwrap();
    assert!(out.deleted.is_empty() && out.created.is_empty());
}
