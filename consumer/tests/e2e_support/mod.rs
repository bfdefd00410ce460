//! The whole path on real parts, for end-to-end tests: redis-server, dynalite and
//! ferrokinesis on free ports, and the real binaries (exchange, producer, consumer) as
//! child processes (`testkit::Process`) that are killed when dropped.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tradeflow_shared::testkit::{self, Service};

/// A child process of a test: the test kit's, killed by pid when dropped.
pub use tradeflow_shared::testkit::Process as Proc;

pub const STREAM: &str = "crypto";

/// A binary of the workspace, built next to this package's own.
pub fn bin(name: &str) -> PathBuf {
    let me = Path::new(env!("CARGO_BIN_EXE_tradeflow-consumer"));
    let p = me.with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`, as scripts/test does)",
        p.display()
    );
    p
}

pub fn capture_path() -> PathBuf {
    testkit::workspace_root().join("exchange/data/capture.jsonl")
}

pub struct Stack {
    pub redis: Service,
    pub dynamodb: Service,
    pub kinesis: Service,
    pub dir: tempfile::TempDir,
}

impl Stack {
    pub async fn start(shards: i32) -> Stack {
        testkit::local_aws_env();
        let stack = Stack {
            redis: testkit::redis(),
            dynamodb: testkit::dynalite(),
            kinesis: testkit::ferrokinesis(&["--create-stream-ms", "0"]),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        create_stream(&stack.kinesis_client().await, STREAM, shards).await;
        stack
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis.port)
    }

    /// A Kinesis client with the SDK's defaults (not the binaries' timeouts).
    pub async fn kinesis_client(&self) -> aws_sdk_kinesis::Client {
        let conf = aws_sdk_kinesis::config::Builder::from(&sdk_defaults().await)
            .endpoint_url(self.kinesis.endpoint())
            .build();
        aws_sdk_kinesis::Client::from_conf(conf)
    }

    /// A DynamoDB client with the SDK's defaults.
    pub async fn dynamodb_client(&self) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::config::Builder::from(&sdk_defaults().await)
            .endpoint_url(self.dynamodb.endpoint())
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }

    /// Environment for our binaries: endpoints and placeholder credentials.
    pub fn env(&self) -> Vec<(String, String)> {
        testkit::binary_env(
            &self.kinesis.endpoint(),
            &self.dynamodb.endpoint(),
            &self.redis_url(),
        )
    }

    /// The exchange replaying the bundled capture at `rate` trades/s; returns it and
    /// its websocket base URL.
    pub fn exchange(&self, rate: u32) -> (Proc, String) {
        let p = Proc::spawn(
            "exchange",
            &bin("tradeflow-exchange"),
            &[
                "serve".into(),
                "--addr".into(),
                "127.0.0.1:0".into(),
                "--capture".into(),
                capture_path().display().to_string(),
                "--rate".into(),
                rate.to_string(),
            ],
            &[],
            self.dir.path(),
        );
        let addr = p.wait_for_log("listening address", Duration::from_secs(30), |l| {
            let rest = l.split("listening on ").nth(1)?;
            Some(rest.split_whitespace().next().unwrap_or("").to_string())
        });
        (p, format!("ws://{addr}"))
    }

    /// The producer reading the exchange; `extra` flags such as `--aggregate`.
    pub fn producer(&self, ws_url: &str, extra: &[&str]) -> Proc {
        let mut args: Vec<String> = vec![
            "--stream".into(),
            STREAM.into(),
            "--source".into(),
            "binance".into(),
            "--binance-url".into(),
            ws_url.into(),
            "--linger".into(),
            "50ms".into(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::spawn(
            "producer",
            &bin("tradeflow-producer"),
            &args,
            &self.env(),
            self.dir.path(),
        )
    }

    pub fn consumer(&self, name: &str, extra: &[&str]) -> Proc {
        // A lease table of this stack's own name: tests never share leases, even if
        // they somehow shared a server.
        let table = format!("tradeflow-e2e-{}", self.redis.port);
        Proc::spawn(
            name,
            &bin("tradeflow-consumer"),
            &testkit::consumer_args(STREAM, &table, name, extra),
            &self.env(),
            self.dir.path(),
        )
    }

    /// `symbol:<SYM>` for every symbol of `expected`.
    pub async fn counts(&self, expected: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        redis_counts(&self.redis_url(), expected.keys().map(String::as_str)).await
    }

    /// A field of `tradeflow:stats:<SYM>`.
    pub async fn stat(&self, sym: &str, field: &str) -> Option<String> {
        redis_hget(&self.redis_url(), &format!("tradeflow:stats:{sym}"), field).await
    }

    /// Polls until Redis's counts equal `expected` or `timeout` passes; returns the last
    /// counts seen.
    pub async fn wait_for_counts(
        &self,
        expected: &BTreeMap<String, u64>,
        timeout: Duration,
    ) -> BTreeMap<String, u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.counts(expected).await;
            if &got == expected || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The SDK's default configuration (credentials and region from `local_aws_env`).
pub async fn sdk_defaults() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// `HGET key field` on the Redis at `url`.
pub async fn redis_hget(url: &str, key: &str, field: &str) -> Option<String> {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query_async(&mut conn)
        .await
        .expect("HGET")
}

/// `symbol:<SYM>` of each symbol in the Redis at `url` (0 when absent).
pub async fn redis_counts<'a>(
    url: &str,
    symbols: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, u64> {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let mut out = BTreeMap::new();
    for sym in symbols {
        let v: Option<u64> = redis::cmd("GET")
            .arg(format!("symbol:{sym}"))
            .query_async(&mut conn)
            .await
            .expect("GET");
        out.insert(sym.to_string(), v.unwrap_or(0));
    }
    out
}

pub async fn create_stream(client: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    tradeflow_shared::testkit::create_active_stream(client, name, shards)
        .await
        .expect("create stream");
}

/// The capture's distinct trade events (by symbol and id), parsed as plain JSON —
/// without our decoder — in file order.
pub fn capture_trades(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("capture");
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("capture line");
        let v = v.get("data").cloned().unwrap_or(v);
        if v["e"] != "trade" {
            continue;
        }
        let key = (
            v["s"].as_str().expect("s").to_string(),
            v["t"].as_u64().expect("t"),
        );
        if seen.insert(key) {
            out.push(v);
        }
    }
    out
}

/// Ground truth from the capture, computed without our decoder: per symbol, the number
/// of distinct trade ids and the exact base volume in units of 1e-8.
pub fn expected_from_capture(path: &Path) -> (BTreeMap<String, u64>, BTreeMap<String, u128>) {
    let mut counts = BTreeMap::new();
    let mut base = BTreeMap::new();
    for v in capture_trades(path) {
        let sym = v["s"].as_str().expect("s").to_string();
        *counts.entry(sym.clone()).or_insert(0u64) += 1;
        *base.entry(sym).or_insert(0u128) += units8(v["q"].as_str().expect("q"));
    }
    (counts, base)
}

/// "1.5" → 150000000 (units of 1e-8), by string handling only.
pub fn units8(s: &str) -> u128 {
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    let mut frac = f.to_string();
    assert!(frac.trim_end_matches('0').len() <= 8, "{s}");
    frac.truncate(8);
    while frac.len() < 8 {
        frac.push('0');
    }
    format!("{i}{frac}").parse().expect("decimal")
}

/// The address a binary printed for its /metrics endpoint (`--metrics-addr 127.0.0.1:0`).
pub fn metrics_addr(p: &Proc) -> String {
    p.first_in_log(|l| {
        let l = strip_ansi(l);
        let rest = l
            .contains("serving /metrics")
            .then(|| l.split("local=").nth(1))??;
        Some(rest.split_whitespace().next().unwrap_or("").to_string())
    })
    .unwrap_or_else(|| panic!("{} printed no metrics address:\n{}", p.name, p.output()))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One scrape of `http://addr/metrics` (it must answer 200).
pub fn scrape(addr: &str) -> String {
    testkit::scrape_metrics(addr).unwrap_or_else(|e| panic!("scrape {addr}: {e}"))
}

/// promtool, as scripts/test-infra installs it (or from the PATH).
pub fn promtool() -> PathBuf {
    let local = testkit::tools_dir().join("prometheus/usr/bin/promtool");
    if local.exists() {
        return local;
    }
    let p = testkit::which("promtool");
    assert!(
        p.is_file(),
        "promtool not found: run scripts/test-infra (scripts/test does) to install it"
    );
    p
}
