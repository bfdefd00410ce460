//! The consumer as a fleet of real processes, against real redis-server, dynalite and
//! ferrokinesis: balance and stealing without churn, crash (kill -9) and graceful
//! (SIGTERM) failover, a paused worker (SIGSTOP past the failover time), split and
//! merge while records flow, KPL aggregates across a crash. Counts must stay exact.
//!
//! Timings are never asserted tightly (the machine is shared and loaded): each wait
//! has a generous deadline and the measured times are printed (`--nocapture`).

mod e2e_support;
mod fleet_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e_support::{Proc, Stack, STREAM};
use fleet_support::workers::*;
use fleet_support::*;

/// One fleet at a time: each test runs several processes, and two fleets on a loaded
/// 2-core machine would only make every wait longer.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DUPLICATES: &str = "tradeflow_consumer_duplicates_skipped_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_balance_and_a_fourth_steals_without_churn() {
    let _serial = SERIAL.lock().await;
    let stack = Stack::start(8).await;
    let kin = stack.kinesis_client().await;
    let writer = Writer::start(
        kin.clone(),
        routes(&kin, 1).await,
        Format::Json,
        Duration::from_millis(200),
        None,
    );
    let table = lease_table(&stack).await;
    let mut procs: Vec<Proc> = ["w1", "w2", "w3"]
        .iter()
        .map(|w| consumer(&stack, w, &[]))
        .collect();
    let start = Instant::now();
    wait_loads(&table, 8, "3 workers share 8 leases", |l| {
        l.len() == 3 && l.values().all(|n| (2..=3).contains(n))
    })
    .await;
    println!("3 workers balanced 8 leases after {:?}", start.elapsed());

    let joined = Instant::now();
    procs.push(consumer(&stack, "w4", &[]));
    // Every owner each lease has had since w4 joined, sampled every 100 ms.
    let mut history: BTreeMap<String, Vec<Option<String>>> = owners(&table)
        .await
        .into_iter()
        .map(|(s, w)| (s, vec![w]))
        .collect();
    let mut stable_since: Option<Instant> = None;
    let balanced_after = loop {
        let o = owners(&table).await;
        for (s, w) in &o {
            let h = history.entry(s.clone()).or_default();
            if h.last() != Some(w) {
                h.push(w.clone());
            }
        }
        let l = loads(&o);
        let balanced =
            o.values().all(Option::is_some) && l.len() == 4 && l.values().all(|n| *n == 2);
        if balanced {
            let since = *stable_since.get_or_insert_with(Instant::now);
            // Several take intervals and failover times without a move: settled.
            if since.elapsed() >= Duration::from_secs(5) {
                break since - joined;
            }
        } else {
            stable_since = None;
        }
        assert!(
            joined.elapsed() < Duration::from_secs(90),
            "no stable 2/2/2/2 balance: {l:?}; history {history:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("4th worker: 2 leases each after {balanced_after:?}; history {history:?}");
    for (shard, h) in &history {
        assert!(
            h.len() <= 2,
            "lease {shard} changed hands more than once: {h:?}"
        );
        if h.len() == 2 {
            assert_eq!(
                h[1].as_deref(),
                Some("w4"),
                "{shard} moved elsewhere than to w4: {h:?}"
            );
        }
    }
    assert_eq!(
        history.values().filter(|h| h.len() == 2).count(),
        2,
        "exactly two leases move to the new worker: {history:?}"
    );

    let last = writer.stop().await;
    let refs: Vec<&Proc> = procs.iter().collect();
    assert_exact(&stack, &last, &refs).await;
    terminate_cleanly(&mut procs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_is_taken_over_and_sigterm_hands_over_without_duplicates() {
    let _serial = SERIAL.lock().await;
    let (mut w, a_shards) = two_workers_reading_a().await;

    // A crash: nothing is released; w-b takes the leases once they expire.
    w.a.kill();
    let killed = Instant::now();
    read_past(&w.stack, &w.writer, killed, &a_shards).await;
    let kill_took = killed.elapsed();
    println!("kill -9: w-a's shards {a_shards:?} read again after {kill_took:?} (failover 2 s, take interval 1 s)");
    let o = owners(&w.table).await;
    for s in &a_shards {
        assert_eq!(o[s].as_deref(), Some("w-b"), "{s} after the crash: {o:?}");
    }

    // A third worker steals its share from w-b, then stops gracefully. w-b's readers of
    // the stolen shards go on until its next renewal or checkpoint (both apply then,
    // deduplicated); the duplicates figure must start after that overlap.
    let ended_before = task_ends(&w.b);
    let mut c = consumer(&w.stack, "w-c", &[]);
    let o = wait_loads(&w.table, 4, "w-c steals 2 of w-b's 4", |l| {
        l.get("w-b") == Some(&2) && l.get("w-c") == Some(&2)
    })
    .await;
    let c_shards = shards_of(&o, "w-c");
    wait_for(
        "w-b to stop reading the stolen shards",
        Duration::from_secs(60),
        || async {
            let now = task_ends(&w.b);
            c_shards
                .iter()
                .all(|s| {
                    now.get(s).copied().unwrap_or(0) > ended_before.get(s).copied().unwrap_or(0)
                })
                .then_some(())
        },
    )
    .await;
    read_past(&w.stack, &w.writer, Instant::now(), &c_shards).await;
    let b_metrics = metrics_addr(&w.b).await;
    let dups_before = scrape(&b_metrics, DUPLICATES);

    let termed = Instant::now();
    assert!(
        c.terminate(Duration::from_secs(30)),
        "w-c did not exit 0 on SIGTERM:\n{}",
        c.output()
    );
    let exited = termed.elapsed();
    // Released before it exited: no owner, or already w-b's.
    let o = owners(&w.table).await;
    for s in &c_shards {
        assert_ne!(
            o[s].as_deref(),
            Some("w-c"),
            "{s} still w-c's after its exit: {o:?}"
        );
    }
    assert_eq!(
        events_with(&c, "lease released").len(),
        2,
        "w-c released its 2 leases:\n{}",
        c.output()
    );
    read_past(&w.stack, &w.writer, Instant::now(), &c_shards).await;
    let term_took = termed.elapsed();
    println!(
        "SIGTERM: w-c exited after {exited:?}; its shards read again by w-b after {term_took:?}"
    );

    let last = w.writer.stop().await;
    assert_exact(&w.stack, &last, &[&w.a, &w.b, &c]).await;
    let dups = scrape(&b_metrics, DUPLICATES) - dups_before;
    println!("SIGTERM: trades w-b skipped as already applied after the hand-over: {dups}");
    assert_eq!(dups, 0.0, "a graceful hand-over re-applied trades");
    assert!(w.b.terminate(Duration::from_secs(30)), "w-b did not exit 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_while_records_flow_keep_counts_exact_and_parents_first() {
    let _serial = SERIAL.lock().await;
    let TwoWorkers {
        stack,
        kin,
        writer,
        table,
        mut a,
        mut b,
        ..
    } = two_workers(2).await;
    let before = kin.list_shards().stream_name(STREAM).send().await.unwrap();
    let ids: Vec<String> = before
        .shards()
        .iter()
        .map(|s| s.shard_id().to_string())
        .collect();
    read_past(&stack, &writer, Instant::now(), &ids).await;

    let first = &before.shards()[0];
    let r = first.hash_key_range().unwrap();
    let lo: u128 = r.starting_hash_key().parse().unwrap();
    let hi: u128 = r.ending_hash_key().parse().unwrap();
    kin.split_shard()
        .stream_name(STREAM)
        .shard_to_split(first.shard_id())
        .new_starting_hash_key((lo + (hi - lo) / 2 + 1).to_string())
        .send()
        .await
        .expect("SplitShard");
    wait_active(&kin).await;
    kin.merge_shards()
        .stream_name(STREAM)
        .shard_to_merge(&ids[2])
        .adjacent_shard_to_merge(&ids[3])
        .send()
        .await
        .expect("MergeShards");
    wait_active(&kin).await;
    let resharded = Instant::now();

    // Keep writing into the children for a while.
    let after = kin.list_shards().stream_name(STREAM).send().await.unwrap();
    let children: Vec<(String, Vec<String>)> = after
        .shards()
        .iter()
        .filter(|s| !ids.contains(&s.shard_id().to_string()))
        .map(|s| {
            let parents = [s.parent_shard_id(), s.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .map(str::to_string)
                .collect();
            (s.shard_id().to_string(), parents)
        })
        .collect();
    assert_eq!(
        children.len(),
        3,
        "two split children and one merged: {children:?}"
    );
    let child_ids: Vec<String> = children.iter().map(|c| c.0.clone()).collect();
    read_past(&stack, &writer, Instant::now(), &child_ids).await;
    println!("reshard: children read after {:?}", resharded.elapsed());
    let last = writer.stop().await;
    assert_exact(&stack, &last, &[&a, &b]).await;

    // Parent before child: each child's first read starts after its parents' SHARD_END.
    let mut ended: BTreeMap<String, String> = BTreeMap::new();
    let mut first_read: BTreeMap<String, String> = BTreeMap::new();
    for p in [&a, &b] {
        for e in events_with(p, "checkpointed SHARD_END") {
            let (s, t) = (
                e["shard"].as_str().unwrap(),
                e["timestamp"].as_str().unwrap(),
            );
            ended.insert(s.to_string(), t.to_string());
        }
        for e in events_with(p, "reading shard") {
            let (s, t) = (
                e["shard"].as_str().unwrap(),
                e["timestamp"].as_str().unwrap(),
            );
            let slot = first_read
                .entry(s.to_string())
                .or_insert_with(|| t.to_string());
            if t < slot.as_str() {
                *slot = t.to_string();
            }
        }
    }
    for (child, parents) in &children {
        let read = first_read
            .get(child)
            .unwrap_or_else(|| panic!("{child} never read"));
        for parent in parents {
            let end = ended
                .get(parent)
                .unwrap_or_else(|| panic!("{parent} never reached SHARD_END"));
            assert!(
                end < read,
                "{child} read at {read} before its parent {parent} ended at {end}"
            );
        }
    }
    let o = owners(&table).await;
    assert_eq!(o.len(), 4, "4 open shards hold leases: {o:?}");
    terminate_cleanly([&mut a, &mut b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_loses_its_leases_and_stops_reading_them() {
    let _serial = SERIAL.lock().await;
    let (mut w, a_shards) = two_workers_reading_a().await;

    w.a.pause();
    let paused = Instant::now();
    wait_loads(&w.table, 4, "w-b takes the paused worker's leases", |l| {
        l.get("w-b") == Some(&4)
    })
    .await;
    read_past(&w.stack, &w.writer, Instant::now(), &a_shards).await;
    println!(
        "SIGSTOP: w-a's shards taken and read by w-b after {:?}",
        paused.elapsed()
    );

    w.a.resume();
    wait_for(
        "w-a notices it lost its leases",
        Duration::from_secs(30),
        || async {
            let lost: Vec<String> = events_with(&w.a, "lease lost")
                .iter()
                .filter_map(|e| e["shard"].as_str().map(str::to_string))
                .collect();
            a_shards.iter().all(|s| lost.contains(s)).then_some(())
        },
    )
    .await;
    // Its readers stopped with "lease lost" rather than going on. The reader logs its
    // exit after the coordinator logs the loss, so give it a moment to get there.
    let ended_lost = |e: &serde_json::Value, s: &str| {
        e["shard"].as_str() == Some(s) && e["exit"].as_str() == Some("LeaseLost")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let ended = loop {
        let exits = events_with(&w.a, "shard task ended");
        let all = a_shards
            .iter()
            .all(|s| exits.iter().any(|e| ended_lost(e, s)));
        if all || Instant::now() >= deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        ended,
        "w-a's readers of {a_shards:?} did not all end with LeaseLost:\n{}",
        w.a.output()
    );
    assert!(
        w.a.is_running(),
        "w-a died after SIGCONT:\n{}",
        w.a.output()
    );
    // Its old writes could not win: each of those leases is w-b's, unless w-a took it
    // back afresh (a new take, with the counter w-b left) after waking.
    let retaken: Vec<String> = events_with(&w.a, " lease")
        .iter()
        .filter(|e| {
            matches!(
                e["message"].as_str(),
                Some("stole lease") | Some("took lease")
            )
        })
        .filter_map(|e| e["shard"].as_str().map(str::to_string))
        .collect();
    let o = owners(&w.table).await;
    for s in &a_shards {
        let owner = o[s].as_deref();
        assert!(
            owner == Some("w-b")
                || (owner == Some("w-a") && retaken.iter().filter(|x| *x == s).count() >= 2),
            "{s} is {owner:?}'s without a new take by w-a:\n{}",
            w.a.output()
        );
    }

    let last = w.writer.stop().await;
    assert_exact(&w.stack, &last, &[&w.a, &w.b]).await;
    terminate_cleanly([&mut w.a, &mut w.b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpl_aggregates_are_counted_exactly_across_a_crash() {
    let _serial = SERIAL.lock().await;
    let stack = Stack::start(2).await;
    let kin = stack.kinesis_client().await;
    let table = lease_table(&stack).await;
    // Small GetRecords pages: many batches, so the crash lands between two of them.
    let mut first = consumer(&stack, "w-1", &["--max-records", "3"]);
    wait_loads(&table, 2, "w-1 holds both leases", |l| {
        l.get("w-1") == Some(&2)
    })
    .await;
    const ROUNDS: u64 = 80;
    let writer = Writer::start(
        kin.clone(),
        routes(&kin, 2).await,
        Format::Kpl(25),
        Duration::from_millis(100),
        Some(ROUNDS),
    );
    let probe: BTreeMap<String, u64> = routes(&kin, 2)
        .await
        .into_iter()
        .map(|r| (r.symbol, 0))
        .collect();
    wait_for(
        "some aggregates counted",
        Duration::from_secs(60),
        || async {
            let n: u64 = stack.counts(&probe).await.values().sum();
            (n >= 500).then_some(())
        },
    )
    .await;
    first.kill();
    let at_kill = writer.rounds();
    println!("kpl: killed w-1 after {at_kill} of {ROUNDS} rounds written");
    let mut second = consumer(&stack, "w-2", &["--max-records", "3"]);
    let last = writer.finish().await;
    assert!(
        at_kill < ROUNDS,
        "the crash came after the last aggregate was written"
    );
    assert_eq!(last.values().sum::<u64>(), 4 * 25 * ROUNDS);
    assert_exact(&stack, &last, &[&first, &second]).await;
    let m = metrics_addr(&second).await;
    assert_eq!(scrape(&m, "tradeflow_consumer_poison_records_total"), 0.0);
    assert!(
        second.terminate(Duration::from_secs(30)),
        "w-2 did not exit 0"
    );
}
