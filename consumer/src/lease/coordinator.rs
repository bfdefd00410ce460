//! The lease coordinator: a renewer on its own timer (failover/3, `renewer.rs`) and a slower taker
//! (scan, shard sync, take/steal, `taker.rs`), as the KCL splits them, plus the
//! [`LeaseHandle`] the worker uses to learn of new leases, checkpoint (fenced) and
//! release (`handle.rs`). This file holds what they share and starts them.
//!
//! Each held lease has one async mutex around its counter: a checkpoint and a renewal
//! of the same lease never race each other into a false "lost".

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::LeaseConfig;
use super::error::LeaseError;
use super::model::Checkpoint;
use super::table::{LeaseTable, TableState};

mod handle;
mod renewer;
mod taker;
pub use handle::LeaseHandle;
use renewer::renewer;
use taker::taker;

/// A lease this worker just acquired (its parents are done): start reading here.
#[derive(Debug, Clone)]
pub struct HeldLease {
    pub shard_id: String,
    /// Where to start: after this position, or at the sentinel.
    pub checkpoint: Checkpoint,
    /// Cancelled as soon as the lease can no longer be proven held: stop reading.
    pub lost: CancellationToken,
}

struct Held {
    /// Last counter value we wrote (the fencing token); locked across each write.
    counter: tokio::sync::Mutex<u64>,
    /// When our last successful write was sent.
    last_write: Mutex<Instant>,
    lost: CancellationToken,
}

struct Shared {
    cfg: LeaseConfig,
    table: LeaseTable,
    held: Mutex<HashMap<String, Arc<Held>>>,
    /// Shards whose reader failed here: left to other workers until then.
    avoid: Mutex<HashMap<String, Instant>>,
    /// Wakes the taker for an extra pass; `sync_requested` makes it list shards too.
    wake_taker: Notify,
    sync_requested: AtomicBool,
    /// Set by `release_all`: stop taking, stop renewing.
    released: CancellationToken,
    /// Held by the taker during a pass, so `release_all` never races a take.
    pass_lock: tokio::sync::Mutex<()>,
}

impl Shared {
    fn me(&self) -> &str {
        &self.cfg.worker_id
    }

    fn get(&self, shard: &str) -> Option<Arc<Held>> {
        self.held.lock().expect("held map").get(shard).cloned()
    }

    /// True while `shard` is left to other workers after its reader failed here.
    fn avoided(&self, shard: &str, now: Instant) -> bool {
        let mut avoid = self.avoid.lock().expect("avoid map");
        avoid.retain(|_, until| *until > now);
        avoid.contains_key(shard)
    }

    fn held_gauge(&self, n: usize) {
        metrics::gauge!("tradeflow_consumer_leases_held").set(n as f64);
    }

    /// Forgets a lease (only if it is still this `Held`), without signalling anything.
    fn forget(&self, shard: &str, h: &Arc<Held>) -> bool {
        let mut map = self.held.lock().expect("held map");
        let same = map.get(shard).is_some_and(|x| Arc::ptr_eq(x, h));
        if same {
            map.remove(shard);
        }
        let n = map.len();
        drop(map);
        self.held_gauge(n);
        same
    }

    fn mark_lost(&self, shard: &str, h: &Arc<Held>, why: &str) {
        // Forget first: whoever sees the token cancelled also sees the lease gone.
        let forgotten = self.forget(shard, h);
        h.lost.cancel();
        if forgotten {
            metrics::counter!("tradeflow_consumer_leases_lost_total").increment(1);
            tracing::warn!(
                shard,
                worker = self.me(),
                why,
                "lease lost: reader must stop"
            );
        }
    }
}

/// Spawns the renewer and taker; see [`LeaseCoordinator::start`].
pub struct LeaseCoordinator;

impl LeaseCoordinator {
    /// Ensures the lease table exists (logging when an existing table is adopted),
    /// then spawns the renewer and taker. The returned task ends after `release_all`,
    /// or after `shutdown` once no lease is held.
    pub async fn start(
        table: LeaseTable,
        kinesis: aws_sdk_kinesis::Client,
        stream: String,
        cfg: LeaseConfig,
        shutdown: CancellationToken,
    ) -> Result<(LeaseHandle, JoinHandle<()>), LeaseError> {
        let state = table.ensure_table().await?;
        let first_scan = table.list().await?;
        if state == TableState::Existed && !first_scan.is_empty() {
            let checkpointed = first_scan
                .iter()
                .filter(|l| {
                    l.checkpoint
                        .as_deref()
                        .is_some_and(|c| c.bytes().all(|b| b.is_ascii_digit()) && !c.is_empty())
                })
                .count();
            let finished = first_scan.iter().filter(|l| l.is_shard_end()).count();
            let owned = first_scan.iter().filter(|l| l.owner.is_some()).count();
            tracing::info!(
                table = table.name(),
                leases = first_scan.len(),
                checkpointed,
                finished,
                owned,
                "adopted existing lease table with {} leases ({} checkpoints at a sequence number)",
                first_scan.len(),
                checkpointed
            );
        } else {
            tracing::info!(table = table.name(), ?state, "lease table ready");
        }

        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            cfg,
            table,
            held: Mutex::new(HashMap::new()),
            avoid: Mutex::new(HashMap::new()),
            wake_taker: Notify::new(),
            sync_requested: AtomicBool::new(false),
            released: CancellationToken::new(),
            pass_lock: tokio::sync::Mutex::new(()),
        });
        shared.held_gauge(0);
        let handle = LeaseHandle {
            shared: shared.clone(),
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
        };
        let renewer = tokio::spawn(renewer(shared.clone(), shutdown.clone()));
        let taker = tokio::spawn(taker(
            shared.clone(),
            kinesis,
            stream,
            shutdown,
            tx,
            first_scan,
        ));
        let task = tokio::spawn(async move {
            let _ = taker.await;
            let _ = renewer.await;
            // Nothing renews any more: whoever still reads must stop.
            let left: Vec<Arc<Held>> = shared
                .held
                .lock()
                .expect("held map")
                .drain()
                .map(|(_, h)| h)
                .collect();
            for h in left {
                h.lost.cancel();
            }
            shared.held_gauge(0);
        });
        Ok((handle, task))
    }
}
