//! The checkpoints a shard task writes when it stops: where it stopped, or SHARD_END.

use std::time::Duration;

use tradeflow_shared::retry::{GiveUp, Next, Policy, Retry};
use tradeflow_shared::Position;

use super::{Ctx, ShardExit};
use crate::lease::{Checkpoint, LeaseError};

pub(super) async fn checkpoint_then(
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

pub(super) async fn finish_shard(ctx: &Ctx, shard: &str, children: &[String]) -> ShardExit {
    let mut retry = Retry::new(
        "consumer.shard_end_checkpoint",
        Policy::new(
            Duration::from_millis(200),
            Duration::from_secs(5),
            GiveUp::Attempts(10),
        ),
    );
    loop {
        match ctx.leases.shard_ended(shard, children).await {
            Ok(()) => {
                metrics::counter!("tradeflow_consumer_shards_ended_total").increment(1);
                tracing::info!(%shard, ?children, "shard fully read; checkpointed SHARD_END");
                return ShardExit::ShardEnd;
            }
            Err(LeaseError::Lost { .. }) => return ShardExit::LeaseLost,
            Err(e) => match retry.failed(shard, &e) {
                Next::RetryIn(wait) => tokio::time::sleep(wait).await,
                Next::GiveUp => break,
            },
        }
    }
    // The lease stays ours without SHARD_END; it will be retaken and finished, so the
    // children are never stuck.
    ShardExit::Failed("could not checkpoint SHARD_END".into())
}
