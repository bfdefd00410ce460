//! The pure part of the backfill: per-symbol ordering around gaps being fetched.

use std::collections::{HashMap, VecDeque};

use tradeflow_shared::Symbol;

use crate::source::SourceTrade;

/// Ids `from..=to` of `symbol` to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub symbol: Symbol,
    pub from: u64,
    pub to: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Emit(SourceTrade),
    Fetch(Fetch),
    /// A backfill given up before its answer (held-trades limit): its fetch's answer
    /// will be ignored; the reason is for the failure counter.
    GaveUp(Fetch, &'static str),
}

#[derive(Debug)]
struct Pending {
    from: u64,
    to: u64,
    held: VecDeque<SourceTrade>,
    /// Order of creation, to give up the oldest first.
    seq: u64,
}

#[derive(Debug, Default)]
struct SymState {
    /// Highest id sent (or being backfilled before a held trade).
    last: u64,
    pending: Option<Pending>,
}

/// The pure part: per-symbol ordering around backfills.
#[derive(Debug)]
pub struct GapFiller {
    symbols: HashMap<Symbol, SymState>,
    held: usize,
    max_held: usize,
    max_gap: u64,
    next_seq: u64,
}

impl GapFiller {
    pub fn new(max_gap: u64, max_held: usize) -> Self {
        GapFiller {
            symbols: HashMap::new(),
            held: 0,
            max_held: max_held.max(1),
            max_gap,
            next_seq: 0,
        }
    }

    /// Trades held behind running backfills.
    pub fn held(&self) -> usize {
        self.held
    }

    /// One trade from the source.
    pub fn on_trade(&mut self, t: SourceTrade, out: &mut Vec<Step>) {
        if self.held >= self.max_held {
            self.give_up_oldest(out);
        }
        let sym = t.trade.symbol;
        let id = t.trade.trade_id;
        let st = self.symbols.entry(sym).or_default();
        if let Some(p) = st.pending.as_mut() {
            p.held.push_back(t);
            self.held += 1;
            return;
        }
        if st.last == 0 || id <= st.last + 1 || id - st.last - 1 > self.max_gap {
            // First sight, next in line, a duplicate (the pipeline drops it), or a gap
            // too large to fetch (the pipeline counts it).
            if id > st.last {
                st.last = id;
            }
            out.push(Step::Emit(t));
            return;
        }
        let fetch = Fetch {
            symbol: sym,
            from: st.last + 1,
            to: id - 1,
        };
        st.pending = Some(Pending {
            from: fetch.from,
            to: fetch.to,
            held: VecDeque::from([t]),
            seq: self.next_seq,
        });
        self.next_seq += 1;
        self.held += 1;
        st.last = id;
        out.push(Step::Fetch(fetch));
    }

    /// A fetch's answer (any trades, possibly fewer than asked, possibly none when it
    /// failed): the trades inside the gap go out in id order, then the held ones.
    pub fn on_fetched(&mut self, fetch: &Fetch, trades: Vec<SourceTrade>, out: &mut Vec<Step>) {
        let Some(st) = self.symbols.get_mut(&fetch.symbol) else {
            return;
        };
        match &st.pending {
            Some(p) if p.from == fetch.from && p.to == fetch.to => {}
            // Given up earlier; its trades are already out.
            _ => return,
        }
        let p = st.pending.take().expect("checked");
        let mut got: Vec<SourceTrade> = trades
            .into_iter()
            .filter(|t| {
                t.trade.symbol == fetch.symbol && (p.from..=p.to).contains(&t.trade.trade_id)
            })
            .collect();
        got.sort_by_key(|t| t.trade.trade_id);
        got.dedup_by_key(|t| t.trade.trade_id);
        out.extend(got.into_iter().map(Step::Emit));
        self.release(fetch.symbol, p, out);
    }

