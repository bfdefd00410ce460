//! The Binance websocket source against the local exchange (in-process, free loopback
//! port): whatever the exchange does to the connections, the trades received — after
//! the per-symbol dedupe the pipeline applies (drop ids ≤ last seen) — are exactly the
//! exchange's tape: no gap, no duplicate, in order per symbol.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tradeflow_exchange::gen::parse_symbols;
use tradeflow_exchange::{Exchange, ExchangeConfig, Fault, GenConfig, Generator, Tape};
use tradeflow_producer::source::binance::{self, BinanceConfig};
use tradeflow_producer::source::SourceTrade;
use tradeflow_shared::{Symbol, SEED_SYMBOLS};

const WAIT: Duration = Duration::from_secs(30);

struct Harness {
    ex: Exchange,
    server: Option<tradeflow_exchange::ServerHandle>,
    addr: std::net::SocketAddr,
    got: Arc<Mutex<Vec<SourceTrade>>>,
    stop: CancellationToken,
    source: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn tape(count: usize) -> Tape {
    let mut g = Generator::new(GenConfig {
        symbols: parse_symbols(SEED_SYMBOLS).unwrap(),
        seed: 11,
        start_ms: 1_717_000_000_000,
        old_format_every: 20,
    });
    Tape::Finite(Arc::new(g.take(count)))
}

async fn start(
    count: usize,
    rate: f64,
    ex_cfg: ExchangeConfig,
    tweak: impl FnOnce(&mut BinanceConfig),
) -> Harness {
    let ex = Exchange::start(
        ExchangeConfig {
            rate: Some(rate),
            ..ex_cfg
        },
        tape(count),
    );
    let server = ex.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.addr;
    let mut cfg = BinanceConfig {
        url: format!("ws://{addr}"),
        dead_timeout: Duration::from_secs(1),
        switch_settle: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(400),
        ..BinanceConfig::default()
    };
    tweak(&mut cfg);
    let (tx, mut rx) = mpsc::channel(256);
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        while let Some(t) = rx.recv().await {
            sink.lock().unwrap().push(t);
        }
    });
    let stop = CancellationToken::new();
    let source = tokio::spawn(binance::run(cfg, tx, stop.clone()));
    Harness {
        ex,
        server: Some(server),
        addr,
        got,
        stop,
        source,
    }
}

