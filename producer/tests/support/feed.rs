//! Synthetic trades offered to a pipeline under test, as fast as it takes them or at a
//! given rate.

use std::time::Duration;

use tokio::sync::mpsc;
use tradeflow_producer::source::synthetic::Generator;
use tradeflow_producer::source::SourceTrade;

/// Sends `count` synthetic trades over five symbols into `tx` (blocking on a full
/// channel, as a source does) from a task of its own; at `per_second` trades a second
/// when given (a live feed), else as fast as they are taken.
pub fn spawn(
    tx: mpsc::Sender<SourceTrade>,
    count: usize,
    per_second: Option<u32>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let syms = super::symbols(&["BTCUSDT", "ETHUSDT", "LTCBTC", "NEOBNB", "BNBETH"]);
        let mut g = Generator::new(&syms, 5);
        let mut pace = per_second.map(|n| tokio::time::interval(Duration::from_secs(1) / n));
        for i in 0..count {
            if let Some(p) = pace.as_mut() {
                p.tick().await;
            }
            let trade = g.next_trade(1_717_000_000_000 + i as u64);
            let json = trade.to_json();
            tx.send(SourceTrade { trade, json }).await.unwrap();
        }
    })
}
