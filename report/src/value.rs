//! Pure valuation: which assets a symbol trades, what one unit of an asset is worth in
//! USD from the last prices in Redis, and the USD value of a traded quantity. Integer
//! arithmetic in units of 1e-8; cross rates are truncated to 1e-8 USD.
//!
//! USD price of an asset: 1 for USD stablecoins; else the last price of `<ASSET>USDT`;
//! else through the first of BTC, ETH, BNB with a pair (`<ASSET>BTC` × `BTCUSDT`…);
//! else unknown (shown as `-`).

use std::collections::HashMap;

use tradeflow_shared::decimal::ONE;

/// Quote assets recognised when splitting a symbol, longest first so `FDUSD` wins
/// over `USD`-like suffixes.
const QUOTES: &[&str] = &[
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL",
    "JPY", "DAI",
];
const STABLE: &[&str] = &[
    "USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "DAI", "USD",
];
const BRIDGES: &[&str] = &["BTC", "ETH", "BNB"];

/// `BTCUSDT` → (`BTC`, `USDT`); `None` when no known quote asset ends the symbol.
pub fn split_symbol(symbol: &str) -> Option<(&str, &str)> {
    let mut best: Option<(&str, &str)> = None;
    for q in QUOTES {
        if symbol.len() > q.len() && symbol.ends_with(q) {
            let base = &symbol[..symbol.len() - q.len()];
            if best.is_none_or(|(_, bq)| q.len() > bq.len()) {
                best = Some((base, q));
            }
        }
    }
    best
}

/// USD price of one unit of `asset`, in units of 1e-8, from last prices (symbol →
/// price units).
pub fn usd_price(asset: &str, last: &HashMap<String, u64>) -> Option<u128> {
    if STABLE.contains(&asset) {
        return Some(ONE as u128);
    }
    if let Some(p) = last.get(&format!("{asset}USDT")) {
        return Some(*p as u128);
    }
    for bridge in BRIDGES {
        if *bridge == asset {
            continue;
        }
        if let (Some(p), Some(b)) = (
            last.get(&format!("{asset}{bridge}")),
            last.get(&format!("{bridge}USDT")),
        ) {
            return Some(*p as u128 * *b as u128 / ONE as u128);
        }
    }
    None
}

/// USD value (units of 1e-8) of `base_units` (1e-8) of an asset at `usd_price`.
pub fn usd_value(base_units: u128, usd_price: u128) -> Option<u128> {
    base_units.checked_mul(usd_price).map(|v| v / ONE as u128)
}

/// Parses a stored total like `"12.34500000"` into units of 10^-scale. Accepts fewer
/// fractional digits; `None` on anything else (or beyond u128).
pub fn parse_scaled(s: &str, scale: u32) -> Option<u128> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() || frac.len() > scale as usize {
        return None;
    }
    let digits = int.bytes().chain(frac.bytes());
    let mut v: u128 = 0;
    for c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u128)?;
    }
    v.checked_mul(10u128.checked_pow(scale - frac.len() as u32)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices(p: &[(&str, u64)]) -> HashMap<String, u64> {
        p.iter().map(|(s, v)| (s.to_string(), *v)).collect()
    }

    #[test]
    fn splits_symbols() {
        assert_eq!(split_symbol("BTCUSDT"), Some(("BTC", "USDT")));
        assert_eq!(split_symbol("ETHBTC"), Some(("ETH", "BTC")));
        assert_eq!(split_symbol("BTCFDUSD"), Some(("BTC", "FDUSD")));
        assert_eq!(split_symbol("1000SATSUSDT"), Some(("1000SATS", "USDT")));
        assert_eq!(split_symbol("USDT"), None);
        assert_eq!(split_symbol("XYZ"), None);
    }

    #[test]
    fn prices_via_usdt_then_bridges() {
        let p = prices(&[
            ("BTCUSDT", 60_000 * ONE),
            ("ETHBTC", 5_000_000), // 0.05
            ("NEOBNB", 2 * ONE),   // 2 BNB
            ("BNBUSDT", 500 * ONE),
            ("LTCETH", ONE / 10), // no ETHUSDT: via ETH fails
        ]);
        assert_eq!(usd_price("USDT", &p), Some(ONE as u128));
        assert_eq!(usd_price("BTC", &p), Some(60_000 * ONE as u128));
        assert_eq!(usd_price("ETH", &p), Some(3_000 * ONE as u128));
        assert_eq!(usd_price("NEO", &p), Some(1_000 * ONE as u128));
        assert_eq!(usd_price("LTC", &p), None);
        assert_eq!(
            usd_value(150_000, 60_000 * ONE as u128),
            Some(90 * ONE as u128)
        );
    }

    #[test]
    fn parses_stored_totals() {
        assert_eq!(parse_scaled("12.34500000", 8), Some(1_234_500_000));
        assert_eq!(parse_scaled("0.5", 8), Some(50_000_000));
        assert_eq!(parse_scaled("7", 2), Some(700));
        assert_eq!(parse_scaled("1.123", 2), None);
        assert_eq!(parse_scaled("x", 2), None);
        assert_eq!(parse_scaled("", 2), None);
        assert_eq!(parse_scaled(&"9".repeat(60), 8), None);
    }
}
