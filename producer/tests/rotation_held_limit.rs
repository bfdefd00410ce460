//! A connection rotation whose replacement never gets its SUBSCRIBE confirmed holds at
//! most `max_held` trades: past it the replacement is closed and the old connection goes
//! on (it delivers the same trades), the rotation is tried again, and no trade is lost.
//!
//! The server is a minimal websocket endpoint in this test (the local exchange always
//! confirms): it sends one symbol's trades, 1 per ms, to every connection and never
//! answers SUBSCRIBE. 101 streams make the client send one SUBSCRIBE (100 go in the URL).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tradeflow_producer::source::binance::{self, BinanceConfig};
use tradeflow_shared::{Fixed8, Symbol, Trade};

#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    closed_by_client: AtomicU64,
}

async fn never_confirming_server(stop: CancellationToken) -> (std::net::SocketAddr, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let (trades, _) = broadcast::channel::<String>(4096);
    let ticker = trades.clone();
    let ticking = stop.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(1));
        for id in 1u64.. {
            tokio::select! {
                _ = ticking.cancelled() => return,
                _ = every.tick() => {}
            }
            let t = Trade {
                symbol: Symbol::new("S0USDT").unwrap(),
                trade_id: id,
                price: Fixed8::parse("1").unwrap(),
                qty: Fixed8::parse("1").unwrap(),
                trade_time_ms: 1_717_000_000_000 + id,
                event_time_ms: 1_717_000_000_000 + id,
                buyer_is_maker: false,
            };
            let _ = ticker.send(t.to_json());
        }
    });
    let counts = seen.clone();
    tokio::spawn(async move {
        loop {
            let sock = tokio::select! {
                _ = stop.cancelled() => return,
                s = listener.accept() => match s { Ok((s, _)) => s, Err(_) => return },
            };
            let (mut rx, seen, stop) = (trades.subscribe(), counts.clone(), stop.clone());
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(sock).await else {
                    return;
                };
                seen.connections.fetch_add(1, Ordering::SeqCst);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        msg = ws.next() => match msg {
                            // SUBSCRIBE: never answered. Pings: tungstenite answers.
                            Some(Ok(Message::Close(_))) => {
                                seen.closed_by_client.fetch_add(1, Ordering::SeqCst);
                                let _ = ws.close(None).await;
                                return;
                            }
                            Some(Ok(_)) => {}
                            _ => return,
                        },
                        t = rx.recv() => match t {
                            Ok(json) => if ws.send(Message::text(json)).await.is_err() { return },
                            Err(broadcast::error::RecvError::Lagged(_)) => {}
                            Err(_) => return,
                        },
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_that_holds_too_much_is_abandoned_and_nothing_is_lost() {
    let stop = CancellationToken::new();
    let (addr, seen) = never_confirming_server(stop.clone()).await;
    let cfg = BinanceConfig {
        url: format!("ws://{addr}"),
        symbols: (0..101).map(|i| format!("S{i}USDT")).collect(),
        max_connection_age: Duration::from_millis(300),
        dead_timeout: Duration::from_secs(2),
        switch_settle: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        max_held: 50,
        ..BinanceConfig::default()
    };
    let (tx, mut rx) = mpsc::channel::<tradeflow_producer::source::SourceTrade>(1024);
    let got = Arc::new(Mutex::new(Vec::<u64>::new()));
    let sink = got.clone();
    let collector = tokio::spawn(async move {
        while let Some(t) = rx.recv().await {
            sink.lock().unwrap().push(t.trade.trade_id);
        }
    });
    let source_stop = CancellationToken::new();
    let source = tokio::spawn(binance::run(cfg, tx, source_stop.clone()));

    // Replacements open (age 300 ms), hold 50 trades within ~50 ms, and are closed by
    // the client; each time the rotation is tried again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.closed_by_client.load(Ordering::SeqCst) < 2
        || seen.connections.load(Ordering::SeqCst) < 3
    {
        let received = got.lock().unwrap().len();
        assert!(
            tokio::time::Instant::now() < deadline,
            "no replacement was abandoned: {} connections, {} closed by the client, {received} trades received",
            seen.connections.load(Ordering::SeqCst),
            seen.closed_by_client.load(Ordering::SeqCst),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    source_stop.cancel();
    source.await.unwrap().unwrap();
    collector.await.unwrap();
    stop.cancel();

    // The old connection delivered throughout: after the pipeline's dedupe, every id
    // from the first to the last, once, in order.
    let mut last = 0;
    let mut kept = Vec::new();
    for id in got.lock().unwrap().iter().copied() {
        if id > last {
            kept.push(id);
            last = id;
        }
    }
    assert!(kept.len() > 300, "{} trades", kept.len());
    assert!(
        kept.windows(2).all(|w| w[1] == w[0] + 1),
        "a trade id went missing: {:?}",
        kept.windows(2).find(|w| w[1] != w[0] + 1)
    );
}
