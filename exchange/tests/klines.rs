//! `GET /api/v3/klines` of the local exchange on a free loopback port, against a
//! straightforward computation over the trades it played: every minute exact, roll-ups,
//! the time window and limit, and Binance's error bodies.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_tungstenite::connect_async;
use tradeflow_exchange::{Exchange, ExchangeConfig, Tape, TapeItem};
use tradeflow_shared::decimal::format_scaled;
use tradeflow_shared::rest::RestClient;

/// An hour boundary (so 5m/1h candles start at T0).
const T0: u64 = 1_717_002_000_000;
const MIN: u64 = 60_000;

/// BTCUSDT in minutes 0, 1 and 3 (in minute 0, id 2 trades before id 1: the open is
/// still id 1's price); ETHBTC in minute 0. Quote volumes with more than 8 decimals.
fn tape() -> Vec<TapeItem> {
    let t = |sym: &str, id: u64, p: &str, q: &str, at: u64, m: bool| {
        format!(
            r#"{{"e":"trade","E":{at},"s":"{sym}","t":{id},"p":"{p}","q":"{q}","T":{at},"m":{m},"M":true}}"#
        )
    };
    let lines = [
        t("BTCUSDT", 2, "100.00000001", "0.5", T0 + 5_000, false),
        t("BTCUSDT", 1, "101.23456789", "1.5", T0 + 30_000, true),
        t("ETHBTC", 7, "0.05123456", "3", T0 + 31_000, false),
        t("BTCUSDT", 3, "99.5", "0.00000003", T0 + 59_999, false),
        t("BTCUSDT", 4, "102", "2", T0 + MIN, true),
        t("BTCUSDT", 5, "98.7", "0.1", T0 + 3 * MIN + 1, false),
        t("BTCUSDT", 6, "103.3", "0.2", T0 + 3 * MIN + 2, true),
    ];
    Tape::parse_capture(&lines.join("\n")).unwrap()
}

/// Binance's array for `trades` (one symbol, one interval), computed plainly: sorted by
/// id, sums of exact units, quote volumes cut to 8 decimals.
fn expected(trades: &[&TapeItem], open: u64, iv: u64) -> Value {
    let mut ts: Vec<_> = trades.iter().map(|i| i.trade).collect();
    ts.sort_by_key(|t| t.trade_id);
    let base: u128 = ts.iter().map(|t| t.qty.0 as u128).sum();
    let quote: u128 = ts.iter().map(|t| t.quote_units()).sum();
    let taker = ts.iter().filter(|t| !t.buyer_is_maker);
    let tbase: u128 = taker.clone().map(|t| t.qty.0 as u128).sum();
    let tquote: u128 = taker.map(|t| t.quote_units()).sum();
    let cut = |q: u128| format_scaled(q / 100_000_000, 8);
    json!([
        open,
        ts[0].price.to_string(),
        ts.iter().map(|t| t.price).max().unwrap().to_string(),
        ts.iter().map(|t| t.price).min().unwrap().to_string(),
        ts.last().unwrap().price.to_string(),
        format_scaled(base, 8),
        open + iv - 1,
        cut(quote),
        ts.len(),
        format_scaled(tbase, 8),
        cut(tquote),
        "0"
    ])
}

async fn get(c: &RestClient, path: &str) -> (u16, Value) {
    let r = c.get(path).await.unwrap();
    (r.status, serde_json::from_slice(&r.body).unwrap())
}

