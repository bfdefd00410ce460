//! A deterministic trade generator: the same seed and symbols always give the same
//! trades. Prices random-walk on each symbol's tick from a realistic base; trade ids
//! increase by one per symbol; busy symbols trade more often. Its own tiny PRNG
//! (splitmix64) keeps the output stable whatever version of `rand` is in the tree.

use std::collections::BTreeMap;

use tradeflow_shared::{Fixed8, Symbol, Trade};

use crate::item::TapeItem;

/// Base price (in 1e-8 units), price tick and quantity step of a known symbol, and
/// its relative activity. Unknown symbols get a generic profile.
fn profile(symbol: &str) -> (u64, u64, u64, u32) {
    const U: u64 = 100_000_000;
    match symbol {
        "BTCUSDT" => (67_000 * U, U / 100, 1_000, 30),
        "ETHUSDT" => (3_500 * U, U / 100, 10_000, 20),
        "BNBUSDT" => (580 * U, U / 100, 100_000, 8),
        "LTCUSDT" => (80 * U, U / 100, 100_000, 5),
        "NEOUSDT" => (12 * U, U / 1000, 1_000_000, 3),
        "ETHBTC" => (5_200_000, 1, 10_000, 6),
        "BNBBTC" => (870_000, 1, 100_000, 3),
        "LTCBTC" => (120_000, 1, 100_000, 2),
        "NEOBTC" => (18_000, 1, 1_000_000, 1),
        "LTCETH" => (2_300_000, 1, 100_000, 1),
        "NEOETH" => (340_000, 1, 1_000_000, 1),
        "BNBETH" => (16_600_000, 1, 100_000, 2),
        "NEOBNB" => (2_000_000, 1, 1_000_000, 1),
        "LTCBNB" => (14_000_000, 1, 100_000, 1),
        _ => (100 * U, U / 100, 100_000, 2),
    }
}

#[derive(Debug, Clone)]
struct SymState {
    symbol: Symbol,
    price: u64,
    tick: u64,
    step: u64,
    weight: u32,
    next_id: u64,
}

/// Generator settings.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub symbols: Vec<Symbol>,
    pub seed: u64,
    /// Time of the first trade, ms since the epoch.
    pub start_ms: u64,
    /// Every n-th trade is rendered in the pre-2024-06 format with `b`/`a` order ids
    /// (0: never).
    pub old_format_every: u64,
}

#[derive(Debug, Clone)]
pub struct Generator {
    rng: u64,
    syms: Vec<SymState>,
    total_weight: u32,
    now_ms: u64,
    n: u64,
    old_format_every: u64,
    order_id: u64,
}

impl Generator {
    pub fn new(cfg: GenConfig) -> Self {
        let mut rng = cfg.seed ^ 0x5eed_7a1e_u64;
        let syms: Vec<SymState> = cfg
            .symbols
            .iter()
            .map(|s| {
                let (price, tick, step, weight) = profile(s.as_str());
                let first_id = 1_000_000 + splitmix(&mut rng) % 9_000_000;
                SymState {
                    symbol: *s,
                    price,
                    tick,
                    step,
                    weight,
                    next_id: first_id,
                }
            })
            .collect();
        Generator {
            total_weight: syms.iter().map(|s| s.weight).sum::<u32>().max(1),
            rng,
            syms,
            now_ms: cfg.start_ms,
            n: 0,
            old_format_every: cfg.old_format_every,
            order_id: 500_000_000,
        }
    }

    pub fn initial_prices(&self) -> BTreeMap<Symbol, Fixed8> {
        self.syms
            .iter()
            .map(|s| (s.symbol, Fixed8(s.price)))
            .collect()
    }

    pub fn next_item(&mut self) -> TapeItem {
        let r = splitmix(&mut self.rng);
        let mut pick = (r % self.total_weight as u64) as u32;
        let idx = self
            .syms
            .iter()
            .position(|s| {
                if pick < s.weight {
                    true
                } else {
                    pick -= s.weight;
                    false
                }
            })
            .unwrap_or(0);
        let r2 = splitmix(&mut self.rng);
        self.now_ms += r2 % 25;
        let s = &mut self.syms[idx];
        // Random walk of -2..=+2 ticks, never below 100 ticks.
        let moves = (r2 >> 8) % 5;
        s.price = (s.price + moves * s.tick)
            .saturating_sub(2 * s.tick)
            .max(100 * s.tick);
        // Quantities: mostly small, sometimes large (1..=2000 steps, skewed).
        let q_steps = 1 + ((r2 >> 16) % 40) * (1 + ((r2 >> 32) % 50));
        let trade = Trade {
            symbol: s.symbol,
            trade_id: s.next_id,
            price: Fixed8(s.price),
            qty: Fixed8(q_steps * s.step),
            trade_time_ms: self.now_ms,
            event_time_ms: self.now_ms + (r2 >> 40) % 3,
            buyer_is_maker: (r2 >> 48) & 1 == 1,
        };
        s.next_id += 1;
        self.n += 1;
        let json = if self.old_format_every > 0 && self.n.is_multiple_of(self.old_format_every) {
            self.order_id += 1 + (r2 >> 50) % 7;
            old_format_json(&trade, self.order_id, self.order_id + 3)
        } else {
            trade.to_json()
        };
        TapeItem::new(trade, json)
    }

    /// The next `n` trades.
    pub fn take(&mut self, n: usize) -> Vec<TapeItem> {
        (0..n).map(|_| self.next_item()).collect()
    }
}

/// The trade as Binance sent it before 2024-06-18, with buyer/seller order ids.
pub fn old_format_json(t: &Trade, buyer: u64, seller: u64) -> String {
    format!(
        r#"{{"e":"trade","E":{},"s":"{}","t":{},"p":"{}","q":"{}","b":{},"a":{},"T":{},"m":{},"M":true}}"#,
        t.event_time_ms,
        t.symbol,
        t.trade_id,
        t.price,
        t.qty,
        buyer,
        seller,
        t.trade_time_ms,
        t.buyer_is_maker
    )
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Upper-case symbols from names such as `btcusdt` or `BTCUSDT`.
pub fn parse_symbols<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Symbol>, tradeflow_shared::symbol::SymbolError> {
    names
        .into_iter()
        .map(|n| Symbol::new(&n.trim().to_uppercase()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_shared::{decode_event, Event, SEED_SYMBOLS};

    fn cfg() -> GenConfig {
        GenConfig {
            symbols: parse_symbols(SEED_SYMBOLS).unwrap(),
            seed: 7,
            start_ms: 1_717_000_000_000,
            old_format_every: 10,
        }
    }

    #[test]
    fn deterministic() {
        let a = Generator::new(cfg()).take(500);
        let b = Generator::new(cfg()).take(500);
        assert_eq!(a, b);
    }

    #[test]
    fn output_decodes_to_itself_with_increasing_ids() {
        let items = Generator::new(cfg()).take(3000);
        let mut last: BTreeMap<Symbol, u64> = BTreeMap::new();
        let mut old = 0;
        for it in &items {
            let Ok(Event::Trade { trade, json }) = decode_event(&it.json) else {
                panic!("{}", it.json)
            };
            assert_eq!(trade, it.trade);
            assert_eq!(json, &*it.json);
            if let Some(prev) = last.insert(trade.symbol, trade.trade_id) {
                assert_eq!(trade.trade_id, prev + 1);
            }
            old += it.json.contains(r#""b":"#) as usize;
        }
        assert_eq!(old, 300);
        assert_eq!(last.len(), 14, "every symbol traded");
    }
}
