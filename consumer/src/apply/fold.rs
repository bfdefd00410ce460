//! The pure fold of one batch of decoded records into what the Redis script needs: per
//! symbol, the trades sorted by trade id and cut into maximal runs of consecutive ids
//! ("segments") with their aggregated deltas; the poison records with their positions;
//! the batch's first and last position. No I/O, no floating point.
//!
//! Cost: one pass over the records, one sort per symbol (skipped when the ids are
//! already ascending, the normal case), one pass to build segments. The only
//! allocations are per symbol and per segment, never per trade (a reused `Vec` per
//! symbol grows amortised).

use std::collections::HashMap;

use tradeflow_shared::kline::Kline;
use tradeflow_shared::{Fixed8, Position, Symbol};

use crate::record::{DecodedRecord, Item};

/// Trade ids must stay exact as Lua numbers (doubles); anything above is poison.
pub const MAX_TRADE_ID: u64 = 1 << 53;

pub use tradeflow_shared::kline::MINUTE_MS;

/// The few fields of a trade the sink needs, kept so a symbol can be re-sent one trade
/// per segment (the rare "split needed" path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradeLite {
    pub id: u64,
    pub price: Fixed8,
    pub qty: Fixed8,
    pub time_ms: u64,
    /// Binance's `m`: a trade whose buyer is the maker is not a taker buy.
    pub buyer_is_maker: bool,
}

/// A run of consecutive trade ids `first_id..=last_id` of one symbol, applied or
/// skipped as a whole by the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub first_id: u64,
    pub last_id: u64,
    pub count: u64,
    pub base_units: u128,
    pub quote_units: u128,
    /// Price and time of the trade with the highest id in the segment.
    pub last_price: Fixed8,
    pub last_time_ms: u64,
    /// The kline of the segment's trades in each minute they fall in (by trade time):
    /// usually one, more when the run crosses a minute boundary.
    pub minutes: Vec<Kline>,
}

/// Everything the batch holds for one symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolDelta {
    pub symbol: Symbol,
    /// Ascending, disjoint, non-adjacent runs.
    pub segments: Vec<Segment>,
    /// The symbol's distinct trades sorted by id (source of the segments).
    pub trades: Vec<TradeLite>,
}

/// A record kept aside: its position, a bounded label, the reason and the (already
/// bounded) data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoisonEntry {
    pub pos: Position,
    pub kind: &'static str,
    pub reason: String,
    pub data: Vec<u8>,
}

/// The fold of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchDelta {
    /// Position of the first and last record of the batch (whatever its item).
    pub first: Option<Position>,
    pub last: Option<Position>,
    /// Sorted by symbol, so the script's work (and tests) are deterministic.
    pub symbols: Vec<SymbolDelta>,
    /// In position order.
    pub poison: Vec<PoisonEntry>,
    /// Records in the batch (trades, poison and ignored ones).
    pub records: usize,
    /// Trades seen twice inside this very batch (same symbol and id); dropped here.
    pub in_batch_duplicates: u64,
    pub ignored: u64,
}

impl BatchDelta {
    /// Distinct trades carried (before Redis decides what is new).
    pub fn trade_count(&self) -> u64 {
        self.symbols.iter().map(|s| s.trades.len() as u64).sum()
    }
}

/// Folds a batch (records in shard order) into per-symbol segments.
pub fn fold(records: &[DecodedRecord]) -> BatchDelta {
    let mut out = BatchDelta {
        first: records.first().map(|r| r.pos.clone()),
        last: records.last().map(|r| r.pos.clone()),
        records: records.len(),
        ..BatchDelta::default()
    };
    let mut index: HashMap<Symbol, usize> = HashMap::new();
    let mut per_symbol: Vec<(Symbol, Vec<TradeLite>)> = Vec::new();
    // Batches are usually dominated by a few symbols: remember the last one looked up.
    let mut last_hit: Option<(Symbol, usize)> = None;
    // Up to this many symbols a scan beats hashing a 33-byte key; beyond, the map.
    const SCAN_LIMIT: usize = 16;
    for rec in records {
        match &rec.item {
            Item::Trade(t) => {
                if t.trade_id > MAX_TRADE_ID {
                    out.poison.push(PoisonEntry {
                        pos: rec.pos.clone(),
                        kind: "trade_id_range",
                        reason: format!("trade id {} above 2^53", t.trade_id),
                        data: t.to_json().into_bytes(),
                    });
                    continue;
                }
                let slot = match last_hit {
                    Some((s, i)) if s == t.symbol => i,
                    _ => {
                        let found = if per_symbol.len() <= SCAN_LIMIT {
                            per_symbol.iter().position(|(s, _)| *s == t.symbol)
                        } else {
                            index.get(&t.symbol).copied()
                        };
                        let i = found.unwrap_or_else(|| {
                            per_symbol.push((t.symbol, Vec::with_capacity(32)));
                            let i = per_symbol.len() - 1;
                            if per_symbol.len() > SCAN_LIMIT {
                                if index.is_empty() {
                                    // Crossing the limit: index the ones scanned so far.
                                    for (j, (s, _)) in per_symbol.iter().enumerate() {
                                        index.insert(*s, j);
                                    }
                                } else {
                                    index.insert(t.symbol, i);
                                }
                            }
                            i
                        });
                        last_hit = Some((t.symbol, i));
                        i
                    }
                };
                per_symbol[slot].1.push(TradeLite {
                    id: t.trade_id,
                    price: t.price,
                    qty: t.qty,
                    time_ms: t.trade_time_ms,
                    buyer_is_maker: t.buyer_is_maker,
                });
            }
            Item::Poison(p) => out.poison.push(PoisonEntry {
                pos: rec.pos.clone(),
                kind: p.kind,
                reason: p.reason.clone(),
                data: p.data.clone(),
            }),
            Item::Ignored => out.ignored += 1,
        }
    }
    per_symbol.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    for (symbol, mut trades) in per_symbol {
        if !trades.is_sorted_by_key(|t| t.id) {
            // Stable, so of two copies of one id the first read is kept.
            trades.sort_by_key(|t| t.id);
        }
        let before = trades.len();
        trades.dedup_by_key(|t| t.id);
        out.in_batch_duplicates += (before - trades.len()) as u64;
        let segments = segments_of(&trades);
        out.symbols.push(SymbolDelta {
            symbol,
            segments,
            trades,
        });
    }
    out
}

