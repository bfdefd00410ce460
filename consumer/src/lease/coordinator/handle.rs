//! The worker's side of the coordinator: new leases, fenced checkpoints, giving
//! leases up.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::{Held, HeldLease, Shared};
use crate::lease::error::LeaseError;
use crate::lease::model::Checkpoint;
use crate::lease::table::Write;

/// The worker's side of the coordinator. Cheap to clone.
#[derive(Clone)]
pub struct LeaseHandle {
    pub(super) shared: Arc<Shared>,
    pub(super) rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<HeldLease>>>,
}

impl LeaseHandle {
    /// The next lease this worker acquired (parents already done). `None` once the
    /// coordinator has stopped.
    pub async fn next_acquired(&self) -> Option<HeldLease> {
        self.rx.lock().await.recv().await
    }

    pub fn worker_id(&self) -> &str {
        self.shared.me()
    }

    /// Writes a checkpoint, fenced on owner = me and counter = last written; bumps the
    /// counter (so it also renews) and resets `ownerSwitchesSinceCheckpoint`.
    /// `Err(Lost)` once the lease has moved: the reader must stop.
    pub async fn checkpoint(&self, shard_id: &str, cp: Checkpoint) -> Result<(), LeaseError> {
        self.write_checkpoint(shard_id, &cp, &[]).await
    }

    /// Checkpoints SHARD_END with the child shard ids (may be empty: discovery finds
    /// them from ListShards), stops renewing the finished lease, and asks for a shard
    /// sync and a take pass so the children start promptly.
    pub async fn shard_ended(&self, shard_id: &str, children: &[String]) -> Result<(), LeaseError> {
        self.write_checkpoint(shard_id, &Checkpoint::ShardEnd, children)
            .await?;
        if let Some(h) = self.shared.get(shard_id) {
            // Finished leases keep their owner in the table; takers skip SHARD_END.
            self.shared.forget(shard_id, &h);
        }
        self.request_shard_sync();
        Ok(())
    }

    /// The reader of this shard stopped without finishing (error, shutdown): stop
    /// renewing. The row keeps our name until it expires, then any worker (this one
    /// included) takes it again and resumes from its checkpoint.
    pub fn reader_stopped(&self, shard_id: &str) {
        if let Some(h) = self.shared.get(shard_id) {
            self.shared.forget(shard_id, &h);
            h.lost.cancel();
        }
    }

    /// Lists shards and runs a take pass now (e.g. after a shard ended).
    pub fn request_shard_sync(&self) {
        self.shared.sync_requested.store(true, Ordering::Release);
        self.shared.wake_taker.notify_one();
    }

    /// Gives up every held lease (after readers stopped and checkpointed): a
    /// conditional update removing `leaseOwner`, so other workers take them on their
    /// next pass instead of after the failover time. Stops taking and renewing.
    /// Returns how many were released; a lease that had already moved is skipped.
    pub async fn release_all(&self) -> Result<usize, LeaseError> {
        // Wait out a take pass in flight, and keep the taker out from here on.
        let _no_pass = self.shared.pass_lock.lock().await;
        // Take the leases *before* signalling the stop. Once `released` is cancelled the
        // renewer returns and the coordinator's end-of-life task, on another runtime
        // thread, drains whatever is still held (to stop its readers) without writing
        // to the table; when it won that race, nothing was left here to release and the
        // leases waited out the failover time instead of moving at once.
        let held: Vec<(String, Arc<Held>)> =
            self.shared.held.lock().expect("held map").drain().collect();
        self.shared.released.cancel();
        self.shared.held_gauge(0);
        let mut released = 0;
        let mut first_err = None;
        for (shard, h) in held {
            match self.release_one(&shard, &h).await {
                Ok(true) => released += 1,
                Ok(false) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(released),
        }
    }

    /// Gives up one lease whose reader stopped for good (it failed or panicked): forgets
    /// it (no more renewals) and releases it in the table, so another worker reads the
    /// shard at its next take pass rather than after the failover time. This worker
    /// leaves the shard alone for one failover time, then may take it again (a fleet
    /// of one retries it). Returns whether the table was released; when the write fails the
    /// lease still expires after the failover time.
    pub async fn give_up(&self, shard: &str) -> Result<bool, LeaseError> {
        // Another worker gets the first chance: the failure may be this worker's own.
        self.shared.avoid.lock().expect("avoid map").insert(
            shard.to_string(),
            Instant::now() + self.shared.cfg.failover_time,
        );
        let Some(h) = self.shared.get(shard) else {
            return Ok(false);
        };
        if !self.shared.forget(shard, &h) {
            return Ok(false);
        }
        h.lost.cancel();
        self.release_one(shard, &h).await
    }

    /// The conditional release of one lease we held (already forgotten).
    async fn release_one(&self, shard: &str, h: &Held) -> Result<bool, LeaseError> {
        let counter = h.counter.lock().await;
        h.lost.cancel();
        let table = &self.shared.table;
        let mut outcome = table.release(shard, *counter, self.shared.me()).await;
        if let Ok(Write::Conflict) = outcome {
            // Still ours at a later counter: a write of ours (a renewal or a
            // checkpoint cut short) landed without its answer being kept. Release
            // at the counter the table holds.
            if let Ok(Some(l)) = table.get(shard).await {
                if l.owner.as_deref() == Some(self.shared.me()) && l.counter > *counter {
                    outcome = table.release(shard, l.counter, self.shared.me()).await;
                }
            }
        }
        match outcome {
            Ok(Write::Done { .. }) => {
                metrics::counter!("tradeflow_consumer_leases_released_total").increment(1);
                tracing::info!(shard, worker = self.shared.me(), "lease released");
                Ok(true)
            }
            Ok(Write::Conflict) => {
                tracing::info!(shard, "lease had already moved; nothing to release");
                Ok(false)
            }
            Err(e) => {
                tracing::warn!(shard, error = %e, "lease release failed; it will expire");
                Err(e)
            }
        }
    }

    pub fn held_count(&self) -> usize {
        self.shared.held.lock().expect("held map").len()
    }

    /// Shard ids held right now (sorted).
    pub fn held_shards(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .shared
            .held
            .lock()
            .expect("held map")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    async fn write_checkpoint(
        &self,
        shard_id: &str,
        cp: &Checkpoint,
        children: &[String],
    ) -> Result<(), LeaseError> {
        let fail = |reason: &'static str| {
            metrics::counter!("tradeflow_consumer_checkpoint_failures_total", "reason" => reason)
                .increment(1);
        };
        let Some(h) = self.shared.get(shard_id) else {
            fail("not_held");
            return Err(LeaseError::NotHeld {
                shard: shard_id.to_string(),
            });
        };
        let mut counter = h.counter.lock().await;
        if h.lost.is_cancelled() {
            fail("lost");
            return Err(LeaseError::Lost {
                shard: shard_id.to_string(),
            });
        }
        let sent = Instant::now();
        match self
            .shared
            .table
            .checkpoint(shard_id, *counter, self.shared.me(), cp, children)
            .await
        {
            Ok(Write::Done { counter: c }) => {
                *counter = c;
                *h.last_write.lock().expect("last write") = sent;
                metrics::counter!("tradeflow_consumer_checkpoints_total").increment(1);
                Ok(())
            }
            Ok(Write::Conflict) => {
                drop(counter);
                fail("lost");
                self.shared
                    .mark_lost(shard_id, &h, "checkpoint refused: lease moved");
                Err(LeaseError::Lost {
                    shard: shard_id.to_string(),
                })
            }
            Err(e) => {
                fail("dynamodb");
                Err(e)
            }
        }
    }
}
