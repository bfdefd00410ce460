//! The pure lease decisions at 1,000 shards (`consumer::lease::decisions`): what one
//! taker pass costs in CPU, in the common and the expensive situations.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use std::hint::black_box;
use tradeflow_consumer::lease::decisions::{plan_take, Observations, TakeInput};
use tradeflow_consumer::lease::{Checkpoint, Lease};

const SHARDS: usize = 1000;
const FAILOVER: Duration = Duration::from_secs(10);

fn shard(i: usize) -> String {
    format!("shardId-{i:012}")
}

/// `SHARDS` leases; every fourth is a child of a finished parent; owners round-robin
/// over `workers` (None = all free).
fn table(workers: Option<usize>) -> Vec<Lease> {
    (0..SHARDS)
        .map(|i| {
            let mut l = Lease::new(shard(i), &Checkpoint::TrimHorizon);
            l.counter = 7 + i as u64;
            l.owner = workers.map(|w| format!("worker-{}", i % w));
            if i % 4 == 3 {
                l.parents = vec![shard(i - 1)];
            }
            l
        })
        .chain((0..SHARDS / 10).map(|i| {
            let mut l = Lease::new(format!("shardId-9{i:011}"), &Checkpoint::ShardEnd);
            l.counter = 1;
            l
        }))
        .collect()
}

fn lease(c: &mut Criterion) {
    let now = Instant::now();
    let later = now + FAILOVER * 2;
    let listed: HashSet<String> = (0..SHARDS).map(shard).collect();
    let mut g = c.benchmark_group("lease");
    g.throughput(Throughput::Elements(SHARDS as u64));

    let cases: [(&str, Vec<Lease>, &str, Instant); 4] = [
        // A new fleet: everything free.
        ("plan_take_all_free", table(None), "worker-0", now),
        // Steady state: 10 live workers, this one has its share (nothing to do).
        ("plan_take_balanced", table(Some(10)), "worker-3", now),
        // A worker joins a fleet of 10: the steal path.
        (
            "plan_take_newcomer_steals",
            table(Some(10)),
            "worker-new",
            now,
        ),
        // Every owner went silent: all leases expired.
        (
            "plan_take_all_expired",
            table(Some(10)),
            "worker-new",
            later,
        ),
    ];
    for (name, leases, me, at) in &cases {
        let mut obs = Observations::new();
        obs.update(leases, now);
        g.bench_function(*name, |b| {
            b.iter(|| {
                plan_take(black_box(&TakeInput {
                    me,
                    leases,
                    observations: &obs,
                    now: *at,
                    failover: FAILOVER,
                    max_leases_per_worker: None,
                    listed_shards: Some(&listed),
                }))
                .actions
                .len()
            })
        });
    }
    let leases = table(Some(10));
    let mut obs = Observations::new();
    obs.update(&leases, now);
    g.bench_function("observations_update", |b| {
        b.iter(|| {
            obs.update(black_box(&leases), now);
            obs.len()
        })
    });
    g.finish();
}

tradeflow_benches::criterion_main!("lease", lease, &["lease"]);
