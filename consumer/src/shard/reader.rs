//! The polling shard reader: GetRecords in a loop, paced to stay under the service's
//! 5 calls per second per shard, slower when the shard is idle or throttled. It hides
//! iterator management: a new iterator after `ExpiredIteratorException`, starting from
//! the last record it handed out, and sub-record filtering so a restart inside a KPL
//! aggregate neither skips nor repeats user records.

use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use tokio::time::Instant;
use tradeflow_shared::retry::{self, Next, Policy};
use tradeflow_shared::Position;

use super::budget::{PageSizer, ReadBudget};
use super::lean::{LeanRecords, Slot};
use super::page::{HandedOut, Page};
use crate::record::DecodedRecord;

/// Where to start reading a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    TrimHorizon,
    Latest,
    /// Milliseconds since the epoch.
    AtTimestamp(i64),
    /// Just after this user record (which may sit inside an aggregate).
    After(Position),
}

#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// Records asked for per GetRecords call at most (service maximum 10,000).
    pub max_records: i32,
    /// Bytes a page should hold: the call's record limit follows the shard's record
    /// size to stay near it (see `budget`).
    pub page_target_bytes: usize,
    /// Page memory shared by every reader of the worker.
    pub budget: ReadBudget,
    /// Least time between two calls on one shard (the service allows 5 per second).
    pub min_call_interval: Duration,
    /// Wait after a call that returned nothing. A shard quiet for longer is polled
    /// more slowly, every quarter of its quiet time (see [`idle_wait`]), up to
    /// `idle_max_wait`: polls of idle shards are most of a consumer's idle CPU (issue
    /// #24), while the first record after a silence is never later than a quarter of
    /// the silence (nor than `idle_max_wait`), and a shard that just went quiet is
    /// still polled every `idle_interval`.
    pub idle_interval: Duration,
    /// The longest wait between polls of a quiet shard.
    pub idle_max_wait: Duration,
    /// Ceiling of the backoff after throttling or transient errors.
    pub max_backoff: Duration,
    /// After the service first reports a shard's end, wait this long and read once
    /// more from the last record before believing it. Kinesis never writes to a closed
    /// shard, but an emulator (ferrokinesis 0.7, split and merge) was seen storing
    /// writes that were in flight at the close after it had already answered "end":
    /// without the second look those trades would never be read. Costs two calls per
    /// shard end.
    pub end_settle: Duration,
    /// Longest wait for one GetShardIterator or GetRecords answer; a call that hangs
    /// (a half-dead connection, an endpoint restarting) is abandoned and retried
    /// instead of leaving the shard silently unread.
    pub call_timeout: Duration,
}

