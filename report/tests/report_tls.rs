//! The report over `rediss://` with a password, against a real redis-server speaking TLS
//! only, its certificate signed by a private CA; the password never shows.

use crate::redis_common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use redis_common::*;
use tradeflow_consumer::apply::{fold, RedisSink, SinkConfig};
use tradeflow_shared::testkit;

const PASSWORD: &str = "tls-Secret-93";

/// The report (`tradeflow-report`, and `serve`) reads `rediss://` with a private CA
/// given as `--redis-ca-file` (or `TRADEFLOW_REDIS_CA_FILE`).
#[tokio::test]
async fn report_and_serve_read_rediss_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server = testkit::redis_tls(dir.path(), PASSWORD);
    let port = server.port;
    let url = format!("rediss://:{PASSWORD}@127.0.0.1:{port}");
    let ca = dir.path().join("ca.pem");
    let cfg = SinkConfig {
        url: url.clone(),
        ca_file: Some(ca.clone()),
        ..SinkConfig::default()
    };
    let sink = RedisSink::connect(&cfg).await.expect("TLS connection");
    let trades: Vec<_> = (1..=7).map(|i| trade("BTCUSDT", i)).collect();
    apply_retrying(&sink, "shardId-0", &fold(&shard_of(&trades))).await;

    let report = env!("CARGO_BIN_EXE_tradeflow-report");
    let out = tokio::process::Command::new(report)
        .args(["--redis-url", &url, "--redis-ca-file"])
        .arg(&ca)
        .args(["--format", "json"])
        .output()
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(json["total_trades"], 7, "{text}");
    assert!(!text.contains(PASSWORD), "{text}");

    let web = testkit::free_port();
    let mut child = tokio::process::Command::new(report)
        .args(["--redis-url", &url])
        .env("TRADEFLOW_REDIS_CA_FILE", &ca)
        .args(["serve", "--addr", &format!("127.0.0.1:{web}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let body = poll_snapshot(&mut child, web).await;
    child.kill().await.unwrap();
    assert!(body.contains("\"ok\":true"), "{body}");
    assert!(body.contains("\"total_trades\":7"), "{body}");
}

/// `/api/snapshot` of a `serve` process once it answers with `ok: true` (or its last
/// answer after 30 s); panics with its stderr if the process ends.
pub async fn poll_snapshot(child: &mut tokio::process::Child, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                e.read_to_string(&mut err).await.unwrap();
            }
            panic!("serve exited ({status}): {err}");
        }
        if let Ok((200, body)) = testkit::http_get(port, "/api/snapshot") {
            if body.contains("\"ok\":true") {
                return body;
            }
            last = body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last
}
