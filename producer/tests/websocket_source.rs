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

use crate::support::rest_front::{backfill_run, dedupe, ids_by_symbol, Answer, BackfillRun, Plan};

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

/// The first `fail_first` requests get a 500, the next one a 429 with `Retry-After: 1`,
/// the rest are passed to the exchange — or, with `fail_first == u64::MAX`, every
/// request fails.
fn flaky(fail_first: u64) -> Plan {
    Arc::new(move |i| {
        if fail_first == u64::MAX || i < fail_first {
            Answer::reply("500 Internal Server Error", "", "{\"code\":-1000}")
        } else if i == fail_first {
            Answer::reply(
                "429 Too Many Requests",
                "Retry-After: 1\r\n",
                "{\"code\":-1003}",
            )
        } else {
            Answer::Pass
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_backfill_retries_through_errors_and_rate_limits() {
    let BackfillRun { got, tape, .. } = backfill_run(flaky(2), Duration::from_secs(4)).await;
    // Every tape trade once, in order, including those emitted while disconnected.
    assert_eq!(
        ids_by_symbol(got.iter().map(|t| &t.trade)),
        ids_by_symbol(tape.iter().map(|t| &t.trade))
    );
    // Backfilled trades are indistinguishable from live ones once decoded.
    let by_id: HashMap<(Symbol, u64), &tradeflow_shared::Trade> = tape
        .iter()
        .map(|t| ((t.trade.symbol, t.trade.trade_id), &t.trade))
        .collect();
    for t in &got {
        let want = by_id[&(t.trade.symbol, t.trade.trade_id)];
        assert_eq!(
            (
                t.trade.price,
                t.trade.qty,
                t.trade.trade_time_ms,
                t.trade.buyer_is_maker
            ),
            (
                want.price,
                want.qty,
                want.trade_time_ms,
                want.buyer_is_maker
            )
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_rest_endpoint_leaves_the_gap_but_never_stalls_the_feed() {
    let BackfillRun { got, tape, .. } = backfill_run(flaky(u64::MAX), Duration::from_secs(4)).await;
    let got_ids = ids_by_symbol(got.iter().map(|t| &t.trade));
    let tape_ids = ids_by_symbol(tape.iter().map(|t| &t.trade));
    let mut missing = 0;
    for (sym, ids) in &tape_ids {
        let have = got_ids.get(sym).cloned().unwrap_or_default();
        assert!(have.windows(2).all(|w| w[0] < w[1]), "{sym:?} out of order");
        // Each symbol's newest trade arrived: the feed went on past the gap.
        assert_eq!(have.last(), ids.last(), "{sym:?} stalled");
        missing += ids.len() - have.len();
    }
    assert!(
        missing > 0,
        "the close must have lost trades that REST could not give back"
    );
}

#[tokio::test]
async fn symbols_come_from_exchange_info_or_a_file() {
    use tradeflow_producer::source::symbols::{resolve, Selection};
    let ex = Exchange::start(exchange_config(), tape(100));
    let server = ex.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut all = resolve(&Selection::AllTrading {
        rest_url: format!("http://{}", server.addr),
    })
    .await
    .unwrap();
    all.sort();
    let mut want: Vec<String> = SEED_SYMBOLS.iter().map(|s| s.to_uppercase()).collect();
    want.sort();
    assert_eq!(all, want);
    server.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("symbols.txt");
    std::fs::write(&file, "# majors\nbtcusdt\nETHUSDT\n").unwrap();
    assert_eq!(
        resolve(&Selection::File(file.clone())).await.unwrap(),
        ["BTCUSDT", "ETHUSDT"]
    );
    std::fs::write(&file, "btcusdt\nnot a symbol\n").unwrap();
    let err = resolve(&Selection::File(file))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2"), "{err}");
}
