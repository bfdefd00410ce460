//! Kinesis streams on the emulators: creating one, and waiting until it is ACTIVE (after
//! its creation, or after a reshard: the emulators take a moment, and a stream still
//! UPDATING refuses the next reshard).

use std::time::Duration;

use aws_sdk_kinesis::Client;

/// How long a stream may take to become ACTIVE after `create_active_stream`.
const CREATE_LIMIT: Duration = Duration::from_secs(30);

/// Waits up to `limit` until the stream is ACTIVE; says so when it is not by then.
pub async fn wait_stream_active(
    client: &Client,
    name: &str,
    limit: Duration,
) -> Result<(), String> {
    let active = || async {
        client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .ok()
            .and_then(|d| d.stream_description_summary().cloned())
            .is_some_and(|s| s.stream_status().as_str() == "ACTIVE")
            .then_some(())
    };
    super::wait::poll(limit, Duration::from_millis(100), active)
        .await
        .ok_or_else(|| format!("stream {name} not ACTIVE after {limit:?}"))
}

/// Creates a stream and waits until it is ACTIVE, or says why not within 30 s.
pub async fn create_active_stream(client: &Client, name: &str, shards: i32) -> Result<(), String> {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .map_err(|e| {
            format!(
                "CreateStream {name}: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(e)
            )
        })?;
    wait_stream_active(client, name, CREATE_LIMIT).await
}

/// [`create_active_stream`] on the emulator at `endpoint`.
pub async fn create_stream_at(endpoint: &str, name: &str, shards: i32) -> Result<(), String> {
    create_active_stream(
        &super::clients::kinesis_client_at(endpoint).await,
        name,
        shards,
    )
    .await
}