/// Cuts sorted, distinct trades into maximal runs of consecutive ids.
pub fn segments_of(trades: &[TradeLite]) -> Vec<Segment> {
    let mut segs: Vec<Segment> = Vec::new();
    for t in trades {
        match segs.last_mut() {
            Some(s) if s.last_id + 1 == t.id => add_to(s, t),
            _ => segs.push(single(t)),
        }
    }
    segs
}

/// One segment per trade: the fallback when a run overlaps what Redis has seen.
pub fn single_segments(trades: &[TradeLite]) -> Vec<Segment> {
    trades.iter().map(single).collect()
}

fn single(t: &TradeLite) -> Segment {
    let k = minute_of(t);
    Segment {
        first_id: t.id,
        last_id: t.id,
        count: 1,
        base_units: k.base,
        quote_units: k.quote,
        last_price: t.price,
        last_time_ms: t.time_ms,
        minutes: vec![k],
    }
}

fn minute_of(t: &TradeLite) -> Kline {
    Kline::of_trade(MINUTE_MS, t.id, t.price, t.qty, t.time_ms, t.buyer_is_maker)
}

fn add_to(s: &mut Segment, t: &TradeLite) {
    let k = minute_of(t);
    s.last_id = t.id;
    s.count += 1;
    // u128 holds 3.4e38 units: far beyond any batch (a trade is at most 1e28 units).
    s.base_units += k.base;
    s.quote_units += k.quote;
    s.last_price = t.price;
    s.last_time_ms = t.time_ms;
    match s
        .minutes
        .iter_mut()
        .rev()
        .find(|m| m.open_time_ms == k.open_time_ms)
    {
        Some(m) => m.merge(&k),
        None => s.minutes.push(k),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Poison;
    use tradeflow_shared::{SequenceNumber, Trade};

    fn trade(sym: &str, id: u64, price: &str, qty: &str, time_ms: u64) -> Trade {
        Trade {
            symbol: Symbol::new(sym).unwrap(),
            trade_id: id,
            price: Fixed8::parse(price).unwrap(),
            qty: Fixed8::parse(qty).unwrap(),
            trade_time_ms: time_ms,
            event_time_ms: time_ms,
            buyer_is_maker: false,
        }
    }

    fn rec(seq: u64, item: Item) -> DecodedRecord {
        DecodedRecord {
            pos: Position::new(SequenceNumber::parse(&seq.to_string()).unwrap(), 0),
            item,
        }
    }

    const T0: u64 = 1_717_000_000_000 - 1_717_000_000_000 % MINUTE_MS;

    #[test]
    fn empty_batch() {
        let d = fold(&[]);
        assert!(d.first.is_none() && d.last.is_none());
        assert!(d.symbols.is_empty());
    }

    #[test]
    fn consecutive_ids_make_one_segment_per_symbol() {
        let recs: Vec<_> = (1..=5)
            .map(|i| {
                rec(
                    i,
                    Item::Trade(trade("BTCUSDT", 100 + i, "2.5", "0.1", T0 + i)),
                )
            })
            .chain([rec(6, Item::Trade(trade("ETHBTC", 7, "0.05", "3", T0)))])
            .collect();
        let d = fold(&recs);
        assert_eq!(d.symbols.len(), 2);
        let btc = &d.symbols[0];
        assert_eq!(btc.symbol.as_str(), "BTCUSDT");
        assert_eq!(btc.segments.len(), 1);
        let s = &btc.segments[0];
        assert_eq!((s.first_id, s.last_id, s.count), (101, 105, 5));
        assert_eq!(s.base_units, 5 * 10_000_000);
        assert_eq!(s.quote_units, 5 * 250_000_000 * 10_000_000);
        assert_eq!(s.last_time_ms, T0 + 5);
        assert_eq!(s.minutes.len(), 1);
        assert_eq!(d.first.unwrap().seq.as_str(), "1");
        assert_eq!(d.last.unwrap().seq.as_str(), "6");
    }

    #[test]
    fn out_of_order_ids_are_sorted_and_duplicates_dropped() {
        let ids = [1, 2, 4, 3, 5, 4, 9];
        let recs: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| rec(i as u64, Item::Trade(trade("X1", id, "1", "1", T0 + id))))
            .collect();
        let d = fold(&recs);
        let segs = &d.symbols[0].segments;
        assert_eq!(d.in_batch_duplicates, 1);
        assert_eq!(segs.len(), 2);
        assert_eq!(
            (segs[0].first_id, segs[0].last_id, segs[0].count),
            (1, 5, 5)
        );
        assert_eq!((segs[1].first_id, segs[1].last_id), (9, 9));
        // Last price/time come from the highest id, not the last one read.
        assert_eq!(segs[0].last_time_ms, T0 + 5);
    }

    #[test]
    fn minutes_split_inside_a_segment() {
        let maker = Trade {
            buyer_is_maker: true,
            ..trade("A1", 3, "0.5", "4", T0 + 60_001)
        };
        let recs = vec![
            rec(1, Item::Trade(trade("A1", 1, "1", "1", T0 + 59_999))),
            rec(2, Item::Trade(trade("A1", 2, "3", "2", T0 + 60_000))),
            rec(3, Item::Trade(maker)),
        ];
        let d = fold(&recs);
        let m = &d.symbols[0].segments[0].minutes;
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].open_time_ms, m[0].count), (T0, 1));
        assert_eq!((m[1].count, m[1].base), (2, 600_000_000));
        // The minute's kline: open/close by id, taker buys only (`m` = false).
        let k = m[1];
        assert_eq!((k.open_id, k.close_id), (2, 3));
        let p = |s| Fixed8::parse(s).unwrap();
        assert_eq!(
            (k.open, k.close, k.high, k.low),
            (p("3"), p("0.5"), p("3"), p("0.5"))
        );
        assert_eq!(
            (k.taker_base, k.taker_quote),
            (200_000_000, 6 * 10u128.pow(16))
        );
    }

    #[test]
    fn poison_and_ignored_are_kept_in_order() {
        let p = Poison {
            kind: "json",
            reason: "bad".into(),
            data: b"{".to_vec(),
        };
        let recs = vec![
            rec(1, Item::Poison(p.clone())),
            rec(2, Item::Ignored),
            rec(3, Item::Trade(trade("A1", MAX_TRADE_ID + 1, "1", "1", T0))),
        ];
        let d = fold(&recs);
        assert_eq!(d.poison.len(), 2);
        assert_eq!(d.poison[0].kind, "json");
        assert_eq!(d.poison[1].kind, "trade_id_range");
        assert_eq!(d.ignored, 1);
        assert!(d.symbols.is_empty());
    }

    #[test]
    fn single_segments_cover_the_same_totals() {
        let recs: Vec<_> = (1..=4)
            .map(|i| rec(i, Item::Trade(trade("A1", i, "3.3", "1.1", T0))))
            .collect();
        let d = fold(&recs);
        let singles = single_segments(&d.symbols[0].trades);
        assert_eq!(singles.len(), 4);
        let q: u128 = singles.iter().map(|s| s.quote_units).sum();
        assert_eq!(q, d.symbols[0].segments[0].quote_units);
    }

    /// Past the scan limit symbols are found through the map; nothing is lost or split.
    #[test]
    fn many_symbols_interleaved() {
        let names: Vec<String> = (0..40).map(|i| format!("S{i:02}USDT")).collect();
        let recs: Vec<_> = (0..400u64)
            .map(|i| {
                let sym = &names[(i * 7 % 40) as usize];
                rec(i + 1, Item::Trade(trade(sym, 1 + i / 40, "1", "1", T0)))
            })
            .collect();
        let d = fold(&recs);
        assert_eq!(d.symbols.len(), 40);
        assert!(d
            .symbols
            .windows(2)
            .all(|w| w[0].symbol.as_str() < w[1].symbol.as_str()));
        for s in &d.symbols {
            assert_eq!(s.trades.len(), 10, "{}", s.symbol);
            assert_eq!(s.segments.len(), 1);
        }
        assert_eq!(d.in_batch_duplicates, 0);
    }
}
