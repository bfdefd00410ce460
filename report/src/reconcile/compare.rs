//! The comparison itself, pure: one symbol's minutes as tradeflow stored them against
//! the exchange's 1m klines, minute by minute over the window.
//!
//! Compared exactly: the number of trades, base and taker-buy base volume (both sides
//! have 8 decimals), open, high, low and close. Quote and taker-buy quote volume: ours
//! are exact to 16 decimals, the exchange prints fewer (Binance: 8), and does not say
//! whether it cuts or rounds; so they are equal when the exchange's value is ours cut to
//! its printed decimals, or that plus one unit of its last decimal (ours rounded up).
//! Anything a missed or extra trade changes still shows in the count and base volume.
//!
//! A minute only one side has is a difference too: `missing` (the exchange has trades
//! tradeflow does not) or `extra` (tradeflow has trades the exchange does not). A kline
//! of the exchange with no trade (Binance may send empty minutes) counts as absent.

use tradeflow_shared::kline::Kline;

use super::window::Window;

/// One kline of the exchange, with the decimals it printed its quote volumes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theirs {
    pub kline: Kline,
    pub quote_decimals: u32,
    pub taker_quote_decimals: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The exchange has trades in this minute, tradeflow none.
    Missing,
    /// tradeflow has trades in this minute, the exchange none.
    Extra,
    /// Both have trades; some field differs.
    Differs,
}

/// One minute that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub open_time_ms: u64,
    pub kind: Kind,
    pub theirs: Option<Theirs>,
    pub ours: Option<Kline>,
    /// The fields that differ (Binance's names: `trades`, `volume`, …).
    pub fields: Vec<&'static str>,
}

impl Difference {
    pub fn their_count(&self) -> u64 {
        self.theirs.map_or(0, |t| t.kline.count)
    }

    pub fn our_count(&self) -> u64 {
        self.ours.map_or(0, |k| k.count)
    }

    /// Trades the exchange has that we do not (≥ 0).
    pub fn trades_missing(&self) -> u64 {
        self.their_count().saturating_sub(self.our_count())
    }

    /// Trades we have that the exchange does not (≥ 0).
    pub fn trades_extra(&self) -> u64 {
        self.our_count().saturating_sub(self.their_count())
    }

    /// Exchange minus ours, base volume in 1e-8.
    pub fn base_diff(&self) -> i128 {
        self.theirs.map_or(0, |t| t.kline.base as i128) - self.ours.map_or(0, |k| k.base as i128)
    }

    /// Exchange minus ours cut to the exchange's decimals, quote volume in 1e-16.
    pub fn quote_diff(&self) -> i128 {
        let dp = self.theirs.map_or(8, |t| t.quote_decimals);
        self.theirs.map_or(0, |t| t.kline.quote as i128)
            - self.ours.map_or(0, |k| cut(k.quote, dp) as i128)
    }
}

/// One symbol's result over the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub minutes_checked: u64,
    pub differences: Vec<Difference>,
}

impl Outcome {
    pub fn trades_missing(&self) -> u64 {
        self.differences
            .iter()
            .map(Difference::trades_missing)
            .sum()
    }

    pub fn trades_extra(&self) -> u64 {
        self.differences.iter().map(Difference::trades_extra).sum()
    }

    /// Adds a page's result (pages are disjoint and in order).
    pub fn extend(&mut self, page: Outcome) {
        self.minutes_checked += page.minutes_checked;
        self.differences.extend(page.differences);
    }
}

