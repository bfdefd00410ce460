//! One test binary for the consumer's lighter integration tests: each file below is a
//! module, so the SDK and Redis client code is compiled and linked once instead of once
//! per file (the biggest share of the suite's build time). Heavy multi-process tests
//! (`e2e`, `fleet`, `fanout`) and the timing-sensitive `lease_coordinator` stay binaries
//! of their own so they do not run beside each other. A new test file: add it here, or
//! as a `[[test]]` in Cargo.toml (`autotests = false`). Tests here share one process: no
//! global recorder or subscriber installs, no process-wide state.

#[path = "cli_help.rs"]
mod cli_help;
#[path = "hostile_records.rs"]
mod hostile_records;
#[path = "kcl_metadata.rs"]
mod kcl_metadata;
#[path = "lean_get_records.rs"]
mod lean_get_records;
#[path = "lease_table.rs"]
mod lease_table;
#[path = "proptest_support.rs"]
mod proptest_support;
#[path = "recreated_stream.rs"]
mod recreated_stream;
#[path = "redis_candles.rs"]
mod redis_candles;
#[path = "redis_foreign.rs"]
mod redis_foreign;
#[path = "redis_proptest.rs"]
mod redis_proptest;
#[path = "redis_sink.rs"]
mod redis_sink;
#[path = "redis_tls.rs"]
mod redis_tls;
#[path = "shard_end_durable.rs"]
mod shard_end_durable;
#[path = "shard_reader.rs"]
mod shard_reader;
#[path = "worker_faults.rs"]
mod worker_faults;

// Helpers the files above share, compiled once.
mod e2e_support;
mod hostile_support;
mod redis_common;
mod worker_support;
