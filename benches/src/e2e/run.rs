//! Runs one end-to-end pass against real processes: the local stack from
//! `tradeflow_shared::testkit` (redis-server, dynalite, ferrokinesis on free loopback
//! ports, stopped on drop), the `tradeflow-producer` and `tradeflow-consumer`
//! binaries as children, and the Python baseline. Fails when Redis's counts are not
//! exact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tradeflow_shared::testkit::{self, RedisCluster, Service};

use super::procstat::Tracker;
use super::prom;
use super::report::{Baseline, Phase};

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

type Result<T> = std::result::Result<T, E2eError>;

fn setup(e: impl std::fmt::Display) -> E2eError {
    E2eError::Setup(e.to_string())
}

/// Where the binaries and the Python venv are.
#[derive(Clone, Debug)]
pub struct Paths {
    pub producer: PathBuf,
    pub consumer: PathBuf,
    pub python: PathBuf,
    pub baseline_script: PathBuf,
    pub logs: PathBuf,
}

impl Paths {
    /// The binaries of the bench's own profile (`target/<profile>/`), which `cargo
    /// build` (tests) or `cargo build --release` (`cargo bench`) must have built.
    pub fn discover(bin_dir: &Path, logs: &Path) -> Result<Self> {
        let root = testkit::workspace_root();
        let p = Paths {
            producer: bin_dir.join("tradeflow-producer"),
            consumer: bin_dir.join("tradeflow-consumer"),
            python: testkit::tools_dir().join("python-bench/bin/python"),
            baseline_script: root.join("benches/baseline/seed_consumer.py"),
            logs: logs.to_path_buf(),
        };
        for b in [&p.producer, &p.consumer] {
            if !b.is_file() {
                return Err(E2eError::Setup(format!(
                    "{} is missing: build it first with `cargo build{} -p tradeflow-producer -p tradeflow-consumer`",
                    b.display(),
                    if bin_dir.ends_with("release") { " --release" } else { "" }
                )));
            }
        }
        Ok(p)
    }
}

/// Where the consumers count: one redis-server, or a Redis Cluster.
pub enum RedisSide {
    Single(Service),
    /// 3 primaries with a replica each (the consumers `WAIT` for the replicas).
    Cluster(RedisCluster),
}

/// Redis, dynalite and ferrokinesis for one configuration.
pub struct Stack {
    pub redis: RedisSide,
    pub dynalite: Service,
    pub kinesis: Service,
}

impl Stack {
    pub fn start() -> Self {
        Self::start_with(RedisSide::Single(testkit::redis()))
    }

    /// The same stack counting into a Redis Cluster of 3 primaries, a replica each.
    pub fn start_cluster() -> Self {
        Self::start_with(RedisSide::Cluster(RedisCluster::start(3, 1)))
    }

    fn start_with(redis: RedisSide) -> Self {
        testkit::local_aws_env();
        Stack {
            redis,
            dynalite: testkit::dynalite(),
            // In memory: its write-ahead log (records as JSON number arrays) grew to
            // 18 GB over a 1M-trade run and bounded its throughput. No periodic
            // snapshots either: they re-serialise every stored record and stall
            // PutRecords for seconds once a few hundred MB are held.
            kinesis: testkit::ferrokinesis_volatile(&[
                "--create-stream-ms",
                "0",
                "--shard-limit",
                "500",
                "--snapshot-interval-secs",
                "0",
            ]),
        }
    }

    fn redis_url(&self, db: u32) -> String {
        match &self.redis {
            RedisSide::Single(r) => format!("redis://127.0.0.1:{}/{db}", r.port),
            // A cluster has database 0 only: a phase on a cluster gets a stack of its own.
            RedisSide::Cluster(c) => {
                assert_eq!(db, 0, "a Redis Cluster has database 0 only");
                c.url()
            }
        }
    }

    /// The emulators, then every Redis process (one, or each node of a cluster).
    fn trackers(&self) -> Vec<Tracker> {
        let redis: Vec<&Service> = match &self.redis {
            RedisSide::Single(r) => vec![r],
            RedisSide::Cluster(c) => c.nodes.iter().collect(),
        };
        [&self.kinesis, &self.dynalite]
            .into_iter()
            .chain(redis)
            .map(|s| Tracker::new(s.pid().unwrap_or(0)))
            .collect()
    }

    fn open_redis(&self, db: u32) -> Result<Redis> {
        match &self.redis {
            RedisSide::Single(_) => Redis::open(&self.redis_url(db)),
            RedisSide::Cluster(c) => Redis::open_cluster(c),
        }
    }
}

