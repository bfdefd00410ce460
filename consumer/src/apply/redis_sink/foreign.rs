//! Foreign values in tradeflow's keys: a legacy job writing `symbol:<SYM>` (that
//! namespace is shared), a hand edit, a key of the wrong type. The apply scripts check
//! every key a symbol's writes rely on before writing anything (`lua/common.lua`,
//! `prepare`) and name the symbols whose keys hold something else; the sink then
//! applies the batch without them and keeps their trades aside as poison records
//! (kind `foreign_value`, with the reason) in the dead-letter stream, so the batch is
//! never half applied, the other symbols count on, and nothing is lost silently.
//!
//! Those trades are not applied, so the symbol's `hwm` does not move: once the key is
//! repaired the next trades above it count again, and the ids kept aside become a gap,
//! so re-applying them later (a replay) counts each exactly once.

use tradeflow_shared::{Position, Symbol};

use crate::apply::fold::{PoisonEntry, SymbolDelta};

/// The dead-letter `kind` of a trade kept aside for a foreign value.
pub const KIND: &str = "foreign_value";

/// One poison record per trade of `sym`, all at `at` (the batch's last position: the
/// dead-letter stream keeps a batch's records once, by position, and the fold does not
/// keep each trade's own record position).
pub(super) fn kept_aside(sym: &SymbolDelta, reason: &str, at: &Position) -> Vec<PoisonEntry> {
    sym.trades
        .iter()
        .map(|t| PoisonEntry {
            pos: at.clone(),
            kind: KIND,
            reason: reason.to_string(),
            // Symbols are validated (letters and digits): safe inside a JSON string.
            data: format!(
                r#"{{"s":"{}","t":{},"p":"{}","q":"{}","T":{}}}"#,
                sym.symbol, t.id, t.price, t.qty, t.time_ms
            )
            .into_bytes(),
        })
        .collect()
}

pub(super) fn warn(stream: &str, shard_id: &str, symbol: &Symbol, reason: &str, trades: usize) {
    tracing::warn!(
        stream,
        shard_id,
        %symbol,
        reason,
        trades,
        "a key of this symbol holds a foreign value: its trades of the batch are kept aside \
         in the dead-letter stream, not applied; the symbol counts again once the key is repaired"
    );
}
