//! The chaos run (a dev tool, not deployed): the local exchange emits a known tape, the
//! producer writes it to Kinesis, several consumers count it into Redis, while faults
//! from a seeded schedule hit every part; at the end Redis must equal the tape exactly.

pub mod api_chaos;
pub mod api_matrix;
pub mod audit;
pub mod gaps;
mod inject;
pub mod launch;
pub mod plan;
pub mod procs;
pub mod proxy;
pub mod redis_side;
pub mod report;
mod reshard;
pub mod run;
pub mod truth;
pub mod verify;
