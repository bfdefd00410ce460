//! Compares what Redis holds with the ground truth, symbol by symbol: trades counted,
//! lost (truth above Redis), double-counted (Redis above truth) and exact volumes.

use std::collections::BTreeMap;

use tradeflow_exchange::SymbolTotals;
use tradeflow_shared::decimal::format_scaled;

/// One symbol as read from Redis (`symbol:<SYM>` and `tradeflow:stats:<SYM>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub count: u64,
    /// Decimal strings as stored (8 and 16 fractional digits); `None` when absent.
    pub base: Option<String>,
    pub quote: Option<String>,
}

/// A symbol whose totals differ from the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub symbol: String,
    pub expected_count: u64,
    pub counted: u64,
    pub expected_base: String,
    pub base: Option<String>,
    pub expected_quote: String,
    pub quote: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub expected: u64,
    pub counted: u64,
    /// Σ over symbols of trades missing from Redis.
    pub lost: u64,
    /// Σ over symbols of trades counted more than once.
    pub doubled: u64,
    /// Symbols whose count, base or quote volume is not exactly the truth (includes
    /// symbols Redis has but the tape does not).
    pub mismatches: Vec<Mismatch>,
}

impl Verdict {
    pub fn exact(&self) -> bool {
        self.lost == 0 && self.doubled == 0 && self.mismatches.is_empty()
    }
}

/// `"12.50"` with `scale` 2 → 1250. Only plain non-negative decimals with exactly
/// `scale` fractional digits (the form the consumer stores).
pub fn parse_scaled(s: &str, scale: usize) -> Option<u128> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || frac.len() != scale {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    format!("{int}{frac}").parse().ok()
}

/// A stored decimal (absent counts as 0) equals `units` at `scale`.
fn stored_is(stored: &Option<String>, scale: usize, units: u128) -> bool {
    stored
        .as_deref()
        .and_then(|s| parse_scaled(s, scale))
        .unwrap_or(0)
        == units
}

pub fn verify(
    truth: &BTreeMap<String, SymbolTotals>,
    observed: &BTreeMap<String, Observed>,
) -> Verdict {
    let mut v = Verdict::default();
    let none = Observed::default();
    let zero = SymbolTotals::default();
    let symbols: std::collections::BTreeSet<&String> =
        truth.keys().chain(observed.keys()).collect();
    for sym in symbols {
        let t = truth.get(sym).unwrap_or(&zero);
        let o = observed.get(sym).unwrap_or(&none);
        v.expected += t.count;
        v.counted += o.count;
        v.lost += t.count.saturating_sub(o.count);
        v.doubled += o.count.saturating_sub(t.count);
        let base_ok = stored_is(&o.base, 8, t.volume_units);
        let quote_ok = stored_is(&o.quote, 16, t.quote_units);
        if t.count != o.count || !base_ok || !quote_ok {
            v.mismatches.push(Mismatch {
                symbol: sym.clone(),
                expected_count: t.count,
                counted: o.count,
                expected_base: format_scaled(t.volume_units, 8),
                base: o.base.clone(),
                expected_quote: format_scaled(t.quote_units, 16),
                quote: o.quote.clone(),
            });
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(count: u64, volume_units: u128, quote_units: u128) -> SymbolTotals {
        SymbolTotals {
            count,
            volume_units,
            quote_units,
        }
    }

    fn o(count: u64, base: &str, quote: &str) -> Observed {
        Observed {
            count,
            base: Some(base.into()),
            quote: Some(quote.into()),
        }
    }

    #[test]
    fn parses_only_the_stored_form() {
        assert_eq!(parse_scaled("12.50", 2), Some(1250));
        assert_eq!(parse_scaled("0.00000001", 8), Some(1));
        assert_eq!(parse_scaled("1.5", 2), None);
        assert_eq!(parse_scaled("-1.00", 2), None);
        assert_eq!(parse_scaled(".50", 2), None);
        assert_eq!(parse_scaled("1e3", 0), None);
    }

    #[test]
    fn exact_totals_pass() {
        let truth = BTreeMap::from([("BTCUSDT".to_string(), t(2, 150_000_000, 3))]);
        let seen = BTreeMap::from([(
            "BTCUSDT".to_string(),
            o(2, "1.50000000", "0.0000000000000003"),
        )]);
        let v = verify(&truth, &seen);
        assert!(v.exact(), "{v:?}");
        assert_eq!((v.expected, v.counted), (2, 2));
    }

    #[test]
    fn lost_doubled_and_volume_mismatches_are_told_apart() {
        let truth = BTreeMap::from([
            ("A".to_string(), t(5, 500_000_000, 0)),
            ("B".to_string(), t(3, 300_000_000, 0)),
            ("C".to_string(), t(1, 100_000_000, 0)),
        ]);
        let seen = BTreeMap::from([
            ("A".to_string(), o(4, "4.00000000", "0.0000000000000000")),
            ("B".to_string(), o(4, "4.00000000", "0.0000000000000000")),
            // Right count, wrong volume: still a mismatch.
            ("C".to_string(), o(1, "1.00000001", "0.0000000000000000")),
            ("X".to_string(), o(1, "1.00000000", "0.0000000000000000")),
        ]);
        let v = verify(&truth, &seen);
        assert_eq!(v.lost, 1);
        assert_eq!(v.doubled, 2, "B once too many, X not on the tape");
        let syms: Vec<&str> = v.mismatches.iter().map(|m| m.symbol.as_str()).collect();
        assert_eq!(syms, ["A", "B", "C", "X"]);
        assert!(!v.exact());
    }

    #[test]
    fn a_symbol_missing_from_redis_is_all_lost() {
        let truth = BTreeMap::from([("A".to_string(), t(5, 1, 1))]);
        let v = verify(&truth, &BTreeMap::new());
        assert_eq!((v.lost, v.counted), (5, 0));
        assert_eq!(v.mismatches[0].base, None);
    }
}
