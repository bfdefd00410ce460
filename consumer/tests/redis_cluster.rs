//! The exactly-once sink and the snapshot read on a real Redis Cluster (3 primaries, 1 replica
//! each, AOF on, `redis-server` nodes on free loopback ports): every trade counted once
//! while four shards are applied concurrently — with redeliveries — through a slot
//! migration (`redis-cli --cluster reshard`) and a primary killed and replaced by its
//! replica, both mid-run.

#[path = "redis_common/mod.rs"]
mod redis_common;
#[path = "redis_cluster_wait.rs"]
mod wait;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis_common::*;
use tradeflow_consumer::apply::{fold, RedisSink, SinkConfig};
use tradeflow_consumer::record::DecodedRecord;
use tradeflow_shared::kline::Bucket;
use tradeflow_shared::snapshot::Reader;
use tradeflow_shared::testkit::{ClusterSecurity, RedisCluster};
use tradeflow_shared::{Position, Trade};

const P: &str = "tradeflow:";
const SHARDS: usize = 4;
const SYMBOLS: usize = 48;
const TRADES_PER_SYMBOL: u64 = 600;

fn shard_name(i: usize) -> String {
    format!("shardId-{i:012}")
}

/// Per shard, its symbols' trades interleaved (ids consecutive per symbol).
fn workload() -> (Vec<Trade>, Vec<Vec<DecodedRecord>>) {
    let mut all = Vec::new();
    let mut per_shard: Vec<Vec<Trade>> = vec![Vec::new(); SHARDS];
    for id in 1..=TRADES_PER_SYMBOL {
        for s in 0..SYMBOLS {
            let t = trade(&format!("S{s:02}USDT"), 10_000 + id);
            per_shard[s % SHARDS].push(t);
            all.push(t);
        }
    }
    (all, per_shard.iter().map(|t| shard_of(t)).collect())
}