pub const DEFAULT_PAGE_TARGET_BYTES: usize = 2 << 20;
pub const DEFAULT_READ_BUDGET_BYTES: usize = 32 << 20;

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            max_records: 10_000,
            page_target_bytes: DEFAULT_PAGE_TARGET_BYTES,
            budget: ReadBudget::new(DEFAULT_READ_BUDGET_BYTES),
            min_call_interval: Duration::from_millis(200),
            idle_interval: Duration::from_millis(500),
            idle_max_wait: Duration::from_secs(5),
            max_backoff: Duration::from_secs(10),
            end_settle: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// What one GetRecords call or one fan-out event yielded.
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// User records after the start position, in shard order.
    pub records: Vec<DecodedRecord>,
    /// Kinesis records (before de-aggregation) and their bytes.
    pub kinesis_records: usize,
    pub bytes: usize,
    pub millis_behind_latest: Option<i64>,
    /// Set when the shard is closed and fully read: its children (from `ChildShards`;
    /// empty when the service did not say, and discovery finds them by parent id).
    pub end: Option<Vec<String>>,
    /// This page's share of the read budget, given back when the batch is dropped
    /// (after it was applied).
    pub reservation: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl ReadBatch {
    /// What a reader returns once the shard's end was handed out (no children: they
    /// were named with the end itself).
    pub fn after_end() -> Self {
        ReadBatch {
            end: Some(Vec::new()),
            ..Default::default()
        }
    }

    /// A decoded page, not (yet) the shard's end.
    pub fn of(page: Page, millis_behind_latest: Option<i64>) -> Self {
        ReadBatch {
            records: page.records,
            kinesis_records: page.kinesis_records,
            bytes: page.bytes,
            millis_behind_latest,
            ..Default::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("stream {stream} shard {shard}: shard or stream not found")]
    NotFound { stream: String, shard: String },
    #[error("stream {stream} shard {shard}: {message}")]
    Fatal {
        stream: String,
        shard: String,
        message: String,
    },
}

pub struct ShardReader {
    client: Client,
    stream: String,
    shard_id: String,
    cfg: ReaderConfig,
    start: StartPosition,
    iterator: Option<String>,
    /// User records handed out (or resumed after): the next iterator starts at the
    /// last one, and pages drop what was handed out (resume inside an aggregate).
    handed: HandedOut,
    last_call: Option<Instant>,
    next_wait: Duration,
    /// Throttling, transient errors and expired iterators in a row: backoff with
    /// jitter, retried for as long as the lease is held (observable).
    retry: retry::Retry,
    /// Expired iterators in a row: the second one backs off (a fresh iterator that
    /// expires at once again would otherwise loop without a pause).
    expired_in_a_row: u32,
    /// When the calls in a row that found no records began (the idle wait grows with
    /// the quiet time).
    quiet_since: Option<Instant>,
    /// The children named when the end was first reported, until a second look
    /// confirms it (see [`ReaderConfig::end_settle`]).
    end_reported: Option<Vec<String>>,
    ended: bool,
    sizer: PageSizer,
    /// Where a GetRecords answer's records are left when read the lean way (`lean`).
    lean: Slot,
    /// Pages read the lean way (the rest fell back to the SDK's records).
    lean_pages: u64,
}

impl ShardReader {
    pub fn new(
        client: Client,
        stream: &str,
        shard_id: &str,
        start: StartPosition,
        cfg: ReaderConfig,
    ) -> Self {
        let handed = HandedOut::from_start(&start);
        let sizer = PageSizer::new(cfg.page_target_bytes, cfg.max_records);
        ShardReader {
            client,
            stream: stream.to_string(),
            shard_id: shard_id.to_string(),
            retry: retry::Retry::new(
                "consumer.get_records",
                Policy::forever(
                    cfg.min_call_interval.max(Duration::from_millis(50)),
                    cfg.max_backoff,
                ),
            ),
            expired_in_a_row: 0,
            quiet_since: None,
            cfg,
            start,
            iterator: None,
            handed,
            last_call: None,
            next_wait: Duration::ZERO,
            end_reported: None,
            ended: false,
            sizer,
            lean: Slot::default(),
            lean_pages: 0,
        }
    }

    /// The next batch. Waits as pacing requires; retries throttling, expired iterators
    /// and transient errors itself (with backoff), so an error here is one a retry
    /// cannot fix. After the end of a closed shard it keeps returning the end marker.
    pub async fn next_batch(&mut self) -> Result<ReadBatch, ReadError> {
        if self.ended {
            return Ok(ReadBatch::after_end());
        }
        loop {
            self.pace().await;
            let iterator = match &self.iterator {
                Some(it) => it.clone(),
                None => match self.new_iterator().await {
                    Ok(it) => it,
                    Err(Retry::After(why)) => {
                        self.retry_later(&why);
                        continue;
                    }
                    Err(Retry::Never(e)) => return Err(e),
                },
            };
            // Room for the page first: pages in flight over all shards stay within the
            // worker's budget.
            let reservation = self.cfg.budget.reserve(self.sizer.reservation()).await;
            let started = std::time::Instant::now();
            // Nothing left from an earlier call that then failed.
            self.lean.take();
            let call = self
                .client
                .get_records()
                .shard_iterator(iterator)
                .limit(self.sizer.limit())
                .customize()
                .interceptor(LeanRecords::new(self.lean.clone()))
                .send();
            let Ok(result) = tokio::time::timeout(self.cfg.call_timeout, call).await else {
                metrics::counter!("tradeflow_consumer_getrecords_errors_total").increment(1);
                self.retry_later(&format!(
                    "GetRecords gave no answer within {:?}",
                    self.cfg.call_timeout
                ));
                continue;
            };
            self.last_call = Some(Instant::now());
            metrics::histogram!("tradeflow_consumer_getrecords_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("tradeflow_consumer_getrecords_total", "shard" => self.shard_id.clone())
                .increment(1);
            let out = match result {
                Ok(out) => out,
                Err(e) => {
                    let svc = e.as_service_error();
                    if svc.is_some_and(|s| s.is_expired_iterator_exception()) {
                        metrics::counter!("tradeflow_consumer_expired_iterators_total")
                            .increment(1);
                        tracing::info!(shard = %self.shard_id, "shard iterator expired; getting a new one");
                        self.iterator = None;
                        self.expired_in_a_row += 1;
                        if self.expired_in_a_row > 1 {
                            self.retry_later("the shard iterator expired again");
                        }
                        continue;
                    }
                    if svc.is_some_and(|s| s.is_provisioned_throughput_exceeded_exception()) {
                        metrics::counter!("tradeflow_consumer_getrecords_throttled_total")
                            .increment(1);
                        self.retry_later("throttled");
                        continue;
                    }
                    if svc.is_some_and(|s| s.is_resource_not_found_exception()) {
                        return Err(ReadError::NotFound {
                            stream: self.stream.clone(),
                            shard: self.shard_id.clone(),
                        });
                    }
                    if svc.is_some_and(|s| s.is_access_denied_exception()) {
                        return Err(self.fatal(format!("access denied: {e}")));
                    }
                    metrics::counter!("tradeflow_consumer_getrecords_errors_total").increment(1);
                    self.retry_later(&format!("GetRecords failed: {}", error_text(&e)));
                    continue;
                }
            };
            self.retry.succeeded(&self.shard_id);
            self.expired_in_a_row = 0;
            // The records read the lean way, or (a body it could not read) the SDK's.
            let page = match self.lean.take() {
                Some(mut raw) => {
                    self.lean_pages += 1;
                    let sizes = raw.records.iter().map(|r| r.data.len());
                    self.sizer
                        .observe(raw.records.len(), raw.data.len(), sizes.max().unwrap_or(0));
                    self.handed.take_parts(raw.drain())
                }
                None => {
                    let sizes = out.records().iter().map(|r| r.data().as_ref().len());
                    self.sizer.observe(
                        out.records().len(),
                        sizes.clone().sum(),
                        sizes.max().unwrap_or(0),
                    );
                    self.handed.take_page(out.records())
                }
            };
            page.report_metrics(&self.shard_id, out.millis_behind_latest());
            let mut batch = ReadBatch::of(page, out.millis_behind_latest());
            batch.reservation = Some(reservation);
            if self.end_reported.is_some() && !batch.records.is_empty() {
                metrics::counter!("tradeflow_consumer_records_after_shard_end_total")
                    .increment(batch.records.len() as u64);
                tracing::warn!(shard = %self.shard_id, records = batch.records.len(),
                    "records appeared after the service reported the shard's end; reading them");
            }
            match out.next_shard_iterator() {
                Some(next) => {
                    self.iterator = Some(next.to_string());
                    self.next_wait = if batch.kinesis_records == 0 {
                        let since = *self.quiet_since.get_or_insert_with(Instant::now);
                        idle_wait(
                            self.cfg.idle_interval,
                            self.cfg.idle_max_wait,
                            since.elapsed(),
                        )
                    } else {
                        self.quiet_since = None;
                        self.cfg.min_call_interval
                    };
                }
                None => {
                    let mut children: Vec<String> = out
                        .child_shards()
                        .iter()
                        .map(|c| c.shard_id().to_string())
                        .collect();
                    // A fresh iterator from the last record handed out (or the start)
                    // for the second look; records up to it are filtered again.
                    self.iterator = None;
                    match self.end_reported.take() {
                        Some(earlier) if batch.records.is_empty() => {
                            if children.is_empty() {
                                children = earlier;
                            }
                            self.ended = true;
                            batch.end = Some(children);
                        }
                        Some(earlier) => {
                            // Late records were found: read them, then look once more.
                            self.end_reported = Some(earlier);
                            self.next_wait = self.cfg.end_settle;
                        }
                        None if self.cfg.end_settle.is_zero() => {
                            self.ended = true;
                            batch.end = Some(children);
                        }
                        None => {
                            self.end_reported = Some(children);
                            self.next_wait = self.cfg.end_settle;
                        }
                    }
                }
            }
            return Ok(batch);
        }
    }

    /// Pages whose records were read from the raw body (`shard::lean`).
    pub fn lean_pages(&self) -> u64 {
        self.lean_pages
    }

    async fn pace(&mut self) {
        if let Some(last) = self.last_call {
            tokio::time::sleep_until(last + self.next_wait).await;
        }
    }

    fn retry_later(&mut self, why: &str) {
        let shard = self.shard_id.clone();
        let Next::RetryIn(wait) = self.retry.failed(&shard, &why) else {
            unreachable!("retried forever")
        };
        self.next_wait = wait;
        self.last_call = Some(Instant::now());
    }

    fn fatal(&self, message: String) -> ReadError {
        ReadError::Fatal {
            stream: self.stream.clone(),
            shard: self.shard_id.clone(),
            message,
        }
    }

    /// An iterator at the start position, or — once records were handed out — at the
    /// last one (records up to it are filtered out again).
    async fn new_iterator(&mut self) -> Result<String, Retry> {
        let mut req = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(&self.shard_id);
        req = match (self.handed.through(), &self.start) {
            (Some(pos), _) => req
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(pos.seq.as_str()),
            (None, StartPosition::TrimHorizon) => {
                req.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            (None, StartPosition::Latest) => req.shard_iterator_type(ShardIteratorType::Latest),
            (None, StartPosition::AtTimestamp(ms)) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_sdk_kinesis::primitives::DateTime::from_millis(*ms)),
            (None, StartPosition::After(_)) => {
                unreachable!("HandedOut::from_start keeps an After position")
            }
        };
        self.last_call = Some(Instant::now());
        let Ok(answer) = tokio::time::timeout(self.cfg.call_timeout, req.send()).await else {
            return Err(Retry::After(format!(
                "GetShardIterator gave no answer within {:?}",
                self.cfg.call_timeout
            )));
        };
        match answer {
            Ok(out) => match out.shard_iterator() {
                Some(it) => Ok(it.to_string()),
                None => Err(Retry::After("GetShardIterator returned no iterator".into())),
            },
            Err(e) => {
                let svc = e.as_service_error();
                if svc.is_some_and(|s| s.is_resource_not_found_exception()) {
                    Err(Retry::Never(ReadError::NotFound {
                        stream: self.stream.clone(),
                        shard: self.shard_id.clone(),
                    }))
                } else if svc.is_some_and(|s| s.is_invalid_argument_exception()) {
                    Err(Retry::Never(self.fatal(format!(
                        "GetShardIterator rejected: {}",
                        error_text(&e)
                    ))))
                } else {
                    Err(Retry::After(format!(
                        "GetShardIterator failed: {}",
                        error_text(&e)
                    )))
                }
            }
        }
    }
}

/// The wait after an empty call, the shard having been quiet for `quiet` (since the
/// first empty call in a row): a quarter of that, at least `first` and at most `max`.
/// So the next record, whenever it comes, is read at most a quarter of the silence
/// late; at the defaults (500 ms, 5 s) the wait starts growing after 2 s of silence
/// (by a quarter a call) and reaches 5 s after ~25 s.
pub(crate) fn idle_wait(first: Duration, max: Duration, quiet: Duration) -> Duration {
    (quiet / 4).min(max).max(first)
}

enum Retry {
    After(String),
    Never(ReadError),
}

/// The service's message where there is one, else the SDK's error chain.
pub(crate) fn error_text<E: std::error::Error + 'static>(e: &E) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::idle_wait;
    use std::time::Duration;

    #[test]
    fn the_idle_wait_is_a_quarter_of_the_silence_within_its_bounds() {
        let ms = Duration::from_millis;
        let (first, max) = (ms(500), ms(5000));
        let wait = |quiet| idle_wait(first, max, ms(quiet));
        // Just quiet: the first wait; then a quarter of the quiet time; then the cap.
        assert_eq!(
            [wait(0), wait(2000), wait(3000)],
            [ms(500), ms(500), ms(750)]
        );
        assert_eq!([wait(20_000), wait(25_000), wait(u64::MAX)], [ms(5000); 3]);
        // The calls of a shard that stays quiet: each waits what its silence allows.
        let mut quiet = ms(0);
        let mut waits = Vec::new();
        while quiet < ms(60_000) {
            let w = idle_wait(first, max, quiet);
            waits.push(w);
            quiet += w;
        }
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert!(waits.len() < 30, "{} polls in a quiet minute", waits.len());
        // A max below the first wait (or zero waits) never makes it shorter than first.
        assert_eq!(idle_wait(ms(500), ms(100), ms(10_000)), ms(500));
        assert_eq!(
            idle_wait(Duration::ZERO, Duration::ZERO, ms(10)),
            Duration::ZERO
        );
    }
}
