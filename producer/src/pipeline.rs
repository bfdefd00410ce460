//! Wires a source to Kinesis: bounded channel → per-symbol dedupe and gap check →
//! per-shard batcher → at most one PutRecords delivery in flight per shard (several
//! shards in parallel, `max_in_flight` in all). On shutdown it stops the source, keeps
//! taking what the source already sent, flushes everything and, past the drain
//! deadline, reports whatever is still unwritten as lost.
//!
//! Here: settings, the report, and `run` (configuration → source task + pipeline). The
//! loop is in `writer.rs`, what happens to each trade in `intake.rs`, the shard map in
//! `shard_refresh.rs`, the source tasks in `sources.rs`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tradeflow_shared::telemetry::Health;

use crate::batcher::Limits;
use crate::config::{Config, ConfigError, OverflowPolicy};
use crate::sink::{KinesisSink, RetryPolicy, SinkError};
use crate::source::SourceTrade;
use sources::spawn_source;

mod intake;
mod shard_refresh;
mod sources;
mod writer;

pub use writer::run_with;

/// Capacity of the channel between the sources and the pipeline.
pub const CHANNEL_CAPACITY: usize = 4096;
/// Symbols the dedupe remembers (Binance lists a few thousand).
pub const MAX_SYMBOLS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    pub max_in_flight: usize,
    pub buffer_records: usize,
    pub overflow: OverflowPolicy,
    pub retry: RetryPolicy,
    pub shard_refresh: Duration,
    pub drain_timeout: Duration,
    /// Buffered trades with no write for this long: the watchdog says the producer is
    /// stalled (`/readyz`, `tradeflow_producer_stalled`).
    pub stall_timeout: Duration,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        Settings {
            limits: Limits {
                max_records: c.batch_records,
                max_bytes: c.batch_bytes,
                per_key_limit: c.per_key_limit(),
                aggregate: c.aggregate.then_some(c.aggregate_bytes),
                linger: c.linger,
            },
            max_in_flight: c.max_in_flight,
            buffer_records: c.buffer_records,
            overflow: c.overflow,
            retry: RetryPolicy {
                base: c.retry_base,
                max: c.retry_max,
            },
            shard_refresh: c.shard_refresh,
            drain_timeout: c.drain_timeout,
            stall_timeout: c.telemetry.stall_timeout,
        }
    }
}

/// What one run did. At the end `accepted == written_trades + lost`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub received: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub missing: u64,
    pub dropped: u64,
    pub written_trades: u64,
    pub written_records: u64,
    pub lost: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("source failed: {0}")]
    Source(String),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("internal: {0}")]
    Internal(String),
}

/// Runs the producer described by `config` until the source ends (finite sources) or
/// `shutdown`, then drains.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<Report, PipelineError> {
    run_with_health(config, shutdown, Health::new()).await
}

pub async fn run_with_health(
    config: Config,
    shutdown: CancellationToken,
    health: Arc<Health>,
) -> Result<Report, PipelineError> {
    config.validate()?;
    let sdk = tradeflow_shared::aws::sdk_config(&config.aws).await;
    let client = tradeflow_shared::aws::kinesis_client(&sdk, &config.aws);
    let sink = KinesisSink::new(&client, config.stream.clone());
    let (tx, rx) = mpsc::channel::<SourceTrade>(CHANNEL_CAPACITY);
    let source_stop = shutdown.child_token();
    let source = spawn_source(&config, tx, source_stop.clone())?;
    let report = run_with(sink, rx, Settings::from_config(&config), shutdown, health).await;
    source_stop.cancel();
    let source_result = source
        .await
        .map_err(|e| PipelineError::Source(format!("source task: {e}")))?;
    let report = report?;
    source_result.map_err(PipelineError::Source)?;
    Ok(report)
}