/// Applies one batch until it goes through: a failover or migration answers errors
/// for a few seconds, and every retry is harmless.
async fn apply_until_done(
    sink: &RedisSink,
    shard: &str,
    recs: &[DecodedRecord],
    errors: &AtomicU64,
) -> u64 {
    let batch = fold(recs);
    for _ in 0..600 {
        match sink.apply(STREAM, shard, &batch).await {
            Ok(o) => return o.trades_applied,
            Err(e) if e.is_retryable() => {
                errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("apply failed: {e}"),
        }
    }
    panic!("batch of {shard} never applied");
}

/// A primary's index for a symbol's slot (its count key).
fn owner(c: &RedisCluster, sym: &str) -> usize {
    c.primary_of_slot(c.key_slot(&format!("symbol:{sym}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_counts_through_a_slot_migration_and_a_failover() {
    let mut cluster = start_cluster(3, 1).await;
    let url = cluster.url();
    let cfg = SinkConfig {
        minute_ttl: Duration::from_secs(3600),
        dead_letter_maxlen: 1000,
        ..SinkConfig::default()
    };
    let sink = cluster_sink(&url, cfg).await;
    let (all, shards) = workload();
    let names: Vec<String> = (0..SYMBOLS).map(|s| format!("S{s:02}USDT")).collect();
    let before: BTreeMap<String, usize> = names
        .iter()
        .map(|n| (n.clone(), owner(&cluster, n)))
        .collect();

    // Four appliers, one per shard, batches of 37 records, every third batch delivered
    // twice (a redelivery), slowed down while the faults run so that they land mid-run:
    // each applier must apply batches before, during and after them.
    let errors = Arc::new(AtomicU64::new(0));
    let phase = Arc::new(AtomicU64::new(0)); // 0 before, 1 during, 2 after the faults
    let mut tasks = Vec::new();
    for (i, recs) in shards.iter().enumerate() {
        let (sink, recs, errors, phase) =
            (sink.clone(), recs.clone(), errors.clone(), phase.clone());
        tasks.push(tokio::spawn(async move {
            let shard = shard_name(i);
            let mut applied = 0;
            let mut per_phase = [0u32; 3];
            let last = recs.chunks(37).count() - 1;
            for (n, chunk) in recs.chunks(37).enumerate() {
                // The last batch waits for the faults to end, however long they take
                // (a failover took 9.7 s once), so every shard applies after them too.
                while n == last && phase.load(Ordering::SeqCst) < 2 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                per_phase[phase.load(Ordering::SeqCst) as usize] += 1;
                applied += apply_until_done(&sink, &shard, chunk, &errors).await;
                if n % 3 == 0 {
                    assert_eq!(apply_until_done(&sink, &shard, chunk, &errors).await, 0);
                }
                let pause = if phase.load(Ordering::SeqCst) == 2 {
                    0
                } else {
                    60
                };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            (applied, per_phase)
        }));
    }

    // Faults, in a thread (they run redis-cli and wait): a migration of a third of
    // the first primary's slots to the second, then the second primary killed.
    let faults = phase.clone();
    let cluster = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_secs(1));
        faults.store(1, Ordering::SeqCst);
        let t = std::time::Instant::now();
        let p = cluster.primaries();
        let out = cluster.reshard(p[0], p[1], 1800);
        assert!(!out.contains("[ERR]"), "reshard:\n{out}");
        let migrated = t.elapsed();
        let promoted = cluster.fail_over(p[1]);
        assert_ne!(promoted, p[1]);
        println!(
            "cluster: migration {migrated:?}, then failover {:?}",
            t.elapsed() - migrated
        );
        faults.store(2, Ordering::SeqCst);
        cluster
    })
    .await
    .unwrap();

    let mut applied = 0;
    for t in tasks {
        let (n, per_phase) = t.await.expect("applier");
        assert!(
            per_phase.iter().all(|&b| b > 0),
            "batches before/during/after the faults: {per_phase:?}"
        );
        applied += n;
    }
    // A reply lost with its node (the write had reached the replica) makes the retry
    // answer "duplicate": the appliers may see fewer than all, never more. Redis's
    // totals below are the real check.
    assert!(
        applied <= all.len() as u64,
        "{applied} applied of {}",
        all.len()
    );
    let after: BTreeMap<String, usize> = names
        .iter()
        .map(|n| (n.clone(), owner(&cluster, n)))
        .collect();
    let moved = names.iter().filter(|n| before[*n] != after[*n]).count();
    assert!(
        moved > 0,
        "no symbol changed node: the faults missed the data"
    );
    println!(
        "cluster: {} trades, {applied} answered as applied, {moved} of {SYMBOLS} symbols moved node, {} retried errors",
        all.len(),
        errors.load(Ordering::Relaxed)
    );

    // The snapshot read (the report's) reads it back without KEYS: exact.
    let reader = Reader::connect(&url, P).await.expect("reader");
    let snap = reader.snapshot().await.expect("snapshot");
    let got: BTreeMap<String, Totals> = snap
        .iter()
        .map(|t| {
            (
                t.symbol.clone(),
                Totals {
                    count: t.count,
                    base: t.base.clone(),
                    quote: t.quote.clone(),
                },
            )
        })
        .collect();
    assert_eq!(got, expected(&all));
    // Candles too: each symbol's minute, hour and day buckets, in its slot, once the
    // hours are rolled up.
    let sealed = sink.seal_hours(T0 / 3_600_000 + 2).await.unwrap();
    assert!(sealed.hours >= SYMBOLS as u64, "{sealed:?}");
    for name in &names {
        let sym = tradeflow_shared::Symbol::new(name).unwrap();
        let mine: Vec<Trade> = all.iter().filter(|t| t.symbol == sym).copied().collect();
        for b in [Bucket::Minute, Bucket::Hour, Bucket::Day] {
            let (from, to) = (T0 / b.ms(), (T0 + 3_600_000) / b.ms());
            let stored = reader.buckets(&sym, b, from, to).await.unwrap();
            assert_eq!(stored, plain_klines(&mine, b.ms()), "{name} {b:?}");
        }
    }
    // Every shard's position is its last record.
    for (i, recs) in shards.iter().enumerate() {
        let stored = sink.stored_position(STREAM, &shard_name(i)).await.unwrap();
        assert_eq!(stored, Some(recs.last().unwrap().pos.clone()));
    }
    // A replay of everything after both faults changes nothing.
    let replayed = AtomicU64::new(0);
    for (i, recs) in shards.iter().enumerate() {
        for chunk in recs.chunks(101) {
            let n = apply_until_done(&sink, &shard_name(i), chunk, &replayed).await;
            assert_eq!(n, 0);
        }
    }
    assert_eq!(reader.snapshot().await.unwrap().len(), SYMBOLS);
}

/// A cluster on TLS only (clients, replication, bus) whose nodes require a password:
/// `rediss+cluster://` with the password reaches every node, trusting the private CA
/// given as `ca_file`; without the CA, or with a wrong password, a clear error that
/// never shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_password_protected_cluster() {
    const SECRET: &str = "s3cret-cluster-pw";
    let certs = tempfile::tempdir().unwrap();
    tradeflow_shared::testkit::tls_certificates(certs.path());
    let security = ClusterSecurity {
        password: Some(SECRET.into()),
        tls: Some(certs.path().to_path_buf()),
        ..ClusterSecurity::default()
    };
    let cluster = tokio::task::spawn_blocking(move || RedisCluster::start_secured(3, 0, security))
        .await
        .unwrap();
    let url = cluster.url();
    assert!(url.starts_with("rediss+cluster://") && url.contains(SECRET));
    let cfg = SinkConfig {
        url: url.clone(),
        key_prefix: P.into(),
        ca_file: Some(certs.path().join("ca.pem")),
        // No replicas in this cluster.
        wait_replicas: 0,
        ..SinkConfig::default()
    };
    let sink = RedisSink::connect(&cfg)
        .await
        .expect("connect over TLS with the password");
    let trades: Vec<Trade> = (1..=40)
        .map(|i| trade(&format!("S{:02}USDT", i % 8), 100 + i))
        .collect();
    let errors = AtomicU64::new(0);
    apply_until_done(&sink, "shardId-000000000000", &shard_of(&trades), &errors).await;
    let reader = RedisSink::connect(&cfg).await.unwrap();
    let stored = reader
        .stored_position(STREAM, "shardId-000000000000")
        .await
        .unwrap();
    assert_eq!(stored, Some(shard_of(&trades).last().unwrap().pos.clone()));

    for (what, bad) in [
        (
            "a wrong password",
            SinkConfig {
                url: url.replace(SECRET, "wrong-pw"),
                ..cfg.clone()
            },
        ),
        (
            "no CA",
            SinkConfig {
                ca_file: None,
                ..cfg.clone()
            },
        ),
    ] {
        let err = RedisSink::connect(&bad)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what} must fail"));
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("wrong-pw") && !shown.contains(SECRET),
            "{what}: {shown}"
        );
        if what == "a wrong password" {
            assert!(!err.is_retryable(), "a refused password is final: {shown}");
        }
    }
}

