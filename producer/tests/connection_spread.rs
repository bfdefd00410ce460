//! More streams than one Binance connection may carry (1024), against the local
//! exchange (in-process, free loopback port): 2,100 symbols go over exactly 3
//! connections, every subscription is accepted (the exchange refuses a connection's
//! 1025th stream, so "all symbols trade" proves each connection stays ≤ 1024), the
//! SUBSCRIBE messages stay under the exchange's 5-per-second limit, and trades of
//! every symbol arrive.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tradeflow_exchange::{Exchange, ExchangeConfig, GenConfig, Generator, Tape};
use tradeflow_producer::source::binance::{
    self, BinanceConfig, MAX_STREAMS_PER_CONNECTION, SUBSCRIBE_CHUNK, URL_STREAMS,
};
use tradeflow_shared::Symbol;

const SYMBOLS: usize = 2_100;
const WAIT: Duration = Duration::from_secs(40);

fn names() -> Vec<String> {
    (0..SYMBOLS).map(|i| format!("S{i:04}USDT")).collect()
}

/// SUBSCRIBE messages one connection with `streams` streams sends.
fn subscribes_for(streams: usize) -> u64 {
    streams
        .saturating_sub(URL_STREAMS)
        .div_ceil(SUBSCRIBE_CHUNK) as u64
}

#[tokio::test]
async fn streams_over_1024_spread_over_paced_connections() {
    let names = names();
    let symbols: Vec<Symbol> = names.iter().map(|s| Symbol::new(s).unwrap()).collect();
    // Round-robin tape: every symbol trades (a weighted random tape might skip some).
    let mut gens: Vec<Generator> = symbols
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Generator::new(GenConfig {
                symbols: vec![*s],
                seed: i as u64,
                start_ms: 1_717_000_000_000,
                old_format_every: 0,
            })
        })
        .collect();
    let mut items = Vec::new();
    for _ in 0..2 {
        for g in &mut gens {
            items.extend(g.take(1));
        }
    }
    let total = items.len();
    let ex = Exchange::start(
        ExchangeConfig {
            // Binance's own limit; a client over it is disconnected and counted.
            max_incoming_per_sec: Some(5),
            // No pings during the test: pongs would count as client messages.
            ping_interval: Duration::from_secs(3600),
            ..ExchangeConfig::default()
        },
        Tape::Finite(Arc::new(items)),
    );
    // Held until every subscription is in, so no stream misses its first trades.
    ex.pause();
    let server = ex.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let cfg = BinanceConfig {
        url: format!("ws://{}", server.addr),
        symbols: names.clone(),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(400),
        ..BinanceConfig::default()
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let stop = CancellationToken::new();
    let source = tokio::spawn(binance::run(cfg, tx, stop.clone()));

    let plan = [1024, 1024, SYMBOLS - 2 * MAX_STREAMS_PER_CONNECTION];
    let want_messages: u64 = plan.iter().map(|n| subscribes_for(*n)).sum();
    assert_eq!(want_messages, 20, "100 in each URL, then 100 per SUBSCRIBE");
    let subscribed = async {
        while ex.stats().client_messages < want_messages {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, subscribed)
        .await
        .unwrap_or_else(|_| panic!("subscriptions not sent: {:?}", ex.stats()));
    // Replies are written after the message is applied; a short grace covers the last one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ex.resume();

    let mut seen: BTreeSet<Symbol> = BTreeSet::new();
    let mut received = 0usize;
    let got_all = async {
        while received < total {
            let Some(t) = rx.recv().await else { break };
            received += 1;
            seen.insert(t.trade.symbol);
        }
    };
    let timed_out = tokio::time::timeout(WAIT, got_all).await.is_err();
    let stats = ex.stats();
    assert!(
        !timed_out,
        "{received}/{total} trades, {} symbols: {stats:?}",
        seen.len()
    );
    assert_eq!(seen.len(), SYMBOLS, "trades from every symbol");
    assert_eq!(received, total, "no duplicate on a stable connection");
    assert_eq!(stats.connections_total, 3, "{stats:?}");
    assert_eq!(stats.connections_open, 3, "{stats:?}");
    // Exactly the planned SUBSCRIBEs (no resend, no retry), none over 5/s: the
    // exchange times each arrival and would count and disconnect a faster client.
    assert_eq!(stats.client_messages, want_messages, "{stats:?}");
    assert_eq!(stats.rate_violations, 0, "{stats:?}");

    stop.cancel();
    source.await.unwrap().unwrap();
    server.stop().await;
}
