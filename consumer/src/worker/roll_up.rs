//! The worker's hourly roll-up: about once a minute, every closed hour still pending is
//! rolled up into hour and day buckets (`RedisSink::seal_hours`). Every worker runs it;
//! the step is atomic and idempotent per symbol, so racing workers cost a few reads.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tradeflow_shared::kline::HOUR_MS;
use tradeflow_shared::telemetry::now_ms;

use super::Ctx;

pub(super) async fn run(ctx: Arc<Ctx>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // The hours before the current one (by the clock) are closed.
        let Some(closed) = (now_ms() / HOUR_MS).checked_sub(1) else {
            continue;
        };
        match ctx.sink.seal_hours(closed).await {
            Ok(done) => {
                metrics::counter!("tradeflow_consumer_roll_ups_total").increment(done.hours);
                if done.foreign > 0 {
                    metrics::counter!("tradeflow_consumer_roll_up_failures_total", "reason" => "foreign_value")
                        .increment(done.foreign);
                }
            }
            Err(e) => {
                metrics::counter!("tradeflow_consumer_roll_up_failures_total", "reason" => "redis")
                    .increment(1);
                tracing::warn!(error = %e, "rolling closed hours up failed; next pass in {every:?}");
            }
        }
    }
}
