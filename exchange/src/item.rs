//! One trade as the exchange emits it, whichever source made it (a capture, the
//! generator): what the tape, the generator, the history and the server share.

use std::sync::Arc;

use tradeflow_shared::{Symbol, Trade};

/// One emitted trade: the decoded trade, its JSON exactly as sent, and its stream name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapeItem {
    pub trade: Trade,
    pub json: Arc<str>,
    /// `btcusdt@trade`: the stream a connection must be subscribed to to receive it.
    pub stream: Arc<str>,
}

impl TapeItem {
    pub fn new(trade: Trade, json: impl Into<Arc<str>>) -> Self {
        TapeItem {
            stream: stream_name(&trade.symbol).into(),
            trade,
            json: json.into(),
        }
    }
}

/// The lower-case `<symbol>@trade` stream name of a symbol.
pub fn stream_name(symbol: &Symbol) -> String {
    format!("{}@trade", symbol.as_str().to_lowercase())
}
