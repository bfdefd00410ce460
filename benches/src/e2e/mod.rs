//! The end-to-end benchmark (`benches/benches/e2e.rs`): synthetic trades through the
//! real producer and consumer binaries and the local emulators, measured per process
//! from /proc, against the seed's per-record consumer in Python.

pub mod figures;
pub mod goals;
pub mod idle;
pub mod marginal;
pub mod procstat;
pub mod progress;
pub mod prom;
pub mod redis;
pub mod report;
pub mod run;
pub mod stack;
pub mod summary;