fn exchange_config() -> ExchangeConfig {
    ExchangeConfig {
        ping_interval: Duration::from_millis(300),
        pong_timeout: Duration::from_secs(3),
        shutdown_grace: Duration::from_millis(500),
        ..ExchangeConfig::default()
    }
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pipeline's dedupe: per symbol, drop trade ids ≤ the last one kept.
fn dedupe(trades: &[SourceTrade]) -> Vec<SourceTrade> {
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

impl Harness {
    fn total_connections(&self) -> u64 {
        self.ex.stats().connections_total
    }

    /// Waits for the whole tape to arrive, stops the source, checks the result.
    async fn finish_and_check(self) {
        let truth = self.ex.tape().unwrap();
        tokio::time::timeout(WAIT, self.ex.wait_finished())
            .await
            .expect("tape not finished");
        let got = self.got.clone();
        until("every trade received", || {
            dedupe(&got.lock().unwrap()).len() >= truth.len()
        })
        .await;
        self.stop.cancel();
        self.source.await.unwrap().unwrap();
        let got = self.got.lock().unwrap().clone();
        let kept = dedupe(&got);
        // Per symbol, exactly the tape's trades in the tape's order, JSON verbatim.
        let mut want: HashMap<Symbol, Vec<(u64, &str)>> = HashMap::new();
        for it in truth.iter() {
            want.entry(it.trade.symbol)
                .or_default()
                .push((it.trade.trade_id, &it.json));
        }
        let mut have: HashMap<Symbol, Vec<(u64, &str)>> = HashMap::new();
        for t in &kept {
            have.entry(t.trade.symbol)
                .or_default()
                .push((t.trade.trade_id, &t.json));
        }
        assert_eq!(have.len(), want.len());
        for (sym, w) in &want {
            assert_eq!(have.get(sym), Some(w), "{sym}: gap or reorder");
        }
        let stats = self.ex.stats();
        assert_eq!(stats.rate_violations, 0, "{stats:?}");
        assert_eq!(stats.pongs_mismatched, 0, "{stats:?}");
        assert!(stats.pongs_matched > 0, "pings answered: {stats:?}");
        if let Some(s) = self.server {
            s.stop().await;
        }
    }
}

#[tokio::test]
async fn proactive_rotation_before_the_server_cut_loses_nothing() {
    // The server cuts at 1.5 s; the client replaces its connection at 0.6 s.
    let h = start(
        4000,
        1000.0,
        ExchangeConfig {
            max_connection_age: Duration::from_millis(1500),
            ..exchange_config()
        },
        |c| c.max_connection_age = Duration::from_millis(600),
    )
    .await;
    h.ex.wait_emitted(3000).await;
    assert!(h.total_connections() >= 4, "{:?}", h.ex.stats());
    assert_eq!(h.ex.stats().age_closes, 0, "the client rotated first");
    h.finish_and_check().await;
}

#[tokio::test]
async fn server_shutdown_notices_lose_nothing() {
    let h = start(4000, 1000.0, exchange_config(), |_| {}).await;
    for n in [500, 1500, 2500] {
        h.ex.wait_emitted(n).await;
        h.ex.inject(Fault::ServerShutdown);
    }
    h.finish_and_check().await;
}

#[tokio::test]
async fn abrupt_faults_silence_hostile_frames_and_restart() {
    let mut h = start(3000, 1000.0, exchange_config(), |_| {}).await;

    // Abrupt closes and silence lose whatever is emitted while disconnected (the
    // REST backfill is not this source's job), so the tape is held meanwhile.
    h.ex.wait_emitted(300).await;
    h.ex.pause();
    let before = h.total_connections();
    h.ex.inject(Fault::CloseAll);
    until("reconnected after close-all", || {
        h.total_connections() > before
    })
    .await;
    h.ex.resume();

    h.ex.wait_emitted(900).await;
    h.ex.pause();
    let before = h.total_connections();
    h.ex.inject(Fault::Silence);
    until("reconnected after silence", || {
        h.total_connections() > before
    })
    .await;
    h.ex.resume();

    // Garbage and binary frames are skipped without a reconnect.
    h.ex.wait_emitted(1500).await;
    let before = h.total_connections();
    h.ex.inject(Fault::Garbage);
    h.ex.inject(Fault::Binary);
    h.ex.wait_emitted(1800).await;
    assert_eq!(
        h.total_connections(),
        before,
        "hostile frames are not fatal"
    );

    // A frame above the cap ends the connection, not the source.
    h.ex.pause();
    h.ex.inject(Fault::Huge);
    until("reconnected after a huge frame", || {
        h.total_connections() > before
    })
    .await;
    h.ex.resume();

    // The whole server stops and comes back on the same port.
    h.ex.wait_emitted(2200).await;
    h.ex.pause();
    h.server.take().unwrap().stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = h.total_connections();
    h.server = Some(h.ex.bind(h.addr).await.unwrap());
    until("reconnected after restart", || {
        h.total_connections() > before
    })
    .await;
    h.ex.resume();

    h.finish_and_check().await;
}

#[tokio::test]
async fn bad_config_is_refused_before_any_io() {
    let (tx, _rx) = mpsc::channel(1);
    let cfg = BinanceConfig {
        symbols: vec!["BTC USDT".into()],
        ..BinanceConfig::default()
    };
    assert!(binance::run(cfg, tx, CancellationToken::new())
        .await
        .is_err());
}