/// A foreign value in one symbol's count key on a cluster (the `symbol:` namespace is
/// shared with the legacy jobs): the symbol script checks before any write, that
/// symbol's trades of the batch are kept aside in the dead-letter stream with the
/// reason, the other symbol counts on, and after the repair both count exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_value_on_a_cluster_keeps_only_that_symbol_aside() {
    let cluster = start_cluster(3, 0).await;
    let url = cluster.url();
    let sink = cluster_sink(&url, without_replicas()).await;
    let mut con = tradeflow_consumer::apply::RedisConn::connect(&url, None)
        .await
        .unwrap();
    let round = |ids: std::ops::RangeInclusive<u64>| -> Vec<Trade> {
        ids.flat_map(|i| [trade("GOODUSDT", i), trade("BADUSDT", i)])
            .collect()
    };
    let at = |from: u64, ts: &[Trade]| -> Vec<DecodedRecord> {
        ts.iter()
            .enumerate()
            .map(|(i, t)| DecodedRecord {
                pos: Position::new(seq(from + i as u64), 0),
                item: tradeflow_consumer::record::Item::Trade(*t),
            })
            .collect()
    };
    let (r1, r2, r3) = (round(1..=10), round(11..=20), round(21..=30));
    let errors = AtomicU64::new(0);
    assert_eq!(
        apply_until_done(&sink, "shardId-0", &at(1, &r1), &errors).await,
        20
    );
    let _: () = redis::cmd("SET")
        .arg("symbol:BADUSDT")
        .arg("n/a")
        .query_async(&mut con)
        .await
        .unwrap();
    let o = sink
        .apply(STREAM, "shardId-0", &fold(&at(1000, &r2)))
        .await
        .expect("a foreign value is a poison condition, not a batch error");
    assert_eq!(
        (o.trades_applied, o.foreign_trades, o.poison),
        (10, 10, 10),
        "{o:?}"
    );
    let dl: Vec<(String, BTreeMap<String, String>)> = redis::cmd("XRANGE")
        .arg("tradeflow:{meta}:dead_letter")
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(dl.len(), 10);
    for (_, e) in &dl {
        assert_eq!(e["kind"], "foreign_value");
        assert!(e["reason"].contains("symbol:BADUSDT"), "{}", e["reason"]);
        assert!(e["data"].contains("\"s\":\"BADUSDT\""), "{}", e["data"]);
    }
    let hwm: String = redis::cmd("HGET")
        .arg("tradeflow:dedupe:{symbol:BADUSDT}")
        .arg("hwm")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(hwm, "10", "nothing of the symbol written");
    // Repaired: counting resumes exactly; the kept-aside trades re-applied count once.
    let _: () = redis::cmd("SET")
        .arg("symbol:BADUSDT")
        .arg(10)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        apply_until_done(&sink, "shardId-0", &at(2000, &r3), &errors).await,
        20
    );
    assert_eq!(
        apply_until_done(&sink, "shardId-replay", &at(1, &r2), &errors).await,
        10
    );
    let mut all = r1;
    all.extend(r2);
    all.extend(r3);
    let reader = Reader::connect(&url, P).await.expect("reader");
    let got: BTreeMap<String, Totals> = reader
        .snapshot()
        .await
        .unwrap()
        .into_iter()
        .map(|t| {
            (
                t.symbol,
                Totals {
                    count: t.count,
                    base: t.base,
                    quote: t.quote,
                },
            )
        })
        .collect();
    assert_eq!(got, expected(&all));
    drop(cluster);
}
