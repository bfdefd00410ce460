//! Runs one end-to-end pass against real processes: the local stack (`stack`), the
//! `tradeflow-producer` and `tradeflow-consumer` binaries and the Python baseline as
//! children (`testkit::Process`, followed in /proc). Fails when Redis's counts are not
//! exact.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tradeflow_shared::testkit::{self, Process};

use super::procstat::Tracker;
use super::progress::{Progress, STALL_LIMIT};
use super::prom;
use super::redis::{total, Redis};
use super::report::{Baseline, Phase};
use super::stack::{create_stream, Paths, Stack};

#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    #[error("setup: {0}")]
    Setup(String),
    #[error("{0} failed: {1}")]
    Process(&'static str, String),
    #[error("counts not exact: {0}")]
    Inexact(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

pub type Result<T> = std::result::Result<T, E2eError>;

pub(crate) fn setup(e: impl std::fmt::Display) -> E2eError {
    E2eError::Setup(e.to_string())
}

/// Trades the producer has written, from its last metrics scrape.
fn written(samples: &[prom::Sample]) -> f64 {
    prom::sum(samples, "tradeflow_producer_trades_written_total", "")
}

/// The error of a pass that stopped moving: where it stood, and what the producer
/// reported as stalled (its own watchdog's gauge).
fn stalled(
    label: &str,
    still: Duration,
    counted: Option<u64>,
    producer: &[prom::Sample],
    paths: &Paths,
) -> E2eError {
    let parts: Vec<&str> = producer
        .iter()
        .filter(|s| s.name == "tradeflow_producer_stalled" && s.value > 0.0)
        .map(|s| s.labels.as_str())
        .collect();
    E2eError::Timeout(format!(
        "{label}: no progress for {} s ({} trades written{}; producer stalled: {}); an \
         emulator that stopped answering looks like this (logs in {})",
        still.as_secs(),
        written(producer),
        counted.map_or(String::new(), |n| format!(", {n} counted")),
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(" ")
        },
        paths.logs.display()
    ))
}

/// How long a child that has exited may take to be reaped.
const REAP_LIMIT: Duration = Duration::from_secs(10);

/// What our binaries and the baseline get: the emulators' endpoints, Redis at `url`,
/// placeholder credentials.
pub(crate) fn env(stack: &Stack, url: &str) -> Vec<(String, String)> {
    testkit::binary_env(&stack.kinesis.endpoint(), &stack.dynalite.endpoint(), url)
}

/// One `tradeflow-consumer` reading `stream` into `url` as worker `name`, its metrics
/// on a free port.
pub(crate) fn spawn_consumer(
    paths: &Paths,
    stream: &str,
    name: &str,
    url: &str,
    env: &[(String, String)],
) -> Result<Proc> {
    let addr = metrics_addr();
    let args = testkit::strings(&[
        "--stream",
        stream,
        "--application-name",
        stream,
        "--worker-id",
        name,
        "--redis-url",
        url,
        "--metrics-addr",
        &addr,
        "--log",
        "info",
    ]);
    Proc::spawn(name, &paths.consumer, &args, env, paths, addr)
}

/// A child we started, logging to `<logs>/<name>.log`, followed in /proc, stopped
/// (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct Proc {
    pub(crate) process: Process,
    pub(crate) tracker: Tracker,
    pub(crate) metrics: String,
    reaped: bool,
}

