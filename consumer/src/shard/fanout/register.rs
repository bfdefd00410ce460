//! Registering the enhanced fan-out stream consumer at start, and waiting until the
//! service has it ACTIVE.

use std::time::Duration;

use aws_sdk_kinesis::types::ConsumerStatus;
use aws_sdk_kinesis::Client;
use tokio::time::Instant;
use tradeflow_shared::retry::{GiveUp, Next, Policy, Retry};

use crate::shard::reader::error_text;

/// How often the consumer's status is read again while the service is creating it.
const ACTIVE_POLL: Duration = Duration::from_millis(500);

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
    // A status still CREATING is polled at a steady pace; a failing call backs off as
    // the house does (counted, its warnings rate-limited), within the same deadline.
    let mut retry = Retry::new(
        "consumer.describe_stream_consumer",
        Policy::new(
            ACTIVE_POLL,
            Duration::from_secs(5),
            GiveUp::After(wait_at_most),
        ),
    );
    loop {
        let out = client
            .describe_stream_consumer()
            .stream_arn(&stream_arn)
            .consumer_name(name)
            .send()
            .await;
        let wait = match out {
            Ok(out) => {
                retry.succeeded(name);
                if let Some(d) = out.consumer_description() {
                    if d.consumer_status() == &ConsumerStatus::Active {
                        return Ok(d.consumer_arn().to_string());
                    }
                }
                ACTIVE_POLL
            }
            Err(e) => {
                let why = error_text(&e);
                match retry.failed(name, &why) {
                    Next::RetryIn(wait) => wait,
                    Next::GiveUp => return Err(fail(format!("DescribeStreamConsumer: {why}"))),
                }
            }
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(fail(format!(
                "stream consumer {name} not ACTIVE after {wait_at_most:?}"
            )));
        }
        tokio::time::sleep(wait.min(deadline - now)).await;
    }
}
