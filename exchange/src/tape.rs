//! The global trade tape: what the exchange emits, in one timeline. Built from a capture
//! file (newline-delimited trade events as Binance sends them) or from the deterministic
//! generator. A finite tape is known in full up front, so tests can take it as ground
//! truth (exact per-symbol counts and volumes).

use std::collections::BTreeMap;
use std::sync::Arc;

use tradeflow_shared::{decode_event, Event, Fixed8, Symbol, Trade};

use crate::gen::Generator;
use crate::item::TapeItem;

#[derive(Debug, thiserror::Error)]
pub enum TapeError {
    #[error("capture line {line}: {reason}")]
    BadLine { line: usize, reason: String },
    #[error("capture is empty")]
    Empty,
}

/// Where the tape comes from and how it ends.
#[derive(Debug, Clone)]
pub enum Tape {
    /// Emitted once, then the tape ends.
    Finite(Arc<Vec<TapeItem>>),
    /// Replayed forever; each pass shifts trade ids and times so they keep increasing.
    Looping(Arc<Vec<TapeItem>>),
    /// Generated forever.
    Endless(Generator),
}

impl Tape {
    /// Parses a capture: one trade event per line (raw or combined-stream form); blank
    /// lines are skipped, anything else that is not a trade is an error (a capture is
    /// ground truth, so it must be clean).
    pub fn parse_capture(text: &str) -> Result<Vec<TapeItem>, TapeError> {
        let mut items = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            match decode_event(line) {
                Ok(Event::Trade { trade, json }) => items.push(TapeItem::new(trade, json)),
                Ok(other) => {
                    return Err(TapeError::BadLine {
                        line: i + 1,
                        reason: format!("not a trade: {other:?}"),
                    })
                }
                Err(e) => {
                    return Err(TapeError::BadLine {
                        line: i + 1,
                        reason: e.to_string(),
                    })
                }
            }
        }
        if items.is_empty() {
            return Err(TapeError::Empty);
        }
        Ok(items)
    }

    /// The whole tape when it is finite (the ground truth), `None` otherwise.
    pub fn finite_items(&self) -> Option<&Arc<Vec<TapeItem>>> {
        match self {
            Tape::Finite(items) => Some(items),
            _ => None,
        }
    }

    /// Every symbol on the tape with its first price (what `ticker/price` reports
    /// before anything was emitted).
    pub fn initial_prices(&self) -> BTreeMap<Symbol, Fixed8> {
        let mut out = BTreeMap::new();
        match self {
            Tape::Finite(items) | Tape::Looping(items) => {
                for it in items.iter() {
                    out.entry(it.trade.symbol).or_insert(it.trade.price);
                }
            }
            Tape::Endless(g) => out.extend(g.initial_prices()),
        }
        out
    }

    /// A cursor that yields the tape's items in order.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            tape: self.clone(),
            index: 0,
            shifts: BTreeMap::new(),
        }
    }
}

/// Walks a tape. Pure: no clock, no I/O.
pub struct Cursor {
    tape: Tape,
    index: u64,
    /// Per symbol, how far a looping pass shifts ids and times: (id span, time span).
    shifts: BTreeMap<Symbol, (u64, u64)>,
}

impl Cursor {
    pub fn next_item(&mut self) -> Option<TapeItem> {
        let i = self.index;
        self.index += 1;
        match &mut self.tape {
            Tape::Finite(items) => items.get(i as usize).cloned(),
            Tape::Looping(items) => {
                let items = items.clone();
                let len = items.len() as u64;
                let pass = i / len;
                let base = &items[(i % len) as usize];
                if pass == 0 {
                    return Some(base.clone());
                }
                if self.shifts.is_empty() {
                    self.shifts = loop_shifts(&items);
                }
                let (id_span, time_span) = self.shifts[&base.trade.symbol];
                let mut t = base.trade;
                t.trade_id += pass * id_span;
                t.trade_time_ms += pass * time_span;
                t.event_time_ms += pass * time_span;
                Some(TapeItem::new(t, t.to_json()))
            }
            Tape::Endless(g) => Some(g.next_item()),
        }
    }
}

