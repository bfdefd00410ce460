//! The enhanced fan-out reader: one SubscribeToShard event stream per shard, renewed
//! when it ends (the service ends each after 5 minutes; errors end it earlier) from the
//! last event's `ContinuationSequenceNumber`. It yields the same `ReadBatch`es as the
//! polling reader, so the worker treats both alike.

use std::time::Duration;
use tradeflow_shared::retry::{Next, Policy, Retry};

use aws_sdk_kinesis::types::{
    ConsumerStatus, ShardIteratorType, StartingPosition, SubscribeToShardEventStream,
};
use aws_sdk_kinesis::Client;
use tokio::time::Instant;
use tradeflow_shared::{Position, SequenceNumber};

use super::reader::{error_text, ReadBatch, ReadError, StartPosition};
use crate::record::decode_checked;

#[derive(Debug, Clone)]
pub struct FanOutConfig {
    /// The registered stream consumer's ARN.
    pub consumer_arn: String,
    /// Resubscribe after this long even if the service has not ended the subscription
    /// (it does at 5 minutes; a shorter value tests renewal).
    pub subscription_lifetime: Duration,
    /// First wait after a failed subscription; doubles up to `max_backoff`.
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

/// Where one SubscribeToShard call starts (pure: what the reader knows → the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeFrom {
    TrimHorizon,
    Latest,
    AtTimestamp(i64),
    /// At this record: used when resuming from a handed-out position, which may sit
    /// inside an aggregate (its remaining sub-records are kept, earlier ones filtered).
    AtSequence(String),
    /// After the last event's continuation: every record up to it was handed out whole.
    AfterSequence(String),
}

/// The reader's bookkeeping, kept apart from I/O so it is unit-tested.
#[derive(Debug, Clone)]
pub struct Progress {
    start: StartPosition,
    /// The last user record handed out (records at or before it are dropped).
    skip_through: Option<Position>,
    /// The last event's continuation sequence number.
    continuation: Option<String>,
}

impl Progress {
    pub fn new(start: StartPosition) -> Self {
        let skip_through = match &start {
            StartPosition::After(p) => Some(p.clone()),
            _ => None,
        };
        Progress {
            start,
            skip_through,
            continuation: None,
        }
    }

    /// Where the next subscription starts.
    pub fn subscribe_from(&self) -> SubscribeFrom {
        if let Some(c) = &self.continuation {
            return SubscribeFrom::AfterSequence(c.clone());
        }
        if let Some(p) = &self.skip_through {
            // Same as the polling reader: AT the record, then filter by sub-sequence, so
            // a checkpoint inside a KPL aggregate neither skips nor repeats user records.
            return SubscribeFrom::AtSequence(p.seq.as_str().to_string());
        }
        match &self.start {
            StartPosition::TrimHorizon => SubscribeFrom::TrimHorizon,
            StartPosition::Latest => SubscribeFrom::Latest,
            StartPosition::AtTimestamp(ms) => SubscribeFrom::AtTimestamp(*ms),
            StartPosition::After(p) => SubscribeFrom::AtSequence(p.seq.as_str().to_string()),
        }
    }

    /// Whether a decoded user record is new (after everything handed out).
    pub fn is_new(&self, pos: &Position) -> bool {
        self.skip_through.as_ref().is_none_or(|s| pos > s)
    }

    /// Records an event once its records were handed out.
    pub fn handed_out(&mut self, last: Option<&Position>, continuation: &str) {
        if let Some(p) = last {
            self.skip_through = Some(p.clone());
        }
        if !continuation.is_empty() {
            self.continuation = Some(continuation.to_string());
        }
    }
}

/// Whether an event marks the end of a closed shard: the service then sends the
/// children and no continuation.
pub fn is_shard_end(continuation: &str, children: usize) -> bool {
    continuation.is_empty() || children > 0
}