#[tokio::test]
async fn klines_are_exact_rolled_up_windowed_and_refused_like_binance() {
    let items = tape();
    let ex = Exchange::start(
        ExchangeConfig::default(),
        Tape::Finite(Arc::new(items.clone())),
    );
    let srv = ex.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    // The tape starts with its first subscriber; the trades are kept after it left.
    let (ws, _) = connect_async(format!("ws://{}/ws/btcusdt@trade", srv.addr))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), ex.wait_finished())
        .await
        .expect("tape played");
    drop(ws);
    let c = RestClient::new(
        &format!("http://{}", srv.addr),
        Duration::from_secs(5),
        1 << 20,
        "test",
    )
    .unwrap();

    let mut by_minute: BTreeMap<(String, u64), Vec<&TapeItem>> = BTreeMap::new();
    for i in &items {
        let open = i.trade.trade_time_ms - i.trade.trade_time_ms % MIN;
        by_minute
            .entry((i.trade.symbol.as_str().to_string(), open))
            .or_default()
            .push(i);
    }
    let want = |sym: &str| -> Vec<Value> {
        by_minute
            .iter()
            .filter(|((s, _), _)| s == sym)
            .map(|((_, open), ts)| expected(ts, *open, MIN))
            .collect()
    };
    let (status, all) = get(&c, "/api/v3/klines?symbol=BTCUSDT&interval=1m").await;
    assert_eq!(status, 200);
    assert_eq!(all, Value::Array(want("BTCUSDT")));
    // Spelled out once: open by lowest id (not earliest time), quote cut to 8 decimals
    // (50.000000005 + 151.851851835 + 0.000002985 = 201.851854825...).
    assert_eq!(all[0][1], "101.23456789");
    assert_eq!(all[0][7], "201.85185482");
    assert_eq!(all[0][8], 3);
    let (_, eth) = get(&c, "/api/v3/klines?symbol=ETHBTC&interval=1m&timeZone=0").await;
    assert_eq!(eth, Value::Array(want("ETHBTC")));

    // 5m and 1h: one candle of every BTCUSDT trade.
    let btc: Vec<&TapeItem> = items
        .iter()
        .filter(|i| i.trade.symbol.as_str() == "BTCUSDT")
        .collect();
    for (name, iv) in [("5m", 5 * MIN), ("1h", 60 * MIN)] {
        let (_, r) = get(
            &c,
            &format!("/api/v3/klines?symbol=BTCUSDT&interval={name}"),
        )
        .await;
        assert_eq!(r, json!([expected(&btc, T0, iv)]), "{name}");
    }

    // Open times in startTime..=endTime; `limit` from the start, else back from the end.
    let opens = |v: &Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|k| (k[0].as_u64().unwrap() - T0) / MIN)
            .collect()
    };
    let q = |extra: String| format!("/api/v3/klines?symbol=BTCUSDT&interval=1m{extra}");
    let (_, r) = get(&c, &q(format!("&startTime={}&limit=1", T0 + 1))).await;
    assert_eq!(opens(&r), [1]);
    let (_, r) = get(&c, &q(format!("&endTime={}&limit=1", T0 + 2 * MIN))).await;
    assert_eq!(opens(&r), [1]);
    let (_, r) = get(
        &c,
        &q(format!("&startTime={T0}&endTime={}", T0 + 3 * MIN - 1)),
    )
    .await;
    assert_eq!(opens(&r), [0, 1]);
    let (_, r) = get(&c, &q("&limit=2".into())).await;
    assert_eq!(opens(&r), [1, 3]);

    for (path, code) in [
        ("/api/v3/klines?symbol=NOPEUSDT&interval=1m", -1121),
        ("/api/v3/klines?symbol=BTC%20USDT&interval=1m", -1121),
        ("/api/v3/klines?interval=1m", -1102),
        ("/api/v3/klines?symbol=BTCUSDT", -1102),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1w", -1120),
        ("/api/v3/klines?symbol=BTCUSDT&interval=2m", -1120),
        (
            "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1001",
            -1100,
        ),
        (
            "/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=x",
            -1100,
        ),
        (
            "/api/v3/klines?symbol=BTCUSDT&interval=1m&timeZone=8",
            -1130,
        ),
        (
            "/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=2&endTime=1",
            -1128,
        ),
    ] {
        let (status, body) = get(&c, path).await;
        assert_eq!((status, body["code"].as_i64()), (400, Some(code)), "{path}");
        assert!(body["msg"].is_string(), "{path}: {body}");
    }
    let (_, body) = get(&c, "/api/v3/klines?symbol=NOPEUSDT&interval=1m").await;
    assert_eq!(body, json!({"code": -1121, "msg": "Invalid symbol."}));
    assert_eq!(ex.stats().kline_requests, 19);
    srv.stop().await;
}
