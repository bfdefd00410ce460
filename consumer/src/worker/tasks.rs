//! The worker's shard tasks: each known by its shard even when it panics, and what
//! happens to its lease when it ends.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::JoinSet;

use super::ShardExit;
use crate::lease::LeaseHandle;

/// The running shard tasks, each known by its shard even when it panics (a
/// `JoinError` carries only the task's id).
#[derive(Default)]
pub(super) struct ShardTasks {
    set: JoinSet<ShardExit>,
    shards: HashMap<tokio::task::Id, String>,
}

impl ShardTasks {
    pub(super) fn spawn(
        &mut self,
        shard: String,
        task: impl Future<Output = ShardExit> + Send + 'static,
    ) {
        let handle = self.set.spawn(task);
        self.shards.insert(handle.id(), shard);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.set.len()
    }

    /// The next task to end: its shard and how it ended (`Err`: it panicked or was
    /// cancelled).
    pub(super) async fn join_next(&mut self) -> Option<(String, Result<ShardExit, String>)> {
        let done = self.set.join_next_with_id().await?;
        let (id, exit) = match done {
            Ok((id, exit)) => (id, Ok(exit)),
            Err(e) => (e.id(), Err(e.to_string())),
        };
        let shard = self.shards.remove(&id).unwrap_or_default();
        Some((shard, exit))
    }
}

/// A shard task ended. One that failed or panicked gives its lease up at once (a
/// lease still renewed with nobody reading would hold the shard for ever).
pub(super) async fn end_of_task(
    leases: &LeaseHandle,
    (shard, exit): (String, Result<ShardExit, String>),
) {
    // A worker that no longer reads a shard must not keep exporting its last lag: the
    // gauge would sit there for months (the exporter cannot drop one series) and
    // `max by (shard)` would alert on it. 0 never wins that max over the new owner.
    metrics::gauge!("tradeflow_consumer_millis_behind_latest", "shard" => shard.clone()).set(0.0);
    let why = match exit {
        Ok(ShardExit::Failed(why)) => why,
        Err(panic) => {
            metrics::counter!("tradeflow_consumer_shard_task_failures_total", "reason" => "panic")
                .increment(1);
            format!("shard task panicked: {panic}")
        }
        Ok(exit) => {
            tracing::info!(%shard, ?exit, "shard task ended");
            return;
        }
    };
    tracing::error!(%shard, reason = %why, "shard task failed; giving its lease up for another reader");
    match leases.give_up(&shard).await {
        Ok(true) => {}
        Ok(false) => tracing::info!(%shard, "the lease had already moved"),
        Err(e) => {
            tracing::warn!(%shard, error = %e, "could not release the lease; it expires after the failover time")
        }
    }
}
