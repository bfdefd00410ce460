//! The live page's candles: `/api/candles` against a real redis-server (Binance arrays,
//! the window, limits, bad input, its Redis cost and cache, Redis down), and the chart
//! in a real headless Chromium: one candle per seeded minute with the exact prices in
//! its data attributes, drawn where they say, the symbol and interval picked through
//! the URL hash, and (`cdp`) a real click on a treemap tile switching the chart.
//! Leaves a screenshot in `target/test-artifacts/report-web-candles.png`.

use crate::kline_seed::{apply_blocking, expected, trades, within, ONE};
use crate::report_web::{
    artifacts_dir, chromium, command_calls, dump_dom, http, past_cache, redis_cli, Server,
};

use std::collections::BTreeMap;

use serde_json::Value;
use tradeflow_shared::kline::{Interval, MINUTE_MS};
use tradeflow_shared::testkit::{self, Service};
use tradeflow_shared::Trade;

/// BTCUSDT (the top symbol): 3 trades in each of the last 70 minutes but for a quiet
/// one; ETHUSDT: 2 trades a minute over the last 30. The newest trade is in a minute
/// that has begun (a trade time never in the future).
pub(crate) struct Seeded {
    pub redis: Service,
    pub btc: Vec<Trade>,
    pub eth: Vec<Trade>,
    /// Open time of the minute of BTCUSDT's newest trade.
    pub last_minute: u64,
}

pub(crate) fn seeded() -> Seeded {
    let redis = testkit::redis();
    let now = tradeflow_shared::telemetry::now_ms();
    // Whole minutes that have passed: every seeded trade time is in the past.
    let last_minute = now - now % MINUTE_MS - MINUTE_MS;
    let from = last_minute - 69 * MINUTE_MS;
    let btc: Vec<Trade> = trades("BTCUSDT", 10_000, from, 70, 3, 60_000 * ONE)
        .into_iter()
        // A minute without a trade: no candle, a gap in the chart.
        .filter(|t| t.trade_time_ms / MINUTE_MS != last_minute / MINUTE_MS - 7)
        .collect();
    let eth = trades(
        "ETHUSDT",
        50_000,
        last_minute - 29 * MINUTE_MS,
        30,
        2,
        3_000 * ONE,
    );
    apply_blocking(&redis, &[btc.clone(), eth.clone()].concat());
    Seeded {
        redis,
        btc,
        eth,
        last_minute,
    }
}

fn get(server: &Server, path: &str) -> (u16, Value) {
    let (status, head, body) = http(server.port, "GET", path);
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    (status, serde_json::from_str(&body).expect("JSON body"))
}

