//! The orchestration: real servers on free loopback ports (testkit), the exchange in
//! this process (so the run can pause it and knows exactly what it emitted), the
//! producer and consumer binaries as child processes, a cut-able proxy between the
//! producer and Kinesis, and the fault schedule played against them. At the end it
//! waits for every shard to be drained into Redis and compares Redis with the tape.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client as Kinesis;
use tradeflow_exchange::{Exchange, ExchangeConfig, Tape};
use tradeflow_shared::testkit::{self, Process, Service};

use crate::api_chaos::ApiChaos;
use crate::gaps;
use crate::inject::Ctx;
use crate::plan::{self, PlanConfig, KINDS};
use crate::procs::{consumer_counters, metrics_addr, producer_counter};
use crate::proxy::CutProxy;
use crate::redis_side::RedisUnderTest;
use crate::verify;

pub use crate::report::{InStream, Report};

pub(crate) const STREAM: &str = "chaos";
pub(crate) const APP: &str = "tradeflow-chaos";
/// The consumers' failover time (short, as in the fleet tests).
const FAILOVER: Duration = Duration::from_secs(2);

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

pub(crate) struct Servers {
    pub(crate) redis: RedisUnderTest,
    pub(crate) dynamo: Service,
    pub(crate) kinesis: Service,
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
    testkit::create_active_stream(k, STREAM, shards)
        .await
        .map_err(|e| setup("CreateStream", e))
}

pub(crate) fn now_ms() -> u64 {
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
    let redis_url = servers.redis.url();
    let consumer_env = testkit::binary_env(&kinesis_url, &dynamo_url, &redis_url);
    let mut consumers: Vec<Process> = (0..cfg.consumers)
        .map(|i| crate::launch::consumer(i, &consumer_bin, &consumer_env, dir.path()))
        .collect();
    for c in &mut consumers {
        c.start().map_err(|e| setup("consumer", e))?;
    }
    let producer_env = testkit::binary_env(&proxy.endpoint(), &dynamo_url, &redis_url);
    let addr = server.addr.to_string();
    let mut producer =
        crate::launch::producer(&producer_bin, &addr, &names, &producer_env, dir.path());
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
    let written =
        producer_counter(&producer_metrics, "tradeflow_producer_trades_written_total").await;
    let producer_missing =
        producer_counter(&producer_metrics, "tradeflow_producer_missing_trades_total").await;
    let producer_duplicates = producer_counter(
        &producer_metrics,
        "tradeflow_producer_duplicate_trades_total",
    )
    .await;
    let end_ms = now_ms();
    let consumer_counters = consumer_counters(&consumers).await;
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
    let stream = stream.ok().map(|a| InStream {
        distinct: a.counts.values().sum(),
        missing: truth
            .iter()
            .map(|(s, t)| {
                t.count
                    .saturating_sub(a.counts.get(s).copied().unwrap_or(0))
            })
            .sum(),
        past_end: a.past_end,
    });

    tokio::task::block_in_place(|| {
        producer.stop(Duration::from_secs(15));
        for c in &mut consumers {
            c.stop(Duration::from_secs(15));
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
        stream,
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

pub(crate) async fn wait_some<T, F, Fut>(
    what: &'static str,
    limit: Duration,
    mut f: F,
) -> Result<T, RunError>
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
