//! The exchange against a real websocket client on a free loopback port.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};
use tradeflow_exchange::{Exchange, ExchangeConfig, Fault, Tape};
use tradeflow_shared::{decode_event, Event};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn capture() -> Tape {
    let text = include_str!("../data/capture.jsonl");
    Tape::Finite(Arc::new(Tape::parse_capture(text).unwrap()))
}

fn fast() -> ExchangeConfig {
    ExchangeConfig {
        ping_interval: Duration::from_millis(200),
        pong_timeout: Duration::from_secs(2),
        shutdown_grace: Duration::from_millis(300),
        ..ExchangeConfig::default()
    }
}

const T: Duration = Duration::from_secs(20);

/// Next text message, skipping control frames (tungstenite answers pings itself).
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match timeout(T, ws.next()).await.expect("timed out")? {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn combined_stream_delivers_its_symbols_in_tape_order() {
    let ex = Exchange::start(fast(), capture());
    let srv = ex.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!(
        "ws://{}/stream?streams=btcusdt@trade/ethbtc@trade",
        srv.addr
    );
    let (mut ws, _) = connect_async(url).await.unwrap();
    let tape = ex.tape().unwrap();
    let want: Vec<String> = tape
        .iter()
        .filter(|i| ["BTCUSDT", "ETHBTC"].contains(&i.trade.symbol.as_str()))
        .map(|i| i.json.to_string())
        .collect();
    let mut got = Vec::new();
    while got.len() < want.len() {
        let text = next_text(&mut ws).await.expect("stream ended early");
        assert!(text.starts_with(r#"{"stream":""#), "{text}");
        match decode_event(&text).unwrap() {
            Event::Trade { json, .. } => got.push(json.to_string()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, want);
    ex.wait_finished().await;
    assert_eq!(ex.emitted().len(), tape.len());
    srv.stop().await;
}

#[tokio::test]
async fn raw_stream_with_live_subscribe_and_list() {
    let ex = Exchange::start(fast(), capture());
    ex.pause();
    let srv = ex.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (mut ws, _) = connect_async(format!("ws://{}/ws", srv.addr))
        .await
        .unwrap();
    ws.send(Message::text(
        r#"{"method":"SUBSCRIBE","params":["ltcbtc@trade"],"id":7}"#,
    ))
    .await
    .unwrap();
    assert_eq!(
        next_text(&mut ws).await.unwrap(),
        r#"{"result":null,"id":7}"#
    );
    ws.send(Message::text(r#"{"method":"LIST_SUBSCRIPTIONS","id":8}"#))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut ws).await.unwrap(),
        r#"{"result":["ltcbtc@trade"],"id":8}"#
    );
    ex.resume();
    let first = ex
        .tape()
        .unwrap()
        .iter()
        .find(|i| i.trade.symbol.as_str() == "LTCBTC")
        .unwrap()
        .json
        .to_string();
    // Raw streams send the event itself, byte for byte.
    assert_eq!(next_text(&mut ws).await.unwrap(), first);
    srv.stop().await;
}

#[tokio::test]
async fn pings_are_sent_and_echoed_pongs_counted() {
    let ex = Exchange::start(fast(), capture());
    ex.pause();
    let srv = ex.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (mut ws, _) = connect_async(format!("ws://{}/ws/btcusdt@trade", srv.addr))
        .await
        .unwrap();
    let mut pings = 0;
    while pings < 3 {
        if let Message::Ping(p) = timeout(T, ws.next()).await.unwrap().unwrap().unwrap() {
            assert!(p.starts_with(b"ping-"));
            pings += 1;
        }
    }
    // Reading again flushes tungstenite's automatic pong.
    let _ = timeout(Duration::from_millis(300), ws.next()).await;
    assert!(ex.stats().pongs_matched >= 2, "{:?}", ex.stats());
    assert_eq!(ex.stats().pongs_mismatched, 0);
    srv.stop().await;
}

#[tokio::test]
async fn dead_client_is_dropped_after_pong_timeout() {
    let ex = Exchange::start(
        ExchangeConfig {
            pong_timeout: Duration::from_millis(500),
            ..fast()
        },
        capture(),
    );
    ex.pause();
    let srv = ex.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    // Never read: tungstenite never gets to answer the pings.
    let (_ws, _) = connect_async(format!("ws://{}/ws/btcusdt@trade", srv.addr))
        .await
        .unwrap();
    ex.wait_connections(1).await;
    timeout(T, ex.wait_connections(0)).await.unwrap();
    assert_eq!(ex.stats().pong_timeouts, 1);
    srv.stop().await;
}

#[tokio::test]
async fn server_shutdown_notice_then_close() {
    let ex = Exchange::start(fast(), capture());
    ex.pause();
    let srv = ex.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (mut ws, _) = connect_async(format!("ws://{}/stream?streams=btcusdt@trade", srv.addr))
        .await
        .unwrap();
    ex.wait_connections(1).await;
    ex.inject(Fault::ServerShutdown);
    let text = next_text(&mut ws).await.unwrap();
    assert!(text.starts_with(r#"{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":"#));
    assert_eq!(decode_event(&text).unwrap(), Event::ServerShutdown);
    assert_eq!(
        next_text(&mut ws).await,
        None,
        "closed after the grace period"
    );
    srv.stop().await;
}

#[tokio::test]
async fn max_age_close_all_and_hostile_frames() {
    let ex = Exchange::start(
        ExchangeConfig {
            max_connection_age: Duration::from_millis(700),
            ..fast()
        },
        capture(),
    );
    ex.pause();
    let srv = ex.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("ws://{}/ws/btcusdt@trade", srv.addr);

    let (mut ws, _) = connect_async(&url).await.unwrap();
    assert_eq!(next_text(&mut ws).await, None);
    assert_eq!(ex.stats().age_closes, 1);

    let (mut ws, _) = connect_async(&url).await.unwrap();
    ex.wait_connections(1).await;
    ex.inject(Fault::Garbage);
    ex.inject(Fault::Binary);
    ex.inject(Fault::CloseAll);
    assert!(decode_event(&next_text(&mut ws).await.unwrap()).is_err());
    let mut saw_binary = false;
    while let Some(Ok(m)) = timeout(T, ws.next()).await.unwrap() {
        saw_binary |= matches!(m, Message::Binary(_));
    }
    assert!(saw_binary);
    srv.stop().await;
}

async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    timeout(T, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn rest_and_control_endpoints() {
    let ex = Exchange::start(fast(), capture());
    ex.pause();
    let srv = ex.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let prices = http(srv.addr, "GET", "/api/v3/ticker/price").await;
    assert!(prices.starts_with("HTTP/1.1 200"), "{prices}");
    assert!(prices.contains(r#"{"price":"67000."#) || prices.contains(r#""symbol":"BTCUSDT""#));
    let info = http(srv.addr, "GET", "/api/v3/exchangeInfo").await;
    assert_eq!(info.matches(r#""status":"TRADING""#).count(), 14, "{info}");

    let (mut ws, _) = connect_async(format!("ws://{}/ws/btcusdt@trade", srv.addr))
        .await
        .unwrap();
    ex.wait_connections(1).await;
    let r = http(srv.addr, "POST", "/control/close-all").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(next_text(&mut ws).await, None);
    let r = http(srv.addr, "POST", "/control/nope").await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = http(srv.addr, "GET", "/control/stats").await;
    assert!(r.contains(r#""connections_total":1"#), "{r}");
    srv.stop().await;
}

#[tokio::test]
async fn restart_on_the_same_port_keeps_the_tape_position() {
    let ex = Exchange::start(
        ExchangeConfig {
            rate: Some(2000.0),
            ..fast()
        },
        capture(),
    );
    let srv = ex.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = srv.addr;
    let url = format!("ws://{addr}/ws/btcusdt@trade");
    let (mut ws, _) = connect_async(&url).await.unwrap();
    next_text(&mut ws).await.unwrap();
    srv.stop().await;
    while next_text(&mut ws).await.is_some() {}
    let before = ex.emitted_count();
    let srv = ex.bind(addr).await.unwrap();
    let (mut ws, _) = connect_async(&url).await.unwrap();
    let Event::Trade { trade, .. } = decode_event(&next_text(&mut ws).await.unwrap()).unwrap()
    else {
        panic!()
    };
    let pos = ex
        .tape()
        .unwrap()
        .iter()
        .position(|i| i.trade == trade)
        .unwrap();
    assert!(
        pos as u64 >= before,
        "the tape went on while the server was down"
    );
    srv.stop().await;
}
