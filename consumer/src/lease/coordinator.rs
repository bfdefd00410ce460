//! The lease coordinator: a renewer on its own timer (failover/3, `renewer.rs`) and a slower taker
//! (scan, shard sync, take/steal), as the KCL splits them, plus the [`LeaseHandle`] the
//! worker uses to learn of new leases, checkpoint (fenced) and release.
//!
//! Each held lease has one async mutex around its counter: a checkpoint and a renewal
//! of the same lease never race each other into a false "lost".

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::LeaseConfig;
use super::decisions::{plan_take, Observations, TakeInput, TakeKind};
use super::error::LeaseError;
use super::model::{Checkpoint, Lease};
use super::table::{LeaseTable, TableState, Write};
use crate::shard::discovery::{sync_leases, ShardInfo};

mod renewer;
use renewer::renewer;

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

async fn taker(
    shared: Arc<Shared>,
    kinesis: aws_sdk_kinesis::Client,
    stream: String,
    shutdown: CancellationToken,
    tx: mpsc::UnboundedSender<HeldLease>,
    first_scan: Vec<Lease>,
) {
    let mut tick = tokio::time::interval(shared.cfg.take_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut obs = Observations::new();
    let mut listed: Option<HashSet<String>> = None;
    let mut next_sync = Instant::now();
    let mut prefetched = Some(first_scan);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = shared.released.cancelled() => return,
            _ = tick.tick() => {}
            _ = shared.wake_taker.notified() => {}
        }
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
        take_pass(&shared, &tx, &mut obs, &leases, listed.as_ref(), now).await;
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
) {
    obs.update(leases, now);
    let plan = plan_take(&TakeInput {
        me: shared.me(),
        leases,
        observations: obs,
        now,
        failover: shared.cfg.failover_time,
        max_leases_per_worker: shared.cfg.max_leases_per_worker,
        listed_shards: listed,
    });
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
}

/// The worker's side of the coordinator. Cheap to clone.
#[derive(Clone)]
pub struct LeaseHandle {
    shared: Arc<Shared>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<HeldLease>>>,
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