/// Whether a subscription opened at `opened` should be renewed by us now.
pub fn lifetime_over(opened: Instant, now: Instant, lifetime: Duration) -> bool {
    now.saturating_duration_since(opened) >= lifetime
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

    pub fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// The next event's records. Resubscribes itself when a subscription ends or fails
    /// (with backoff), so an error here is one a retry cannot fix.
    pub async fn next_batch(&mut self) -> Result<ReadBatch, ReadError> {
        if self.ended {
            return Ok(ReadBatch {
                end: Some(Vec::new()),
                ..Default::default()
            });
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
        let mut batch = ReadBatch {
            millis_behind_latest: Some(ev.millis_behind_latest()),
            ..Default::default()
        };
        // Every aggregate's digest of the page checked side by side.
        let datas: Vec<&[u8]> = ev.records().iter().map(|r| r.data().as_ref()).collect();
        let checks = tradeflow_shared::kpl::check_many(&datas);
        for (r, check) in ev.records().iter().zip(checks) {
            let seq = match SequenceNumber::parse(r.sequence_number()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(shard = %self.shard_id, error = %e, "record with invalid sequence number");
                    metrics::counter!("tradeflow_consumer_bad_sequence_numbers_total").increment(1);
                    continue;
                }
            };
            let data = r.data().as_ref();
            batch.kinesis_records += 1;
            batch.bytes += data.len();
            let first_new = batch.records.len();
            decode_checked(&seq, data, check, &mut batch.records);
            let mut kept = first_new;
            for i in first_new..batch.records.len() {
                if self.progress.is_new(&batch.records[i].pos) {
                    batch.records.swap(kept, i);
                    kept += 1;
                }
            }
            batch.records.truncate(kept);
        }
        let continuation = ev.continuation_sequence_number();
        self.progress
            .handed_out(batch.records.last().map(|r| &r.pos), continuation);
        metrics::gauge!("tradeflow_consumer_millis_behind_latest", "shard" => self.shard_id.clone())
            .set(ev.millis_behind_latest() as f64);
        metrics::counter!("tradeflow_consumer_records_read_total", "shard" => self.shard_id.clone())
            .increment(batch.kinesis_records as u64);
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

fn starting_position(from: &SubscribeFrom) -> StartingPosition {
    let b = StartingPosition::builder();
    let b = match from {
        SubscribeFrom::TrimHorizon => b.r#type(ShardIteratorType::TrimHorizon),
        SubscribeFrom::Latest => b.r#type(ShardIteratorType::Latest),
        SubscribeFrom::AtTimestamp(ms) => b
            .r#type(ShardIteratorType::AtTimestamp)
            .timestamp(aws_sdk_kinesis::primitives::DateTime::from_millis(*ms)),
        SubscribeFrom::AtSequence(s) => b
            .r#type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(s),
        SubscribeFrom::AfterSequence(s) => b
            .r#type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(s),
    };
    b.build().expect("the type is always set")
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("stream {stream}: {message}")]
    Failed { stream: String, message: String },
}

/// The ARN of stream consumer `name`: registered if missing, then waited for until
/// ACTIVE (registration takes seconds on AWS).
pub async fn ensure_consumer(
    client: &Client,
    stream: &str,
    name: &str,
    wait_at_most: Duration,
) -> Result<String, RegisterError> {
    let fail = |message: String| RegisterError::Failed {
        stream: stream.to_string(),
        message,
    };
    let summary = client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| fail(format!("DescribeStreamSummary: {}", error_text(&e))))?;
    let stream_arn = summary
        .stream_description_summary()
        .map(|d| d.stream_arn().to_string())
        .ok_or_else(|| fail("DescribeStreamSummary returned no ARN".into()))?;
    match client
        .register_stream_consumer()
        .stream_arn(&stream_arn)
        .consumer_name(name)
        .send()
        .await
    {
        Ok(_) => tracing::info!(%stream, consumer = %name, "stream consumer registered"),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            tracing::info!(%stream, consumer = %name, "stream consumer already registered")
        }
        Err(e) => return Err(fail(format!("RegisterStreamConsumer: {}", error_text(&e)))),
    }
    let deadline = Instant::now() + wait_at_most;
    loop {
        let out = client
            .describe_stream_consumer()
            .stream_arn(&stream_arn)
            .consumer_name(name)
            .send()
            .await;
        match out {
            Ok(out) => {
                if let Some(d) = out.consumer_description() {
                    if d.consumer_status() == &ConsumerStatus::Active {
                        return Ok(d.consumer_arn().to_string());
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %error_text(&e), "DescribeStreamConsumer failed; retrying")
            }
        }
        if Instant::now() >= deadline {
            return Err(fail(format!(
                "stream consumer {name} not ACTIVE after {wait_at_most:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(s: &str, sub: u64) -> Position {
        Position::new(SequenceNumber::parse(s).unwrap(), sub)
    }

    #[test]
    fn fresh_shards_start_where_configured() {
        assert_eq!(
            Progress::new(StartPosition::TrimHorizon).subscribe_from(),
            SubscribeFrom::TrimHorizon
        );
        assert_eq!(
            Progress::new(StartPosition::Latest).subscribe_from(),
            SubscribeFrom::Latest
        );
        assert_eq!(
            Progress::new(StartPosition::AtTimestamp(42)).subscribe_from(),
            SubscribeFrom::AtTimestamp(42)
        );
    }

    #[test]
    fn a_checkpoint_resumes_at_its_record_and_filters_its_sub_records() {
        // Inside an aggregate: sub-records 0..=2 of 500 were applied, 3.. were not.
        let p = Progress::new(StartPosition::After(pos("500", 2)));
        assert_eq!(p.subscribe_from(), SubscribeFrom::AtSequence("500".into()));
        assert!(!p.is_new(&pos("500", 2)));
        assert!(!p.is_new(&pos("499", 9)));
        assert!(p.is_new(&pos("500", 3)));
        assert!(p.is_new(&pos("501", 0)));
    }

    #[test]
    fn renewal_continues_after_the_last_event() {
        let mut p = Progress::new(StartPosition::TrimHorizon);
        p.handed_out(Some(&pos("700", 4)), "700");
        assert_eq!(
            p.subscribe_from(),
            SubscribeFrom::AfterSequence("700".into())
        );
        // An empty event (idle shard) moves the continuation on but not the filter.
        p.handed_out(None, "800");
        assert_eq!(
            p.subscribe_from(),
            SubscribeFrom::AfterSequence("800".into())
        );
        assert!(!p.is_new(&pos("700", 4)));
        assert!(p.is_new(&pos("801", 0)));
    }

    #[test]
    fn an_event_without_continuation_does_not_forget_the_last_one() {
        let mut p = Progress::new(StartPosition::Latest);
        p.handed_out(Some(&pos("10", 0)), "");
        assert_eq!(p.subscribe_from(), SubscribeFrom::AtSequence("10".into()));
        p.handed_out(None, "12");
        p.handed_out(None, "");
        assert_eq!(
            p.subscribe_from(),
            SubscribeFrom::AfterSequence("12".into())
        );
    }

    #[test]
    fn shard_end_is_children_or_no_continuation() {
        assert!(is_shard_end("", 0));
        assert!(is_shard_end("", 2));
        assert!(!is_shard_end("123", 0));
        assert!(is_shard_end("123", 2));
    }

    #[test]
    fn subscriptions_are_renewed_after_their_lifetime() {
        let t0 = Instant::now();
        let life = Duration::from_secs(300);
        assert!(!lifetime_over(t0, t0 + Duration::from_secs(299), life));
        assert!(lifetime_over(t0, t0 + Duration::from_secs(300), life));
        // A clock read before `opened` is not "over".
        assert!(!lifetime_over(t0 + Duration::from_secs(1), t0, life));
    }

    #[test]
    fn starting_positions_carry_their_sequence_numbers() {
        let sp = starting_position(&SubscribeFrom::AfterSequence("9".into()));
        assert_eq!(sp.r#type(), &ShardIteratorType::AfterSequenceNumber);
        assert_eq!(sp.sequence_number(), Some("9"));
        let sp = starting_position(&SubscribeFrom::AtSequence("8".into()));
        assert_eq!(sp.r#type(), &ShardIteratorType::AtSequenceNumber);
    }
}
