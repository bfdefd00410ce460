//! End to end on real local parts: the project's exchange replays the bundled capture,
//! the real producer writes it to ferrokinesis, real consumers count it into
//! redis-server under leases in dynalite. Counts must equal the capture exactly.

mod e2e_support;

use std::time::Duration;

use e2e_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_capture_is_counted_exactly() {
    let stack = Stack::start(4).await;
    let (expected, base) = expected_from_capture(&capture_path());
    let mut consumer = stack.consumer("worker-a", &[]);
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
