//! The orchestration: real servers on free loopback ports (testkit), the exchange in
//! this process (so the run can pause it and knows exactly what it emitted), the
//! producer and consumer binaries as child processes, a cut-able proxy between the
//! producer and Kinesis, and the fault schedule played against them. At the end it
//! waits for every shard to be drained into Redis and compares Redis with the tape.

use crate::api_chaos::ApiChaos;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tradeflow_shared::testkit::api_faults::Stats;

use aws_sdk_kinesis::Client as Kinesis;
use tradeflow_exchange::{Exchange, ExchangeConfig, Tape};
use tradeflow_shared::testkit::{self, Service};

use crate::gaps::{self, Gap, WorkerDown};
use crate::plan::{self, Fault, PlanConfig, Step, KINDS};
use crate::procs::{metrics_addr, scrape, Proc};
use crate::proxy::CutProxy;
use crate::redis_side::RedisUnderTest;
use crate::verify::{self, Verdict};

const STREAM: &str = "chaos";
const APP: &str = "tradeflow-chaos";
/// The consumers' failover time (short, as in the fleet tests).
const FAILOVER: Duration = Duration::from_secs(2);

/// Consumer counters worth showing next to a difference (current processes only).
const CONSUMER_COUNTERS: [&str; 4] = [
    "tradeflow_consumer_late_trades_dropped_total",
    "tradeflow_consumer_poison_records_total",
    "tradeflow_consumer_duplicates_skipped_total",
    "tradeflow_consumer_redis_rewinds_total",
];

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0} is missing: build the workspace first (cargo build --workspace)")]
    MissingBinary(PathBuf),
    #[error("{what}: {reason}")]
    Setup { what: &'static str, reason: String },
}

