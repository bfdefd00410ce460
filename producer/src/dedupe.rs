//! Per-symbol dedupe and gap tracking. Pure: it only remembers the last trade id seen
//! per symbol. A trade whose id is not above that is a duplicate (this is how the
//! overlap of two websocket connections during a rotation is written once); an id more
//! than one above is a gap (trades the exchange sent that we never got).
//!
//! Memory is bounded: one id per symbol, at most `max_symbols` symbols; past that the
//! least recently seen symbol is forgotten (its next trade is then taken as new).

use foldhash::{HashMap, HashMapExt};

use tradeflow_shared::Symbol;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next trade (or the first seen for the symbol): write it.
    New,
    /// Ids `last+1 ..= id-1` never arrived; write this one.
    Gap { missing: u64, after: u64 },
    /// Already seen (id ≤ last): drop it.
    Duplicate { last: u64 },
}

impl Verdict {
    pub fn is_new(&self) -> bool {
        !matches!(self, Verdict::Duplicate { .. })
    }
}

#[derive(Debug)]
pub struct Dedupe {
    last: HashMap<Symbol, (u64, u64)>, // symbol → (last id, tick last seen)
    tick: u64,
    max_symbols: usize,
}

impl Dedupe {
    pub fn new(max_symbols: usize) -> Self {
        Dedupe {
            last: HashMap::new(),
            tick: 0,
            max_symbols: max_symbols.max(1),
        }
    }

    /// Judges one trade and remembers it if new.
    pub fn check(&mut self, symbol: Symbol, id: u64) -> Verdict {
        self.tick += 1;
        let tick = self.tick;
        if let Some(entry) = self.last.get_mut(&symbol) {
            let last = entry.0;
            if id <= last {
                return Verdict::Duplicate { last };
            }
            *entry = (id, tick);
            return if id > last + 1 {
                Verdict::Gap {
                    missing: id - last - 1,
                    after: last,
                }
            } else {
                Verdict::New
            };
        }
        if self.last.len() >= self.max_symbols {
            // Rare (more symbols than configured): an O(n) scan is fine here.
            if let Some(oldest) = self.last.iter().min_by_key(|(_, v)| v.1).map(|(k, _)| *k) {
                self.last.remove(&oldest);
            }
        }
        self.last.insert(symbol, (id, tick));
        Verdict::New
    }

    pub fn symbols(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Symbol {
        Symbol::new(x).unwrap()
    }

    #[test]
    fn first_trade_is_new_then_in_order() {
        let mut d = Dedupe::new(10);
        assert_eq!(d.check(s("BTCUSDT"), 100), Verdict::New);
        assert_eq!(d.check(s("BTCUSDT"), 101), Verdict::New);
        assert_eq!(d.check(s("ETHUSDT"), 5), Verdict::New);
    }

    #[test]
    fn rotation_overlap_is_dropped() {
        let mut d = Dedupe::new(10);
        for id in 1..=10 {
            assert!(d.check(s("BTCUSDT"), id).is_new());
        }
        // The new connection replays 8..=10 before going further.
        for id in 8..=10 {
            assert_eq!(d.check(s("BTCUSDT"), id), Verdict::Duplicate { last: 10 });
        }
        assert_eq!(d.check(s("BTCUSDT"), 11), Verdict::New);
    }

    #[test]
    fn gaps_are_reported_with_their_size() {
        let mut d = Dedupe::new(10);
        d.check(s("BTCUSDT"), 10);
        assert_eq!(
            d.check(s("BTCUSDT"), 15),
            Verdict::Gap {
                missing: 4,
                after: 10
            }
        );
        // A late trade from inside the gap is not written twice nor out of order.
        assert_eq!(d.check(s("BTCUSDT"), 12), Verdict::Duplicate { last: 15 });
    }

    #[test]
    fn memory_is_bounded_by_symbol_count() {
        let mut d = Dedupe::new(3);
        d.check(s("AAA"), 1);
        d.check(s("BBB"), 1);
        d.check(s("AAA"), 2);
        d.check(s("CCC"), 1);
        d.check(s("DDD"), 1); // evicts BBB, the least recently seen
        assert_eq!(d.symbols(), 3);
        assert_eq!(d.check(s("AAA"), 2), Verdict::Duplicate { last: 2 });
        assert_eq!(d.check(s("BBB"), 1), Verdict::New);
    }
}