/// For each symbol: one more than its id range, and one more than the tape's time range,
/// so a shifted pass starts right after the previous one.
fn loop_shifts(items: &[TapeItem]) -> BTreeMap<Symbol, (u64, u64)> {
    let mut ids: BTreeMap<Symbol, (u64, u64)> = BTreeMap::new();
    let (mut tmin, mut tmax) = (u64::MAX, 0);
    for it in items {
        let e = ids
            .entry(it.trade.symbol)
            .or_insert((it.trade.trade_id, it.trade.trade_id));
        e.0 = e.0.min(it.trade.trade_id);
        e.1 = e.1.max(it.trade.trade_id);
        tmin = tmin.min(it.trade.trade_time_ms.min(it.trade.event_time_ms));
        tmax = tmax.max(it.trade.trade_time_ms.max(it.trade.event_time_ms));
    }
    let time_span = tmax - tmin + 1;
    ids.into_iter()
        .map(|(s, (lo, hi))| (s, (hi - lo + 1, time_span)))
        .collect()
}

/// Per-symbol ground truth of a list of trades: count and exact volume (sum of
/// quantities, in 1e-8 units) and quote volume (sum of price × quantity, 1e-16 units).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SymbolTotals {
    pub count: u64,
    pub volume_units: u128,
    pub quote_units: u128,
}

pub fn totals<'a>(trades: impl IntoIterator<Item = &'a Trade>) -> BTreeMap<Symbol, SymbolTotals> {
    let mut out: BTreeMap<Symbol, SymbolTotals> = BTreeMap::new();
    for t in trades {
        let e = out.entry(t.symbol).or_default();
        e.count += 1;
        e.volume_units += t.qty.units() as u128;
        e.quote_units += t.quote_units();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":10,"p":"2.5","q":"1","T":1717000000120,"m":true,"M":true}"#;
    const B: &str = r#"{"e":"trade","E":1717000000200,"s":"ETHBTC","t":5,"p":"0.05","q":"2","b":1,"a":2,"T":1717000000200,"m":false,"M":true}"#;

    #[test]
    fn parses_capture_keeping_json_verbatim() {
        let text = format!("{A}\n\n{{\"stream\":\"ethbtc@trade\",\"data\":{B}}}\n");
        let items = Tape::parse_capture(&text).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(&*items[0].json, A);
        assert_eq!(&*items[1].json, B);
        assert_eq!(&*items[1].stream, "ethbtc@trade");
    }

    #[test]
    fn rejects_bad_capture_lines() {
        let err = Tape::parse_capture(&format!("{A}\nnot json\n")).unwrap_err();
        assert!(matches!(err, TapeError::BadLine { line: 2, .. }), "{err}");
        assert!(matches!(
            Tape::parse_capture("\n").unwrap_err(),
            TapeError::Empty
        ));
    }

    #[test]
    fn looping_keeps_ids_increasing() {
        let mut items = Tape::parse_capture(&format!("{A}\n{B}\n")).unwrap();
        let mut t = items[0].trade;
        t.trade_id = 11;
        items.push(TapeItem::new(t, t.to_json()));
        let tape = Tape::Looping(Arc::new(items));
        let mut c = tape.cursor();
        let ids: Vec<(String, u64)> = (0..9)
            .map(|_| {
                let it = c.next_item().unwrap();
                (it.trade.symbol.to_string(), it.trade.trade_id)
            })
            .collect();
        let btc: Vec<u64> = ids
            .iter()
            .filter(|x| x.0 == "BTCUSDT")
            .map(|x| x.1)
            .collect();
        let eth: Vec<u64> = ids
            .iter()
            .filter(|x| x.0 == "ETHBTC")
            .map(|x| x.1)
            .collect();
        assert_eq!(btc, vec![10, 11, 12, 13, 14, 15]);
        assert_eq!(eth, vec![5, 6, 7]);
    }

    #[test]
    fn finite_cursor_ends() {
        let tape = Tape::Finite(Arc::new(Tape::parse_capture(A).unwrap()));
        let mut c = tape.cursor();
        assert!(c.next_item().is_some());
        assert!(c.next_item().is_none());
    }

    #[test]
    fn totals_are_exact() {
        let items = Tape::parse_capture(&format!("{A}\n{A}\n{B}\n")).unwrap();
        let tot = totals(items.iter().map(|i| &i.trade));
        let btc = tot[&Symbol::new("BTCUSDT").unwrap()];
        assert_eq!(btc.count, 2);
        assert_eq!(btc.volume_units, 200_000_000);
        assert_eq!(btc.quote_units, 2 * 250_000_000 * 100_000_000);
    }
}
