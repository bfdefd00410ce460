//! `tradeflow-report --prices binance` against a real redis-server and the project's
//! local exchange (its `GET /api/v3/ticker/price`, Binance's shape) on free loopback
//! ports: exact USD values from the exchange's prices, in the one-shot report and in
//! `serve`; an unreachable endpoint, a garbage body and a silent server each give a
//! clear error naming the URL and a non-zero exit; invalid entries are skipped.

use crate::redis_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use redis_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tradeflow_consumer::apply::fold;
use tradeflow_exchange::{Exchange, ExchangeConfig, Tape};
use tradeflow_shared::testkit::{self, Service};
use tradeflow_shared::{Fixed8, Symbol, Trade};

const P: &str = "tf:";

/// The exchange's prices: the first trade of each symbol on a tape nobody plays.
const TAPE: &str = r#"
{"e":"trade","E":1717000000001,"s":"BTCUSDT","t":1,"p":"61234.56780000","q":"0.1","T":1717000000001,"m":false,"M":true}
{"e":"trade","E":1717000000002,"s":"ETHBTC","t":1,"p":"0.05123000","q":"1","T":1717000000002,"m":true,"M":true}
{"e":"trade","E":1717000000003,"s":"BNBUSDT","t":1,"p":"600.00000000","q":"1","T":1717000000003,"m":true,"M":true}
{"e":"trade","E":1717000000004,"s":"BTCUSDT","t":2,"p":"1.00000000","q":"1","T":1717000000004,"m":true,"M":true}
"#;

async fn exchange() -> (Exchange, tradeflow_exchange::ServerHandle) {
    let tape = Tape::Finite(Arc::new(Tape::parse_capture(TAPE).unwrap()));
    let ex = Exchange::start(ExchangeConfig::default(), tape);
    // Nothing is emitted, so the ticker keeps the tape's first prices.
    ex.pause();
    let srv = ex.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (ex, srv)
}

fn t(sym: &str, id: u64, price: &str, qty: &str) -> Trade {
    Trade {
        symbol: Symbol::new(sym).unwrap(),
        trade_id: id,
        price: Fixed8::parse(price).unwrap(),
        qty: Fixed8::parse(qty).unwrap(),
        trade_time_ms: T0 + id,
        event_time_ms: T0 + id,
        buyer_is_maker: false,
    }
}

/// Redis totals: 0.875 BTC (last price 60000), 4 ETH against BTC (last 0.05), and
/// 2 XYZ against USDT, a pair the exchange does not list.
async fn seed(redis: &Service) {
    let sink = sink(redis, P).await;
    let trades = [
        t("BTCUSDT", 1, "59000", "0.5"),
        t("BTCUSDT", 2, "59500", "0.25"),
        t("BTCUSDT", 3, "60000", "0.125"),
        t("ETHBTC", 1, "0.049", "1.5"),
        t("ETHBTC", 2, "0.05", "2.5"),
        t("XYZUSDT", 1, "3", "2"),
    ];
    sink.apply(STREAM, "shardId-0", &fold(&shard_of(&trades)))
        .await
        .unwrap();
}

/// Runs the binary without blocking the runtime (the servers under test live on it).
async fn report(redis: &Service, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tradeflow-report"))
        .args(args)
        .env("TRADEFLOW_REDIS_URL", url(redis))
        .env("TRADEFLOW_KEY_PREFIX", P)
        .env_remove("TRADEFLOW_BINANCE_REST_URL")
        .env_remove("TRADEFLOW_REPORT_PRICES")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

fn json_ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row<'a>(j: &'a serde_json::Value, sym: &str) -> &'a serde_json::Value {
    j["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["symbol"] == sym)
        .unwrap()
}

