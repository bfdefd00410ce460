//! The enhanced fan-out reader: one SubscribeToShard event stream per shard, renewed
//! when it ends (the service ends each after 5 minutes; errors end it earlier) from the
//! last event's `ContinuationSequenceNumber`. It yields the same `ReadBatch`es as the
//! polling reader, so the worker treats both alike.

use std::time::Duration;

use aws_sdk_kinesis::types::{ShardIteratorType, SubscribeToShardEventStream};
use aws_sdk_kinesis::Client;
use tokio::time::Instant;
use tradeflow_shared::retry::{Next, Policy, Retry};

use super::reader::{error_text, ReadBatch, ReadError, StartPosition};

mod progress;
mod register;
use progress::starting_position;
pub use progress::{is_shard_end, lifetime_over, Progress, SubscribeFrom};
pub use register::{ensure_consumer, RegisterError};

#[derive(Debug, Clone)]
pub struct FanOutConfig {
    /// The registered stream consumer's ARN.
    pub consumer_arn: String,
    /// Resubscribe after this long even if the service has not ended the subscription
    /// (it does at 5 minutes; a shorter value tests renewal).
    pub subscription_lifetime: Duration,
    /// Backoff after a failed subscription (`retry::Policy`, jittered): the first
    /// wait is at most this; the ceiling doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl FanOutConfig {
    pub fn new(consumer_arn: String) -> Self {
        FanOutConfig {
            consumer_arn,
            subscription_lifetime: Duration::from_secs(300),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

type Events = aws_sdk_kinesis::primitives::event_stream::EventReceiver<
    SubscribeToShardEventStream,
    aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError,
>;

pub struct FanOutReader {
    client: Client,
    stream: String,
    shard_id: String,
    cfg: FanOutConfig,
    progress: Progress,
    events: Option<(Events, Instant)>,
    /// Failed subscriptions and broken event streams in a row: backoff with jitter, for
    /// as long as the lease is held (observable).
    retry: Retry,
    ended: bool,
    /// Consecutive events without records (see `probe_end`).
    idle_events: u32,
}

/// Empty events (about one a second) after which a closed shard is checked for.
const IDLE_EVENTS_BEFORE_PROBE: u32 = 10;

impl FanOutReader {
    pub fn new(
        client: Client,
        stream: &str,
        shard_id: &str,
        start: StartPosition,
        cfg: FanOutConfig,
    ) -> Self {
        FanOutReader {
            client,
            stream: stream.to_string(),
            shard_id: shard_id.to_string(),
            retry: Retry::new(
                "consumer.subscribe_to_shard",
                Policy::forever(cfg.min_backoff, cfg.max_backoff),
            ),
            cfg,
            progress: Progress::new(start),
            events: None,
            ended: false,
            idle_events: 0,
        }
    }

    /// The next event's records. Resubscribes itself when a subscription ends or fails
    /// (with backoff), so an error here is one a retry cannot fix.
    pub async fn next_batch(&mut self) -> Result<ReadBatch, ReadError> {
        if self.ended {
            return Ok(ReadBatch::after_end());
        }
        loop {
            if let Some((_, opened)) = &self.events {
                if lifetime_over(*opened, Instant::now(), self.cfg.subscription_lifetime) {
                    tracing::debug!(shard = %self.shard_id, "subscription lifetime over; resubscribing");
                    self.events = None;
                }
            }
            if self.events.is_none() {
                self.subscribe().await?;
                continue;
            }
            let (events, opened) = self.events.as_mut().expect("checked");
            let remaining = self
                .cfg
                .subscription_lifetime
                .saturating_sub(opened.elapsed());
            let next = match tokio::time::timeout(remaining, events.recv()).await {
                Err(_) => continue, // lifetime over: renewed at the top of the loop
                Ok(n) => n,
            };
            let event = match next {
                Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(ev))) => ev,
                Ok(Some(other)) => {
                    tracing::debug!(shard = %self.shard_id, ?other, "unknown event ignored");
                    continue;
                }
                Ok(None) => {
                    // The service ended the subscription (every 5 minutes): renew. One
                    // that ends at once is treated as a failure, so renewals back off.
                    let short = opened.elapsed() < Duration::from_secs(1);
                    self.events = None;
                    if short {
                        self.failed("ended_early", "subscription ended at once")
                            .await;
                    }
                    continue;
                }
                Err(e) => {
                    self.events = None;
                    self.failed(
                        "stream",
                        &format!("event stream failed: {}", error_text(&e)),
                    )
                    .await;
                    continue;
                }
            };
            self.retry.succeeded(&self.shard_id);
            let mut batch = self.batch_of(&event);
            if batch.kinesis_records > 0 || batch.end.is_some() {
                self.idle_events = 0;
            } else {
                self.idle_events += 1;
                if self.idle_events >= IDLE_EVENTS_BEFORE_PROBE {
                    self.idle_events = 0;
                    if let Some(children) = self.probe_end().await {
                        self.ended = true;
                        self.events = None;
                        batch.end = Some(children);
                    }
                }
            }
            return Ok(batch);
        }
    }

    fn batch_of(&mut self, ev: &aws_sdk_kinesis::types::SubscribeToShardEvent) -> ReadBatch {
        let continuation = ev.continuation_sequence_number();
        let page = self.progress.take_event(ev.records(), continuation);
        page.report_metrics(&self.shard_id, Some(ev.millis_behind_latest()));
        let mut batch = ReadBatch::of(page, Some(ev.millis_behind_latest()));
        if is_shard_end(continuation, ev.child_shards().len()) {
            self.ended = true;
            self.events = None;
            batch.end = Some(
                ev.child_shards()
                    .iter()
                    .map(|c| c.shard_id().to_string())
                    .collect(),
            );
        }
        batch
    }

    /// Whether the shard is closed and read through the continuation: its children if
    /// so. Some services (kinesis-mock) keep sending empty events on a closed parent
    /// instead of `ChildShards`; GetRecords after the continuation tells the end for
    /// sure (no next iterator). Errors mean "not known": the subscription goes on.
    async fn probe_end(&self) -> Option<Vec<String>> {
        let SubscribeFrom::AfterSequence(after) = self.progress.subscribe_from() else {
            return None;
        };
        let it = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(&self.shard_id)
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(after)
            .send()
            .await
            .ok()?
            .shard_iterator()?
            .to_string();
        let out = self
            .client
            .get_records()
            .shard_iterator(it)
            .limit(1)
            .send()
            .await
            .ok()?;
        if out.records().is_empty() && out.next_shard_iterator().is_none() {
            tracing::info!(shard = %self.shard_id, "closed shard read to its end (GetRecords probe)");
            return Some(
                out.child_shards()
                    .iter()
                    .map(|c| c.shard_id().to_string())
                    .collect(),
            );
        }
        None
    }

    async fn subscribe(&mut self) -> Result<(), ReadError> {
        let from = self.progress.subscribe_from();
        let pos = starting_position(&from);
        let result = self
            .client
            .subscribe_to_shard()
            .consumer_arn(&self.cfg.consumer_arn)
            .shard_id(&self.shard_id)
            .starting_position(pos)
            .customize()
            .config_override(
                aws_sdk_kinesis::config::Builder::default()
                    .timeout_config(tradeflow_shared::aws::streaming_call_timeouts()),
            )
            .send()
            .await;
        match result {
            Ok(out) => {
                metrics::counter!("tradeflow_consumer_fanout_subscriptions_total").increment(1);
                tracing::debug!(shard = %self.shard_id, ?from, "subscribed");
                self.events = Some((out.event_stream, Instant::now()));
                Ok(())
            }
            Err(e) => {
                let svc = e.as_service_error();
                if svc.is_some_and(|s| s.is_resource_not_found_exception()) {
                    metrics::counter!("tradeflow_consumer_fanout_errors_total", "kind" => "not_found")
                        .increment(1);
                    return Err(ReadError::NotFound {
                        stream: self.stream.clone(),
                        shard: self.shard_id.clone(),
                    });
                }
                if svc.is_some_and(|s| s.is_access_denied_exception()) {
                    metrics::counter!("tradeflow_consumer_fanout_errors_total", "kind" => "access_denied")
                        .increment(1);
                    return Err(ReadError::Fatal {
                        stream: self.stream.clone(),
                        shard: self.shard_id.clone(),
                        message: format!("access denied: {}", error_text(&e)),
                    });
                }
                // ResourceInUse: the previous owner's subscription is still open (a lease
                // just moved); it ends within 5 minutes, so retrying with backoff works.
                let kind = if svc.is_some_and(|s| s.is_resource_in_use_exception()) {
                    "resource_in_use"
                } else if svc.is_some_and(|s| s.is_limit_exceeded_exception()) {
                    "limit_exceeded"
                } else {
                    "subscribe"
                };
                self.failed(
                    kind,
                    &format!("SubscribeToShard failed: {}", error_text(&e)),
                )
                .await;
                Ok(())
            }
        }
    }

    async fn failed(&mut self, kind: &'static str, why: &str) {
        metrics::counter!("tradeflow_consumer_fanout_errors_total", "kind" => kind).increment(1);
        let shard = self.shard_id.clone();
        if let Next::RetryIn(wait) = self.retry.failed(&shard, &why) {
            tokio::time::sleep(wait).await;
        }
    }
}