/// Compares every minute of `w`; klines outside it are ignored (the caller asked for
/// the window only and checks what the exchange sent).
pub fn compare(w: Window, ours: &[Kline], theirs: &[Theirs]) -> Outcome {
    let mut out = Outcome {
        minutes_checked: w.minutes(),
        differences: Vec::new(),
    };
    let mut ours = ours
        .iter()
        .filter(|k| k.count > 0 && (w.first_ms..=w.last_ms).contains(&k.open_time_ms))
        .peekable();
    let mut theirs = theirs
        .iter()
        .filter(|t| t.kline.count > 0 && (w.first_ms..=w.last_ms).contains(&t.kline.open_time_ms))
        .peekable();
    loop {
        let o = ours.peek().map(|k| k.open_time_ms);
        let t = theirs.peek().map(|t| t.kline.open_time_ms);
        let (mine, exch) = match (o, t) {
            (None, None) => break,
            (Some(a), Some(b)) if a == b => (ours.next().copied(), theirs.next().copied()),
            (Some(a), Some(b)) if a < b => (ours.next().copied(), None),
            (Some(_), None) => (ours.next().copied(), None),
            _ => (None, theirs.next().copied()),
        };
        let open_time_ms = mine
            .map(|k| k.open_time_ms)
            .or(exch.map(|t| t.kline.open_time_ms))
            .unwrap_or_default();
        let (kind, fields) = match (&mine, &exch) {
            (Some(k), Some(t)) => {
                let f = differing(k, t);
                if f.is_empty() {
                    continue;
                }
                (Kind::Differs, f)
            }
            (None, Some(_)) => (Kind::Missing, vec!["trades"]),
            _ => (Kind::Extra, vec!["trades"]),
        };
        out.differences.push(Difference {
            open_time_ms,
            kind,
            theirs: exch,
            ours: mine,
            fields,
        });
    }
    out
}

/// The fields of a minute both sides have that differ, by Binance's names.
fn differing(ours: &Kline, theirs: &Theirs) -> Vec<&'static str> {
    let t = &theirs.kline;
    let checks = [
        ("trades", ours.count == t.count),
        ("volume", ours.base == t.base),
        (
            "quote_volume",
            quote_eq(ours.quote, t.quote, theirs.quote_decimals),
        ),
        ("taker_buy_volume", ours.taker_base == t.taker_base),
        (
            "taker_buy_quote_volume",
            quote_eq(ours.taker_quote, t.taker_quote, theirs.taker_quote_decimals),
        ),
        ("open", ours.open == t.open),
        ("high", ours.high == t.high),
        ("low", ours.low == t.low),
        ("close", ours.close == t.close),
    ];
    checks
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(name, _)| name)
        .collect()
}

/// Ours (1e-16 units) cut to `decimals`, in 1e-16 units.
fn cut(ours: u128, decimals: u32) -> u128 {
    let unit = 10u128.pow(16 - decimals.min(16));
    ours - ours % unit
}

