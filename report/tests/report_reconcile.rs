//! `tradeflow-report reconcile` against a real redis-server and the project's local
//! exchange (its `GET /api/v3/klines`, from the trades it played) on free loopback
//! ports. Redis is filled through the consumer's real sink with the very trades the
//! exchange played — all of them, or all but some — and the exchange is reached directly
//! or through a REST front that fails on purpose (`testkit::rest_front`: 429 with
//! Retry-After, 418, malformed arrays).

use crate::redis_common::{shard_of, sink, url, STREAM};

use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_tungstenite::connect_async;
use tradeflow_consumer::apply::fold;
use tradeflow_exchange::{Exchange, ExchangeConfig, ServerHandle, Tape, TapeItem};
use tradeflow_shared::decimal::format_scaled;
use tradeflow_shared::kline::MINUTE_MS;
use tradeflow_shared::testkit::rest_front::{self, Answer};
use tradeflow_shared::testkit::{self, Service};
use tradeflow_shared::{Fixed8, Symbol, Trade};

const P: &str = "tf:";
/// An hour boundary; the tape covers its first `MINUTES` minutes.
const T0: u64 = 1_717_002_000_000;
const MINUTES: u64 = 5;
const SYMBOLS: [&str; 3] = ["BTCUSDT", "ETHBTC", "BNBUSDT"];

/// 20 trades per symbol and minute with 8-decimal prices and quantities (so quote
/// volumes have 16 decimals), ids increasing per symbol, buyer maker or not.
fn tape() -> Vec<TapeItem> {
    let mut x: u64 = 7;
    let mut next = move || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        x >> 33
    };
    let mut lines = Vec::new();
    let mut ids = [0u64; 3];
    for minute in 0..MINUTES {
        for i in 0..20u64 {
            for (s, sym) in SYMBOLS.iter().enumerate() {
                ids[s] += 1;
                let at = T0 + minute * MINUTE_MS + i * 2_900 + s as u64;
                let price = format_scaled(u128::from(1_000_000_000 + next() % 100_000_000), 8);
                let qty = format_scaled(u128::from(1 + next() % 300_000_000), 8);
                let m = next() % 2 == 0;
                lines.push(format!(
                    r#"{{"e":"trade","E":{at},"s":"{sym}","t":{},"p":"{price}","q":"{qty}","T":{at},"m":{m},"M":true}}"#,
                    ids[s]
                ));
            }
        }
    }
    Tape::parse_capture(&lines.join("\n")).unwrap()
}

/// The exchange, having played the whole tape (its first subscriber starts it).
async fn exchange(items: &[TapeItem]) -> (Exchange, ServerHandle) {
    let ex = Exchange::start(
        ExchangeConfig::default(),
        Tape::Finite(Arc::new(items.to_vec())),
    );
    let srv = ex.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (ws, _) = connect_async(format!("ws://{}/ws/btcusdt@trade", srv.addr))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), ex.wait_finished())
        .await
        .expect("tape played");
    drop(ws);
    (ex, srv)
}

/// Applies `trades` through the consumer's real sink (its minute klines and the symbols
/// index, exactly as a consumer writes them), plus one `extra` trade per symbol named.
async fn seed(redis: &Service, trades: &[&TapeItem], extra: &[&str]) {
    let mut all: Vec<Trade> = trades.iter().map(|i| i.trade).collect();
    for sym in extra {
        all.push(Trade {
            symbol: Symbol::new(sym).unwrap(),
            trade_id: 1,
            price: Fixed8::parse("1").unwrap(),
            qty: Fixed8::parse("1").unwrap(),
            trade_time_ms: T0,
            event_time_ms: T0,
            buyer_is_maker: false,
        });
    }
    sink(redis, P)
        .await
        .apply(STREAM, "shardId-0", &fold(&shard_of(&all)))
        .await
        .unwrap();
}

/// Runs `reconcile` over the tape's minutes (settled: `--settle 0s`, times in Unix ms).
async fn reconcile(redis_url: &str, rest: &str, extra: &[&str]) -> Output {
    reconcile_until(redis_url, rest, T0 + MINUTES * MINUTE_MS, extra).await
}

async fn reconcile_until(redis_url: &str, rest: &str, until_ms: u64, extra: &[&str]) -> Output {
    let since = T0.to_string();
    let until = until_ms.to_string();
    let mut args = vec![
        "--binance-rest-url",
        rest,
        "reconcile",
        "--since",
        &since,
        "--until",
        &until,
        "--settle",
        "0s",
    ];
    args.extend_from_slice(extra);
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tradeflow-report"))
        .args(&args)
        .env("TRADEFLOW_REDIS_URL", redis_url)
        .env("TRADEFLOW_KEY_PREFIX", P)
        .env_remove("TRADEFLOW_BINANCE_REST_URL")
        .env_remove("TRADEFLOW_RECONCILE_METRICS_FILE")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap()
}

fn text(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(out)))
}

