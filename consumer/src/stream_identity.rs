//! Is the stream the one the stored positions belong to? A Kinesis stream deleted and
//! created again under the same name starts its shard ids over (`shardId-000000000000`
//! again), and the positions Redis and the lease table keep under those ids name
//! records of the old stream: resuming from them reads nothing (or loops on
//! InvalidArgument), silently. The stream's creation time is recorded beside the
//! positions in Redis; at start the worker compares it with the stream's own:
//! - none recorded: recorded now (a first start, or positions from before this check,
//!   taken to belong to the stream as it is);
//! - the same: go on;
//! - another: the worker stops and says what to do, unless `--reset-recreated-stream`
//!   asks it to forget the old positions (Redis and lease rows) and read the new stream
//!   from its start. The totals and the per-symbol dedupe state stay, so trades counted
//!   before are not counted twice when the producer wrote them again.

use aws_sdk_kinesis::operation::describe_stream_summary::DescribeStreamSummaryError;
use aws_sdk_kinesis::Client as Kinesis;
use tokio_util::sync::CancellationToken;
use tradeflow_shared::retry::Retry;

use crate::apply::RedisSink;
use crate::lease::LeaseTable;

/// What the recorded and the actual creation times say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing recorded: record it.
    Record,
    Same,
    /// The stream was created again after the one recorded (`was`).
    Recreated {
        was: u64,
    },
}

pub fn verdict(recorded: Option<u64>, created_ms: u64) -> Verdict {
    match recorded {
        None => Verdict::Record,
        Some(was) if was == created_ms => Verdict::Same,
        Some(was) => Verdict::Recreated { was },
    }
}

/// What [`check`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The positions belong to this stream (or it does not exist yet: nothing to say).
    Current,
    /// The old stream's positions were forgotten: read every shard from its start.
    Reset,
}

/// Compares (see the module docs); `reset` is `--reset-recreated-stream`. Transient
/// errors are retried, observably, until `shutdown`.
pub async fn check(
    kinesis: &Kinesis,
    sink: &RedisSink,
    table: &LeaseTable,
    stream: &str,
    reset: bool,
    shutdown: &CancellationToken,
) -> anyhow::Result<Checked> {
    let mut retry = Retry::new("consumer.stream_identity", super::worker::STARTUP_RETRY);
    loop {
        match once(kinesis, sink, table, stream, reset).await {
            Ok(done) => return Ok(done),
            Err(Step::Final(e)) => return Err(e),
            Err(Step::Retry(e)) => {
                if !retry.wait_after(stream, &e, shutdown).await {
                    return Ok(Checked::Current);
                }
            }
        }
    }
}

enum Step {
    Retry(String),
    Final(anyhow::Error),
}

async fn once(
    kinesis: &Kinesis,
    sink: &RedisSink,
    table: &LeaseTable,
    stream: &str,
    reset: bool,
) -> Result<Checked, Step> {
    let created_ms = match kinesis
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
    {
        Ok(out) => out
            .stream_description_summary()
            .map(|s| s.stream_creation_timestamp())
            .and_then(|t| t.to_millis().ok())
            .map(|ms| ms.max(0) as u64),
        Err(e) => match e.as_service_error() {
            // The coordinator says what it says about a missing stream.
            Some(DescribeStreamSummaryError::ResourceNotFoundException(_)) => {
                return Ok(Checked::Current)
            }
            _ => {
                return Err(Step::Retry(format!(
                    "DescribeStreamSummary: {}",
                    crate::shard::reader::error_text(&e)
                )))
            }
        },
    };
    let Some(created_ms) = created_ms else {
        return Ok(Checked::Current);
    };
    let redis = |e: crate::apply::SinkError| {
        if e.is_retryable() {
            Step::Retry(e.to_string())
        } else {
            Step::Final(e.into())
        }
    };
    match verdict(sink.stream_created(stream).await.map_err(redis)?, created_ms) {
        Verdict::Same => Ok(Checked::Current),
        Verdict::Record => {
            sink.set_stream_created(stream, created_ms)
                .await
                .map_err(redis)?;
            Ok(Checked::Current)
        }
        Verdict::Recreated { was } if !reset => Err(Step::Final(anyhow::anyhow!(
            "stream {stream} was recreated: it was created at {} (Unix ms), the shard positions in Redis and in lease table {} belong to the stream created at {was}. \
             Resuming from them would read nothing of the new stream. To count it: stop every consumer of {stream}, then start one with --reset-recreated-stream \
             (forgets the old positions, reads the new stream from its start; trades counted before are not counted twice)",
            created_ms,
            table.name()
        ))),
        Verdict::Recreated { was } => {
            let positions = sink.forget_positions(stream).await.map_err(redis)?;
            table
                .ensure_table()
                .await
                .map_err(|e| Step::Retry(e.to_string()))?;
            let rows = table.list().await.map_err(|e| Step::Retry(e.to_string()))?;
            for row in &rows {
                table
                    .delete(&row.shard_id)
                    .await
                    .map_err(|e| Step::Retry(e.to_string()))?;
            }
            // Last: a reset cut short is found and done again at the next start.
            sink.set_stream_created(stream, created_ms)
                .await
                .map_err(redis)?;
            metrics::counter!("tradeflow_consumer_stream_resets_total").increment(1);
            tracing::warn!(
                %stream, was, created_ms, positions, lease_rows = rows.len(),
                "stream was recreated: forgot the old stream's positions; reading the new one from its start"
            );
            Ok(Checked::Reset)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(verdict(None, 5), Verdict::Record);
        assert_eq!(verdict(Some(5), 5), Verdict::Same);
        assert_eq!(verdict(Some(4), 5), Verdict::Recreated { was: 4 });
        // Not only "newer": any other stream is another stream.
        assert_eq!(verdict(Some(6), 5), Verdict::Recreated { was: 6 });
    }
}
