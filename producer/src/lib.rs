//! The tradeflow producer: trades from a source (Binance websocket, capture replay, file
//! tail, synthetic) through per-symbol dedupe and gap tracking into batched, ordered,
//! retried Kinesis PutRecords.

pub mod batcher;
pub mod config;
pub mod dedupe;
pub mod metrics;
pub mod pipeline;
pub mod put_result;
pub mod shard_map;
pub mod sink;
pub mod source;