#[tokio::test]
async fn every_minute_matches_then_missed_trades_are_named() {
    let items = tape();
    let (_ex, srv) = exchange(&items).await;
    let rest = format!("http://{}", srv.addr);
    let redis = testkit::redis();
    let all: Vec<&TapeItem> = items.iter().collect();
    seed(&redis, &all, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("tradeflow_reconcile.prom");
    let prom_arg = prom.to_str().unwrap();

    let out = reconcile(
        &url(&redis),
        &rest,
        &["--format", "json", "--metrics-file", prom_arg],
    )
    .await;
    let j = json(&out);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(j["verdict"], "match");
    assert_eq!(j["minutes_checked"], MINUTES * 3);
    assert_eq!(j["minutes_differing"], 0);
    assert_eq!(j["differences"], serde_json::json!([]));
    let metrics = std::fs::read_to_string(&prom).unwrap();
    assert!(
        metrics.contains("tradeflow_reconcile_minutes_checked{symbol=\"ETHBTC\"} 5\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tradeflow_reconcile_last_run_exit_code 0\n"),
        "{metrics}"
    );
    assert!(metrics.contains("tradeflow_reconcile_last_success_timestamp_seconds "));
    // Every reconcile metric the alerts and dashboards may use (metric-names.txt) is in
    // the file: the end-to-end scrape of the binaries cannot see them.
    let names = std::fs::read_to_string(
        tradeflow_shared::testkit::workspace_root().join("infra/prometheus/metric-names.txt"),
    )
    .unwrap();
    for name in names
        .lines()
        .map(str::trim)
        .filter(|n| n.starts_with("tradeflow_reconcile_"))
    {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{"))),
            "{name} is not in the metrics file:\n{metrics}"
        );
    }

    // The same minutes with three BTCUSDT trades of minute 2 never applied.
    let minute2 = T0 + 2 * MINUTE_MS;
    let lost: Vec<u64> = vec![41, 45, 50];
    let short: Vec<&TapeItem> = items
        .iter()
        .filter(|i| !(i.trade.symbol.as_str() == "BTCUSDT" && lost.contains(&i.trade.trade_id)))
        .collect();
    assert!(lost.iter().all(|id| {
        let t = items
            .iter()
            .find(|i| i.trade.symbol.as_str() == "BTCUSDT" && i.trade.trade_id == *id);
        t.unwrap().trade.trade_time_ms / MINUTE_MS == minute2 / MINUTE_MS
    }));
    let redis2 = testkit::redis();
    seed(&redis2, &short, &[]).await;
    let out = reconcile(
        &url(&redis2),
        &rest,
        &["--format", "json", "--metrics-file", prom_arg],
    )
    .await;
    let j = json(&out);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert_eq!(
        (
            j["verdict"].as_str(),
            j["minutes_differing"].as_u64(),
            j["trades_missing"].as_u64()
        ),
        (Some("differ"), Some(1), Some(3))
    );
    let d = &j["differences"][0];
    assert_eq!(d["symbol"], "BTCUSDT");
    assert_eq!(d["open_time_ms"], minute2);
    assert_eq!(d["open_time"], "2024-05-29T17:02:00Z");
    assert_eq!(
        (d["kind"].as_str(), d["trades_diff"].as_i64()),
        (Some("differs"), Some(3))
    );
    assert_eq!(d["exchange"][8], 20);
    assert_eq!(d["ours"][8], 17);
    let metrics = std::fs::read_to_string(&prom).unwrap();
    assert!(
        metrics.contains("tradeflow_reconcile_minutes_differing{symbol=\"BTCUSDT\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tradeflow_reconcile_trades_missing{symbol=\"BTCUSDT\"} 3\n"),
        "{metrics}"
    );
    assert!(metrics.contains("tradeflow_reconcile_minutes_differing{symbol=\"ETHBTC\"} 0\n"));

    // The table names the minute and the trades; CSV has one row for it.
    let (code, table, _) = text(&reconcile(&url(&redis2), &rest, &[]).await);
    assert_eq!(code, 1);
    eprintln!("{table}");
    let row = table
        .lines()
        .find(|l| l.contains("2024-05-29T17:02:00Z"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.starts_with("BTCUSDT") && row.contains("differs") && row.contains("  +3  "),
        "{row}"
    );
    assert!(
        table.contains("DIFFER: 15 minutes checked, 1 differing, 3 trades missing, 0 extra"),
        "{table}"
    );
    let (code, csv, summary) = text(&reconcile(&url(&redis2), &rest, &["--format", "csv"]).await);
    assert_eq!(code, 1);
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(
        csv.lines().nth(1).unwrap().starts_with(&format!(
            "BTCUSDT,{minute2},2024-05-29T17:02:00Z,differs,20,17,3,"
        )),
        "{csv}"
    );
    assert!(summary.starts_with("DIFFER: "), "{summary}");
    srv.stop().await;
}

#[tokio::test]
async fn what_cannot_be_checked_exits_2_naming_the_url_and_symbol() {
    let items = tape();
    let (_ex, srv) = exchange(&items).await;
    let rest = format!("http://{}", srv.addr);
    let redis = testkit::redis();
    // XYZUSDT is in Redis (one trade) but unknown to the exchange.
    let btc: Vec<&TapeItem> = items
        .iter()
        .filter(|i| i.trade.symbol.as_str() == "BTCUSDT")
        .collect();
    seed(&redis, &btc, &["XYZUSDT"]).await;

    let (code, out, err) = text(&reconcile(&url(&redis), &rest, &["--format", "json"]).await);
    assert_eq!(code, 2, "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["verdict"], "unchecked");
    assert_eq!(j["symbols"][0]["minutes_checked"], MINUTES);
    assert!(
        err.contains("XYZUSDT") && err.contains(&format!("{rest}/api/v3/klines?symbol=XYZUSDT")),
        "{err}"
    );
    assert!(err.contains("-1121"), "{err}");

    // Nobody listening: unreachable after --retry-for, every symbol named.
    let down = format!("http://127.0.0.1:{}", testkit::free_port());
    let started = Instant::now();
    let (code, table, _) = text(&reconcile(&url(&redis), &down, &["--retry-for", "1s"]).await);
    assert_eq!(code, 2, "{table}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        table.contains(&format!("klines of BTCUSDT from {down}/api/v3/klines"))
            && table.contains("unreachable"),
        "{table}"
    );
    assert!(
        table.contains("XYZUSDT: not asked: the exchange failed before"),
        "{table}"
    );
    assert!(table.contains("UNCHECKED: 0 minutes checked"), "{table}");

    // Redis unreadable; no settled minute at all: both "could not check".
    let dead_redis = format!("redis://127.0.0.1:{}", testkit::free_port());
    let (code, table, _) = text(&reconcile(&dead_redis, &rest, &[]).await);
    assert_eq!(code, 2, "{table}");
    assert!(
        table.contains(&format!(
            "127.0.0.1:{}",
            dead_redis.rsplit(':').next().unwrap()
        )),
        "{table}"
    );
    let (code, table, _) = text(&reconcile_until(&url(&redis), &rest, T0, &[]).await);
    assert_eq!(code, 2, "{table}");
    assert!(table.contains("no settled minute"), "{table}");
    srv.stop().await;
}

#[tokio::test]
async fn rate_limits_are_waited_out_within_the_budget_and_garbage_is_named() {
    let items = tape();
    let (_ex, srv) = exchange(&items).await;
    let redis = testkit::redis();
    let two: Vec<&TapeItem> = items
        .iter()
        .filter(|i| ["BTCUSDT", "ETHBTC"].contains(&i.trade.symbol.as_str()))
        .collect();
    seed(&redis, &two, &[]).await;
    let via = |plan: rest_front::Plan| {
        let addr = srv.addr;
        async move { format!("http://{}", rest_front::start(addr, plan).await) }
    };

    // 429 Retry-After: 1, then 200: waited out, then every minute matches.
    let front = via(Arc::new(|i| {
        if i == 0 {
            Answer::reply(
                "429 Too Many Requests",
                "Retry-After: 1\r\n",
                r#"{"code":-1003,"msg":"Too much request weight used"}"#,
            )
        } else {
            Answer::Pass
        }
    }))
    .await;
    let started = Instant::now();
    let (code, out, err) = text(&reconcile(&url(&redis), &front, &[]).await);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After not obeyed"
    );
    assert!(out.contains("MATCH: 10 minutes checked"), "{out}");

    // Still 429 past --retry-for; a 418 ban of an hour is not waited for at all.
    for (status, after, retry_for) in [
        ("429 Too Many Requests", 1, "2s"),
        ("418 I'm a teapot", 3600, "60s"),
    ] {
        let front = via(Arc::new(move |_| {
            Answer::reply(
                status,
                &format!("Retry-After: {after}\r\n"),
                r#"{"code":-1003}"#,
            )
        }))
        .await;
        let started = Instant::now();
        let (code, table, _) =
            text(&reconcile(&url(&redis), &front, &["--retry-for", retry_for]).await);
        assert_eq!(code, 2, "{table}");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        let code_text = &status[..3];
        assert!(
            table.contains(&format!("klines of BTCUSDT from {front}/api/v3/klines")),
            "{table}"
        );
        assert!(
            table.contains(&format!(
                "HTTP {code_text}, Retry-After {after} s, given up after"
            )),
            "{table}"
        );
    }

    // Malformed arrays: exit 2, not the mismatch status 1; URL and symbol named.
    let front = via(Arc::new(|_| {
        Answer::reply("200 OK", "", r#"[[1717002000000,"1.0"]]"#)
    }))
    .await;
    let (code, table, _) = text(&reconcile(&url(&redis), &front, &["--symbols", "ETHBTC"]).await);
    assert_eq!(code, 2, "{table}");
    assert!(
        table.contains(&format!(
            "ETHBTC: klines of ETHBTC from {front}/api/v3/klines?symbol=ETHBTC"
        )),
        "{table}"
    );
    assert!(
        table.contains("not kline arrays: a kline is an array of 12 fields"),
        "{table}"
    );
    srv.stop().await;
}
