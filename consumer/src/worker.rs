//! The worker: takes leases from the coordinator, runs one task per held shard
//! (read → decode → fold → apply to Redis → checkpoint), and on shutdown finishes the
//! batch in hand, checkpoints and gives its leases up.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tradeflow_shared::telemetry::Health;
use tradeflow_shared::{aws, Position};

use crate::apply::{fold, RedisSink, SinkConfig, SinkError};
use crate::config::{Config, InitialPositionArg};
use crate::lease::{
    Checkpoint, HeldLease, InitialPosition, LeaseConfig, LeaseCoordinator, LeaseError, LeaseHandle,
    LeaseTable,
};
use crate::shard::budget::ReadBudget;
use crate::shard::fanout::{self, FanOutConfig, FanOutReader};
use crate::shard::reader::{ReaderConfig, ShardReader, StartPosition};
use crate::shard::RecordSource;

/// Why a shard task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardExit {
    /// The shard is closed, fully read, and checkpointed SHARD_END.
    ShardEnd,
    /// Another worker holds the lease now (or it could not be proven held).
    LeaseLost,
    /// This worker is shutting down; the shard was checkpointed where it stopped.
    Requested,
    /// The shard can no longer be read (deleted stream, access denied).
    Failed(String),
}

struct Ctx {
    stream: String,
    kinesis: aws_sdk_kinesis::Client,
    sink: RedisSink,
    leases: LeaseHandle,
    reader: ReaderConfig,
    /// Set when reading with enhanced fan-out instead of polling.
    fan_out: Option<FanOutConfig>,
    checkpoint_interval: Duration,
    health: Arc<Health>,
}

/// Runs a worker until `shutdown` is cancelled, then drains and releases its leases.
pub async fn run(
    cfg: Config,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let worker_id = cfg.worker_id();
    let sdk = aws::sdk_config(&cfg.aws).await;
    let kinesis = aws::kinesis_client_trusting(&sdk, &cfg.aws, cfg.kinesis_ca_file.as_ref());
    let dynamodb = aws::dynamodb_client(&sdk, &cfg.aws);

    let sink = connect_sink(&cfg, &shutdown).await?;
    let Some(sink) = sink else { return Ok(()) };

    let fan_out = match cfg.fan_out_consumer() {
        None => None,
        Some(name) => {
            let arn =
                fanout::ensure_consumer(&kinesis, &cfg.stream, &name, Duration::from_secs(120))
                    .await
                    .context("enhanced fan-out: registering the stream consumer")?;
            tracing::info!(consumer = %name, %arn, "reading with enhanced fan-out");
            Some(FanOutConfig {
                subscription_lifetime: cfg.fan_out_resubscribe_after,
                ..FanOutConfig::new(arn)
            })
        }
    };

    let table = LeaseTable::new(dynamodb, &cfg.application_name);
    let lease_cfg = LeaseConfig {
        table_name: cfg.application_name.clone(),
        worker_id: worker_id.clone(),
        failover_time: cfg.failover_time,
        renew_interval: cfg.failover_time / 3,
        take_interval: cfg.take_interval(),
        max_leases_per_worker: cfg.max_leases_per_worker,
        initial_position: initial_position(&cfg),
        shard_sync_interval: cfg.shard_sync_interval,
    };
    // The coordinator runs until told to stop after the shard tasks have drained, so
    // it keeps renewing while they finish their last batch.
    let coordinator_stop = CancellationToken::new();
    let (leases, coordinator) = LeaseCoordinator::start(
        table,
        kinesis.clone(),
        cfg.stream.clone(),
        lease_cfg,
        coordinator_stop.clone(),
    )
    .await
    .context("starting the lease coordinator")?;
    tracing::info!(worker = %worker_id, stream = %cfg.stream, table = %cfg.application_name, "worker started");
    health.set_ready(true);
    health.progress();

    let ctx = Arc::new(Ctx {
        stream: cfg.stream.clone(),
        kinesis,
        sink,
        leases: leases.clone(),
        reader: ReaderConfig {
            max_records: cfg.max_records,
            page_target_bytes: cfg.page_target_kib * 1024,
            budget: ReadBudget::new(cfg.read_budget_mib << 20),
            idle_interval: cfg.idle_interval,
            end_settle: cfg.shard_end_settle,
            ..ReaderConfig::default()
        },
        fan_out,
        checkpoint_interval: cfg.checkpoint_interval,
        health: health.clone(),
    });

    let mut tasks: JoinSet<(String, ShardExit)> = JoinSet::new();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            held = leases.next_acquired() => match held {
                Some(held) => {
                    let ctx = ctx.clone();
                    let stop = shutdown.clone();
                    tasks.spawn(async move {
                        let shard = held.shard_id.clone();
                        let exit = process_shard(&ctx, held, stop).await;
                        (shard, exit)
                    });
                }
                None => {
                    tracing::error!("lease coordinator stopped; shutting down");
                    break;
                }
            },
            Some(done) = tasks.join_next() => log_exit(&leases, done),
            _ = heartbeat.tick() => {
                // An idle worker (no lease, or idle shards) is still healthy.
                if tasks.is_empty() { health.progress(); }
            }
        }
    }

    tracing::info!(shards = tasks.len(), "draining shard tasks");
    health.set_ready(false);
    while let Some(done) = tasks.join_next().await {
        log_exit(&leases, done);
    }
    match leases.release_all().await {
        Ok(n) => tracing::info!(released = n, "leases released"),
        Err(e) => {
            tracing::warn!(error = %e, "could not release every lease; they expire after the failover time")
        }
    }
    coordinator_stop.cancel();
    let _ = coordinator.await;
    tracing::info!("worker stopped");
    Ok(())
}

