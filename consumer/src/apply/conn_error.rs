//! The shared connection's errors as the sink's: a Redis error is classified as
//! retryable or not exactly like the sink's own calls (see `redis_sink::classify`).

use tradeflow_shared::redis_conn::ConnError;

use super::redis_sink::{classify, SinkError};

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
