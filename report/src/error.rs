//! The report's own errors: a reader's, never the consumer sink's. None shows the Redis
//! password (URLs are redacted, messages scrubbed where they are made).

use std::net::SocketAddr;

use tradeflow_shared::redis_conn::ConnError;
use tradeflow_shared::redis_keys::KeyError;
use tradeflow_shared::snapshot::{CandleError, ReadError};

use crate::chart::ChartError;
use crate::prices::PriceError;
use crate::slack::api::SlackError;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading Redis (or connecting to it) failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The candles could not be read: Redis, a foreign value (named with its key), or
    /// too wide a range.
    #[error(transparent)]
    Candles(#[from] CandleError),
    /// A symbol Redis's symbols index does not hold: no trade of it was ever applied.
    #[error(
        "{symbol} is not in Redis's symbols index ({key}): tradeflow has applied no trade of it"
    )]
    UnknownSymbol { symbol: String, key: String },
    /// The USD prices could not be had.
    #[error(transparent)]
    Prices(#[from] PriceError),
    /// A flag or file is unusable (URL, CA file, key prefix).
    #[error("{0}")]
    Config(String),
    /// The page's connect probe found nobody answering.
    #[error("Redis at {url} unavailable (connect): {why}")]
    Unavailable { url: String, why: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("web server: {0}")]
    Serve(std::io::Error),
    /// The snapshot could not be read (the reason as the live page words it).
    #[error("{0}")]
    Snapshot(String),
    /// A chart could not be drawn.
    #[error(transparent)]
    Chart(#[from] ChartError),
    /// The Slack secret could not be read (names where it was looked for, never a value).
    #[error(transparent)]
    Secret(#[from] tradeflow_shared::secret::SecretError),
    /// Slack refused or did not answer.
    #[error(transparent)]
    Slack(SlackError),
    /// The terminal (stdout, stdin).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<KeyError> for ReportError {
    fn from(e: KeyError) -> Self {
        ReportError::Read(e.into())
    }
}

impl From<ConnError> for ReportError {
    fn from(e: ConnError) -> Self {
        ReportError::Read(e.into())
    }
}
