//! The sink's errors: a Redis error is classified once, here, as retryable or not,
//! with the password scrubbed from what is stored.

use redis::{ErrorKind, RedisError, ServerErrorKind};
use tradeflow_shared::redact::scrub_text;
use tradeflow_shared::redis_conn::ConnError;
use tradeflow_shared::redis_keys::KeyError;
use tradeflow_shared::Position;

use super::foreign;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("invalid Redis sink configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Connection lost or refused, timeout, server loading or busy: try again later.
    #[error("Redis at {url} unavailable ({kind}): {message}")]
    Unavailable {
        url: String,
        kind: &'static str,
        message: String,
    },
    /// The server refused the work (script error, authentication, permissions).
    #[error("Redis at {url} failed ({kind}): {message}")]
    Fatal {
        url: String,
        kind: &'static str,
        message: String,
    },
    #[error("unexpected reply from Redis: {0}")]
    Protocol(String),
    /// Redis holds less than this applier already applied to the shard (it lost its
    /// last writes: a restart under `appendfsync everysec`, a failover). Nothing was
    /// written; the shard must be re-read after `stored`.
    #[error("Redis is behind what was applied to this shard (lost writes); it holds {stored:?}")]
    Behind { stored: Option<Position> },
}

impl SinkError {
    /// True when the same call may succeed later (the worker backs off and retries;
    /// retrying an apply is always safe: it is idempotent).
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Unavailable { .. })
    }

    /// Bounded label for `tradeflow_consumer_redis_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkError::Config(_) => "config",
            SinkError::Key(_) => "key",
            SinkError::Unavailable { kind, .. } | SinkError::Fatal { kind, .. } => kind,
            SinkError::Protocol(_) => "protocol",
            SinkError::Behind { .. } => "behind",
        }
    }
}

/// Turns a Redis error into a retryable or fatal [`SinkError`], password scrubbed.
pub(crate) fn classify(url: &str, password: Option<&str>, e: &RedisError) -> SinkError {
    let message = scrub_text(&e.to_string(), password);
    let url = url.to_string();
    let kind = e.kind();
    let code = e.code().unwrap_or("");
    // The cluster client reports a refused password while connecting as an I/O error
    // ("Failed to create initial connections … AuthenticationFailed"): never retryable.
    let auth_refused = message.contains("AuthenticationFailed") || code == "WRONGPASS";
    let retry_kind: Option<&'static str> = if auth_refused {
        None
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
    {
        Some("io")
    } else {
        match kind {
            ErrorKind::Server(ServerErrorKind::BusyLoading) => Some("loading"),
            // A cluster's redirections that outlasted the client's own retries (nodes
            // disagree for a moment during a failover or a migration).
            ErrorKind::Server(ServerErrorKind::Moved) | ErrorKind::Server(ServerErrorKind::Ask) => {
                Some("redirect")
            }
            ErrorKind::Server(ServerErrorKind::TryAgain)
            | ErrorKind::Server(ServerErrorKind::MasterDown)
            | ErrorKind::Server(ServerErrorKind::ClusterDown)
            | ErrorKind::Server(ServerErrorKind::ReadOnly) => Some("unavailable"),
            _ if code == "BUSY" || code == "OOM" || code == "MISCONF" => Some("busy"),
            // WAIT routed to the slot's primary as the client last knew it, which a
            // failover has just turned into a replica: the topology is changing.
            _ if message.contains("WAIT cannot be used with replica instances") => {
                Some("unavailable")
            }
            // A key of the whole batch holds a foreign value (the scripts checked before
            // writing anything): not retryable by itself, it needs a human.
            _ => None,
        }
    };
    match retry_kind {
        Some(kind) => SinkError::Unavailable { url, kind, message },
        None => {
            let kind = match kind {
                _ if auth_refused => "auth",
                _ if code == "FOREIGN" => foreign::KIND,
                ErrorKind::AuthenticationFailed => "auth",
                ErrorKind::Server(ServerErrorKind::NoPerm) => "auth",
                ErrorKind::Server(ServerErrorKind::NoScript) => "noscript",
                ErrorKind::Server(_) => "server",
                _ => "client",
            };
            SinkError::Fatal { url, kind, message }
        }
    }
}

/// The shared connection's errors as the sink's: classified exactly like the sink's
/// own calls.
impl From<ConnError> for SinkError {
    fn from(e: ConnError) -> Self {
        match e {
            ConnError::Config(m) => SinkError::Config(m),
            ConnError::Redis {
                url,
                password,
                error,
            } => classify(&url, password.as_deref(), &error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a failover produces when WAIT reaches the old primary, now a replica
    /// (seen failing `redis_cluster::exact_counts_through_a_slot_migration_and_a_failover`
    /// as "failed (client): Incompatible type"): retried, not fatal.
    #[test]
    fn wait_at_a_replica_is_retryable() {
        let reply = redis::parse_redis_value(
            b"-ERR WAIT cannot be used with replica instances. Please also note\r\n",
        )
        .unwrap();
        let e = reply.extract_error().unwrap_err();
        let sink = classify("redis://x", None, &e);
        assert!(sink.is_retryable(), "{sink:?}");
    }
}