/// The quote rule (module docs): theirs is ours cut to their decimals, or rounded up.
pub fn quote_eq(ours: u128, theirs: u128, decimals: u32) -> bool {
    let unit = 10u128.pow(16 - decimals.min(16));
    let down = cut(ours, decimals);
    theirs == down || (ours != down && theirs == down + unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_shared::kline::MINUTE_MS;
    use tradeflow_shared::Fixed8;

    const M: u64 = 1_717_002_000_000;

    fn p(s: &str) -> Fixed8 {
        Fixed8::parse(s).unwrap()
    }

    /// A minute of `trades` (id, price, qty, buyer is maker) at `minute`.
    fn kline(minute: u64, trades: &[(u64, &str, &str, bool)]) -> Kline {
        let mut ks = trades.iter().map(|(id, pr, q, m)| {
            Kline::of_trade(MINUTE_MS, *id, p(pr), p(q), M + minute * MINUTE_MS, *m)
        });
        let mut k = ks.next().unwrap();
        ks.for_each(|o| k.merge(&o));
        k
    }

    /// The exchange's view of `k`: no trade ids, quotes printed with 8 decimals cut.
    fn theirs(k: Kline) -> Theirs {
        Theirs {
            kline: Kline {
                open_id: 0,
                close_id: 0,
                quote: cut(k.quote, 8),
                taker_quote: cut(k.taker_quote, 8),
                ..k
            },
            quote_decimals: 8,
            taker_quote_decimals: 8,
        }
    }

    fn window(first: u64, last: u64) -> Window {
        Window {
            first_ms: M + first * MINUTE_MS,
            last_ms: M + last * MINUTE_MS,
        }
    }

    #[test]
    fn equal_minutes_match_whatever_the_quote_precision() {
        // 1.23456789 × 1.5 = 1.851851835: 16 decimals ours, 8 theirs.
        let a = kline(0, &[(1, "1.23456789", "1.5", false), (2, "2", "1", true)]);
        let b = kline(2, &[(3, "3", "0.00000001", false)]);
        let out = compare(window(0, 4), &[a, b], &[theirs(a), theirs(b)]);
        assert_eq!(out.minutes_checked, 5);
        assert_eq!(out.differences, vec![]);
    }

    #[test]
    fn a_minute_short_of_trades_is_named_with_the_missing_count() {
        let full = kline(
            1,
            &[
                (1, "10", "1", false),
                (2, "11", "2", true),
                (3, "9", "1", false),
            ],
        );
        let short = kline(1, &[(1, "10", "1", false)]);
        let out = compare(window(0, 2), &[short], &[theirs(full)]);
        assert_eq!(out.differences.len(), 1);
        let d = &out.differences[0];
        assert_eq!((d.open_time_ms, d.kind), (M + MINUTE_MS, Kind::Differs));
        assert_eq!(d.trades_missing(), 2);
        assert_eq!(d.base_diff(), 300_000_000);
        assert_eq!(d.quote_diff(), 31 * 10i128.pow(16));
        assert_eq!(
            d.fields,
            [
                "trades",
                "volume",
                "quote_volume",
                "taker_buy_volume",
                "taker_buy_quote_volume",
                "high",
                "low",
                "close"
            ]
        );
        assert_eq!((out.trades_missing(), out.trades_extra()), (2, 0));
    }

    #[test]
    fn minutes_only_one_side_has_are_missing_or_extra() {
        let a = kline(0, &[(1, "10", "1", false)]);
        let b = kline(3, &[(5, "10", "1", false), (6, "10", "1", false)]);
        let empty = Theirs {
            kline: Kline {
                count: 0,
                ..theirs(kline(2, &[(4, "1", "1", false)])).kline
            },
            ..theirs(a)
        };
        let out = compare(window(0, 3), &[b], &[theirs(a), empty]);
        let kinds: Vec<_> = out
            .differences
            .iter()
            .map(|d| (d.open_time_ms, d.kind))
            .collect();
        assert_eq!(
            kinds,
            [(M, Kind::Missing), (M + 3 * MINUTE_MS, Kind::Extra)]
        );
        assert_eq!((out.trades_missing(), out.trades_extra()), (1, 2));
        // Outside the window: not compared.
        assert!(compare(window(1, 2), &[b], &[theirs(a)])
            .differences
            .is_empty());
    }

    #[test]
    fn one_trade_id_off_moves_open_or_close() {
        let ours = kline(0, &[(1, "10", "1", false), (2, "12", "1", false)]);
        let other = kline(0, &[(1, "12", "1", false), (2, "10", "1", false)]);
        let out = compare(window(0, 0), &[ours], &[theirs(other)]);
        assert_eq!(out.differences[0].fields, ["open", "close"]);
        assert_eq!(out.trades_missing(), 0);
    }

    #[test]
    fn the_quote_rule_accepts_cut_or_rounded_up_only() {
        let ours = 18_518_518_350_000_000; // 1.851851835
        assert!(quote_eq(ours, 18_518_518_300_000_000, 8)); // 1.85185183 (cut)
        assert!(quote_eq(ours, 18_518_518_400_000_000, 8)); // 1.85185184 (rounded up)
        assert!(!quote_eq(ours, 18_518_518_200_000_000, 8));
        assert!(!quote_eq(ours, 18_518_518_500_000_000, 8));
        // Exact at their precision: only equal is equal.
        assert!(quote_eq(20_000_000_000_000_000, 20_000_000_000_000_000, 8));
        assert!(!quote_eq(20_000_000_000_000_000, 20_000_000_100_000_000, 8));
        // Printed with all 16 decimals: exact.
        assert!(!quote_eq(ours, ours + 1, 16));
        assert!(quote_eq(ours, ours, 16));
    }
}
