//! `tradeflow-report candles` against a real redis-server (and a real cluster) filled by
//! the consumer's real sink: the JSON (Binance kline arrays), CSV and table of the
//! candles, roll-ups to 5m,
//! 15m, 1h and 1d across an hour boundary, the default window, and the errors (unknown
//! symbol, a foreign value in a bucket, too wide a range, bad flags).

use crate::kline_seed::{apply_blocking, expected, trades, within, ONE};
use crate::redis_common::{
    apply_retrying, cluster_sink, shard_of, start_cluster, without_replicas,
};

use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tradeflow_consumer::apply::fold;
use tradeflow_shared::kline::{Interval, MINUTE_MS};
use tradeflow_shared::testkit::{self, Service};
use tradeflow_shared::Trade;

/// 2024-06-01T11:50:00Z: twenty minutes of trades from here cross 12:00.
const T: u64 = 1_717_242_600_000;

fn report(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tradeflow-report"))
        .args(["--redis-url", url])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs a `candles` command that must succeed; its stdout.
fn ok(url: &str, args: &[&str]) -> String {
    let out = report(url, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a `candles` command that must fail; its stderr.
fn fails(url: &str, args: &[&str]) -> String {
    let out = report(url, args);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(out.stdout.is_empty(), "{args:?} printed a result");
    String::from_utf8(out.stderr).unwrap()
}

fn json(text: &str) -> Vec<Value> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn url(redis: &Service) -> String {
    format!("redis://127.0.0.1:{}", redis.port)
}

/// BTCUSDT, 4 trades a minute 11:50–12:09; ETHUSDT alongside (must never mix in).
fn seeded() -> (Service, Vec<Trade>) {
    let redis = testkit::redis();
    let btc = trades("BTCUSDT", 1_000, T, 20, 4, 60_000 * ONE);
    let eth = trades("ETHUSDT", 1_000, T, 20, 3, 3_000 * ONE);
    apply_blocking(&redis, &[btc.clone(), eth].concat());
    (redis, btc)
}

#[test]
fn json_csv_and_table_of_seeded_minutes() {
    let (redis, btc) = seeded();
    let url = url(&redis);
    let last = T + 19 * MINUTE_MS;
    // --since as RFC 3339, --until as Unix ms: the 20 minutes, exactly.
    let until = last.to_string();
    let base = [
        "candles",
        "BTCUSDT",
        "--interval",
        "1m",
        "--since",
        "2024-06-01T11:50:00Z",
        "--until",
        &until,
    ];
    let got = json(&ok(&url, &[&base[..], &["--format", "json"]].concat()));
    let want = expected(Interval::M1, &btc);
    assert_eq!(want.len(), 20);
    assert_eq!(got, want);
    assert_eq!(got[0][8], 4, "4 trades a minute");

    let csv = ok(&url, &[&base[..], &["--format", "csv"]].concat());
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "open_time,open,high,low,close,volume,close_time,quote_volume,trades,\
         taker_buy_base_volume,taker_buy_quote_volume"
    );
    assert_eq!(lines.len(), 21);
    for (line, k) in lines[1..].iter().zip(&want) {
        let cells: Vec<String> = k.as_array().unwrap()[..11]
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect();
        assert_eq!(*line, cells.join(","));
    }

    let table = ok(&url, &base);
    assert!(table.starts_with("OPEN TIME (UTC)"), "{table}");
    // The first row: its time, then open, high, low, close, volume, quote volume, trades…
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("2024-06-01 11:50:00  "))
        .expect("the 11:50 row")
        .split_whitespace()
        .skip(2)
        .collect();
    let k = &want[0];
    let cells: Vec<String> = [1, 2, 3, 4, 5, 7, 8, 9, 10]
        .map(|i| {
            k[i].as_str()
                .map_or_else(|| k[i].to_string(), str::to_string)
        })
        .to_vec();
    assert_eq!(row, cells, "{table}");
    assert!(table.contains("\n2024-06-01 12:09:00  "), "{table}");
    assert!(
        table.contains(
            "BTCUSDT 1m from 2024-06-01T11:50:00Z to 2024-06-01T12:10:00Z: 20 candles (20 intervals"
        ),
        "{table}"
    );
    assert!(table.contains("80 trades"), "{table}");

    // Lower case is taken; --limit after --since keeps the first intervals; --until as
    // RFC 3339 with an offset.
    let got = json(&ok(
        &url,
        &[
            "candles",
            "btcusdt",
            "--interval",
            "1m",
            "--since",
            &T.to_string(),
            "--until",
            "2024-06-01T14:09:00+02:00",
            "--limit",
            "3",
            "--format",
            "json",
        ],
    ));
    assert_eq!(got, want[..3]);
}

#[test]
fn rolls_up_across_the_hour() {
    let (redis, btc) = seeded();
    let url = url(&redis);
    for (interval, n) in [("5m", 4), ("15m", 2), ("1h", 2), ("1d", 1)] {
        let got = json(&ok(
            &url,
            &[
                "candles",
                "BTCUSDT",
                "--interval",
                interval,
                "--since",
                "2024-06-01T11:50:00Z",
                "--until",
                "2024-06-01T12:09:59Z",
                "--format",
                "json",
            ],
        ));
        let want = expected(interval.parse().unwrap(), &btc);
        assert_eq!(got.len(), n, "{interval}");
        assert_eq!(got, want, "{interval}");
    }
    // The hour candles are the roll-up of their minutes: 10 and 10 of them.
    let hours = expected(Interval::H1, &btc);
    assert_eq!(
        (hours[0][8].as_u64(), hours[1][8].as_u64()),
        (Some(40), Some(40))
    );
}

#[test]
fn default_window_is_the_last_60_intervals() {
    let redis = testkit::redis();
    // Not near a minute's end: the binary's clock must read the same minute as ours.
    let now = loop {
        let now = tradeflow_shared::telemetry::now_ms();
        if now % MINUTE_MS < 50_000 {
            break now;
        }
        std::thread::sleep(std::time::Duration::from_millis(
            MINUTE_MS - now % MINUTE_MS,
        ));
    };
    let minute = now - now % MINUTE_MS;
    // Five minutes up to this one, and one minute three hours back.
    let recent = trades("SOLUSDT", 500, minute - 4 * MINUTE_MS, 5, 2, 150 * ONE);
    let old = trades("SOLUSDT", 100, minute - 180 * MINUTE_MS, 1, 2, 150 * ONE);
    apply_blocking(&redis, &[old.clone(), recent.clone()].concat());
    let url = url(&redis);
    let got = json(&ok(
        &url,
        &["candles", "SOLUSDT", "--interval", "1m", "--format", "json"],
    ));
    assert_eq!(got, expected(Interval::M1, &recent));
    let got = json(&ok(
        &url,
        &[
            "candles",
            "SOLUSDT",
            "--interval",
            "1m",
            "--limit",
            "2",
            "--format",
            "json",
        ],
    ));
    assert_eq!(got, expected(Interval::M1, &recent)[3..]);
    // --since as a duration back from now reaches the old minute.
    let got = json(&ok(
        &url,
        &[
            "candles",
            "SOLUSDT",
            "--interval",
            "1m",
            "--since",
            "3h",
            "--format",
            "json",
        ],
    ));
    assert_eq!(got.len(), 6);
    assert_eq!(got[0], expected(Interval::M1, &old)[0]);
}

#[test]
fn errors_name_the_symbol_the_key_and_the_limit() {
    let (redis, _) = seeded();
    let url = url(&redis);
    let range = [
        "--since",
        "2024-06-01T11:50:00Z",
        "--until",
        "2024-06-01T12:09:00Z",
    ];
    let e = fails(
        &url,
        &[&["candles", "DOGEUSDT", "--interval", "1m"][..], &range].concat(),
    );
    assert!(
        e.contains("DOGEUSDT is not in Redis's symbols index (tradeflow:symbols)"),
        "{e}"
    );
    let e = fails(&url, &["candles", "BTC-USDT", "--interval", "1m"]);
    assert!(e.contains("\"BTC-USDT\" is not a symbol"), "{e}");
    let e = fails(&url, &["candles", "BTCUSDT", "--interval", "1w"]);
    assert!(e.contains("not one of 1m, 3m, 5m"), "{e}");
    let e = fails(
        &url,
        &[
            "candles",
            "BTCUSDT",
            "--interval",
            "1m",
            "--since",
            "yesterday",
        ],
    );
    assert!(e.contains("RFC 3339"), "{e}");
    let e = fails(
        &url,
        &["candles", "BTCUSDT", "--interval", "1m", "--limit", "1001"],
    );
    assert!(e.contains("1001"), "{e}");
    // Too wide: two days of minutes.
    let e = fails(
        &url,
        &["candles", "BTCUSDT", "--interval", "1m", "--since", "2d"],
    );
    assert!(
        e.contains("1m candles asked for; at most 1000 a read"),
        "{e}"
    );

    // A bucket holding what tradeflow never writes is named by its key: a bad field,
    // and a key of another type.
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let minute = T / MINUTE_MS + 3;
    let key = format!("tradeflow:min:BTCUSDT:{minute}");
    // `k` (see kline::FIELDS) with a high that is not a price.
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("k")
        .arg("0 1 0 1 0 0 0 0 1.00000000 1 1.00000000 1 lots 1.00000000")
        .query(&mut con)
        .unwrap();
    let e = fails(
        &url,
        &[&["candles", "BTCUSDT", "--interval", "5m"][..], &range].concat(),
    );
    assert!(
        e.contains(&key) && e.contains("field high holds \"lots\""),
        "{e}"
    );
    let _: () = redis::cmd("DEL").arg(&key).query(&mut con).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("legacy")
        .query(&mut con)
        .unwrap();
    let e = fails(
        &url,
        &[&["candles", "BTCUSDT", "--interval", "1m"][..], &range].concat(),
    );
    assert!(
        e.contains(&format!("{key} does not hold a kline tradeflow wrote")),
        "{e}"
    );
    assert!(e.contains("WRONGTYPE"), "{e}");
}

/// On a cluster the reader finds each symbol's buckets in its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_a_cluster() {
    let cluster = start_cluster(3, 0).await;
    let url = cluster.url();
    let sink = cluster_sink(&url, without_replicas()).await;
    let btc = trades("BTCUSDT", 1_000, T, 20, 4, 60_000 * ONE);
    let eth = trades("ETHUSDT", 9_000, T, 20, 2, 3_000 * ONE);
    let all = [btc.clone(), eth.clone()].concat();
    apply_retrying(&sink, "shardId-0", &fold(&shard_of(&all))).await;
    let run = |args: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ok(&url, &args)
        })
    };
    for (sym, interval, t) in [("BTCUSDT", "1m", &btc), ("ETHUSDT", "1h", &eth)] {
        let args = [
            "candles",
            sym,
            "--interval",
            interval,
            "--since",
            "2024-06-01T11:00:00Z",
            "--until",
            "2024-06-01T12:30:00Z",
            "--format",
            "json",
        ];
        let got = json(&run(args.map(String::from).to_vec()).await.unwrap());
        let want = expected(interval.parse().unwrap(), t);
        assert_eq!(got, within(want, T - 50 * MINUTE_MS, T + 40 * MINUTE_MS));
    }
    drop(cluster);
}