#[tokio::test]
async fn values_with_the_exchange_rest_prices() {
    let redis = testkit::redis();
    seed(&redis).await;
    let (_ex, srv) = exchange().await;
    let base = format!("http://{}", srv.addr);

    let j = json_ok(
        &report(
            &redis,
            &[
                "--format",
                "json",
                "--prices",
                "binance",
                "--binance-rest-url",
                &base,
            ],
        )
        .await,
    );
    assert_eq!(j["price_source"], "binance");
    assert_eq!(j["price_url"], format!("{base}/api/v3/ticker/price"));
    assert!(j["prices_at_ms"].as_u64().unwrap() > 1_700_000_000_000);
    // 0.875 × 61234.5678 = 53580.246825.
    let btc = row(&j, "BTCUSDT");
    assert_eq!(btc["usd_price"], "61234.56780000");
    assert_eq!(btc["usd_value"], "53580.24");
    // No ETHUSDT on the exchange: 0.05123 × 61234.5678 = 3137.04690839 (truncated),
    // × 4 ETH = 12548.18763356.
    let eth = row(&j, "ETHBTC");
    assert_eq!(eth["usd_price"], "3137.04690839");
    assert_eq!(eth["usd_value"], "12548.18");
    assert!(row(&j, "XYZUSDT")["usd_value"].is_null());
    assert_eq!(j["total_usd_value"], "66128.43");

    // The default still values with Redis's last prices (and says so).
    let r = json_ok(&report(&redis, &["--format", "json"]).await);
    assert_eq!(r["price_source"], "redis");
    assert_eq!(row(&r, "BTCUSDT")["usd_value"], "52500.00");
    assert_eq!(row(&r, "XYZUSDT")["usd_value"], "6.00");

    // The table names the source; CSV keeps stdout to rows and notes it on stderr.
    let out = report(
        &redis,
        &["--prices", "binance", "--binance-rest-url", &base],
    )
    .await;
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains(&format!(
            "USD prices: binance ({base}/api/v3/ticker/price) at "
        )),
        "{table}"
    );
    let csv = report(
        &redis,
        &[
            "--format",
            "csv",
            "--prices",
            "binance",
            "--binance-rest-url",
            &base,
        ],
    )
    .await;
    assert!(csv.status.success());
    assert!(String::from_utf8_lossy(&csv.stdout).contains(",53580.24\n"));
    assert!(String::from_utf8_lossy(&csv.stderr).contains("USD prices: binance"));
    srv.stop().await;
}

#[tokio::test]
async fn serve_values_with_the_exchange_prices() {
    let redis = testkit::redis();
    seed(&redis).await;
    let (_ex, srv) = exchange().await;
    let base = format!("http://{}", srv.addr);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tradeflow-report"))
        .args(["--prices", "binance", "--binance-rest-url", &base])
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("TRADEFLOW_REDIS_URL", url(&redis))
        .env("TRADEFLOW_KEY_PREFIX", P)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "serve exited");
        if let Some(rest) = line
            .trim()
            .strip_prefix("tradeflow-report: serving http://")
        {
            break rest.trim_end_matches('/').to_string();
        }
    };
    let body = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET /api/snapshot HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    })
    .await
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let (head, json) = body.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{body}");
    let j: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(j["price_source"], "binance");
    assert_eq!(j["total_usd_value"], "66128.43");
    srv.stop().await;
}

/// A one-connection HTTP server that answers every request with `reply` (or, if
/// `None`, reads and never answers).
async fn fake_endpoint(reply: Option<&'static str>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                match reply {
                    Some(body) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = s.write_all(head.as_bytes()).await;
                        let _ = s.write_all(body.as_bytes()).await;
                    }
                    None => tokio::time::sleep(std::time::Duration::from_secs(30)).await,
                }
            });
        }
    });
    format!("http://{addr}")
}

fn fails_naming(out: &Output, url: &str, why: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(out.stdout.is_empty());
    assert!(err.contains(&format!("{url}/api/v3/ticker/price")), "{err}");
    assert!(err.contains(why), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn unreachable_garbage_and_silent_endpoints_fail_clearly() {
    let redis = testkit::redis();
    seed(&redis).await;
    let redis = &redis;
    let binance = |url: String, extra: &'static [&'static str]| async move {
        let mut a = vec!["--prices", "binance", "--binance-rest-url", &url];
        a.extend_from_slice(extra);
        report(redis, &a).await
    };

    // A port nobody listens on (bound, then released).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    fails_naming(
        &binance(closed.clone(), &[]).await,
        &closed,
        "cannot fetch prices from",
    );

    let garbage = fake_endpoint(Some("<html>rate limited</html>")).await;
    fails_naming(
        &binance(garbage.clone(), &[]).await,
        &garbage,
        "not a ticker list",
    );

    let silent = fake_endpoint(None).await;
    fails_naming(
        &binance(silent.clone(), &["--binance-timeout", "300ms"]).await,
        &silent,
        "no complete reply within 300 ms",
    );

    let bad = binance("api.binance.com".into(), &[]).await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid Binance REST URL"));

    // Entries with an invalid symbol or price are skipped (and said so); the rest value.
    let partly = fake_endpoint(Some(
        r#"[{"symbol":"btc usdt","price":"1"},{"symbol":"BTCUSDT","price":"2"},{"symbol":"ETHBTC","price":"1e3"}]"#,
    ))
    .await;
    let out = binance(partly, &["--format", "json"]).await;
    let j = json_ok(&out);
    assert_eq!(row(&j, "BTCUSDT")["usd_value"], "1.75");
    assert!(row(&j, "ETHBTC")["usd_value"].is_null());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("price skipped") && err.contains("btc usdt"),
        "{err}"
    );
}
