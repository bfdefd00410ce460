//! The worker: takes leases from the coordinator, runs one task per held shard
//! (read → decode → fold → apply to Redis → checkpoint), and on shutdown finishes the
//! batch in hand, checkpoints and gives its leases up.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tradeflow_shared::retry::{Next, Policy, Retry};
use tradeflow_shared::telemetry::Health;
use tradeflow_shared::watchdog::Watchdog;
use tradeflow_shared::{aws, Position};

use crate::apply::{fold, RedisSink, SinkConfig};
use crate::config::{Config, InitialPositionArg};
use crate::lease::{
    Checkpoint, HeldLease, InitialPosition, LeaseConfig, LeaseCoordinator, LeaseError, LeaseHandle,
    LeaseTable,
};
use crate::shard::budget::ReadBudget;
use crate::shard::fanout::{self, FanOutConfig, FanOutReader};
use crate::shard::reader::{ReaderConfig, ShardReader, StartPosition};
use crate::shard::RecordSource;
use crate::stream_identity::{self, Checked};

mod apply;
mod checkpoint;
mod roll_up;
mod tasks;
use apply::{apply_until_done, shard_end_durable, Applied};
use checkpoint::{checkpoint_then, finish_shard};
use tasks::{end_of_task, ShardTasks};

/// Waiting for Redis or DynamoDB at start: as long as it takes, observable.
pub(crate) const STARTUP_RETRY: Policy =
    Policy::forever(Duration::from_millis(200), Duration::from_secs(10));
/// Redis unavailable under a shard: as long as it takes (giving up would only move the
/// same wait to another worker), observable.
const REDIS_RETRY: Policy = Policy::forever(Duration::from_millis(100), Duration::from_secs(5));

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
    watchdog: Arc<Watchdog>,
    hooks: Hooks,
}

/// A seam for tests that must fail a part of the worker from inside (there is no
/// input that makes a shard task panic; a bug would). Production passes the default.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Called with the shard id at the start of every shard task.
    pub on_shard_start: Option<ShardHook>,
}

/// A hook called with a shard id.
pub type ShardHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Runs a worker until `shutdown` is cancelled, then drains and releases its leases.
pub async fn run(
    cfg: Config,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_hooks(cfg, health, shutdown, Hooks::default()).await
}

