//! One test binary for the producer's integration tests: each file below is a module,
//! so the SDK and websocket code is compiled and linked once instead of once per file.
//! `websocket_hostile` (installs a global metrics recorder it reads back) and
//! `websocket_to_kinesis` (long, two producers) stay binaries of their own. A new test
//! file: add it here, or as a `[[test]]` in Cargo.toml (`autotests = false`). Tests here
//! share one process: no global recorder or subscriber installs.

#[path = "api_faults.rs"]
mod api_faults;
#[path = "backfill_hostile_rest.rs"]
mod backfill_hostile_rest;
#[path = "cli_help.rs"]
mod cli_help;
#[path = "connection_spread.rs"]
mod connection_spread;
#[path = "file_sources_hostile.rs"]
mod file_sources_hostile;
#[path = "kinesis_faults.rs"]
mod kinesis_faults;
#[path = "kinesis_roundtrip.rs"]
mod kinesis_roundtrip;
#[path = "pipeline_sigterm.rs"]
mod pipeline_sigterm;
#[path = "pipeline_tail.rs"]
mod pipeline_tail;
#[path = "rotation_held_limit.rs"]
mod rotation_held_limit;
#[path = "websocket_source.rs"]
mod websocket_source;

// Helpers the files above share, compiled once.
mod support;
