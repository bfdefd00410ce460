//! Generated trades for load tests: a given rate (and optional total) over given
//! symbols, deterministic from a seed, trade ids 1, 2, 3… per symbol.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use tradeflow_shared::{Fixed8, Symbol, Trade};

use super::{SourceTrade, TradeTx};

#[derive(Debug, Clone)]
pub struct SyntheticConfig {
    pub symbols: Vec<Symbol>,
    /// Trades per second over all symbols; 0 = as fast as the pipeline takes them.
    pub rate: u64,
    pub count: Option<u64>,
    pub seed: u64,
}

/// The deterministic trade sequence (pure; times are filled in by the caller).
pub struct Generator {
    rng: StdRng,
    symbols: Vec<(Symbol, u64, u64)>, // symbol, next id, price in 1e-8 units
}

impl Generator {
    pub fn new(symbols: &[Symbol], seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let symbols = symbols
            .iter()
            .map(|s| (*s, 1, rng.random_range(1_000_000..10_000_000_000_000)))
            .collect();
        Generator { rng, symbols }
    }

    pub fn next_trade(&mut self, now_ms: u64) -> Trade {
        let i = self.rng.random_range(0..self.symbols.len());
        let step: i64 = self.rng.random_range(-1000..=1000);
        let qty = self.rng.random_range(1..100_000_000u64);
        let maker = self.rng.random_bool(0.5);
        let (symbol, id, price) = &mut self.symbols[i];
        *price = price.saturating_add_signed(step).max(1);
        let t = Trade {
            symbol: *symbol,
            trade_id: *id,
            price: Fixed8(*price),
            qty: Fixed8(qty),
            trade_time_ms: now_ms,
            event_time_ms: now_ms,
            buyer_is_maker: maker,
        };
        *id += 1;
        t
    }
}

/// Trades sent per wait on the channel (well under its capacity).
const RESERVE_CHUNK: u64 = 256;

/// Sends trades until `count` is reached or `shutdown`. Returns how many were sent.
pub async fn run(cfg: SyntheticConfig, tx: TradeTx, shutdown: CancellationToken) -> u64 {
    if cfg.symbols.is_empty() {
        return 0;
    }
    let mut gen = Generator::new(&cfg.symbols, cfg.seed);
    let tick = Duration::from_millis(10);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let per_tick = cfg.rate as f64 / 100.0;
    let mut credit = 0.0;
    let mut sent = 0u64;
    let limit = cfg.count.unwrap_or(u64::MAX);
    while sent < limit && !shutdown.is_cancelled() {
        let n = if cfg.rate == 0 {
            1024
        } else {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            credit += per_tick;
            let n = credit.floor();
            credit -= n;
            n as u64
        };
        let now = tradeflow_shared::telemetry::now_ms();
        let mut left = n.min(limit - sent);
        while left > 0 {
            // Room for a chunk at once: one wait on the channel per chunk, not per trade.
            let chunk = left.min(RESERVE_CHUNK) as usize;
            let Ok(permits) = tx.reserve_many(chunk).await else {
                return sent;
            };
            for permit in permits {
                let trade = gen.next_trade(now);
                let json = trade.to_json();
                permit.send(SourceTrade { trade, json });
            }
            sent += chunk as u64;
            left -= chunk as u64;
        }
    }
    tracing::info!(sent, "synthetic source finished");
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_increasing_per_symbol() {
        let syms: Vec<Symbol> = ["AAA", "BBB", "CCC"]
            .iter()
            .map(|s| Symbol::new(s).unwrap())
            .collect();
        let a: Vec<Trade> = {
            let mut g = Generator::new(&syms, 7);
            (0..500).map(|_| g.next_trade(1_700_000_000_000)).collect()
        };
        let mut g = Generator::new(&syms, 7);
        let b: Vec<Trade> = (0..500).map(|_| g.next_trade(1_700_000_000_000)).collect();
        assert_eq!(a, b);
        for s in &syms {
            let ids: Vec<u64> = a
                .iter()
                .filter(|t| t.symbol == *s)
                .map(|t| t.trade_id)
                .collect();
            assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
        }
        // Every generated trade is one the decoder accepts.
        for t in &a {
            let json = t.to_json();
            assert!(matches!(
                tradeflow_shared::decode_event(&json),
                Ok(tradeflow_shared::Event::Trade { .. })
            ));
        }
    }
}