/// `run`, with test hooks.
pub async fn run_with_hooks(
    cfg: Config,
    health: Arc<Health>,
    shutdown: CancellationToken,
    hooks: Hooks,
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
    let checked = stream_identity::check(
        &kinesis,
        &sink,
        &table,
        &cfg.stream,
        cfg.reset_recreated_stream,
        &shutdown,
    )
    .await?;
    let lease_cfg = LeaseConfig {
        table_name: cfg.application_name.clone(),
        worker_id: worker_id.clone(),
        failover_time: cfg.failover_time,
        renew_interval: cfg.failover_time / 3,
        take_interval: cfg.take_interval(),
        unsettled_take_interval: cfg.unsettled_take_interval(),
        max_leases_per_worker: cfg.max_leases_per_worker,
        // A recreated stream is read from its start: nothing of it was counted yet.
        initial_position: match checked {
            Checked::Reset => InitialPosition::TrimHorizon,
            Checked::Current => initial_position(&cfg),
        },
        shard_sync_interval: cfg.shard_sync_interval,
    };
    // The coordinator runs until told to stop after the shard tasks have drained, so
    // it keeps renewing while they finish their last batch.
    let coordinator_stop = CancellationToken::new();
    // A DynamoDB fault at start (throttling, 5xx, a timeout) is waited out like any
    // other; only a refusal a retry cannot fix ends the process.
    let mut retry = Retry::new("consumer.lease_table_start", STARTUP_RETRY);
    let (leases, coordinator) = loop {
        match LeaseCoordinator::start(
            table.clone(),
            kinesis.clone(),
            cfg.stream.clone(),
            lease_cfg.clone(),
            coordinator_stop.clone(),
        )
        .await
        {
            Ok(started) => break started,
            Err(e) if e.is_retryable() => {
                if !retry.wait_after(&cfg.application_name, &e, &shutdown).await {
                    return Ok(());
                }
            }
            Err(e) => return Err(e).context("starting the lease coordinator"),
        }
    };
    tracing::info!(worker = %worker_id, stream = %cfg.stream, table = %cfg.application_name, "worker started");
    let watchdog = Watchdog::new("tradeflow_consumer_stalled", cfg.telemetry.stall_timeout);
    health.watch_with(watchdog.clone());
    let watchdog_stop = CancellationToken::new();
    let _watchdog_stop = watchdog_stop.clone().drop_guard();
    tokio::spawn(watchdog.clone().run(Duration::from_secs(1), watchdog_stop));
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
            idle_max_wait: cfg.idle_max_wait,
            end_settle: cfg.shard_end_settle,
            ..ReaderConfig::default()
        },
        fan_out,
        checkpoint_interval: cfg.checkpoint_interval,
        health: health.clone(),
        watchdog,
        hooks,
    });

    let roll_up_stop = CancellationToken::new();
    let _roll_up_stop = roll_up_stop.clone().drop_guard();
    tokio::spawn(roll_up::run(
        ctx.clone(),
        cfg.roll_up_interval,
        roll_up_stop,
    ));

    let mut tasks = ShardTasks::default();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            held = leases.next_acquired() => match held {
                Some(held) => {
                    let ctx = ctx.clone();
                    let stop = shutdown.clone();
                    let shard = held.shard_id.clone();
                    tasks.spawn(shard, async move { process_shard(&ctx, held, stop).await });
                }
                None => {
                    tracing::error!("lease coordinator stopped; shutting down");
                    break;
                }
            },
            Some(done) = tasks.join_next() => end_of_task(&leases, done).await,
            _ = heartbeat.tick() => {
                // An idle worker (no lease, or idle shards) is still healthy.
                if tasks.is_empty() { health.progress(); }
            }
        }
    }

    tracing::info!(shards = tasks.len(), "draining shard tasks");
    health.set_ready(false);
    while let Some(done) = tasks.join_next().await {
        end_of_task(&leases, done).await;
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
        url: cfg.redis.url.clone(),
        key_prefix: cfg.key_prefix.clone(),
        minute_ttl: cfg.minute_ttl,
        hour_ttl: cfg.hour_ttl,
        day_ttl: cfg.day_ttl,
        dead_letter_maxlen: cfg.dead_letter_maxlen,
        ca_file: cfg.redis.ca_file.clone(),
        wait_replicas: cfg.redis_wait_replicas,
        wait_timeout: cfg.redis_wait_timeout,
    };
    let mut retry = Retry::new("consumer.redis_connect", STARTUP_RETRY);
    loop {
        match RedisSink::connect(&sink_cfg).await {
            Ok(s) => return Ok(Some(s)),
            Err(e) if e.is_retryable() => {
                if !retry.wait_after("", &e, shutdown).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(anyhow::anyhow!("Redis: {e}")),
        }
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
    if let Some(hook) = &ctx.hooks.on_shard_start {
        hook(&shard);
    }
    let lost = held.lost.clone();
    let reading = ctx.watchdog.watch("read", shard.clone());
    let applying = ctx.watchdog.watch("apply", shard.clone());
    let mut retry = Retry::new("consumer.redis_position", REDIS_RETRY);
    applying.busy();
    let in_redis = loop {
        tokio::select! {
            _ = lost.cancelled() => return ShardExit::LeaseLost,
            _ = shutdown.cancelled() => return ShardExit::Requested,
            r = ctx.sink.stored_position(&ctx.stream, &shard) => match r {
                Ok(p) => break p,
                Err(e) if e.is_retryable() => {
                    let Next::RetryIn(wait) = retry.failed(&shard, &e) else { unreachable!("retried forever") };
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return ShardExit::Failed(format!("reading the shard's position from Redis: {e}")),
            }
        }
    };
    applying.idle();
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
        reading.busy();
        let batch = tokio::select! {
            biased;
            _ = lost.cancelled() => return ShardExit::LeaseLost,
            _ = shutdown.cancelled() => break,
            b = reader.next_batch() => b,
        };
        reading.idle();
        let batch = match batch {
            Ok(b) => b,
            Err(e) => return ShardExit::Failed(e.to_string()),
        };
        // Redis found behind what this task applied (it lost writes): where it stands.
        let rewound = 'step: {
            if !batch.records.is_empty() {
                applying.busy();
                let delta = fold(&batch.records);
                let at = applied_through.as_ref();
                match apply_until_done(ctx, &shard, at, &delta, &lost, &shutdown).await {
                    Applied::Done => {
                        applying.idle();
                        unsaved = batch.records.last().map(|r| r.pos.clone());
                        applied_through.clone_from(&unsaved);
                    }
                    Applied::Rewind(stored) => break 'step Some(stored),
                    // Nothing of this batch may be checkpointed: it was not applied.
                    Applied::Stopped(exit) => {
                        return checkpoint_then(ctx, &shard, unsaved, exit).await
                    }
                }
            }
            ctx.health.progress();
            if let Some(children) = batch.end {
                applying.busy();
                let at = applied_through.as_ref();
                match shard_end_durable(ctx, &shard, at, &lost, &shutdown).await {
                    Applied::Done => return finish_shard(ctx, &shard, &children).await,
                    Applied::Rewind(stored) => break 'step Some(stored),
                    Applied::Stopped(exit) => {
                        return checkpoint_then(ctx, &shard, unsaved, exit).await
                    }
                }
            }
            None
        };
        if let Some(stored) = rewound {
            applying.idle();
            reader = rewind(ctx, &shard, &first_start, &applied_through, &stored);
            applied_through = stored;
            unsaved = None;
            continue;
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

/// Redis lost writes (restart under appendfsync everysec, failover): the shard is read
/// again from what Redis holds (`stored`); positions beyond it are not saved.
fn rewind(
    ctx: &Ctx,
    shard: &str,
    first_start: &StartPosition,
    applied_through: &Option<Position>,
    stored: &Option<Position>,
) -> RecordSource {
    metrics::counter!("tradeflow_consumer_redis_rewinds_total").increment(1);
    tracing::warn!(%shard, redis_position = ?stored, applied_through = ?applied_through,
        "Redis holds less than was applied (lost writes); re-reading the shard from its position");
    let start = stored
        .clone()
        .map_or(first_start.clone(), StartPosition::After);
    open_reader(ctx, shard, start)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::test_support::pos;

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