/// Creates the stream with the SDK the binaries use and waits until it is ACTIVE.
pub fn create_stream(endpoint: &str, name: &str, shards: u32) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(setup)?;
    rt.block_on(async {
        let args = tradeflow_shared::aws::AwsArgs {
            region: "eu-west-1".into(),
            kinesis_endpoint: Some(endpoint.to_string()),
            dynamodb_endpoint: None,
        };
        let conf = tradeflow_shared::aws::sdk_config(&args).await;
        let client = tradeflow_shared::aws::kinesis_client(&conf, &args);
        tradeflow_shared::testkit::create_active_stream(&client, name, shards as i32)
            .await
            .map_err(setup)
    })
}

/// Our own Redis connection (counts and INFO), counting the commands it sends so they
/// can be taken out of the server's total.
struct Redis {
    con: Con,
    sent: u64,
}

enum Con {
    Single(redis::Connection),
    /// The cluster client (KEYS fans out to every primary, MGET splits by slot) and a
    /// direct connection to each primary for its INFO.
    Cluster {
        con: Box<redis::cluster::ClusterConnection>,
        primaries: Vec<redis::Connection>,
    },
}

impl Redis {
    fn open(url: &str) -> Result<Self> {
        let con = redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .map_err(setup)?;
        Ok(Redis {
            con: Con::Single(con),
            sent: 0,
        })
    }

    fn open_cluster(c: &RedisCluster) -> Result<Self> {
        let url = |i: usize| format!("redis://127.0.0.1:{}", c.nodes[i].port);
        let all: Vec<String> = (0..c.nodes.len()).map(url).collect();
        let con = redis::cluster::ClusterClient::new(all)
            .and_then(|cl| cl.get_connection())
            .map_err(setup)?;
        let primaries = c
            .primaries()
            .into_iter()
            .map(|i| {
                redis::Client::open(url(i))
                    .and_then(|cl| cl.get_connection())
                    .map_err(setup)
            })
            .collect::<Result<_>>()?;
        Ok(Redis {
            con: Con::Cluster {
                con: Box::new(con),
                primaries,
            },
            sent: 0,
        })
    }

    /// Sends one of our own commands (counted on one Redis; on a cluster our kinds are
    /// taken out by name, see `commands_processed`).
    fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T> {
        match &mut self.con {
            Con::Single(c) => {
                self.sent += 1;
                cmd.query(c)
            }
            Con::Cluster { con, .. } => cmd.query(con.as_mut()),
        }
        .map_err(setup)
    }

    /// `symbol:<SYMBOL>` counts (the seed's key family) of this db.
    fn counts(&mut self) -> Result<BTreeMap<String, u64>> {
        let keys: Vec<String> = self.query(redis::cmd("KEYS").arg("symbol:*"))?;
        if keys.is_empty() {
            return Ok(BTreeMap::new());
        }
        let vals: Vec<Option<u64>> = self.query(redis::cmd("MGET").arg(&keys))?;
        Ok(keys
            .into_iter()
            .zip(vals)
            .map(|(k, v)| (k, v.unwrap_or(0)))
            .collect())
    }

    /// Commands the server(s) processed for others. One Redis: its total less ours. A
    /// cluster: the primaries' totals less the calls of our own kinds (KEYS, MGET and
    /// INFO reach several nodes each, so they are not counted one by one).
    fn commands_processed(&mut self) -> Result<f64> {
        let field = |info: &str, key: &str| -> f64 {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().trim_start_matches("calls=").parse().ok())
                .unwrap_or(0.0)
        };
        match &mut self.con {
            Con::Single(c) => {
                self.sent += 1;
                let info: String = redis::cmd("INFO").arg("stats").query(c).map_err(setup)?;
                Ok(field(&info, "total_commands_processed:"))
            }
            Con::Cluster { primaries, .. } => {
                let mut n = 0.0;
                for c in primaries {
                    let info: String = redis::cmd("INFO")
                        .arg("everything")
                        .query(c)
                        .map_err(setup)?;
                    n += field(&info, "total_commands_processed:");
                    for ours in ["cmdstat_keys:", "cmdstat_mget:", "cmdstat_info:"] {
                        n -= field(&info, ours);
                    }
                }
                Ok(n)
            }
        }
    }
}

fn total(counts: &BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}

