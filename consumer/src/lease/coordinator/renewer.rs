//! The renewer: renews every held lease each failover/3 and drops, as lost, a lease
//! whose last proven write is older than the failover time.

use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Held, Shared};
use crate::lease::decisions::held_lease_unproven;
use crate::lease::table::Write;

pub(super) async fn renewer(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(shared.cfg.renew_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Wake for the next renewal, or when a lease's proof runs out, whichever first.
        let deadline = {
            let map = shared.held.lock().expect("held map");
            map.values()
                .map(|h| *h.last_write.lock().expect("last write") + shared.cfg.failover_time)
                .min()
        };
        let until = deadline.map(tokio::time::Instant::from_std);
        let renew = tokio::select! {
            _ = shared.released.cancelled() => return,
            _ = tick.tick() => true,
            _ = async { tokio::time::sleep_until(until.expect("guarded")).await }, if until.is_some() => false,
        };
        if renew {
            // Not raced against the release: a renewal dropped half-way could land in
            // the table without its new counter being kept, and the release that
            // follows would then be refused. Each call is bounded by the client's
            // timeouts; `release_all` waits for it through the lease's counter lock.
            renew_all(&shared).await;
        }
        expire_unproven(&shared);
        if shutdown.is_cancelled() && shared.held.lock().expect("held map").is_empty() {
            return;
        }
    }
}

fn expire_unproven(shared: &Shared) {
    let now = Instant::now();
    let stale: Vec<(String, Arc<Held>)> = shared
        .held
        .lock()
        .expect("held map")
        .iter()
        .filter(|(_, h)| {
            held_lease_unproven(
                *h.last_write.lock().expect("last write"),
                now,
                shared.cfg.failover_time,
            )
        })
        .map(|(k, h)| (k.clone(), h.clone()))
        .collect();
    for (shard, h) in stale {
        shared.mark_lost(&shard, &h, "not renewed within the failover time");
    }
}

async fn renew_all(shared: &Arc<Shared>) {
    let held: Vec<(String, Arc<Held>)> = shared
        .held
        .lock()
        .expect("held map")
        .iter()
        .map(|(k, h)| (k.clone(), h.clone()))
        .collect();
    let mut set = JoinSet::new();
    for (shard, h) in held {
        let shared = shared.clone();
        set.spawn(async move {
            // A write in flight (a checkpoint) bumps the counter: as good as a renewal.
            let Ok(mut counter) = h.counter.try_lock() else {
                return;
            };
            if h.lost.is_cancelled() {
                return;
            }
            let sent = Instant::now();
            match shared.table.renew(&shard, *counter, shared.me()).await {
                Ok(Write::Done { counter: c }) => {
                    *counter = c;
                    *h.last_write.lock().expect("last write") = sent;
                    metrics::counter!("tradeflow_consumer_lease_renewals_total").increment(1);
                }
                Ok(Write::Conflict) => {
                    drop(counter);
                    shared.mark_lost(&shard, &h, "renewal refused: taken by another worker");
                }
                Err(e) => {
                    metrics::counter!("tradeflow_consumer_lease_renewal_failures_total")
                        .increment(1);
                    tracing::warn!(shard, error = %e, "lease renewal failed; will retry");
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}
