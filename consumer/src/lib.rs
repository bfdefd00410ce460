//! The tradeflow consumer: a KCL-compatible worker that reads every shard of a Kinesis
//! stream under DynamoDB leases and keeps exact per-symbol trade totals in Redis.
//!
//! - [`lease`]: the lease table (KCL 2.x layout), the pure take/steal/renew decisions,
//!   and the coordinator that renews and takes leases.
//! - [`shard`]: shard discovery and lineage, and the polling shard reader.
//! - [`record`]: de-aggregation (KPL) and decoding of Kinesis records into trades.
//! - [`apply`]: the pure fold of a batch into per-symbol deltas, and the Redis sink
//!   that applies it exactly once.
//! - [`worker`]: ties them together; [`config`]: the command line; [`allocator`]: malloc
//!   settings for page-sized buffers.

pub mod allocator;
pub mod apply;
pub mod config;
pub mod lease;
pub mod metrics;
pub mod record;
pub mod shard;
pub mod stream_identity;
pub mod worker;