    /// Stop waiting for every backfill (shutdown): release all held trades in order.
    pub fn give_up_all(&mut self, out: &mut Vec<Step>) {
        let syms: Vec<Symbol> = self
            .symbols
            .iter()
            .filter(|(_, s)| s.pending.is_some())
            .map(|(k, _)| *k)
            .collect();
        for sym in syms {
            self.give_up(sym, "shutdown", out);
        }
    }

    fn give_up_oldest(&mut self, out: &mut Vec<Step>) {
        let oldest = self
            .symbols
            .iter()
            .filter_map(|(k, s)| s.pending.as_ref().map(|p| (p.seq, *k)))
            .min();
        if let Some((_, sym)) = oldest {
            self.give_up(sym, "held_limit", out);
        }
    }

    fn give_up(&mut self, sym: Symbol, reason: &'static str, out: &mut Vec<Step>) {
        let Some(p) = self.symbols.get_mut(&sym).and_then(|s| s.pending.take()) else {
            return;
        };
        out.push(Step::GaveUp(
            Fetch {
                symbol: sym,
                from: p.from,
                to: p.to,
            },
            reason,
        ));
        self.release(sym, p, out);
    }

    /// The held trades go through the usual rules again (one of them may open the
    /// next gap, holding the rest behind it).
    fn release(&mut self, sym: Symbol, p: Pending, out: &mut Vec<Step>) {
        self.held -= p.held.len();
        if let Some(st) = self.symbols.get_mut(&sym) {
            // The gap is done with: filled, or left for the pipeline's gap check.
            st.last = p.to;
        }
        for t in p.held {
            self.on_trade(t, out);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use tradeflow_shared::{Fixed8, Trade};

    /// Trade `id` of `sym` (the backfill tests' one fixture).
    pub(in crate::source::backfill) fn t(sym: &str, id: u64) -> SourceTrade {
        let trade = Trade {
            symbol: Symbol::new(sym).unwrap(),
            trade_id: id,
            price: Fixed8::parse("1").unwrap(),
            qty: Fixed8::parse("1").unwrap(),
            trade_time_ms: id,
            event_time_ms: id,
            buyer_is_maker: false,
        };
        SourceTrade {
            json: trade.to_json(),
            trade,
        }
    }

    fn emitted(steps: &[Step]) -> Vec<(String, u64)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Emit(t) => Some((t.trade.symbol.as_str().to_string(), t.trade.trade_id)),
                _ => None,
            })
            .collect()
    }

    /// The ids of `sym` emitted, in order.
    pub(in crate::source::backfill) fn ids(steps: &[Step], sym: &str) -> Vec<u64> {
        emitted(steps)
            .into_iter()
            .filter(|(s, _)| s == sym)
            .map(|(_, i)| i)
            .collect()
    }

    #[test]
    fn a_gap_holds_its_symbol_only_and_is_filled_in_order() {
        let mut g = GapFiller::new(100, 1000);
        let mut out = Vec::new();
        for id in [1, 2] {
            g.on_trade(t("A", id), &mut out);
        }
        g.on_trade(t("B", 7), &mut out);
        g.on_trade(t("A", 6), &mut out); // 3..=5 missing
        g.on_trade(t("A", 7), &mut out);
        g.on_trade(t("B", 8), &mut out); // B is not held back
        assert_eq!(
            out.iter().filter(|s| matches!(s, Step::Fetch(_))).count(),
            1
        );
        let f = Fetch {
            symbol: Symbol::new("A").unwrap(),
            from: 3,
            to: 5,
        };
        assert!(out.contains(&Step::Fetch(f.clone())));
        assert_eq!(ids(&out, "A"), [1, 2]);
        assert_eq!(ids(&out, "B"), [7, 8]);
        assert_eq!(g.held(), 2);
        // The answer may hold extra and repeated trades; only 3..=5 are taken, once each.
        g.on_fetched(
            &f,
            vec![
                t("A", 5),
                t("A", 3),
                t("A", 4),
                t("A", 4),
                t("A", 6),
                t("A", 2),
            ],
            &mut out,
        );
        assert_eq!(ids(&out, "A"), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(g.held(), 0);
        g.on_trade(t("A", 8), &mut out);
        assert_eq!(ids(&out, "A"), [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn a_partial_answer_leaves_the_rest_of_the_gap_for_the_gap_check() {
        let mut g = GapFiller::new(100, 1000);
        let mut out = Vec::new();
        g.on_trade(t("A", 1), &mut out);
        g.on_trade(t("A", 10), &mut out);
        let f = Fetch {
            symbol: Symbol::new("A").unwrap(),
            from: 2,
            to: 9,
        };
        g.on_fetched(&f, vec![t("A", 2), t("A", 3)], &mut out);
        assert_eq!(ids(&out, "A"), [1, 2, 3, 10]);
        // A stale answer for the same range changes nothing.
        g.on_fetched(&f, vec![t("A", 4)], &mut out);
        assert_eq!(ids(&out, "A"), [1, 2, 3, 10]);
    }

    #[test]
    fn a_held_trade_can_open_the_next_gap() {
        let mut g = GapFiller::new(100, 1000);
        let mut out = Vec::new();
        g.on_trade(t("A", 1), &mut out);
        g.on_trade(t("A", 5), &mut out); // gap 2..=4
        g.on_trade(t("A", 9), &mut out); // held; after 5 it is gap 6..=8
        g.on_trade(t("A", 10), &mut out);
        let first = Fetch {
            symbol: Symbol::new("A").unwrap(),
            from: 2,
            to: 4,
        };
        g.on_fetched(&first, vec![t("A", 2), t("A", 3), t("A", 4)], &mut out);
        let second = Fetch {
            symbol: Symbol::new("A").unwrap(),
            from: 6,
            to: 8,
        };
        assert!(out.contains(&Step::Fetch(second.clone())));
        assert_eq!(ids(&out, "A"), [1, 2, 3, 4, 5]);
        assert_eq!(g.held(), 2);
        g.on_fetched(&second, vec![], &mut out); // failed: the gap stays
        assert_eq!(ids(&out, "A"), [1, 2, 3, 4, 5, 9, 10]);
        assert_eq!(g.held(), 0);
    }

    #[test]
    fn duplicates_and_huge_gaps_pass_straight_through() {
        let mut g = GapFiller::new(100, 1000);
        let mut out = Vec::new();
        g.on_trade(t("A", 10), &mut out);
        g.on_trade(t("A", 9), &mut out); // duplicate: the pipeline drops it
        g.on_trade(t("A", 500), &mut out); // 489 missing > 100: not fetched
        g.on_trade(t("A", 501), &mut out);
        assert_eq!(ids(&out, "A"), [10, 9, 500, 501]);
        assert!(!out.iter().any(|s| matches!(s, Step::Fetch(_))));
    }

    #[test]
    fn the_held_limit_gives_up_the_oldest_backfill() {
        let mut g = GapFiller::new(100, 3);
        let mut out = Vec::new();
        g.on_trade(t("A", 1), &mut out);
        g.on_trade(t("B", 1), &mut out);
        g.on_trade(t("A", 5), &mut out); // held 1
        g.on_trade(t("B", 5), &mut out); // held 2
        g.on_trade(t("A", 6), &mut out); // held 3
        g.on_trade(t("B", 6), &mut out); // limit: A (oldest) given up and released
        assert!(out
            .iter()
            .any(|s| matches!(s, Step::GaveUp(f, "held_limit") if f.symbol.as_str() == "A")));
        assert_eq!(ids(&out, "A"), [1, 5, 6]);
        assert_eq!(ids(&out, "B"), [1]);
        assert_eq!(g.held(), 2);
        // A's late answer is ignored.
        let fa = Fetch {
            symbol: Symbol::new("A").unwrap(),
            from: 2,
            to: 4,
        };
        g.on_fetched(&fa, vec![t("A", 2)], &mut out);
        assert_eq!(ids(&out, "A"), [1, 5, 6]);
        g.give_up_all(&mut out);
        assert_eq!(ids(&out, "B"), [1, 5, 6]);
        assert_eq!(g.held(), 0);
    }
}
