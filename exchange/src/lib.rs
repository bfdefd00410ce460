//! A local exchange speaking Binance's spot trade-stream protocol, for local runs and
//! tests (a dev tool, never deployed): combined and raw websocket streams with live
//! SUBSCRIBE/UNSUBSCRIBE, pings, the 24-hour cut, `serverShutdown`, REST market data,
//! and faults on demand. Trades come from one global tape (a capture or the
//! deterministic generator) whose finite form is the tests' ground truth.

pub mod gen;
pub mod history;
mod http;
pub mod item;
pub mod klines;
pub mod protocol;
pub mod server;
pub mod tape;

pub use gen::{GenConfig, Generator};
pub use item::TapeItem;
pub use server::{Exchange, ExchangeConfig, Fault, ServerHandle, Stats};
pub use tape::{totals, SymbolTotals, Tape};