async fn connect_sink(
    cfg: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<RedisSink>> {
    let sink_cfg = SinkConfig {
        url: cfg.redis_url.clone(),
        key_prefix: cfg.key_prefix.clone(),
        minute_ttl: cfg.minute_ttl,
        dead_letter_maxlen: cfg.dead_letter_maxlen,
        ca_file: cfg.redis_ca_file.clone(),
        wait_replicas: cfg.redis_wait_replicas,
        wait_timeout: cfg.redis_wait_timeout,
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        match RedisSink::connect(&sink_cfg).await {
            Ok(s) => return Ok(Some(s)),
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "Redis not reachable yet; retrying");
            }
            Err(e) => return Err(anyhow::anyhow!("Redis: {e}")),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

fn initial_position(cfg: &Config) -> InitialPosition {
    match cfg.initial_position {
        InitialPositionArg::TrimHorizon => InitialPosition::TrimHorizon,
        InitialPositionArg::Latest => InitialPosition::Latest,
        InitialPositionArg::AtTimestamp => {
            InitialPosition::at(cfg.initial_timestamp.unwrap_or(std::time::UNIX_EPOCH))
        }
    }
}

fn log_exit(leases: &LeaseHandle, done: Result<(String, ShardExit), tokio::task::JoinError>) {
    if let Ok((shard, _)) = &done {
        // A worker that no longer reads a shard must not keep exporting its last lag: the
        // gauge would sit there for months (the exporter cannot drop one series) and
        // `max by (shard)` would alert on it. 0 never wins that max over the new owner.
        metrics::gauge!("tradeflow_consumer_millis_behind_latest", "shard" => shard.clone())
            .set(0.0);
    }
    match done {
        Ok((shard, ShardExit::Failed(why))) => {
            tracing::error!(%shard, reason = %why, "shard task failed; the lease will expire and be retaken");
            leases.reader_stopped(&shard);
        }
        Ok((shard, exit)) => tracing::info!(%shard, ?exit, "shard task ended"),
        Err(e) => tracing::error!(error = %e, "shard task panicked"),
    }
}

/// Where to start: Redis's own position when it has one (it is stored atomically with
/// the totals, so it is exactly what has been applied — even if Redis lost its last
/// writes and the DynamoDB checkpoint ran ahead), else the lease's checkpoint.
fn start_position(held: &Checkpoint, in_redis: Option<Position>) -> Option<StartPosition> {
    if matches!(held, Checkpoint::ShardEnd) {
        return None;
    }
    if let Some(p) = in_redis {
        return Some(StartPosition::After(p));
    }
    Some(match held {
        Checkpoint::TrimHorizon => StartPosition::TrimHorizon,
        Checkpoint::Latest => StartPosition::Latest,
        Checkpoint::AtTimestamp(ms) => StartPosition::AtTimestamp(*ms as i64),
        Checkpoint::At(p) => StartPosition::After(p.clone()),
        Checkpoint::ShardEnd => unreachable!("handled above"),
    })
}

async fn process_shard(ctx: &Ctx, held: HeldLease, shutdown: CancellationToken) -> ShardExit {
    let shard = held.shard_id.clone();
    let lost = held.lost.clone();
    let in_redis = loop {
        tokio::select! {
            _ = lost.cancelled() => return ShardExit::LeaseLost,
            _ = shutdown.cancelled() => return ShardExit::Requested,
            r = ctx.sink.stored_position(&ctx.stream, &shard) => match r {
                Ok(p) => break p,
                Err(e) => {
                    tracing::warn!(%shard, error = %e, "cannot read the shard's position from Redis; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    };
    let Some(start) = start_position(&held.checkpoint, in_redis.clone()) else {
        // Already finished; make sure the children are known and stop.
        return finish_shard(ctx, &shard, &[]).await;
    };
    tracing::info!(%shard, ?start, lease_checkpoint = ?held.checkpoint, redis_position = ?in_redis, "reading shard");
    let first_start = start.clone();
    let mut reader = open_reader(ctx, &shard, start);
    // What this task knows Redis holds for the shard: a later apply that finds Redis
    // below it learns that Redis lost writes, and the shard is re-read from there.
    let mut applied_through: Option<Position> = in_redis;
    let mut unsaved: Option<Position> = None;
    let mut last_checkpoint = Instant::now();
    loop {
        let batch = tokio::select! {
            biased;
            _ = lost.cancelled() => return ShardExit::LeaseLost,
            _ = shutdown.cancelled() => break,
            b = reader.next_batch() => b,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => return ShardExit::Failed(e.to_string()),
        };
        if !batch.records.is_empty() {
            let delta = fold(&batch.records);
            match apply_until_done(
                ctx,
                &shard,
                applied_through.as_ref(),
                &delta,
                &lost,
                &shutdown,
            )
            .await
            {
                Applied::Done => {
                    unsaved = batch.records.last().map(|r| r.pos.clone());
                    applied_through.clone_from(&unsaved);
                }
                Applied::Rewind(stored) => {
                    // Redis lost writes (restart under appendfsync everysec, failover):
                    // re-read from what it holds. Positions beyond it are not saved.
                    metrics::counter!("tradeflow_consumer_redis_rewinds_total").increment(1);
                    tracing::warn!(%shard, redis_position = ?stored, applied_through = ?applied_through,
                        "Redis holds less than was applied (lost writes); re-reading the shard from its position");
                    let start = stored
                        .clone()
                        .map_or(first_start.clone(), StartPosition::After);
                    reader = open_reader(ctx, &shard, start);
                    applied_through = stored;
                    unsaved = None;
                    continue;
                }
                Applied::Stopped(exit) => {
                    // Nothing of this batch may be checkpointed: it was not applied.
                    return checkpoint_then(ctx, &shard, unsaved, exit).await;
                }
            }
        }
        ctx.health.progress();
        if let Some(children) = batch.end {
            return finish_shard(ctx, &shard, &children).await;
        }
        if unsaved.is_some() && last_checkpoint.elapsed() >= ctx.checkpoint_interval {
            let pos = unsaved.take().expect("checked");
            match ctx
                .leases
                .checkpoint(&shard, Checkpoint::At(pos.clone()))
                .await
            {
                Ok(()) => last_checkpoint = Instant::now(),
                Err(LeaseError::Lost { .. }) => return ShardExit::LeaseLost,
                Err(e) => {
                    // Redis holds the exact position; a late checkpoint only means a
                    // short, harmless re-read after a crash.
                    tracing::warn!(%shard, error = %e, "checkpoint failed; will retry");
                    unsaved = Some(pos);
                }
            }
        }
    }
    checkpoint_then(ctx, &shard, unsaved, ShardExit::Requested).await
}

fn open_reader(ctx: &Ctx, shard: &str, start: StartPosition) -> RecordSource {
    match &ctx.fan_out {
        Some(f) => RecordSource::FanOut(FanOutReader::new(
            ctx.kinesis.clone(),
            &ctx.stream,
            shard,
            start,
            f.clone(),
        )),
        None => RecordSource::Polling(ShardReader::new(
            ctx.kinesis.clone(),
            &ctx.stream,
            shard,
            start,
            ctx.reader.clone(),
        )),
    }
}

enum Applied {
    Done,
    /// Redis is behind what this task applied: re-read after this position.
    Rewind(Option<Position>),
    /// The lease was lost or shutdown was requested before the batch was applied.
    Stopped(ShardExit),
}

/// Applies one batch, retrying Redis errors with backoff until it is applied, Redis is
/// found behind `applied_through`, the lease is lost or shutdown is requested.
async fn apply_until_done(
    ctx: &Ctx,
    shard: &str,
    applied_through: Option<&Position>,
    delta: &crate::apply::BatchDelta,
    lost: &CancellationToken,
    shutdown: &CancellationToken,
) -> Applied {
    let mut backoff = Duration::from_millis(100);
    loop {
        match ctx
            .sink
            .apply_after(&ctx.stream, shard, applied_through, delta)
            .await
        {
            Ok(_) => return Applied::Done,
            Err(SinkError::Behind { stored }) => return Applied::Rewind(stored),
            Err(e) => {
                tracing::warn!(%shard, error = %e, backoff_ms = backoff.as_millis() as u64, "Redis apply failed; shard paused, retrying");
            }
        }
        tokio::select! {
            _ = lost.cancelled() => return Applied::Stopped(ShardExit::LeaseLost),
            _ = shutdown.cancelled() => return Applied::Stopped(ShardExit::Requested),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn checkpoint_then(
    ctx: &Ctx,
    shard: &str,
    unsaved: Option<Position>,
    exit: ShardExit,
) -> ShardExit {
    if exit == ShardExit::LeaseLost {
        return exit;
    }
    if let Some(pos) = unsaved {
        match ctx.leases.checkpoint(shard, Checkpoint::At(pos)).await {
            Ok(()) => {}
            Err(LeaseError::Lost { .. }) => return ShardExit::LeaseLost,
            Err(e) => {
                tracing::warn!(%shard, error = %e, "final checkpoint failed; Redis keeps the exact position")
            }
        }
    }
    exit
}

async fn finish_shard(ctx: &Ctx, shard: &str, children: &[String]) -> ShardExit {
    let mut backoff = Duration::from_millis(200);
    for _ in 0..10 {
        match ctx.leases.shard_ended(shard, children).await {
            Ok(()) => {
                metrics::counter!("tradeflow_consumer_shards_ended_total").increment(1);
                tracing::info!(%shard, ?children, "shard fully read; checkpointed SHARD_END");
                return ShardExit::ShardEnd;
            }
            Err(LeaseError::Lost { .. }) => return ShardExit::LeaseLost,
            Err(e) => tracing::warn!(%shard, error = %e, "SHARD_END checkpoint failed; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    // The lease stays ours without SHARD_END; it will be retaken and finished, so the
    // children are never stuck.
    ShardExit::Failed("could not checkpoint SHARD_END".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_shared::SequenceNumber;

    fn pos(s: &str, sub: u64) -> Position {
        Position::new(SequenceNumber::parse(s).unwrap(), sub)
    }

    #[test]
    fn redis_position_wins_over_the_lease_checkpoint() {
        // Redis lost its last writes: DynamoDB ran ahead; re-read from Redis's position.
        assert_eq!(
            start_position(&Checkpoint::At(pos("900", 0)), Some(pos("500", 3))),
            Some(StartPosition::After(pos("500", 3)))
        );
        // No position in Redis (adopting a KCL table): resume from its checkpoint.
        assert_eq!(
            start_position(&Checkpoint::At(pos("900", 2)), None),
            Some(StartPosition::After(pos("900", 2)))
        );
        assert_eq!(
            start_position(&Checkpoint::TrimHorizon, None),
            Some(StartPosition::TrimHorizon)
        );
        assert_eq!(
            start_position(&Checkpoint::ShardEnd, Some(pos("1", 0))),
            None
        );
    }
}