fn setup(what: &'static str, e: impl std::fmt::Display) -> RunError {
    RunError::Setup {
        what,
        reason: e.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub trades: usize,
    pub seed: u64,
    pub symbols: usize,
    pub shards: i32,
    pub consumers: usize,
    /// Trades per second the exchange emits.
    pub rate: f64,
    /// About one fault every this long while the tape plays.
    pub fault_every: Duration,
    /// Where the producer and consumer binaries are.
    pub bin_dir: PathBuf,
    pub keep_logs: bool,
    /// Give up waiting for Redis to reach the truth after this long without progress.
    pub stall_timeout: Duration,
    /// Fault kinds left out (indexes into [`KINDS`]).
    pub exclude: Vec<usize>,
    /// Count into a Redis Cluster (3 primaries, a replica each) instead of one Redis;
    /// the Redis fault is then a slot migration followed by a primary failover.
    pub redis_cluster: bool,
    /// Put the operation-level fault proxy in front of Kinesis and DynamoDB and fault
    /// every operation in windows while the tape plays (`api_chaos`).
    pub api_faults: bool,
    /// Instead of the windows: one operation, one fault kind, every call, from 20% of
    /// the tape for its window (`api_matrix`). Needs one Redis (not a cluster).
    pub api_fault_only: Option<crate::api_matrix::Single>,
}

/// What the run did and found.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub emitted: u64,
    /// The producer's `tradeflow_producer_trades_written_total` (duplicates it wrote
    /// again after a lost answer count twice here).
    pub written: u64,
    pub verdict: Verdict,
    /// Distinct trades found in the stream after the run (read back from every shard).
    pub in_stream: Option<u64>,
    /// Trades of the tape not in the stream at all (the producer's losses).
    pub not_in_stream: Option<u64>,
    /// Records stored in a closed shard after its ending sequence number.
    pub past_end: Option<u64>,
    /// Summed over the consumers' current processes: (metric, value) of the counters
    /// that explain a difference (late trades dropped, poison records, duplicates).
    pub consumer_counters: Vec<(&'static str, u64)>,
    /// Per fault kind: injected (and skipped, e.g. a split the emulator refused).
    pub faults: [(u64, u64); KINDS.len()],
    pub longest_gap: Option<Gap>,
    /// The producer's own counts of gaps in trade ids and of trades it saw twice.
    pub producer_missing: u64,
    pub producer_duplicates: u64,
    pub exchange_lagged_closes: u64,
    /// Bytes of torn emulator log entries cut before restarts (testkit::cut_torn_wal).
    pub torn_wal_bytes: u64,
    /// Redis faults by what they were (restart; failover or slot migration on a cluster).
    pub redis_faults: BTreeMap<&'static str, u64>,
    /// Counted into a Redis Cluster.
    pub redis_cluster: bool,
    /// With `api_faults`: calls and faults by operation.
    pub api_faults: Option<Stats>,
    /// With `api_fault_only`: when the fault was, and how the run came back from it.
    pub api_matrix: Option<crate::api_matrix::Outcome>,
    /// Faults of the Kinesis emulator itself (came back DOWN, stream unreadable): when
    /// not empty, trades missing from Redis are not the product's doing.
    pub emulator_faults: Vec<String>,
    pub elapsed: Duration,
    pub drain: Duration,
    pub log_dir: Option<PathBuf>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = &self.verdict;
        writeln!(
            f,
            "chaos run, seed {}{}",
            self.seed,
            if self.redis_cluster {
                ", Redis Cluster (3 primaries, 1 replica each)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  {:<42} {:>12}",
            "trades emitted (ground truth: the tape)", self.emitted
        )?;
        writeln!(
            f,
            "  {:<42} {:>12}",
            "trades written by the producer", self.written
        )?;
        let opt = |x: Option<u64>| x.map_or("n/a".to_string(), |n| n.to_string());
        writeln!(
            f,
            "  {:<42} {:>12}",
            "distinct trades found in the stream",
            opt(self.in_stream)
        )?;
        writeln!(
            f,
            "  {:<42} {:>12}",
            "  of the tape, missing from the stream",
            opt(self.not_in_stream)
        )?;
        writeln!(
            f,
            "  {:<42} {:>12}",
            "  records past a closed shard's end",
            opt(self.past_end)
        )?;
        writeln!(f, "  {:<42} {:>12}", "trades counted in Redis", v.counted)?;
        writeln!(f, "  {:<42} {:>12}", "lost", v.lost)?;
        writeln!(f, "  {:<42} {:>12}", "double-counted", v.doubled)?;
        writeln!(
            f,
            "  {:<42} {:>12}",
            "symbols with inexact count/base/quote",
            v.mismatches.len()
        )?;
        writeln!(
            f,
            "  {:<42} {:>12}",
            "producer: ids missing (gaps)", self.producer_missing
        )?;
        writeln!(
            f,
            "  {:<42} {:>12}",
            "producer: duplicates dropped", self.producer_duplicates
        )?;
        writeln!(
            f,
            "  {:<42} {:>12}",
            "exchange: too-slow closes", self.exchange_lagged_closes
        )?;
        for (metric, n) in &self.consumer_counters {
            writeln!(f, "  {metric:<56} {n:>8}")?;
        }
        if self.torn_wal_bytes > 0 {
            writeln!(
                f,
                "  {:<42} {:>12}",
                "emulator: torn log bytes cut at restarts", self.torn_wal_bytes
            )?;
        }
        for (what, n) in &self.redis_faults {
            writeln!(f, "  {:<42} {:>12}", format!("redis: {what}"), n)?;
        }
        if let Some(stats) = &self.api_faults {
            writeln!(f, "{}", crate::api_chaos::table(stats))?;
        }
        if let Some(o) = &self.api_matrix {
            writeln!(f, "{o}")?;
        }
        for e in &self.emulator_faults {
            writeln!(f, "  EMULATOR FAULT {e}")?;
        }
        writeln!(f, "  faults injected (skipped):")?;
        for (name, (done, skipped)) in KINDS.iter().zip(self.faults) {
            writeln!(f, "    {name:<40} {done:>8} ({skipped})")?;
        }
        match &self.longest_gap {
            Some(g) => writeln!(
                f,
                "  {:<42} {:>9} ms ({})",
                "longest time a shard had no reader", g.ms, g.shard
            )?,
            None => writeln!(f, "  longest time a shard had no reader: n/a")?,
        }
        writeln!(
            f,
            "  wall time {:.1} s (drain after the tape ended {:.1} s)",
            self.elapsed.as_secs_f64(),
            self.drain.as_secs_f64()
        )?;
        for m in v.mismatches.iter().take(10) {
            writeln!(f, "  MISMATCH {m:?}")?;
        }
        if let Some(d) = &self.log_dir {
            writeln!(f, "  logs kept in {}", d.display())?;
        }
        write!(
            f,
            "  result: {}",
            if v.exact() { "EXACT" } else { "FAILED" }
        )
    }
}

struct Servers {
    redis: RedisUnderTest,
    dynamo: Service,
    kinesis: Service,
}

fn env(s: &Servers, kinesis_endpoint: &str, dynamo_endpoint: &str) -> Vec<(String, String)> {
    vec![
        ("TRADEFLOW_KINESIS_ENDPOINT".into(), kinesis_endpoint.into()),
        ("TRADEFLOW_DYNAMODB_ENDPOINT".into(), dynamo_endpoint.into()),
        ("TRADEFLOW_REDIS_URL".into(), s.redis.url()),
        // Placeholders the emulators accept; never real credentials.
        ("AWS_ACCESS_KEY_ID".into(), "local".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "local".into()),
        ("AWS_REGION".into(), "eu-west-1".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("TRADEFLOW_LOG".into(), "info".into()),
    ]
}

fn binary(cfg: &RunConfig, name: &str) -> Result<PathBuf, RunError> {
    let p = cfg.bin_dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(RunError::MissingBinary(p))
    }
}

async fn kinesis_client(endpoint: String) -> Kinesis {
    let conf = aws_sdk_kinesis::config::Builder::from(
        &aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await,
    )
    .endpoint_url(endpoint)
    .build();
    Kinesis::from_conf(conf)
}

async fn create_stream(k: &Kinesis, shards: i32) -> Result<(), RunError> {
    tradeflow_shared::testkit::create_active_stream(k, STREAM, shards)
        .await
        .map_err(|e| setup("CreateStream", e))
}

fn now_ms() -> u64 {
    tradeflow_shared::telemetry::now_ms()
}

/// Runs the whole chaos run; `progress` gets one line per step (seed, faults, phases).
pub async fn run(cfg: RunConfig, progress: impl Fn(&str)) -> Result<Report, RunError> {
    let started = Instant::now();
    testkit::local_aws_env();
    let producer_bin = binary(&cfg, "tradeflow-producer")?;
    let consumer_bin = binary(&cfg, "tradeflow-consumer")?;
    progress(&format!(
        "seed {} (replay with --seed {}), {} trades over {} symbols at {}/s, {} shards, {} consumers",
        cfg.seed, cfg.seed, cfg.trades, cfg.symbols, cfg.rate, cfg.shards, cfg.consumers
    ));

    let symbols = crate::truth::symbols(cfg.symbols);
    let tape = crate::truth::tape(symbols.clone(), cfg.seed, cfg.trades);
    let truth = crate::truth::truth(&tape);

    let dir = tempfile::Builder::new()
        .prefix("tradeflow-chaos-")
        .tempdir()
        .map_err(|e| setup("log dir", e))?;
    // ferrokinesis's write-ahead log takes the whole stream's state at every reshard
    // (records as JSON number arrays): gigabytes within a minute on long runs. It is
    // only needed to survive its own restarts, so without that fault it runs in memory.
    let restarts_kinesis = !cfg
        .exclude
        .iter()
        .any(|&k| crate::plan::KIND_FLAGS.get(k) == Some(&"kinesis"));
    // No periodic snapshots: they re-serialise every stored record and stall PutRecords
    // for seconds once a few hundred MB are held (restarts replay the WAL).
    let kinesis_args = ["--create-stream-ms", "0", "--snapshot-interval-secs", "0"];
    let mut servers = tokio::task::block_in_place(|| Servers {
        redis: RedisUnderTest::start(cfg.redis_cluster),
        dynamo: testkit::dynalite(),
        kinesis: if restarts_kinesis {
            testkit::ferrokinesis(&kinesis_args)
        } else {
            testkit::ferrokinesis_volatile(&kinesis_args)
        },
    });
    let kinesis = kinesis_client(servers.kinesis.endpoint()).await;
    create_stream(&kinesis, cfg.shards).await?;
    // With API faults every AWS call goes through the fault proxies; the producer's
    // link cut sits in front of its Kinesis proxy.
    let api = match cfg.api_faults || cfg.api_fault_only.is_some() {
        true => Some(
            ApiChaos::start(
                &servers.kinesis.endpoint(),
                &servers.dynamo.endpoint(),
                cfg.seed,
            )
            .await
            .map_err(|e| setup("api fault proxies", e))?,
        ),
        false => None,
    };
    let kinesis_port = api
        .as_ref()
        .map_or(servers.kinesis.port, |a| a.kinesis.port);
    let (kinesis_url, dynamo_url) = match &api {
        Some(a) => (a.kinesis.endpoint(), a.dynamo.endpoint()),
        None => (servers.kinesis.endpoint(), servers.dynamo.endpoint()),
    };
    let proxy = CutProxy::start(([127, 0, 0, 1], kinesis_port).into())
        .await
        .map_err(|e| setup("proxy", e))?;

    let exchange = Exchange::start(
        ExchangeConfig {
            rate: Some(cfg.rate),
            // A producer held up by a Kinesis cut must not be dropped as too slow.
            lag_capacity: 1 << 21,
            ..ExchangeConfig::default()
        },
        Tape::Finite(tape.clone()),
    );
    let server = exchange
        .bind(([127, 0, 0, 1], 0).into())
        .await
        .map_err(|e| setup("exchange", e))?;

    let names: Vec<String> = symbols.iter().map(|s| s.as_str().to_string()).collect();
    let mut consumers: Vec<Proc> = (0..cfg.consumers)
        .map(|i| {
            let args = [
                "--stream",
                STREAM,
                "--application-name",
                APP,
                "--worker-id",
                &format!("c{i}"),
                "--failover-time",
                "2s",
                "--take-interval",
                "1s",
                "--idle-interval",
                "100ms",
                "--checkpoint-interval",
                "500ms",
                "--shard-sync-interval",
                "2s",
                "--metrics-addr",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            Proc::new(
                &format!("c{i}"),
                &consumer_bin,
                args,
                env(&servers, &kinesis_url, &dynamo_url),
                dir.path(),
            )
        })
        .collect();
    for c in &mut consumers {
        c.start().map_err(|e| setup("consumer", e))?;
    }
    let producer_args = vec![
        "--stream".into(),
        STREAM.into(),
        "--source".into(),
        "binance".into(),
        "--binance-url".into(),
        format!("ws://{}", server.addr),
        "--symbols".into(),
        names.join(","),
        "--aggregate".into(),
        "--linger".into(),
        "50ms".into(),
        "--retry-max".into(),
        "1s".into(),
        "--shard-refresh".into(),
        "2s".into(),
        "--metrics-addr".into(),
        "127.0.0.1:0".into(),
        "--log-format".into(),
        "json".into(),
    ];
    let mut producer = Proc::new(
        "producer",
        &producer_bin,
        producer_args,
        env(&servers, &proxy.endpoint(), &dynamo_url),
        dir.path(),
    );
    producer.start().map_err(|e| setup("producer", e))?;
    let producer_metrics = wait_some("producer /metrics", Duration::from_secs(60), || async {
        metrics_addr(&producer)
    })
    .await?;

    // The tape starts with the producer's first subscription.
    tokio::time::timeout(Duration::from_secs(60), exchange.wait_emitted(1))
        .await
        .map_err(|_| setup("exchange", "the producer never subscribed"))?;
    let t0 = Instant::now();
    let play = Duration::from_secs_f64(cfg.trades as f64 / cfg.rate);
    let steps = plan::plan(&PlanConfig {
        seed: cfg.seed,
        start: Duration::from_secs(3).min(play / 4),
        end: play,
        consumers: cfg.consumers,
        failover: FAILOVER,
        every: cfg.fault_every,
        exclude: cfg.exclude.clone(),
    });
    progress(&format!(
        "tape playing for about {:.0} s; {} faults planned",
        play.as_secs_f64(),
        steps.len()
    ));

    let mut matrix = cfg.api_fault_only.clone().map(|single| {
        crate::api_matrix::Monitor::new(
            single,
            t0,
            servers.redis.url(),
            names.clone(),
            producer_metrics.clone(),
            consumers.iter().map(|c| c.log.clone()).collect(),
        )
    });
    let mut ctx = Ctx {
        servers: &mut servers,
        consumers: &mut consumers,
        proxy: &proxy,
        exchange: &exchange,
        kinesis: &kinesis,
        producer_metrics: &producer_metrics,
        downs: Vec::new(),
        faults: [(0, 0); KINDS.len()],
        torn_wal_bytes: 0,
        redis_faults: BTreeMap::new(),
        emulator_faults: Vec::new(),
    };
    let process_faults = async {
        for step in &steps {
            let due = t0 + step.at;
            tokio::time::sleep_until(due.into()).await;
            let ok = ctx.inject(step).await;
            progress(&format!(
                "t+{:>6.1}s {}{}",
                t0.elapsed().as_secs_f64(),
                step.fault,
                if ok { "" } else { " (skipped)" }
            ));
        }
    };
    let api_faults = async {
        if let (Some(a), Some(m)) = (&api, &mut matrix) {
            m.play(a, play, &exchange, cfg.trades as u64, &progress)
                .await;
        } else if let Some(a) = &api {
            a.play(play, |line| {
                progress(&format!("t+{:>6.1}s {line}", t0.elapsed().as_secs_f64()))
            })
            .await;
        }
    };
    tokio::join!(process_faults, api_faults);
    let Ctx {
        downs,
        faults,
        torn_wal_bytes,
        redis_faults,
        mut emulator_faults,
        ..
    } = ctx;

    tokio::time::timeout(play + Duration::from_secs(600), exchange.wait_finished())
        .await
        .map_err(|_| setup("exchange", "the tape did not finish"))?;
    let tape_done = Instant::now();
    progress(&format!(
        "tape emitted in full at t+{:.1}s; draining",
        t0.elapsed().as_secs_f64()
    ));

    // Drained: Redis equals the truth, or nothing moved for `stall_timeout`.
    let mut last = (u64::MAX, Instant::now());
    let mut exact_at = None;
    let verdict = loop {
        let v = verify::verify(&truth, &servers.redis.read(&truth).await);
        if let Some(m) = &mut matrix {
            m.sample(exchange.emitted_count()).await;
        }
        if v.exact() {
            exact_at = Some(t0.elapsed().as_secs_f64());
            break v;
        }
        if v.counted != last.0 {
            last = (v.counted, Instant::now());
        } else if last.1.elapsed() > cfg.stall_timeout {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let drain = tape_done.elapsed();
    let written = scrape(&producer_metrics, "tradeflow_producer_trades_written_total")
        .await
        .unwrap_or(0.0) as u64;
    let producer_missing = scrape(&producer_metrics, "tradeflow_producer_missing_trades_total")
        .await
        .unwrap_or(0.0) as u64;
    let producer_duplicates = scrape(
        &producer_metrics,
        "tradeflow_producer_duplicate_trades_total",
    )
    .await
    .unwrap_or(0.0) as u64;
    let end_ms = now_ms();
    let mut consumer_counters = Vec::new();
    for metric in CONSUMER_COUNTERS {
        let mut sum = 0;
        for c in &consumers {
            if let Some(addr) = metrics_addr(c) {
                sum += scrape(&addr, metric).await.unwrap_or(0.0) as u64;
            }
        }
        consumer_counters.push((metric, sum));
    }
    let stream = crate::audit::stream_counts(&kinesis, STREAM).await;
    if let Err(why) = &stream {
        emulator_faults.push(format!("the stream could not be read back: {why}"));
    }
    if restarts_kinesis {
        let up = tokio::task::block_in_place(|| {
            testkit::wait_ferrokinesis_up(&servers.kinesis, Duration::ZERO)
        });
        if let Err(why) = up {
            emulator_faults.push(format!("ferrokinesis DOWN at the end: {why}"));
        }
    }
    let stream = stream.ok();
    let past_end = stream.as_ref().map(|a| a.past_end);
    let in_stream = stream.as_ref().map(|a| a.counts.values().sum::<u64>());
    let not_in_stream = stream.as_ref().map(|a| {
        let m = &a.counts;
        truth
            .iter()
            .map(|(s, t)| t.count.saturating_sub(m.get(s).copied().unwrap_or(0)))
            .sum::<u64>()
    });

    tokio::task::block_in_place(|| {
        producer.terminate(Duration::from_secs(15));
        for c in &mut consumers {
            c.terminate(Duration::from_secs(15));
        }
    });
    let events: Vec<gaps::ReaderEvent> = consumers
        .iter()
        .flat_map(|c| gaps::parse_log(&c.name, &c.output()))
        .collect();
    let longest_gap = gaps::reader_gaps(&events, &downs, end_ms)
        .into_iter()
        .max_by_key(|g| g.ms);
    let stats = exchange.stats();
    server.stop().await;
    let keep = cfg.keep_logs || !verdict.exact();
    let log_dir = if keep {
        // Logs of servers live in their own temp folders, removed on drop; copy them.
        let mut logs = servers.redis.logs();
        logs.push(("dynalite".into(), servers.dynamo.log()));
        logs.push(("ferrokinesis".into(), servers.kinesis.log()));
        for (name, log) in logs {
            let _ = std::fs::write(dir.path().join(format!("{name}.log")), log);
        }
        Some(dir.keep())
    } else {
        None
    };
    Ok(Report {
        seed: cfg.seed,
        emitted: stats.emitted,
        written,
        verdict,
        in_stream,
        not_in_stream,
        past_end,
        consumer_counters,
        faults,
        longest_gap,
        producer_missing,
        producer_duplicates,
        exchange_lagged_closes: stats.lagged_closes,
        torn_wal_bytes,
        redis_faults,
        emulator_faults,
        redis_cluster: cfg.redis_cluster,
        api_faults: api.as_ref().map(ApiChaos::stats),
        api_matrix: matrix.map(|m| m.outcome(exact_at)),
        elapsed: started.elapsed(),
        drain,
        log_dir,
    })
}

async fn wait_some<T, F, Fut>(what: &'static str, limit: Duration, mut f: F) -> Result<T, RunError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(setup(what, format!("not ready within {limit:?}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Ctx<'a> {
    servers: &'a mut Servers,
    consumers: &'a mut Vec<Proc>,
    proxy: &'a CutProxy,
    exchange: &'a Exchange,
    kinesis: &'a Kinesis,
    producer_metrics: &'a str,
    downs: Vec<WorkerDown>,
    faults: [(u64, u64); KINDS.len()],
    /// Bytes of torn log entries cut before emulator restarts.
    torn_wal_bytes: u64,
    /// Redis faults by what they were (restart; failover or slot migration on a cluster).
    redis_faults: BTreeMap<&'static str, u64>,
    /// What went wrong with the Kinesis emulator itself (not the product).
    emulator_faults: Vec<String>,
}

impl Ctx<'_> {
    /// Injects one fault and waits for its end (restarts done, pause over); false if
    /// it had to be skipped.
    async fn inject(&mut self, step: &Step) -> bool {
        let ok = match step.fault {
            Fault::KillConsumer { consumer, down } => {
                let c = &mut self.consumers[consumer];
                self.downs.push(WorkerDown {
                    t_ms: now_ms(),
                    worker: c.name.clone(),
                    until_ms: None,
                });
                tokio::task::block_in_place(|| c.kill());
                tokio::time::sleep(down).await;
                c.start().is_ok()
            }
            Fault::TermConsumer { consumer, down } => {
                let c = &mut self.consumers[consumer];
                self.downs.push(WorkerDown {
                    t_ms: now_ms(),
                    worker: c.name.clone(),
                    until_ms: None,
                });
                tokio::task::block_in_place(|| c.terminate(Duration::from_secs(20)));
                tokio::time::sleep(down).await;
                c.start().is_ok()
            }
            Fault::PauseConsumer { consumer, paused } => {
                let c = &self.consumers[consumer];
                self.downs.push(WorkerDown {
                    t_ms: now_ms(),
                    worker: c.name.clone(),
                    until_ms: None,
                });
                c.signal("-STOP");
                tokio::time::sleep(paused).await;
                c.signal("-CONT");
                if let Some(d) = self.downs.last_mut() {
                    d.until_ms = Some(now_ms());
                }
                true
            }
            Fault::SplitShard { pick } => split(self.kinesis, pick).await,
            Fault::MergeShards { pick } => merge(self.kinesis, pick).await,
            Fault::RestartRedis => {
                let pick = self.faults[step.fault.kind()].0 as usize;
                let what = tokio::task::block_in_place(|| self.servers.redis.fault(pick));
                *self.redis_faults.entry(what).or_default() += 1;
                true
            }
            Fault::RestartDynamo => {
                tokio::task::block_in_place(|| self.servers.dynamo.restart());
                true
            }
            Fault::RestartKinesis => {
                // kill -9 (its write-ahead log survives it); a SIGTERM waits 10 s for
                // idle keep-alive connections to drain. The emulator's own recovery bug
                // (a torn last log entry breaks the start after next: testkit::cut_torn_wal)
                // is repaired first, and its health is checked: an emulator that comes
                // back DOWN is reported as such, never as the product losing trades.
                let fault = tokio::task::block_in_place(|| {
                    let k = &mut self.servers.kinesis;
                    k.kill();
                    let cut = testkit::cut_torn_wal(&testkit::ferrokinesis_wal(k));
                    k.start();
                    let up = testkit::wait_ferrokinesis_up(k, Duration::from_secs(120));
                    (cut, up)
                });
                match fault {
                    (Ok(n), Ok(())) => {
                        self.torn_wal_bytes += n;
                        true
                    }
                    (cut, up) => {
                        self.emulator_faults.push(format!(
                            "ferrokinesis restart: log repair {cut:?}, health {up:?}"
                        ));
                        true
                    }
                }
            }
            Fault::DropWebsocket => self.drop_websocket().await,
            Fault::CutKinesis { down } => {
                self.proxy.cut();
                tokio::time::sleep(down).await;
                self.proxy.restore();
                true
            }
        };
        let slot = &mut self.faults[step.fault.kind()];
        if ok {
            slot.0 += 1;
        } else {
            slot.1 += 1;
        }
        ok
    }

    /// Binance does not replay what a client missed while disconnected, and neither does
    /// the exchange; so the tape is held while the producer is away: pause, wait until
    /// the producer has received everything emitted, close its connections, wait for it
    /// to reconnect, resume. Every trade of the tape is then sent on a connection the
    /// producer had open, and the ground truth stays the whole tape.
    async fn drop_websocket(&mut self) -> bool {
        self.exchange.pause();
        let emitted = self.exchange.emitted_count() as f64;
        let caught_up = wait_some("producer catch-up", Duration::from_secs(30), || async {
            let got = scrape(
                self.producer_metrics,
                "tradeflow_producer_trades_received_total",
            )
            .await?;
            (got >= emitted).then_some(())
        })
        .await
        .is_ok();
        let before = self.exchange.stats();
        if caught_up {
            self.exchange.inject(tradeflow_exchange::Fault::CloseAll);
            let _ = wait_some("producer reconnect", Duration::from_secs(30), || async {
                let s = self.exchange.stats();
                (s.connections_total >= before.connections_total + before.connections_open
                    && s.connections_open >= before.connections_open)
                    .then_some(())
            })
            .await;
        }
        self.exchange.resume();
        caught_up
    }
}

async fn open_shards(k: &Kinesis) -> Vec<(String, u128, u128)> {
    let Ok(out) = k.list_shards().stream_name(STREAM).send().await else {
        return Vec::new();
    };
    let mut v: Vec<(String, u128, u128)> = out
        .shards()
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .is_some_and(|r| r.ending_sequence_number().is_none())
        })
        .filter_map(|s| {
            let r = s.hash_key_range()?;
            Some((
                s.shard_id().to_string(),
                r.starting_hash_key().parse().ok()?,
                r.ending_hash_key().parse().ok()?,
            ))
        })
        .collect();
    v.sort_by_key(|s| s.1);
    v
}

/// A reshard is refused while the stream is still UPDATING from the last one (faults
/// can come back to back, e.g. after a long Redis failover): wait for ACTIVE and try a
/// few times before calling it skipped.
async fn reshard_when_active<F, Fut>(k: &Kinesis, mut attempt: F) -> bool
where
    F: FnMut(Vec<(String, u128, u128)>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..5 {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let active = k
                .describe_stream_summary()
                .stream_name(STREAM)
                .send()
                .await
                .ok()
                .and_then(|o| o.stream_description_summary().cloned())
                .is_some_and(|d| d.stream_status().as_str() == "ACTIVE");
            if active {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if attempt(open_shards(k).await).await {
            return true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    false
}

async fn split(k: &Kinesis, pick: u64) -> bool {
    reshard_when_active(k, |open| async move {
        if open.is_empty() {
            return false;
        }
        let (id, lo, hi) = &open[(pick % open.len() as u64) as usize];
        let mid = lo + (hi - lo) / 2 + 1;
        k.split_shard()
            .stream_name(STREAM)
            .shard_to_split(id)
            .new_starting_hash_key(mid.to_string())
            .send()
            .await
            .is_ok()
    })
    .await
}

async fn merge(k: &Kinesis, pick: u64) -> bool {
    reshard_when_active(k, |open| async move {
        let pairs: Vec<(&String, &String)> = open
            .windows(2)
            .filter(|w| w[0].2 + 1 == w[1].1)
            .map(|w| (&w[0].0, &w[1].0))
            .collect();
        if pairs.is_empty() {
            return false;
        }
        let (a, b) = pairs[(pick % pairs.len() as u64) as usize];
        k.merge_shards()
            .stream_name(STREAM)
            .shard_to_merge(a)
            .adjacent_shard_to_merge(b)
            .send()
            .await
            .is_ok()
    })
    .await
}

/// The folder the running binary is in (where cargo also puts the other binaries).
pub fn default_bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .map(|d| {
            if d.ends_with("deps") {
                d.parent().map(|p| p.to_path_buf()).unwrap_or(d)
            } else {
                d
            }
        })
        .unwrap_or_default()
}