#[test]
fn candles_endpoint_answers_binance_arrays_within_bounds() {
    let s = seeded();
    let server = Server::start(s.redis.port);
    let window = |iv: Interval, n: u64| {
        let last = iv.start_of(s.last_minute);
        (last - (n - 1) * iv.ms(), last)
    };

    // The 60 minutes ending at the newest trade's: 59 candles (one minute is quiet).
    let (status, body) = get(&server, "/api/candles?symbol=BTCUSDT&interval=1m");
    assert_eq!(status, 200, "{body}");
    let (first, last) = window(Interval::M1, 60);
    let want = within(expected(Interval::M1, &s.btc), first, last);
    assert_eq!(want.len(), 59);
    assert_eq!(body.as_array().unwrap(), &want);
    let (_, body) = get(&server, "/api/candles?symbol=BTCUSDT&interval=1m&limit=5");
    let (first, last) = window(Interval::M1, 5);
    assert_eq!(
        body.as_array().unwrap(),
        &within(expected(Interval::M1, &s.btc), first, last)
    );
    for (iv, n) in [(Interval::M5, 12), (Interval::M15, 240), (Interval::H1, 2)] {
        let (status, body) = get(
            &server,
            &format!("/api/candles?symbol=BTCUSDT&interval={iv}&limit={n}"),
        );
        assert_eq!(status, 200, "{iv}: {body}");
        let (first, last) = window(iv, n);
        assert_eq!(
            body.as_array().unwrap(),
            &within(expected(iv, &s.btc), first, last),
            "{iv}"
        );
    }
    // ETHUSDT's window ends at its own newest trade (the same minute here).
    let (_, body) = get(&server, "/api/candles?symbol=ethusdt&interval=5m");
    assert_eq!(body.as_array().unwrap(), &expected(Interval::M5, &s.eth));

    // Bad input: 400 and a reason, never a read.
    for (query, reason) in [
        ("interval=1m", "parameter symbol is required"),
        (
            "symbol=BTC-USDT&interval=1m",
            "\"BTC-USDT\" is not a symbol",
        ),
        ("symbol=BTCUSDT", "parameter interval is required"),
        (
            "symbol=BTCUSDT&interval=1w",
            "interval \"1w\" is not one of",
        ),
        ("symbol=BTCUSDT&interval=1m&limit=241", "from 1 to 240"),
        ("symbol=BTCUSDT&interval=1m&limit=0", "from 1 to 240"),
        (
            "symbol=DOGEUSDT&interval=1m",
            "DOGEUSDT is not in Redis's symbols index (tradeflow:symbols)",
        ),
    ] {
        let (status, body) = get(&server, &format!("/api/candles?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["ok"], false);
        let e = body["error"].as_str().unwrap();
        assert!(e.contains(reason), "{query}: {e}");
    }
    assert_eq!(http(server.port, "POST", "/api/candles").0, 405);

    // Redis cost of one read, counted by Redis: SISMEMBER + HGET, 60 HMGETs.
    past_cache();
    let mut con = redis_cli(&s.redis);
    let reset = |con: &mut redis::Connection| {
        let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(con).unwrap();
    };
    reset(&mut con);
    assert_eq!(
        get(&server, "/api/candles?symbol=BTCUSDT&interval=1m").0,
        200
    );
    let calls: BTreeMap<String, u64> = command_calls(&mut con)
        .into_iter()
        .filter(|(k, _)| k != "config|resetstat" && k != "info")
        .collect();
    let want: BTreeMap<String, u64> = [("sismember", 1), ("hget", 1), ("hmget", 60)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(calls, want);
    // Within the second: the same or a narrower window comes from the cache, for any
    // number of viewers; another interval is its own read.
    reset(&mut con);
    for path in [
        "/api/candles?symbol=BTCUSDT&interval=1m",
        "/api/candles?symbol=BTCUSDT&interval=1m&limit=10",
        "/api/candles?symbol=BTCUSDT&interval=1m",
    ] {
        assert_eq!(get(&server, path).0, 200);
    }
    let reads = command_calls(&mut con)
        .get("sismember")
        .copied()
        .unwrap_or(0);
    assert!(reads <= 1, "{reads} reads for 3 quick requests");

    // A bucket holding what tradeflow never writes: 500 naming its key.
    let key = format!("tradeflow:min:BTCUSDT:{}", s.last_minute / MINUTE_MS - 2);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("legacy")
        .query(&mut con)
        .unwrap();
    let (status, body) = get(&server, "/api/candles?symbol=BTCUSDT&interval=3m");
    assert_eq!(status, 500, "{body}");
    let e = body["error"].as_str().unwrap();
    assert!(e.contains(&format!("{key} does not hold a kline")), "{e}");

    // Redis down: 503 with the reason, like /api/snapshot; and back.
    let mut redis = s.redis;
    redis.stop();
    past_cache();
    let (status, body) = get(&server, "/api/candles?symbol=BTCUSDT&interval=1m");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ok"], false);
    let e = body["error"].as_str().unwrap();
    assert!(e.contains("Redis unreachable"), "{e}");
    redis.start();
    past_cache();
    let (status, body) = get(&server, "/api/candles?symbol=BTCUSDT&interval=1m&limit=2");
    assert_eq!(status, 200, "{body}");
    // Two minutes: the window stops short of the foreign one.
    assert_eq!(body.as_array().unwrap().len(), 2);
}

/// The attributes of each `<tag …>` in `dom` whose class starts with `class`, in
/// document order.
pub(crate) fn elements(dom: &str, tag: &str, class: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    for part in dom.split(&format!("<{tag} ")).skip(1) {
        let head = &part[..part.find('>').unwrap_or(part.len())];
        let mut attrs = BTreeMap::new();
        for kv in head.split("\" ") {
            if let Some((k, v)) = kv.split_once("=\"") {
                attrs.insert(k.trim().to_string(), v.trim_end_matches('"').to_string());
            }
        }
        if attrs.get("class").is_some_and(|c| c.starts_with(class)) {
            out.push(attrs);
        }
    }
    out
}

/// The chart's candles (data attributes) with their wick and body, checked against
/// each other: the wick spans high to low, the body open to close, inside the wick.
pub(crate) fn candles(dom: &str) -> Vec<BTreeMap<String, String>> {
    let gs = elements(dom, "g", "candle");
    let wicks = elements(dom, "line", "wick");
    let bodies = elements(dom, "rect", "body");
    assert_eq!((wicks.len(), bodies.len()), (gs.len(), gs.len()));
    let n = |m: &BTreeMap<String, String>, k: &str| -> f64 { m[k].parse().unwrap() };
    for ((g, w), b) in gs.iter().zip(&wicks).zip(&bodies) {
        let (open, close) = (n(g, "data-open"), n(g, "data-close"));
        let up = close >= open;
        assert_eq!(g["class"], if up { "candle up" } else { "candle down" });
        let (top, bottom) = (n(b, "y"), n(b, "y") + n(b, "height"));
        assert!(
            n(w, "y1") <= top + 0.1 && bottom <= n(w, "y2") + 1.1,
            "{g:?} {w:?} {b:?}"
        );
        // A higher price is drawn higher: the wick's top is the high.
        assert!(n(g, "data-high") >= n(g, "data-low"));
        assert!(n(w, "y1") <= n(w, "y2"));
        let mid = n(b, "x") + n(b, "width") / 2.0;
        assert!((mid - n(w, "x1")).abs() < 0.2, "body centred on its wick");
    }
    gs
}

/// The expected Binance arrays as the chart's data attributes.
pub(crate) fn as_attrs(want: &[Value]) -> Vec<[String; 6]> {
    want.iter()
        .map(|k| {
            let s = |i: usize| k[i].as_str().unwrap().to_string();
            [k[0].to_string(), s(1), s(2), s(3), s(4), k[8].to_string()]
        })
        .collect()
}

pub(crate) fn drawn(gs: &[BTreeMap<String, String>]) -> Vec<[String; 6]> {
    gs.iter()
        .map(|g| {
            [
                "data-open-time",
                "data-open",
                "data-high",
                "data-low",
                "data-close",
                "data-trades",
            ]
            .map(|k| g[k].clone())
        })
        .collect()
}

#[test]
fn browser_draws_one_candle_per_minute_and_follows_the_hash() {
    let s = seeded();
    let server = Server::start(s.redis.port);
    let page = server.url("/");

    // Default: the top symbol, 1m, the 60 minutes ending at its newest trade.
    let dom = dump_dom(&page);
    assert!(dom.contains(r#"<svg id="candles""#), "chart present");
    assert!(
        dom.contains(r#"data-symbol="BTCUSDT" data-interval="1m" data-candles="59""#),
        "chart of BTCUSDT"
    );
    let first = s.last_minute - 59 * MINUTE_MS;
    let want = within(expected(Interval::M1, &s.btc), first, s.last_minute);
    assert_eq!(drawn(&candles(&dom)), as_attrs(&want));
    assert!(dom.contains("Candles · BTCUSDT · 1m"));
    // The charted symbol's tile is marked; the 1m button pressed.
    let chosen: Vec<_> = elements(&dom, "g", "tile")
        .into_iter()
        .filter(|t| t.contains_key("data-chosen"))
        .map(|t| t["data-symbol"].clone())
        .collect();
    assert_eq!(chosen, ["BTCUSDT"]);
    assert!(dom.contains(r#"<button type="button" data-interval="1m" aria-pressed="true">"#));

    // Picked through the hash (what a click on a tile and an interval button write).
    let dom = dump_dom(&format!("{page}#symbol=ETHUSDT&interval=5m"));
    assert!(dom.contains(r#"data-symbol="ETHUSDT" data-interval="5m""#));
    assert_eq!(
        drawn(&candles(&dom)),
        as_attrs(&expected(Interval::M5, &s.eth))
    );
    let chosen: Vec<_> = elements(&dom, "g", "tile")
        .into_iter()
        .filter(|t| t.contains_key("data-chosen"))
        .map(|t| t["data-symbol"].clone())
        .collect();
    assert_eq!(chosen, ["ETHUSDT"]);
    assert!(dom.contains(r#"<button type="button" data-interval="5m" aria-pressed="true">"#));

    // A symbol Redis does not know: the reason, no candles.
    let dom = dump_dom(&format!("{page}#symbol=NOPE"));
    assert!(candles(&dom).is_empty());
    assert!(dom.contains("NOPE is not in Redis's symbols index"), "note");

    let shot = artifacts_dir().join("report-web-candles.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &[
            "--window-size=1280,1100",
            &format!("--screenshot={}", shot.display()),
        ],
        &page,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
}
