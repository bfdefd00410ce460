//! The whole path on real parts, for end-to-end tests: redis-server, dynalite and
//! ferrokinesis on free ports, and the real binaries (exchange, producer, consumer) as
//! child processes that are killed when dropped.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tradeflow_shared::testkit::{self, Service};

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

/// A child process, killed (SIGKILL) when dropped unless stopped before.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(String, String)],
        dir: &Path,
    ) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(program)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a graceful exit; returns whether it exited 0.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
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

    pub async fn kinesis_client(&self) -> aws_sdk_kinesis::Client {
        let conf = aws_sdk_kinesis::config::Builder::from(
            &aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await,
        )
        .endpoint_url(self.kinesis.endpoint())
        .build();
        aws_sdk_kinesis::Client::from_conf(conf)
    }

    /// Environment for our binaries: endpoints and placeholder credentials.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("TRADEFLOW_KINESIS_ENDPOINT".into(), self.kinesis.endpoint()),
            (
                "TRADEFLOW_DYNAMODB_ENDPOINT".into(),
                self.dynamodb.endpoint(),
            ),
            ("TRADEFLOW_REDIS_URL".into(), self.redis_url()),
            ("AWS_ACCESS_KEY_ID".into(), "local".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "local".into()),
            ("AWS_REGION".into(), "eu-west-1".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("TRADEFLOW_LOG".into(), "info".into()),
        ]
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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = p.output();
            if let Some(addr) = out
                .lines()
                .find_map(|l| l.split("listening on ").nth(1))
                .map(|a| a.split_whitespace().next().unwrap_or("").to_string())
            {
                return (p, format!("ws://{addr}"));
            }
            assert!(Instant::now() < deadline, "exchange did not start:\n{out}");
            std::thread::sleep(Duration::from_millis(50));
        }
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
        let mut args: Vec<String> = [
            "--stream",
            STREAM,
            "--application-name",
            "tradeflow-e2e",
            "--worker-id",
            name,
            "--failover-time",
            "2s",
            "--idle-interval",
            "100ms",
            "--checkpoint-interval",
            "500ms",
            "--metrics-addr",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::spawn(
            name,
            &bin("tradeflow-consumer"),
            &args,
            &self.env(),
            self.dir.path(),
        )
    }

    /// `symbol:<SYM>` for every symbol of `expected`.
    pub async fn counts(&self, expected: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        let client = redis::Client::open(self.redis_url()).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection");
        let mut out = BTreeMap::new();
        for sym in expected.keys() {
            let v: Option<u64> = redis::cmd("GET")
                .arg(format!("symbol:{sym}"))
                .query_async(&mut conn)
                .await
                .expect("GET");
            out.insert(sym.clone(), v.unwrap_or(0));
        }
        out
    }

    /// A field of `tradeflow:stats:<SYM>`.
    pub async fn stat(&self, sym: &str, field: &str) -> Option<String> {
        let client = redis::Client::open(self.redis_url()).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection");
        redis::cmd("HGET")
            .arg(format!("tradeflow:stats:{sym}"))
            .arg(field)
            .query_async(&mut conn)
            .await
            .expect("HGET")
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

pub async fn create_stream(client: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    tradeflow_shared::testkit::create_active_stream(client, name, shards)
        .await
        .expect("create stream");
}

/// Ground truth from the capture, computed without our decoder: per symbol, the number
/// of distinct trade ids and the exact base volume in units of 1e-8.
pub fn expected_from_capture(path: &Path) -> (BTreeMap<String, u64>, BTreeMap<String, u128>) {
    let text = std::fs::read_to_string(path).expect("capture");
    let mut seen = std::collections::HashSet::new();
    let mut counts = BTreeMap::new();
    let mut base = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("capture line");
        let v = v.get("data").cloned().unwrap_or(v);
        if v["e"] != "trade" {
            continue;
        }
        let sym = v["s"].as_str().expect("s").to_string();
        let id = v["t"].as_u64().expect("t");
        if !seen.insert((sym.clone(), id)) {
            continue;
        }
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
    let out = p.output();
    strip_ansi(&out)
        .lines()
        .find(|l| l.contains("serving /metrics"))
        .and_then(|l| l.split("local=").nth(1))
        .map(|a| a.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("{} printed no metrics address:\n{out}", p.name))
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

/// One scrape of `http://addr/metrics`, by a plain HTTP/1.0 request.
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to /metrics");
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("response");
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );
    body.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// promtool, as scripts/test-infra installs it (or from the PATH).
pub fn promtool() -> PathBuf {
    let local = testkit::tools_dir().join("prometheus/usr/bin/promtool");
    if local.exists() {
        return local;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .expect("promtool not found: run scripts/test-infra (scripts/test does) to install it")
}
