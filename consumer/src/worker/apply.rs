//! Applying one batch to Redis under a shard's lease: waiting out an unavailable Redis
//! as long as it takes (observable), giving up on a refused batch after a few tries.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tradeflow_shared::retry::{GiveUp, Next, Policy, Retry};
use tradeflow_shared::Position;

use super::{Ctx, ShardExit, REDIS_RETRY};
use crate::apply::{ShardEndCheck, SinkError};

/// Times a batch refused by Redis (not unavailable: a script error, a permission) is
/// tried before the shard task fails and gives its lease up.
const REFUSED_APPLY_ATTEMPTS: u32 = 5;

pub(super) enum Applied {
    Done,
    /// Redis is behind what this task applied: re-read after this position.
    Rewind(Option<Position>),
    /// The lease was lost or shutdown was requested before the batch was applied.
    Stopped(ShardExit),
}

/// Before SHARD_END (final: see `apply::redis_sink::shard_end`): waits until Redis holds
/// the shard's last writes durably, as long as it takes (observable), or finds Redis
/// behind `applied_through` (re-read from there).
pub(super) async fn shard_end_durable(
    ctx: &Ctx,
    shard: &str,
    applied_through: Option<&Position>,
    lost: &CancellationToken,
    shutdown: &CancellationToken,
) -> Applied {
    let call = || async {
        match ctx
            .sink
            .check_shard_end(&ctx.stream, shard, applied_through)
            .await?
        {
            ShardEndCheck::Durable => {}
            ShardEndCheck::Unconfirmed(why) => {
                metrics::counter!("tradeflow_consumer_shard_ends_unconfirmed_total").increment(1);
                warn_unconfirmed_once(why);
            }
        }
        Ok(())
    };
    let ops = (
        "consumer.redis_shard_end",
        "consumer.redis_shard_end_refused",
    );
    until_done(shard, ops, "the shard-end check", call, lost, shutdown).await
}

/// Once per process: the same reason would repeat for every shard that ends.
fn warn_unconfirmed_once(why: &'static str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            reason = why,
            "SHARD_END checkpoints are written without Redis confirming the parent's last writes durable; a Redis crash within its fsync window can then lose them for good (see README, \"Exactly once\")"
        )
    });
}

/// Applies one batch, retrying Redis errors with backoff until it is applied, Redis is
/// found behind `applied_through`, the lease is lost or shutdown is requested.
pub(super) async fn apply_until_done(
    ctx: &Ctx,
    shard: &str,
    applied_through: Option<&Position>,
    delta: &crate::apply::BatchDelta,
    lost: &CancellationToken,
    shutdown: &CancellationToken,
) -> Applied {
    let call = || async {
        ctx.sink
            .apply_after(&ctx.stream, shard, applied_through, delta)
            .await
            .map(|_| ())
    };
    let ops = ("consumer.redis_apply", "consumer.redis_apply_refused");
    until_done(shard, ops, "the batch", call, lost, shutdown).await
}

/// One Redis call under a shard's lease, until it succeeds, finds Redis behind (rewind),
/// the lease is lost or shutdown is requested. Redis unavailable: waited for as long as
/// it takes (the shard is paused; the watchdog and the retry metric `op` say so).
/// Refused work (a script error, a permission) is tried a few times, then the shard
/// task fails and gives its lease up.
async fn until_done<F, Fut>(
    shard: &str,
    (op, refused_op): (&'static str, &'static str),
    what: &str,
    mut call: F,
    lost: &CancellationToken,
    shutdown: &CancellationToken,
) -> Applied
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), SinkError>>,
{
    let mut unavailable = Retry::new(op, REDIS_RETRY);
    let mut refused = Retry::new(
        refused_op,
        Policy::new(
            Duration::from_millis(200),
            Duration::from_secs(5),
            GiveUp::Attempts(REFUSED_APPLY_ATTEMPTS),
        ),
    );
    loop {
        let error = match call().await {
            Ok(()) => {
                unavailable.succeeded(shard);
                return Applied::Done;
            }
            Err(SinkError::Behind { stored }) => return Applied::Rewind(stored),
            Err(e) => e,
        };
        let next = if error.is_retryable() {
            unavailable.failed(shard, &error)
        } else {
            refused.failed(shard, &error)
        };
        let Next::RetryIn(wait) = next else {
            metrics::counter!("tradeflow_consumer_shard_task_failures_total", "reason" => "redis_refused")
                .increment(1);
            return Applied::Stopped(ShardExit::Failed(format!(
                "Redis refused {what} {REFUSED_APPLY_ATTEMPTS} times: {error}"
            )));
        };
        tokio::select! {
            _ = lost.cancelled() => return Applied::Stopped(ShardExit::LeaseLost),
            _ = shutdown.cancelled() => return Applied::Stopped(ShardExit::Requested),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
