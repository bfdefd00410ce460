//! Code the tradeflow producer, consumer and report share (the Redis key layout, the
//! connection to Redis and the snapshot read among it: writer and readers agree on them
//! by using the same code).

pub mod aws;
pub mod decimal;
pub mod kline;
pub mod kpl;
pub mod redact;
pub mod redis_args;
pub mod redis_conn;
pub mod redis_keys;
pub mod rest;
pub mod retry;
#[cfg(feature = "ssm")]
pub mod secret;
pub mod seqnum;
pub mod shutdown;
pub mod snapshot;
pub mod symbol;
pub mod telemetry;
pub mod trade;
pub mod watchdog;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use decimal::Fixed8;
pub use seqnum::{Position, SequenceNumber};
pub use symbol::Symbol;
pub use trade::{decode_bytes, decode_event, DecodeError, Event, Trade};

/// The 14 streams of the setup tradeflow replaces (its defaults).
pub const SEED_SYMBOLS: [&str; 14] = [
    "btcusdt", "ethusdt", "ltcusdt", "neousdt", "bnbusdt", "ethbtc", "ltcbtc", "neobtc", "bnbbtc",
    "ltceth", "neoeth", "bnbeth", "neobnb", "ltcbnb",
];
