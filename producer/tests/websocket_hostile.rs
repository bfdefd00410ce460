//! Hostile exchange frames the local exchange cannot send: a frame header announcing
//! an endless payload, a message fragmented forever, and a frame that never completes
//! (a trickle). A raw websocket server on a free loopback port plays each in turn; the
//! Binance source must drop each connection (the frame cap bounds what it buffers),
//! count the oversized ones, reconnect, and then receive the good trades exactly.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tradeflow_producer::source::binance::{self, BinanceConfig};

/// The source's frame and message cap in this test.
const CAP: usize = 1 << 20;
/// What the server may push into one hostile connection before the client gives up:
/// the cap plus kernel socket buffers. Without the cap it would be unbounded (the
/// server stops at `GIVE_UP`).
const MAX_PUSHED: u64 = 32 << 20;
const GIVE_UP: u64 = 512 << 20;
const GOOD_TRADES: u64 = 50;
const CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
enum Play {
    /// Text frame header with a 2^40-byte length, then zeros until the client leaves.
    EndlessFrame,
    /// A text message fragmented into 64 KiB continuation frames, never finished.
    EndlessFragments,
    /// A frame under the cap whose payload trickles in, one byte per 50 ms.
    Trickle,
    /// A normal exchange: trades 1..=GOOD_TRADES, then quiet.
    Good,
}

const SCRIPT: [Play; 4] = [
    Play::EndlessFrame,
    Play::EndlessFragments,
    Play::Trickle,
    Play::Good,
];

#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    /// Bytes pushed into each hostile connection before its write failed.
    pushed: Mutex<Vec<(String, u64)>>,
    good_served: AtomicU64,
}

/// Reads the HTTP upgrade request and answers 101 by hand, leaving the raw socket.
async fn raw_handshake(s: &mut TcpStream) -> std::io::Result<()> {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await?;
        if n == 0 || req.len() > 16 * 1024 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        req.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&req);
    let key = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_string())
        })
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    s.write_all(resp.as_bytes()).await
}

/// Writes `first` then `next` repeatedly until the peer goes away; returns the bytes
/// written (a failed write ends it, so does `GIVE_UP`).
async fn push_until_closed(s: &mut TcpStream, first: &[u8], next: &[u8]) -> u64 {
    let mut sent = 0u64;
    if s.write_all(first).await.is_err() {
        return sent;
    }
    sent += first.len() as u64;
    while sent < GIVE_UP {
        if s.write_all(next).await.is_err() {
            break;
        }
        sent += next.len() as u64;
    }
    sent
}

fn frame_header(opcode_fin: u8, len: u64) -> Vec<u8> {
    let mut h = vec![opcode_fin, 127];
    h.extend_from_slice(&len.to_be_bytes());
    h
}

async fn hostile(mut s: TcpStream, play: Play, seen: Arc<Seen>) {
    if raw_handshake(&mut s).await.is_err() {
        return;
    }
    let zeros = vec![0u8; CHUNK];
    let sent = match play {
        Play::EndlessFrame => push_until_closed(&mut s, &frame_header(0x81, 1 << 40), &zeros).await,
        Play::EndlessFragments => {
            // Text, FIN=0; then continuation frames (opcode 0), FIN=0, forever.
            let mut first = frame_header(0x01, CHUNK as u64);
            first.extend_from_slice(&vec![b'a'; CHUNK]);
            let mut next = frame_header(0x00, CHUNK as u64);
            next.extend_from_slice(&vec![b'a'; CHUNK]);
            push_until_closed(&mut s, &first, &next).await
        }
        Play::Trickle => {
            let mut sent = 0u64;
            if s.write_all(&frame_header(0x81, 512 * 1024)).await.is_ok() {
                loop {
                    // A closed peer shows as EOF/reset on read; writes may still land
                    // in the buffer for a while.
                    let mut b = [0u8; 256];
                    tokio::select! {
                        r = s.read(&mut b) => match r {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        },
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {
                            if s.write_all(b"x").await.is_err() {
                                break;
                            }
                            sent += 1;
                        }
                    }
                }
            }
            sent
        }
        Play::Good => unreachable!(),
    };
    seen.pushed
        .lock()
        .unwrap()
        .push((format!("{play:?}"), sent));
}

async fn good(s: TcpStream, seen: Arc<Seen>, stop: CancellationToken) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
        return;
    };
    for id in 1..=GOOD_TRADES {
        let t = format!(
            r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":{id},"p":"10.5","q":"0.25","T":1717000000120,"m":true,"M":true}}}}"#
        );
        if ws.send(Message::text(t)).await.is_err() {
            return;
        }
        seen.good_served.fetch_add(1, Ordering::Relaxed);
    }
    // Stay connected (answering pings) until the test ends.
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            m = ws.next() => if !matches!(m, Some(Ok(_))) { return },
        }
    }
}

