//! The Kinesis side: ListShards into a `ShardMap`, one PutRecords call, and `deliver`,
//! which writes one batch completely — resending only the failed entries, with
//! exponential backoff and jitter — before it returns. The caller keeps one delivery
//! per shard in flight, so a shard's next batch never overtakes a retry.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;
use tokio_util::sync::CancellationToken;

use crate::batcher::{payload_units, Batch, Entry};
use crate::metrics;
use crate::put_result::{split_results, EntryResult};
use crate::shard_map::{ShardMap, ShardMapError, ShardRange};
use tradeflow_shared::retry::{Next, Policy, Retry};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("stream {stream}: not found")]
    NotFound { stream: String },
    #[error("stream {stream}: throttled ({code})")]
    Throttled { stream: String, code: String },
    #[error("stream {stream}: {op} failed ({code}): {message}")]
    Call {
        stream: String,
        op: &'static str,
        code: String,
        message: String,
    },
    #[error("stream {stream}: bad shard list: {source}")]
    Shards {
        stream: String,
        #[source]
        source: ShardMapError,
    },
}

impl SinkError {
    /// A short, bounded label for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SinkError::NotFound { .. } => "ResourceNotFoundException",
            SinkError::Throttled { code, .. } | SinkError::Call { code, .. } => {
                metrics::bounded_code(code)
            }
            SinkError::Shards { .. } => "bad_shards",
        }
    }
}

/// The narrow seam to Kinesis.
#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: Client,
    stream: String,
}

/// Per-attempt timeout: a call that hangs is failed and retried instead of stalling a shard.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

impl KinesisSink {
    /// Wraps a client. The SDK's own retries are turned off: `deliver` retries, sees
    /// every failure and counts it.
    pub fn new(client: &Client, stream: impl Into<String>) -> Self {
        let conf = client
            .config()
            .to_builder()
            .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
            .timeout_config(
                // The client's own bounds (connect, whole operation), with this attempt
                // bound made explicit: the sink's retry loop relies on it.
                client
                    .config()
                    .timeout_config()
                    .map(|t| t.to_builder())
                    .unwrap_or_default()
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .build();
        KinesisSink {
            client: Client::from_conf(conf),
            stream: stream.into(),
        }
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The stream's open shards (closed parents of a reshard are left out).
    pub async fn list_shards(&self) -> Result<ShardMap, SinkError> {
        let mut ranges = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            let out = req.send().await.map_err(|e| self.error("ListShards", e))?;
            for s in out.shards() {
                let open = s
                    .sequence_number_range()
                    .is_none_or(|r| r.ending_sequence_number().is_none());
                let Some(h) = s.hash_key_range() else {
                    continue;
                };
                let (Ok(start), Ok(end)) = (
                    h.starting_hash_key().parse::<u128>(),
                    h.ending_hash_key().parse::<u128>(),
                ) else {
                    continue;
                };
                if open {
                    ranges.push(ShardRange {
                        shard_id: s.shard_id().to_string(),
                        start,
                        end,
                    });
                }
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        metrics::counter_shard_refresh();
        ShardMap::new(ranges).map_err(|source| SinkError::Shards {
            stream: self.stream.clone(),
            source,
        })
    }

    /// One PutRecords call; the per-entry answers in request order.
    pub async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryResult>, SinkError> {
        let records: Vec<PutRecordsRequestEntry> = entries
            .iter()
            .map(|e| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&e.partition_key)
                    .data(Blob::new(e.data.clone()))
                    .build()
                    .expect("data and partition key are set")
            })
            .collect();
        let out = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(records))
            .send()
            .await
            .map_err(|e| self.error("PutRecords", e))?;
        Ok(out
            .records()
            .iter()
            .map(|r| match (r.error_code(), r.shard_id()) {
                (None, Some(shard)) => EntryResult::Written {
                    shard_id: shard.to_string(),
                },
                (code, _) => EntryResult::Failed {
                    code: code.unwrap_or("missing_shard_id").to_string(),
                },
            })
            .collect())
    }

