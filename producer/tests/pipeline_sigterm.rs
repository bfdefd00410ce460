//! The real binary with the synthetic source, stopped by SIGTERM mid-flow: it exits 0
//! and every trade it accepted is in the stream, once, in order per symbol.

use crate::support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tradeflow_shared::testkit;

/// A field of the producer's final "producer drained" log line (JSON logs).
fn field(log: &str, key: &str) -> u64 {
    let line = log
        .lines()
        .rfind(|l| l.contains("producer drained"))
        .unwrap_or_else(|| panic!("no drain line in the log:\n{log}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_everything_accepted() {
    let fk = testkit::kinesis_mock();
    let c = support::client(&fk.endpoint()).await;
    support::create_stream(&c, "crypto", 2).await;
    let child = Command::new(env!("CARGO_BIN_EXE_tradeflow-producer"))
        .args([
            "--source",
            "synthetic",
            "--synthetic-rate",
            "3000",
            "--symbols",
            "BTCUSDT,ETHUSDT,LTCBTC,BNBETH",
            "--kinesis-endpoint",
            &fk.endpoint(),
            "--metrics-addr",
            "",
            "--log-format",
            "json",
            "--drain-timeout",
            "20s",
            // Aggregates keep up with 3000 trades/s against the emulator's fsync'ed
            // log; plain strict-order records (one per symbol per call) would not.
            "--aggregate",
        ])
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the producer");
    let pid = child.id();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "exit {:?}; log:\n{log}", out.status);
    assert!(started.elapsed() < Duration::from_secs(20));
    let accepted = field(&log, "accepted");
    let written = field(&log, "written");
    assert_eq!(field(&log, "lost"), 0);
    assert_eq!(accepted, written);
    assert!(
        accepted > 100,
        "the producer ran mid-flow: {accepted} trades"
    );
    let records = support::read_stream(&c, "crypto").await;
    let by = support::trades_by_symbol(&records);
    assert_eq!(support::assert_exactly_once_in_order(&by), accepted);
}