fn log_file(paths: &Paths, name: &str) -> Result<(Stdio, Stdio)> {
    let f = std::fs::File::create(paths.logs.join(format!("{name}.log"))).map_err(setup)?;
    let g = f.try_clone().map_err(setup)?;
    Ok((Stdio::from(f), Stdio::from(g)))
}

fn aws_env(cmd: &mut Command, stack: &Stack) {
    cmd.env("TRADEFLOW_KINESIS_ENDPOINT", stack.kinesis.endpoint())
        .env("TRADEFLOW_DYNAMODB_ENDPOINT", stack.dynalite.endpoint())
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

/// A child we started, stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    name: String,
    child: Child,
    tracker: Tracker,
    metrics: String,
    reaped: bool,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, paths: &Paths, metrics: String) -> Result<Self> {
        let (out, err) = log_file(paths, name)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| setup(format!("starting {name}: {e}")))?;
        let tracker = Tracker::new(child.id());
        Ok(Proc {
            name: name.to_string(),
            child,
            tracker,
            metrics,
            reaped: false,
        })
    }

    /// Samples /proc; once the child has exited, reads its last figures (still there
    /// while it is a zombie) and reaps it. Returns its exit status once reaped.
    fn poll(&mut self) -> Option<std::process::ExitStatus> {
        if self.reaped {
            return None;
        }
        if !self.tracker.sample() {
            self.reaped = true;
            return self.child.wait().ok();
        }
        None
    }

    fn stop(&mut self) {
        if self.reaped {
            return;
        }
        self.tracker.sample();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.reaped = true;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
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

fn metrics_addr() -> String {
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

    let spawn_consumers = |consumers: &mut Vec<Proc>| -> Result<()> {
        for i in 0..spec.consumers {
            let name = format!("{}-consumer-{i}", spec.stream);
            let addr = metrics_addr();
            let mut cmd = Command::new(&paths.consumer);
            aws_env(&mut cmd, stack);
            cmd.args(["--stream", &spec.stream, "--application-name", &spec.stream])
                .args(["--worker-id", &name, "--redis-url", &url])
                .args(["--metrics-addr", &addr, "--log", "info"]);
            consumers.push(Proc::spawn(&name, cmd, paths, addr)?);
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
    let mut cmd = Command::new(&paths.producer);
    aws_env(&mut cmd, stack);
    cmd.args(["--stream", &spec.stream, "--source", "synthetic"])
        .args(["--synthetic-rate", "0"])
        .args(["--synthetic-count", &spec.trades.to_string()])
        .args(["--metrics-addr", &addr, "--log", "info"]);
    if spec.aggregate {
        cmd.arg("--aggregate");
    } else {
        // Strict order allows one record per symbol per PutRecords call, which with
        // 14 symbols and no aggregation measures round trips, not the pipeline. The
        // counts (what the bench checks) do not depend on order.
        cmd.arg("--relaxed-order");
    }
    let mut producer = Proc::spawn(&format!("{}-producer", spec.stream), cmd, paths, addr)?;

    // Generous: the emulator bounds the rate (on a loaded machine its write-ahead
    // log's fsyncs can be slow); the smoke run is tiny.
    let limit = Duration::from_secs(300 + spec.trades / 200);
    let mut last_scrape: Vec<prom::Sample> = Vec::new();
    if spec.prefill {
        // Like the baseline: the consumers start on a stream already written.
        while !producer.reaped {
            if producer_started.elapsed() > limit {
                return Err(E2eError::Timeout(format!("{}: producer", spec.label)));
            }
            if let Ok(text) = prom::scrape(&producer.metrics) {
                last_scrape = prom::parse(&text);
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
            if let Ok(text) = prom::scrape(&producer.metrics) {
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
                    format!("{} {status}", c.name),
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
        let text = prom::scrape(&c.metrics).map_err(setup)?;
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
    let out = std::fs::File::create(&out_path).map_err(setup)?;
    let (_, err) = log_file(paths, "baseline")?;
    let mut cmd = Command::new(&paths.python);
    aws_env(&mut cmd, stack);
    cmd.arg(&paths.baseline_script)
        .args(["--endpoint", &stack.kinesis.endpoint(), "--stream", stream])
        .args(["--redis-url", &url, "--records", &records.to_string()])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| setup(format!("python: {e}")))?;
    let mut tracker = Tracker::new(child.id());
    let limit = Duration::from_secs(120 + records / 200);
    while tracker.sample() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(E2eError::Timeout("the Python baseline".into()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().map_err(setup)?;
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