    fn error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        op: &'static str,
        e: aws_sdk_kinesis::error::SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
    ) -> SinkError {
        let code = e.code().map(str::to_string);
        let message = e
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}", aws_sdk_kinesis::error::DisplayErrorContext(&e)));
        let stream = self.stream.clone();
        match code.as_deref() {
            Some("ResourceNotFoundException") => SinkError::NotFound { stream },
            Some(
                c @ ("ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "KMSThrottlingException"
                | "LimitExceededException"),
            ) => SinkError::Throttled {
                stream,
                code: c.to_string(),
            },
            _ => SinkError::Call {
                stream,
                op,
                code: code.unwrap_or_else(|| {
                    if matches!(e, aws_sdk_kinesis::error::SdkError::TimeoutError(_)) {
                        "timeout".into()
                    } else {
                        "dispatch".into()
                    }
                }),
                message,
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

/// How a batch ended.
#[derive(Debug, Default)]
pub struct Delivery {
    pub shard: usize,
    pub written_records: u64,
    pub written_trades: u64,
    /// Entries given up because `abort` fired (the drain deadline). Their trades are lost
    /// — or, if the abort cut a call short, possibly written.
    pub unwritten: Vec<Entry>,
    /// A sign the shard map is stale (entry on another shard, stream/shard not found).
    pub stale_map: bool,
}

/// Writes every entry of `batch`, retrying failed entries (only those) and failed calls
/// with backoff, until all are written or `abort` is cancelled.
pub async fn deliver(
    sink: &KinesisSink,
    batch: Batch,
    policy: RetryPolicy,
    abort: &CancellationToken,
) -> Delivery {
    let mut d = Delivery {
        shard: batch.shard,
        ..Delivery::default()
    };
    let mut remaining = batch.entries;
    // Forever: giving up would lose accepted trades. The drain deadline (`abort`) is
    // the only end; the retry's metric and log, and the watchdog, make a long wait seen.
    let mut retry = Retry::new(
        "producer.put_records",
        Policy::forever(policy.base, policy.max),
    );
    loop {
        if abort.is_cancelled() {
            d.unwritten = remaining;
            return d;
        }
        let started = Instant::now();
        let answer = tokio::select! {
            r = sink.put_records(&remaining) => r,
            _ = abort.cancelled() => {
                d.unwritten = remaining;
                return d;
            }
        };
        let secs = started.elapsed().as_secs_f64();
        let last_code: String;
        match answer {
            Ok(results) => {
                let split = split_results(remaining, &results, &batch.shard_id);
                d.stale_map |= split.misrouted;
                let all_ok = split.failed.is_empty();
                metrics::put_call(if all_ok { "ok" } else { "partial" }, secs);
                account_written(&mut d, &split.written);
                if all_ok {
                    retry.succeeded(&batch.shard_id);
                    return d;
                }
                for (_, code) in &split.failed {
                    metrics::entry_failed(code, 1);
                    metrics::entries_retried(code, 1);
                }
                last_code = split.failed[0].1.clone();
                remaining = split.failed.into_iter().map(|(e, _)| e).collect();
            }
            Err(e) => {
                let outcome = match &e {
                    SinkError::Throttled { .. } => {
                        metrics::throttled_call();
                        "throttled"
                    }
                    SinkError::NotFound { .. } => {
                        d.stale_map = true;
                        "not_found"
                    }
                    _ => "error",
                };
                metrics::put_call(outcome, secs);
                metrics::entries_retried(e.code(), remaining.len() as u64);
                last_code = e.to_string();
            }
        }
        let Next::RetryIn(wait) = retry.failed(&batch.shard_id, &last_code) else {
            unreachable!("retried forever");
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = abort.cancelled() => {
                d.unwritten = remaining;
                return d;
            }
        }
    }
}

fn account_written(d: &mut Delivery, written: &[Entry]) {
    if written.is_empty() {
        return;
    }
    let records = written.len() as u64;
    let trades: u64 = written.iter().map(|e| e.trades.len() as u64).sum();
    let bytes: u64 = written.iter().map(|e| e.size() as u64).sum();
    let units: u64 = written.iter().map(|e| payload_units(e.size())).sum();
    let newest = written
        .iter()
        .map(Entry::newest_trade_ms)
        .max()
        .unwrap_or(0);
    metrics::written(records, trades, bytes, units, newest);
    d.written_records += records;
    d.written_trades += trades;
}
