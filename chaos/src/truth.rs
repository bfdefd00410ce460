//! The ground truth: the exchange's finite tape (deterministic from a seed) and, per
//! symbol, its exact count, base volume (1e-8 units) and quote volume (1e-16 units).

use std::collections::BTreeMap;
use std::sync::Arc;

use tradeflow_exchange::gen::parse_symbols;
use tradeflow_exchange::{totals, GenConfig, Generator, SymbolTotals, TapeItem};
use tradeflow_shared::{Symbol, SEED_SYMBOLS};

/// The 14 seed symbols, then made-up ones (`CHAOS01USDT`, …) up to `n` (the generator
/// gives unknown symbols a generic price profile).
pub fn symbols(n: usize) -> Vec<Symbol> {
    let mut names: Vec<String> = SEED_SYMBOLS.iter().take(n).map(|s| s.to_string()).collect();
    let mut i = 1;
    while names.len() < n {
        names.push(format!("CHAOS{i:02}USDT"));
        i += 1;
    }
    parse_symbols(names.iter().map(String::as_str)).expect("generated symbols are valid")
}

/// `trades` trades over `symbols`, the same for the same seed.
pub fn tape(symbols: Vec<Symbol>, seed: u64, trades: usize) -> Arc<Vec<TapeItem>> {
    let mut g = Generator::new(GenConfig {
        symbols,
        seed,
        start_ms: 1_717_000_000_000,
        old_format_every: 50,
    });
    Arc::new(g.take(trades))
}

/// Per-symbol exact totals of the tape, keyed by symbol name.
pub fn truth(items: &[TapeItem]) -> BTreeMap<String, SymbolTotals> {
    totals(items.iter().map(|i| &i.trade))
        .into_iter()
        .map(|(s, t)| (s.as_str().to_string(), t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_distinct_and_valid() {
        let s = symbols(40);
        assert_eq!(s.len(), 40);
        let set: std::collections::BTreeSet<_> = s.iter().collect();
        assert_eq!(set.len(), 40);
        assert_eq!(symbols(3).len(), 3);
    }

    #[test]
    fn truth_sums_the_tape_exactly() {
        let items = tape(symbols(20), 5, 10_000);
        let t = truth(&items);
        assert_eq!(t.values().map(|x| x.count).sum::<u64>(), 10_000);
        assert_eq!(t.len(), 20, "every symbol traded");
        let btc: u128 = items
            .iter()
            .filter(|i| i.trade.symbol.as_str() == "BTCUSDT")
            .map(|i| i.trade.qty.units() as u128)
            .sum();
        assert_eq!(t["BTCUSDT"].volume_units, btc);
        assert_eq!(tape(symbols(20), 5, 100), tape(symbols(20), 5, 100));
    }
}
