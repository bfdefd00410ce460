//! KCL 2.x-compatible leases in DynamoDB: the item layout ([`model`], [`item`]), the pure
//! take/steal/expiry/child-ready decisions ([`decisions`]), the table I/O ([`table`]),
//! and the renewer/taker loops with the worker's handle ([`coordinator`]).

pub mod config;
pub mod coordinator;
pub mod decisions;
pub mod error;
pub mod item;
pub mod model;
pub mod table;

pub use config::LeaseConfig;
pub use coordinator::{HeldLease, LeaseCoordinator, LeaseHandle};
pub use error::LeaseError;
pub use model::{Checkpoint, InitialPosition, Lease};
pub use table::{LeaseTable, TableState, Write};
