//! The fleet tests' scenarios: waiting for lease loads and for shards to be read past
//! new records, two balanced workers with records flowing, stopping workers cleanly,
//! and what a worker's log says about its reader tasks.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tradeflow_consumer::lease::LeaseTable;

use super::*;
use crate::e2e_support::{Proc, Stack, STREAM};

/// Waits until every lease is owned and the loads are `want` (worker → leases).
pub async fn wait_loads(
    table: &LeaseTable,
    shards: usize,
    what: &str,
    ok: impl Fn(&BTreeMap<String, usize>) -> bool,
) -> BTreeMap<String, Option<String>> {
    wait_for(what, Duration::from_secs(60), || async {
        let o = owners(table).await;
        let l = loads(&o);
        (o.len() == shards && o.values().all(Option::is_some) && ok(&l)).then_some(o)
    })
    .await
}

/// Waits until Redis has applied, for each shard, at least the given sequence number.
pub async fn wait_read_through(stack: &Stack, seqs: &HashMap<String, String>) {
    wait_for(
        "the shards to be read past the new records",
        Duration::from_secs(60),
        || async {
            for (shard, seq) in seqs {
                match redis_pos(stack, shard).await {
                    Some(p) if seq_ge(&p, seq) => {}
                    _ => return None,
                }
            }
            Some(())
        },
    )
    .await
}

/// A stack of 4 shards with records flowing every 100 ms (`per_shard` symbols in each),
/// and workers w-a and w-b holding 2 leases each.
pub struct TwoWorkers {
    pub a: Proc,
    pub b: Proc,
    pub writer: Writer,
    pub table: LeaseTable,
    pub kin: aws_sdk_kinesis::Client,
    /// shard → owner once balanced.
    pub balanced: BTreeMap<String, Option<String>>,
    // Last: the servers outlive the processes using them.
    pub stack: Stack,
}

pub async fn two_workers(per_shard: u32) -> TwoWorkers {
    let stack = Stack::start(4).await;
    let kin = stack.kinesis_client().await;
    let writer = Writer::start(
        kin.clone(),
        routes(&kin, per_shard).await,
        Format::Json,
        Duration::from_millis(100),
        None,
    );
    let table = lease_table(&stack).await;
    let a = consumer(&stack, "w-a", &[]);
    let b = consumer(&stack, "w-b", &[]);
    let balanced = wait_loads(&table, 4, "w-a and w-b hold 2 each", |l| {
        l.len() == 2 && l.values().all(|n| *n == 2)
    })
    .await;
    TwoWorkers {
        a,
        b,
        writer,
        table,
        kin,
        balanced,
        stack,
    }
}

/// [`two_workers`] (a symbol per shard) once records written after the balance are
/// read on w-a's shards; and those shards.
pub async fn two_workers_reading_a() -> (TwoWorkers, Vec<String>) {
    let w = two_workers(1).await;
    let a_shards = shards_of(&w.balanced, "w-a");
    read_past(&w.stack, &w.writer, Instant::now(), &a_shards).await;
    (w, a_shards)
}

/// SIGTERM to each; each must exit 0 within 30 s.
pub fn terminate_cleanly<'a>(procs: impl IntoIterator<Item = &'a mut Proc>) {
    for p in procs {
        assert!(
            p.terminate(Duration::from_secs(30)),
            "{} did not exit 0",
            p.name
        );
    }
}

/// Waits until Redis has applied, on each of `shards`, a record written after `t`.
pub async fn read_past(stack: &Stack, writer: &Writer, t: Instant, shards: &[String]) {
    let seqs = writer.written_after(t, shards).await;
    wait_read_through(stack, &seqs).await;
}

/// Per shard, how many of its reader tasks ended in this process so far.
pub fn task_ends(p: &Proc) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in events_with(p, "shard task ended") {
        if let Some(s) = e["shard"].as_str() {
            *m.entry(s.to_string()).or_default() += 1;
        }
    }
    m
}

pub async fn wait_active(kin: &aws_sdk_kinesis::Client) {
    tradeflow_shared::testkit::wait_stream_active(kin, STREAM, Duration::from_secs(30))
        .await
        .expect("stream ACTIVE after a reshard");
}
