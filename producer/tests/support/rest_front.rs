//! A REST front for the local exchange that misbehaves on purpose (each request's
//! answer chosen by a plan), and a run of the real websocket source and gap filler
//! through it: a burst of trades is emitted while the connections are down, so the
//! first trade after the reconnect opens a gap per symbol that is fetched over REST.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tradeflow_exchange::gen::parse_symbols;
use tradeflow_exchange::{Exchange, ExchangeConfig, Fault, GenConfig, Generator, Tape, TapeItem};
use tradeflow_producer::source::backfill::{self, BackfillConfig};
use tradeflow_producer::source::binance::{self, BinanceConfig};
use tradeflow_producer::source::SourceTrade;
use tradeflow_shared::{Symbol, Trade, SEED_SYMBOLS};

const WAIT: Duration = Duration::from_secs(30);

// The front itself lives in the testkit (the report's reconcile tests use it too); not
// every test binary that compiles this module uses it.
#[allow(unused_imports)]
pub use tradeflow_shared::testkit::rest_front::{start, Answer, Plan};

fn tape(count: usize) -> Tape {
    let mut g = Generator::new(GenConfig {
        symbols: parse_symbols(SEED_SYMBOLS).unwrap(),
        seed: 11,
        start_ms: 1_717_000_000_000,
        old_format_every: 20,
    });
    Tape::Finite(Arc::new(g.take(count)))
}

pub async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pipeline's dedupe: per symbol, drop trade ids ≤ the last one kept.
pub fn dedupe(trades: &[SourceTrade]) -> Vec<SourceTrade> {
    let mut last: HashMap<Symbol, u64> = HashMap::new();
    trades
        .iter()
        .filter(|t| {
            let l = last.entry(t.trade.symbol).or_insert(0);
            if t.trade.trade_id > *l {
                *l = t.trade.trade_id;
                true
            } else {
                false
            }
        })
        .cloned()
        .collect()
}

pub fn ids_by_symbol<'a>(trades: impl Iterator<Item = &'a Trade>) -> HashMap<Symbol, Vec<u64>> {
    let mut out: HashMap<Symbol, Vec<u64>> = HashMap::new();
    for t in trades {
        out.entry(t.symbol).or_default().push(t.trade_id);
    }
    out
}

/// What a backfill run saw.
pub struct BackfillRun {
    /// Trades out of the filler, deduped as the pipeline would.
    pub got: Vec<SourceTrade>,
    pub tape: Vec<TapeItem>,
    /// From the fault to every symbol's last trade being through.
    pub recovered_in: Duration,
}

/// websocket source → gap filler, both real, against the exchange, REST through a
/// front answering by `plan`; `deadline` is the backfill deadline per gap.
pub async fn backfill_run(plan: Plan, deadline: Duration) -> BackfillRun {
    let ex = Exchange::start(
        ExchangeConfig {
            rate: Some(1000.0),
            ping_interval: Duration::from_millis(300),
            pong_timeout: Duration::from_secs(3),
            shutdown_grace: Duration::from_millis(500),
            ..ExchangeConfig::default()
        },
        tape(2000),
    );
    let server = ex.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let rest = start(server.addr, plan).await;
    let cfg = BinanceConfig {
        url: format!("ws://{}", server.addr),
        dead_timeout: Duration::from_secs(1),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(400),
        ..BinanceConfig::default()
    };
    let (ws_tx, ws_rx) = mpsc::channel(256);
    let (tx, mut rx) = mpsc::channel(256);
    let stop = CancellationToken::new();
    let bf = BackfillConfig {
        base_url: format!("http://{rest}"),
        deadline,
        ..BackfillConfig::default()
    };
    let filler = tokio::spawn(backfill::run(bf, ws_rx, tx, stop.clone()));
    let source = tokio::spawn(binance::run(cfg, ws_tx, stop.clone()));
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let collector = tokio::spawn(async move {
        while let Some(t) = rx.recv().await {
            sink.lock().unwrap().push(t);
        }
    });

    ex.wait_emitted(400).await;
    let before = ex.stats().connections_total;
    let fault_at = tokio::time::Instant::now();
    ex.inject(Fault::CloseAll);
    until("reconnected", || ex.stats().connections_total > before).await;
    tokio::time::timeout(WAIT, ex.wait_finished())
        .await
        .expect("tape finished");
    // Until every symbol's last trade is through: a symbol held behind a backfill
    // must come free by itself (answer or deadline), not by the shutdown below.
    let mut lasts: HashMap<Symbol, Trade> = HashMap::new();
    for t in ex.tape().unwrap().iter() {
        lasts.insert(t.trade.symbol, t.trade);
    }
    until("every symbol's last trade went through", || {
        let got = got.lock().unwrap();
        lasts.values().all(|l| got.iter().any(|t| &t.trade == l))
    })
    .await;
    let recovered_in = fault_at.elapsed();
    stop.cancel();
    source.await.unwrap().unwrap();
    filler
        .await
        .expect("the gap filler never panics")
        .expect("the gap filler ends cleanly");
    collector.await.unwrap();
    let trades = got.lock().unwrap().clone();
    server.stop().await;
    BackfillRun {
        got: dedupe(&trades),
        tape: ex.tape().unwrap().to_vec(),
        recovered_in,
    }
}
