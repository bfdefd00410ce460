//! How to reach Redis and shape what the sink writes.

use std::time::Duration;

use tradeflow_shared::redact::redact_url;
use tradeflow_shared::redis_keys as keys;

/// How to reach Redis and shape what is written.
#[derive(Clone)]
pub struct SinkConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://` for TLS.
    pub url: String,
    /// Prefix of every key except the legacy `symbol:<SYM>` counts.
    pub key_prefix: String,
    /// How long a per-minute kline bucket lives after its last write.
    pub minute_ttl: Duration,
    /// The same for hourly and daily buckets (kept far longer: 24 and 1 a day).
    pub hour_ttl: Duration,
    pub day_ttl: Duration,
    /// Approximate cap of the dead-letter stream (`XADD MAXLEN ~`).
    pub dead_letter_maxlen: usize,
    /// PEM file of the CA that signed the server's certificate, for `rediss://` with a
    /// private CA (public CAs are trusted without it).
    pub ca_file: Option<std::path::PathBuf>,
    /// Cluster only: replicas of each primary that must hold a batch's writes before
    /// the shard's position moves past it (`WAIT`); 0 turns the wait off.
    pub wait_replicas: usize,
    /// Cluster only: how long one `WAIT` may take before the batch is retried.
    pub wait_timeout: Duration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: keys::DEFAULT_PREFIX.into(),
            minute_ttl: Duration::from_secs(48 * 3600),
            hour_ttl: Duration::from_secs(90 * 86_400),
            day_ttl: Duration::from_secs(5 * 365 * 86_400),
            dead_letter_maxlen: 100_000,
            ca_file: None,
            wait_replicas: 1,
            wait_timeout: Duration::from_secs(2),
        }
    }
}

impl std::fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("minute_ttl", &self.minute_ttl)
            .field("hour_ttl", &self.hour_ttl)
            .field("day_ttl", &self.day_ttl)
            .field("dead_letter_maxlen", &self.dead_letter_maxlen)
            .field("ca_file", &self.ca_file)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .finish()
    }
}
