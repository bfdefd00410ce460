//! Where trades come from. Every source decodes what it reads, counts and logs what is
//! not a trade, and sends each trade — with its JSON exactly as received — into one
//! bounded channel towards the pipeline. A source returns when `shutdown` is cancelled
//! or (for finite sources such as a capture replay) when it has sent everything.

use tokio::sync::mpsc;
use tradeflow_shared::Trade;

/// A trade as a source saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTrade {
    pub trade: Trade,
    /// The trade object as Binance sent it (the `data` part of a combined-stream
    /// message). This is what is written to Kinesis.
    pub json: String,
}

/// The sending side every source writes to. Bounded: a slow sink slows the sources.
pub type TradeTx = mpsc::Sender<SourceTrade>;
pub type TradeRx = mpsc::Receiver<SourceTrade>;

pub mod backfill;
pub mod binance;
pub mod lines;
pub mod replay;
pub mod symbols;
pub mod synthetic;
pub mod tail;