impl Proc {
    pub(crate) fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        paths: &Paths,
        metrics: String,
    ) -> Result<Self> {
        let mut process = Process::new(name, program, &paths.logs)
            .args(args)
            .envs(env);
        process
            .start()
            .map_err(|e| setup(format!("starting {name}: {e}")))?;
        let tracker = Tracker::new(process.pid().unwrap_or(0));
        Ok(Proc {
            process,
            tracker,
            metrics,
            reaped: false,
        })
    }

    /// Samples /proc; once the child has exited, reads its last figures (still there
    /// while it is a zombie) and reaps it. Returns its exit status once reaped.
    pub(crate) fn poll(&mut self) -> Option<ExitStatus> {
        if self.reaped {
            return None;
        }
        if !self.tracker.sample() {
            self.reaped = true;
            return self.process.wait_exit(REAP_LIMIT);
        }
        None
    }

    pub(crate) fn stop(&mut self) {
        if self.reaped {
            return;
        }
        self.tracker.sample();
        self.process.stop(Duration::from_secs(10));
        self.reaped = true;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What one pass is asked to do.
#[derive(Clone, Debug)]
pub struct PhaseSpec {
    pub label: &'static str,
    pub stream: String,
    pub aggregate: bool,
    pub trades: u64,
    pub shards: u32,
    pub consumers: u32,
    pub redis_db: u32,
    /// Start the consumers only once the producer has written everything (a
    /// catch-up read, as the baseline does), instead of alongside it.
    pub prefill: bool,
}

pub(crate) fn metrics_addr() -> String {
    format!("127.0.0.1:{}", testkit::free_port())
}

/// Producer → ferrokinesis → consumer(s) → Redis for `spec.trades` synthetic trades.
/// Returns the figures and the per-symbol counts, exact or an error.
pub fn run_phase(
    stack: &Stack,
    paths: &Paths,
    spec: &PhaseSpec,
) -> Result<(Phase, BTreeMap<String, u64>)> {
    create_stream(&stack.kinesis.endpoint(), &spec.stream, spec.shards)?;
    let url = stack.redis_url(spec.redis_db);
    let mut rds = stack.open_redis(spec.redis_db)?;
    let cmds_before = rds.commands_processed()?;
    let sent_before = rds.sent;
    let mut servers = stack.trackers();

    let env = env(stack, &url);
    let spawn_consumers = |consumers: &mut Vec<Proc>| -> Result<()> {
        for i in 0..spec.consumers {
            let name = format!("{}-consumer-{i}", spec.stream);
            consumers.push(spawn_consumer(paths, &spec.stream, &name, &url, &env)?);
        }
        Ok(())
    };
    let mut consumers = Vec::new();
    let mut consumers_started = Instant::now();
    if !spec.prefill {
        spawn_consumers(&mut consumers)?;
    }

    let producer_started = Instant::now();
    let addr = metrics_addr();
    let mut args = testkit::strings(&[
        "--stream",
        &spec.stream,
        "--source",
        "synthetic",
        "--synthetic-rate",
        "0",
        "--synthetic-count",
        &spec.trades.to_string(),
        "--metrics-addr",
        &addr,
        "--log",
        "info",
    ]);
    if spec.aggregate {
        args.push("--aggregate".into());
    } else {
        // Strict order allows one record per symbol per PutRecords call, which with
        // 14 symbols and no aggregation measures round trips, not the pipeline. The
        // counts (what the bench checks) do not depend on order.
        args.push("--relaxed-order".into());
    }
    let name = format!("{}-producer", spec.stream);
    let mut producer = Proc::spawn(&name, &paths.producer, &args, &env, paths, addr)?;

    // Generous: the emulator bounds the rate (on a loaded machine its write-ahead
    // log's fsyncs can be slow); the smoke run is tiny.
    let limit = Duration::from_secs(300 + spec.trades / 200);
    let mut last_scrape: Vec<prom::Sample> = Vec::new();
    let mut progress = Progress::new(Instant::now());
    if spec.prefill {
        // Like the baseline: the consumers start on a stream already written.
        while !producer.reaped {
            if producer_started.elapsed() > limit {
                return Err(E2eError::Timeout(format!("{}: producer", spec.label)));
            }
            if let Ok(text) = testkit::scrape_metrics(&producer.metrics) {
                last_scrape = prom::parse(&text);
            }
            let still = progress.observe(written(&last_scrape), Instant::now());
            if still > STALL_LIMIT {
                return Err(stalled(spec.label, still, None, &last_scrape, paths));
            }
            if let Some(status) = producer.poll() {
                if !status.success() {
                    return Err(E2eError::Process("producer", format!("{status}")));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        consumers_started = Instant::now();
        spawn_consumers(&mut consumers)?;
    }
    let mut next_count = Instant::now();
    let counts = loop {
        if producer_started.elapsed() > limit {
            return Err(E2eError::Timeout(format!(
                "{}: Redis never held {} trades (logs in {})",
                spec.label,
                spec.trades,
                paths.logs.display()
            )));
        }
        if !producer.reaped {
            // Keep the last scrape: the producer exits once everything is written.
            if let Ok(text) = testkit::scrape_metrics(&producer.metrics) {
                last_scrape = prom::parse(&text);
            }
            if let Some(status) = producer.poll() {
                if !status.success() {
                    return Err(E2eError::Process("producer", format!("{status}")));
                }
            }
        }
        for c in &mut consumers {
            if let Some(status) = c.poll() {
                return Err(E2eError::Process(
                    "consumer",
                    format!("{} {status}", c.process.name),
                ));
            }
        }
        for s in &mut servers {
            s.sample();
        }
        if Instant::now() >= next_count {
            next_count = Instant::now() + Duration::from_millis(250);
            let counts = rds.counts()?;
            let n = total(&counts);
            // Progress is a trade written or counted: either side moving is enough.
            let still = progress.observe(written(&last_scrape) + n as f64, Instant::now());
            if still > STALL_LIMIT {
                return Err(stalled(spec.label, still, Some(n), &last_scrape, paths));
            }
            if n > spec.trades {
                return Err(E2eError::Inexact(format!(
                    "{}: {n} trades counted, {} written",
                    spec.label, spec.trades
                )));
            }
            if n == spec.trades {
                break counts;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let seconds = producer_started.elapsed().as_secs_f64();
    let consumer_seconds = consumers_started.elapsed().as_secs_f64();
    for c in &mut consumers {
        c.tracker.sample();
    }
    for s in &mut servers {
        s.sample();
    }
    let mut consumer_metrics = Vec::new();
    for c in &consumers {
        let text = testkit::scrape_metrics(&c.metrics).map_err(setup)?;
        consumer_metrics.extend(prom::parse(&text));
    }
    let sent = rds.sent - sent_before;
    let cmds = rds.commands_processed()? - cmds_before - sent as f64;
    // The producer must be done by now (everything it wrote was counted).
    let wait_exit = Instant::now();
    while !producer.reaped && wait_exit.elapsed() < Duration::from_secs(30) {
        if let Some(status) = producer.poll() {
            if !status.success() {
                return Err(E2eError::Process("producer", format!("{status}")));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let consumer_cpu: f64 = consumers.iter().map(|c| c.tracker.cpu_used()).sum();
    let consumer_rss = consumers
        .iter()
        .map(|c| c.tracker.peak_rss_kib)
        .max()
        .unwrap_or(0);
    for c in &mut consumers {
        c.stop();
    }
    // Nothing may be applied twice after the fact (e.g. by a re-read on shutdown).
    let after = rds.counts()?;
    if after != counts {
        return Err(E2eError::Inexact(format!(
            "{}: counts changed after the consumers stopped: {} → {}",
            spec.label,
            total(&counts),
            total(&after)
        )));
    }
    let m = |name: &str, label: &str| prom::sum(&consumer_metrics, name, label);
    let p = |name: &str| prom::sum(&last_scrape, name, "");
    let phase = Phase {
        label: spec.label.to_string(),
        shards: spec.shards,
        consumers: spec.consumers,
        trades: spec.trades,
        seconds,
        producer_cpu: producer.tracker.cpu_used(),
        producer_rss_kib: producer.tracker.peak_rss_kib,
        consumer_cpu,
        consumer_rss_kib: consumer_rss,
        consumer_seconds,
        emulator_cpu: servers[0].cpu_used(),
        dynamodb_emulator_cpu: servers[1].cpu_used(),
        redis_cpu: servers[2..].iter().map(Tracker::cpu_used).sum(),
        redis_round_trips: m("tradeflow_consumer_redis_round_trips_total", ""),
        redis_commands: cmds,
        getrecords_calls: m("tradeflow_consumer_getrecords_total", ""),
        dynamodb_writes: m(
            "tradeflow_consumer_dynamodb_requests_total",
            "op=\"update_item\"",
        ) + m(
            "tradeflow_consumer_dynamodb_requests_total",
            "op=\"put_item\"",
        ),
        payload_units: p("tradeflow_producer_put_payload_units_total"),
        trades_written_at_scrape: p("tradeflow_producer_trades_written_total"),
        put_records_calls: p("tradeflow_producer_put_records_calls_total"),
    };
    Ok((phase, counts))
}

/// The seed's per-record consumer (Python) over the first `records` records of
/// `stream`, counting into Redis db `redis_db`.
pub fn run_baseline(
    stack: &Stack,
    paths: &Paths,
    stream: &str,
    records: u64,
    redis_db: u32,
) -> Result<(Baseline, BTreeMap<String, u64>)> {
    if !paths.python.is_file() {
        return Err(E2eError::Setup(format!(
            "{} is missing: run scripts/install-tools",
            paths.python.display()
        )));
    }
    let url = stack.redis_url(redis_db);
    let mut rds = Redis::open(&url)?;
    let cmds_before = rds.commands_processed()?;
    let out_path = paths.logs.join("baseline.json");
    let args = vec![
        paths.baseline_script.display().to_string(),
        "--endpoint".into(),
        stack.kinesis.endpoint(),
        "--stream".into(),
        stream.into(),
        "--redis-url".into(),
        url.clone(),
        "--records".into(),
        records.to_string(),
    ];
    let env = env(stack, &url);
    let mut python = Process::new("baseline", &paths.python, &paths.logs)
        .args(&args)
        .envs(&env)
        .stdout_to(&out_path);
    let started = Instant::now();
    python.start().map_err(|e| setup(format!("python: {e}")))?;
    let mut tracker = Tracker::new(python.pid().unwrap_or(0));
    let limit = Duration::from_secs(120 + records / 200);
    while tracker.sample() {
        if started.elapsed() > limit {
            python.kill();
            return Err(E2eError::Timeout("the Python baseline".into()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = python
        .wait_exit(REAP_LIMIT)
        .ok_or_else(|| setup("the Python baseline did not exit"))?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(E2eError::Process(
            "baseline",
            format!("{status} (see {}/baseline.log)", paths.logs.display()),
        ));
    }
    let text = std::fs::read_to_string(&out_path).map_err(setup)?;
    let v: serde_json::Value = serde_json::from_str(text.trim()).map_err(setup)?;
    let counts = rds.counts()?;
    let cmds = rds.commands_processed()? - cmds_before - (rds.sent - 1) as f64;
    if total(&counts) != records || v["records"].as_u64() != Some(records) {
        return Err(E2eError::Inexact(format!(
            "baseline: {} counted in Redis, {} reported, {records} asked",
            total(&counts),
            v["records"]
        )));
    }
    Ok((
        Baseline {
            records,
            cpu_seconds: v["cpu_seconds"].as_f64().unwrap_or(0.0),
            cpu_seconds_total: tracker.cpu_used() + tracker.cpu_at_start,
            rss_kib: v["max_rss_kib"].as_u64().unwrap_or(tracker.peak_rss_kib),
            seconds: v["seconds"].as_f64().unwrap_or(seconds),
            redis_commands: cmds,
            getrecords_calls: v["getrecords_calls"].as_f64().unwrap_or(0.0),
        },
        counts,
    ))
}
