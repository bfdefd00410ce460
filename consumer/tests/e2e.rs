//! End to end on real local parts: the project's exchange replays the bundled capture,
//! the real producer writes it to ferrokinesis, real consumers count it into
//! redis-server under leases in dynalite. Counts must equal the capture exactly.

mod e2e_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e_support::*;
use tradeflow_shared::testkit;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_capture_is_counted_exactly() {
    let stack = Stack::start(4).await;
    let (expected, base) = expected_from_capture(&capture_path());
    let mut consumer = stack.consumer("worker-a", &["--roll-up-interval", "1s"]);
    let (_exchange, url) = stack.exchange(2_000);
    // KPL aggregates here; the restart test below covers plain records.
    let producer = stack.producer(&url, &["--aggregate"]);

    let got = stack
        .wait_for_counts(&expected, Duration::from_secs(120))
        .await;
    assert_eq!(got, expected, "consumer log:\n{}", consumer.output());
    for (sym, units) in &base {
        let stored = stack.stat(sym, "base").await.expect("base volume stored");
        assert_eq!(units8(&stored), *units, "{sym} base volume");
    }
    // The capture's hour (long closed) is rolled up by the worker: each symbol's hour
    // bucket counts all its trades.
    let hour = {
        let t = capture_minutes().keys().map(|k| k.1).min().unwrap();
        t / 3_600_000
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    for (sym, n) in &expected {
        let key = format!("tradeflow:hour:{sym}:{hour}");
        loop {
            let got = redis_hget(&stack.redis_url(), &key, "count").await;
            if got.as_deref() == Some(n.to_string().as_str()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key}: {got:?}, not {n}\n{}",
                consumer.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    check_metrics(&[&producer, &consumer]);
    assert!(
        consumer.terminate(Duration::from_secs(20)),
        "consumer did not exit 0 on SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_restarts_midway_keep_counts_exact() {
    let stack = Stack::start(4).await;
    let (expected, _) = expected_from_capture(&capture_path());
    let total: u64 = expected.values().sum();
    let mut first = stack.consumer("worker-1", &[]);
    // Slow enough that the restarts land while trades still flow.
    let (_exchange, url) = stack.exchange(400);
    let producer = stack.producer(&url, &[]);

    wait_total_at_least(&stack, &expected, total / 3, &[&producer, &first]).await;
    first.kill(); // a crash: between a Redis write and its checkpoint, perhaps
    let mut second = stack.consumer("worker-2", &[]);

    wait_total_at_least(&stack, &expected, 2 * total / 3, &[&producer, &second]).await;
    assert!(
        second.terminate(Duration::from_secs(20)),
        "graceful stop failed:\n{}",
        second.output()
    );
    let _third = stack.consumer("worker-3", &[]);

    let got = stack
        .wait_for_counts(&expected, Duration::from_secs(120))
        .await;
    assert_eq!(
        got,
        expected,
        "worker-2 log:\n{}\nproducer log:\n{}",
        second.output(),
        producer.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_keeps_counts_exact() {
    let mut stack = Stack::start(4).await;
    let (expected, _) = expected_from_capture(&capture_path());
    let total: u64 = expected.values().sum();
    let consumer = stack.consumer("worker-r", &[]);
    let (_exchange, url) = stack.exchange(400);
    let producer = stack.producer(&url, &["--aggregate"]);

    wait_total_at_least(&stack, &expected, total / 3, &[&producer, &consumer]).await;
    // kill -9: whatever AOF (appendfsync everysec) had not written yet is lost; the
    // consumer must notice and re-read from what Redis still holds.
    stack.redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.redis.start();

    let got = stack
        .wait_for_counts(&expected, Duration::from_secs(120))
        .await;
    assert_eq!(got, expected, "consumer log:\n{}", consumer.output());
}

async fn wait_total_at_least(
    stack: &Stack,
    expected: &std::collections::BTreeMap<String, u64>,
    n: u64,
    procs: &[&Proc],
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let got: u64 = stack.counts(expected).await.values().sum();
        if got >= n {
            return;
        }
        if std::time::Instant::now() >= deadline {
            let logs: String = procs
                .iter()
                .map(|p| format!("--- {} log:\n{}\n", p.name, p.output()))
                .collect();
            panic!("only {got} of {n} trades counted within 120s\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Metrics that exist only once their event happened: their labels name the event's
/// kind, so there is no meaningful zero series to pre-register.
const EVENT_LABELLED: &[&str] = &[
    "tradeflow_producer_bad_input_total",
    "tradeflow_producer_dropped_total",
    "tradeflow_producer_entries_failed_total",
    "tradeflow_producer_ws_reconnects_total",
    "tradeflow_consumer_checkpoint_failures_total",
    "tradeflow_consumer_poison_records_total",
    "tradeflow_consumer_redis_errors_total",
];

/// A real scrape of both binaries is valid Prometheus text (`promtool check metrics`),
/// and every metric the dashboard and the alert rules use is exported.
fn check_metrics(procs: &[&Proc]) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut all = String::new();
    for p in procs {
        let text = scrape(&metrics_addr(p));
        let mut child = Command::new(promtool())
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run promtool");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("feed promtool");
        let out = child.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool check metrics on {}:\n{}{}",
            p.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        all.push_str(&text);
    }
    let names = std::fs::read_to_string(
        tradeflow_shared::testkit::workspace_root().join("infra/prometheus/metric-names.txt"),
    )
    .expect("metric-names.txt");
    let missing: Vec<&str> = names
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|n| !EVENT_LABELLED.contains(n))
        // Written by `tradeflow-report reconcile` into a file for node_exporter, not
        // served by these binaries; `report_reconcile` checks them in that file.
        .filter(|n| !n.starts_with("tradeflow_reconcile_"))
        .filter(|n| {
            !all.lines().any(|l| {
                l.strip_prefix(*n)
                    .is_some_and(|rest| rest.starts_with([' ', '{', '_']))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not exported by the binaries: {missing:?}"
    );
}

/// Per (symbol, minute start in ms): the capture's distinct trades, by plain parsing.
fn capture_minutes() -> BTreeMap<(String, u64), u64> {
    let mut out = BTreeMap::new();
    for v in capture_trades(&capture_path()) {
        let t = v["T"].as_u64().expect("T");
        let sym = v["s"].as_str().expect("s").to_string();
        *out.entry((sym, t - t % 60_000)).or_insert(0u64) += 1;
    }
    out
}

/// What Redis's minute buckets count for the same (symbol, minute)s.
async fn redis_minutes(
    stack: &Stack,
    of: &BTreeMap<(String, u64), u64>,
) -> BTreeMap<(String, u64), u64> {
    let mut out = BTreeMap::new();
    for (sym, minute) in of.keys() {
        let key = format!("tradeflow:min:{sym}:{}", minute / 60_000);
        let n = redis_hget(&stack.redis_url(), &key, "count")
            .await
            .map_or(0, |v| v.parse().expect("count"));
        out.insert((sym.clone(), *minute), n);
    }
    out
}

/// The capture through the whole stack with every websocket cut a third of the way
/// in (`close-all`), the producer's backfill as `backfill`; returns once the consumer
/// has counted every trade the producer accepted and the tape is over. Then
/// `tradeflow-report reconcile` over the capture's minutes against the exchange's own
/// klines: its exit status and JSON.
async fn cut_then_reconcile(backfill: &str) -> (Stack, i32, serde_json::Value) {
    let stack = Stack::start(2).await;
    let (expected, _) = expected_from_capture(&capture_path());
    let total: u64 = expected.values().sum();
    let consumer = stack.consumer("worker-k", &[]);
    let (exchange, url) = stack.exchange(500);
    let producer = stack.producer(&url, &["--backfill", backfill]);
    wait_total_at_least(&stack, &expected, total / 3, &[&producer, &consumer]).await;
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let (status, body) = testkit::http_get(port, "/control/close-all").expect("control");
    assert_eq!(status, 200, "{body}");
    // Settled: the producer took in the whole tape (what it accepted stops growing)
    // and the consumer counted all of it.
    let metrics = metrics_addr(&producer);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (0, Instant::now());
    loop {
        let accepted = scraped(&metrics, "tradeflow_producer_trades_accepted_total");
        let counted: u64 = stack.counts(&expected).await.values().sum();
        if accepted != last.0 {
            last = (accepted, Instant::now());
        }
        if counted == accepted && last.1.elapsed() > Duration::from_secs(3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "accepted {accepted}, counted {counted}\nproducer:\n{}\nconsumer:\n{}",
            producer.output(),
            consumer.output()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let minutes = capture_minutes();
    let first = minutes.keys().map(|k| k.1).min().unwrap();
    let last_minute = minutes.keys().map(|k| k.1).max().unwrap();
    let reconcile = |format: &str| {
        std::process::Command::new(bin("tradeflow-report"))
            .args([
                "--redis-url",
                &stack.redis_url(),
                "--binance-rest-url",
                &url.replace("ws://", "http://"),
                "reconcile",
                "--since",
                &first.to_string(),
                "--until",
                &(last_minute + 60_000).to_string(),
                "--settle",
                "0s",
                "--format",
                format,
            ])
            .output()
            .expect("run tradeflow-report")
    };
    // The table as a user sees it (shown with `--nocapture`), then the JSON checked.
    println!(
        "reconcile (backfill {backfill}):\n{}",
        String::from_utf8_lossy(&reconcile("table").stdout)
    );
    let out = reconcile("json");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "reconcile printed no JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    drop((producer, consumer, exchange));
    (stack, out.status.code().unwrap_or(-1), json)
}

fn scraped(addr: &str, metric: &str) -> u64 {
    testkit::sum_metric(&scrape(addr), metric) as u64
}

/// Trades missed while the websocket was down, without backfill: reconcile names
/// exactly the minutes that lost trades and how many, against the exchange's klines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_names_the_minutes_a_cut_lost_without_backfill() {
    let (stack, status, json) = cut_then_reconcile("off").await;
    let truth = capture_minutes();
    let ours = redis_minutes(&stack, &truth).await;
    let lost: BTreeMap<(String, u64), i64> = truth
        .iter()
        .filter(|(k, n)| ours[*k] != **n)
        .map(|(k, n)| (k.clone(), *n as i64 - ours[k] as i64))
        .collect();
    assert!(
        !lost.is_empty(),
        "the cut lost no trade: nothing was tested"
    );
    assert_eq!(status, 1, "{json:#}");
    assert_eq!(json["verdict"], "differ", "{json:#}");
    let named: BTreeMap<(String, u64), i64> = json["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let key = (
                d["symbol"].as_str().unwrap().to_string(),
                d["open_time_ms"].as_u64().unwrap(),
            );
            (key, d["trades_diff"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(named, lost, "{json:#}");
    let missing: i64 = lost.values().sum();
    assert_eq!(json["trades_missing"].as_i64(), Some(missing));
    assert_eq!(json["minutes_checked"].as_u64(), Some(truth.len() as u64));
}

/// The same cut with backfill on: the producer fetched what it missed, and reconcile
/// finds every minute equal to the exchange's, field by field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_matches_after_backfill_fills_the_cut() {
    let (stack, status, json) = cut_then_reconcile("historical-trades").await;
    let truth = capture_minutes();
    assert_eq!(redis_minutes(&stack, &truth).await, truth);
    assert_eq!(status, 0, "{json:#}");
    assert_eq!(json["verdict"], "match", "{json:#}");
    assert_eq!(json["minutes_checked"].as_u64(), Some(truth.len() as u64));
    assert_eq!(json["trades_missing"].as_u64(), Some(0));
}
