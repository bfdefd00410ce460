//! The taker: on its own timer or when woken, scans the table, syncs it with the
//! stream's shards now and then, and takes or steals the leases [`plan_take`] picks,
//! handing each to the worker. The next pass comes at the settled pace (the take
//! interval) unless [`table_settled`] says leases are moving.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Held, HeldLease, Shared};
use crate::lease::decisions::{plan_take, table_settled, Observations, TakeInput, TakeKind};
use crate::lease::model::{Checkpoint, Lease};
use crate::lease::table::Write;
use crate::shard::discovery::{sync_leases, ShardInfo};

pub(super) async fn taker(
    shared: Arc<Shared>,
    kinesis: aws_sdk_kinesis::Client,
    stream: String,
    shutdown: CancellationToken,
    tx: mpsc::UnboundedSender<HeldLease>,
    first_scan: Vec<Lease>,
) {
    // The first pass at once (its scan is prefetched), then at the pace the last asked.
    let mut wait = std::time::Duration::ZERO;
    let mut obs = Observations::new();
    let mut listed: Option<HashSet<String>> = None;
    let mut next_sync = Instant::now();
    let mut prefetched = Some(first_scan);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = shared.released.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = shared.wake_taker.notified() => {}
        }
        wait = shared.cfg.next_take_pass(false);
        let _pass = shared.pass_lock.lock().await;
        if shutdown.is_cancelled() || shared.released.is_cancelled() {
            return;
        }
        let leases = match prefetched.take() {
            Some(l) => l,
            None => match shared.table.list().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "lease scan failed; will retry next pass");
                    continue;
                }
            },
        };
        let mut leases = leases;
        let now = Instant::now();
        if now >= next_sync || shared.sync_requested.swap(false, Ordering::AcqRel) {
            match sync_leases(
                &shared.table,
                &kinesis,
                &stream,
                &leases,
                shared.cfg.initial_position,
            )
            .await
            {
                Ok(out) => {
                    listed = Some(shard_set(&out.shards));
                    leases.extend(out.created);
                    next_sync = Instant::now() + shared.cfg.shard_sync_interval;
                }
                Err(e) => tracing::warn!(error = %e, "shard sync failed; will retry next pass"),
            }
        }
        if shutdown.is_cancelled() || shared.released.is_cancelled() {
            return;
        }
        let settled = take_pass(&shared, &tx, &mut obs, &leases, listed.as_ref(), now).await;
        wait = shared.cfg.next_take_pass(settled);
    }
}

fn shard_set(shards: &[ShardInfo]) -> HashSet<String> {
    shards.iter().map(|s| s.shard_id.clone()).collect()
}

async fn take_pass(
    shared: &Arc<Shared>,
    tx: &mpsc::UnboundedSender<HeldLease>,
    obs: &mut Observations,
    leases: &[Lease],
    listed: Option<&HashSet<String>>,
    now: Instant,
) -> bool {
    obs.update(leases, now);
    let input = TakeInput {
        me: shared.me(),
        leases,
        observations: obs,
        now,
        failover: shared.cfg.failover_time,
        max_leases_per_worker: shared.cfg.max_leases_per_worker,
        listed_shards: listed,
    };
    let plan = plan_take(&input);
    let settled = table_settled(&plan, &input, shared.cfg.failover_time / 2);
    let by_key: HashMap<&str, &Lease> = leases.iter().map(|l| (l.shard_id.as_str(), l)).collect();
    for action in plan.actions {
        if shared.get(&action.shard_id).is_some() || shared.avoided(&action.shard_id, now) {
            continue;
        }
        let Some(lease) = by_key.get(action.shard_id.as_str()) else {
            continue;
        };
        let raw = lease.checkpoint.as_deref().unwrap_or_default();
        let checkpoint = match Checkpoint::parse(
            raw,
            lease.checkpoint_sub,
            shared.cfg.initial_position,
        ) {
            Ok(c) => c,
            Err(e) => {
                metrics::counter!("tradeflow_consumer_lease_rows_unreadable_total").increment(1);
                tracing::warn!(shard = %action.shard_id, error = %e, "lease with an unreadable checkpoint left alone");
                continue;
            }
        };
        let sent = Instant::now();
        match shared
            .table
            .take(&action.shard_id, action.expected_counter, shared.me())
            .await
        {
            Ok(Write::Done { counter }) => {
                let lost = CancellationToken::new();
                let held = Arc::new(Held {
                    counter: tokio::sync::Mutex::new(counter),
                    last_write: Mutex::new(sent),
                    lost: lost.clone(),
                });
                let n = {
                    let mut map = shared.held.lock().expect("held map");
                    map.insert(action.shard_id.clone(), held);
                    map.len()
                };
                shared.held_gauge(n);
                let (metric, verb) = match action.kind {
                    TakeKind::Take => ("tradeflow_consumer_leases_taken_total", "took"),
                    TakeKind::Steal => ("tradeflow_consumer_leases_stolen_total", "stole"),
                };
                metrics::counter!(metric).increment(1);
                tracing::info!(
                    shard = %action.shard_id,
                    worker = shared.me(),
                    from = ?action.previous_owner,
                    target = plan.target,
                    workers = plan.workers,
                    "{verb} lease"
                );
                if tx
                    .send(HeldLease {
                        shard_id: action.shard_id.clone(),
                        checkpoint,
                        lost,
                    })
                    .is_err()
                {
                    // Nobody will read it: give it back at once.
                    tracing::warn!(shard = %action.shard_id, "no receiver for acquired lease");
                }
            }
            Ok(Write::Conflict) => {
                tracing::debug!(shard = %action.shard_id, "lease taken by another worker first");
            }
            Err(e) => tracing::warn!(shard = %action.shard_id, error = %e, "lease take failed"),
        }
    }
    settled
}