async fn serve(
    listener: TcpListener,
    script: &'static [Play],
    seen: Arc<Seen>,
    stop: CancellationToken,
) {
    loop {
        let (s, _) = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
        };
        let n = seen.connections.fetch_add(1, Ordering::SeqCst);
        let play = script.get(n).copied().unwrap_or(Play::Good);
        let seen = seen.clone();
        match play {
            Play::Good => {
                tokio::spawn(good(s, seen, stop.clone()));
            }
            hostile_play => {
                tokio::spawn(hostile(s, hostile_play, seen));
            }
        }
    }
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_and_never_finished_frames_end_the_connection_not_the_source() {
    let metrics = tradeflow_shared::telemetry::install_metrics().expect("recorder");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, &SCRIPT, seen.clone(), stop.clone()));

    let cfg = BinanceConfig {
        url: format!("ws://{addr}"),
        symbols: vec!["btcusdt".into()],
        dead_timeout: Duration::from_secs(1),
        switch_settle: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        max_frame_bytes: CAP,
        ..BinanceConfig::default()
    };
    let (tx, mut rx) = mpsc::channel(256);
    let source = tokio::spawn(binance::run(cfg, tx, stop.clone()));

    let mut ids = Vec::new();
    let got_all = tokio::time::timeout(Duration::from_secs(45), async {
        while let Some(t) = rx.recv().await {
            ids.push(t.trade.trade_id);
            if ids.len() as u64 == GOOD_TRADES {
                break;
            }
        }
    })
    .await;
    let pushed = seen.pushed.lock().unwrap().clone();
    assert!(
        got_all.is_ok(),
        "good trades not received after the hostile connections: got {} trades, {} connections, pushed {pushed:?}",
        ids.len(),
        seen.connections.load(Ordering::SeqCst)
    );
    assert_eq!(ids, (1..=GOOD_TRADES).collect::<Vec<_>>());
    assert!(
        !source.is_finished(),
        "the source must outlive hostile frames"
    );
    assert!(seen.connections.load(Ordering::SeqCst) >= SCRIPT.len());

    // Each hostile connection was dropped by the client long before the server's own
    // limit: the cap, not the peer, bounds what is read.
    for (play, sent) in &pushed {
        assert!(
            *sent < MAX_PUSHED,
            "{play}: {sent} bytes pushed before the client left"
        );
    }
    assert_eq!(pushed.len(), 3, "{pushed:?}");
    eprintln!(
        "bytes pushed per hostile connection: {pushed:?}; test VmHWM {} KiB",
        vm_hwm_kib()
    );

    // Both oversized cases are counted as bad input.
    let scrape = metrics.render();
    let oversized = scrape
        .lines()
        .find(|l| {
            l.starts_with("tradeflow_producer_bad_input_total")
                && l.contains(r#"kind="oversized_frame""#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        oversized >= 2.0,
        "oversized frames counted: {oversized}\n{scrape}"
    );
    // The process stays small: nothing near the announced 1 TiB frame was buffered.
    assert!(vm_hwm_kib() < 256 * 1024, "VmHWM {} KiB", vm_hwm_kib());

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), source).await;
}

/// The real producer binary, given a feed URL with credentials, never logs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_url_password_is_never_logged() {
    const SECRET: &str = "feed-Secret-4711";
    tradeflow_shared::testkit::local_aws_env();
    let fk = tradeflow_shared::testkit::ferrokinesis(&["--create-stream-ms", "0"]);
    let args = tradeflow_shared::aws::AwsArgs {
        region: "eu-west-1".into(),
        kinesis_endpoint: Some(fk.endpoint()),
        dynamodb_endpoint: None,
    };
    let conf = tradeflow_shared::aws::sdk_config(&args).await;
    let kinesis = tradeflow_shared::aws::kinesis_client(&conf, &args);
    kinesis
        .create_stream()
        .stream_name("crypto")
        .shard_count(1)
        .send()
        .await
        .expect("create stream");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, &[], seen.clone(), stop.clone()));

    let log_path = std::env::temp_dir().join(format!(
        "tradeflow-ws-hostile-{}-{}.log",
        std::process::id(),
        addr.port()
    ));
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tradeflow-producer"))
        .args([
            "--stream",
            "crypto",
            "--source",
            "binance",
            "--symbols",
            "BTCUSDT",
        ])
        .args(["--binance-url", &format!("ws://feed-user:{SECRET}@{addr}")])
        .args(["--kinesis-endpoint", &fk.endpoint(), "--metrics-addr", ""])
        .args(["--log-format", "json", "--log", "debug"])
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start the producer");
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.good_served.load(Ordering::Relaxed) < GOOD_TRADES {
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = tokio::task::spawn_blocking(move || {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    stop.cancel();
    let out = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    assert_eq!(
        seen.good_served.load(Ordering::Relaxed),
        GOOD_TRADES,
        "the producer did not read the feed:\n{out}"
    );
    assert!(
        !out.contains(SECRET),
        "the feed password was logged:\n{out}"
    );
    assert!(
        out.contains(&format!("ws://***@{addr}")),
        "the feed URL is logged, redacted:\n{out}"
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}:\n{out}"
    );
}
