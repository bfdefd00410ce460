//! `tradeflow-chaos`: the chaos run with the script's defaults; prints the seed first
//! (replay with `--seed`) and the result table last; exits 1 unless Redis equals the
//! tape exactly.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tradeflow_chaos::plan::KIND_FLAGS;
use tradeflow_chaos::run::{default_bin_dir, run, RunConfig};

#[derive(Parser)]
#[command(about = "Chaos run: exchange → producer → Kinesis → consumers → Redis under faults")]
struct Cli {
    /// Trades on the exchange's tape (ignored with --minutes).
    #[arg(long, default_value_t = 1_000_000)]
    trades: usize,
    /// Soak mode: a tape long enough to play for this many minutes at --rate.
    #[arg(long)]
    minutes: Option<f64>,
    /// The seed of the tape and of the fault schedule (default: from the clock, printed).
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value_t = 8)]
    shards: i32,
    #[arg(long, default_value_t = 3)]
    consumers: usize,
    #[arg(long, default_value_t = 40)]
    symbols: usize,
    /// Trades per second the exchange emits.
    #[arg(long, default_value_t = 5_000.0)]
    rate: f64,
    /// About one fault every this long.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    fault_every: Duration,
    /// Give up draining after this long without progress in Redis.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    stall_timeout: Duration,
    /// Where tradeflow-producer and tradeflow-consumer are (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Fault kinds to leave out, to narrow a failure down: kill, term, pause, split,
    /// merge, redis, dynamodb, kinesis, websocket, cut.
    #[arg(long, value_delimiter = ',')]
    without: Vec<String>,
    /// Keep the processes' logs (always kept when the run fails).
    #[arg(long)]
    keep_logs: bool,
    /// Count into a Redis Cluster (3 primaries with a replica each, on loopback) instead
    /// of one Redis; the Redis fault becomes a slot migration, then a primary failover.
    #[arg(long)]
    redis_cluster: bool,
    /// Fault single AWS operations too: every Kinesis and DynamoDB call goes through
    /// the test kit's fault proxy, which errs, throttles, resets, cuts and delays calls
    /// in windows while the tape plays; the report lists the faults by operation.
    #[arg(long)]
    api_faults: bool,
    /// Instead of --api-faults' windows, one fault on every call of one operation from
    /// 20% of the tape for SECONDS (default 30), then none: OP:KIND[:SECONDS], OP e.g.
    /// PutRecords, ListShards, GetRecords, Scan, UpdateItem (or Kinesis.Op, DynamoDB.Op),
    /// KIND 500, throttle, reset_after, reset_before, expired_iterator, truncate, garbage,
    /// delay (30 s) or delay=12s. The report says when Redis caught up after it ended.
    #[arg(long, value_name = "OP:KIND[:SECONDS]")]
    api_fault_only: Option<tradeflow_chaos::api_matrix::Single>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(cli.rate > 0.0, "--rate must be positive");
    anyhow::ensure!(cli.consumers > 0, "--consumers must be at least 1");
    anyhow::ensure!(
        cli.shards > 1,
        "--shards must be at least 2 (merges need two)"
    );
    anyhow::ensure!(
        cli.api_fault_only.is_none() || !cli.redis_cluster,
        "--api-fault-only samples one Redis: not with --redis-cluster"
    );
    let trades = match cli.minutes {
        Some(m) => (m * 60.0 * cli.rate) as usize,
        None => cli.trades,
    };
    let mut exclude = Vec::new();
    for w in &cli.without {
        let Some(i) = KIND_FLAGS.iter().position(|k| k == w) else {
            anyhow::bail!("--without {w}: expected one of {}", KIND_FLAGS.join(", "));
        };
        exclude.push(i);
    }
    let cfg = RunConfig {
        exclude,
        trades,
        seed: cli.seed.unwrap_or_else(tradeflow_chaos::plan::fresh_seed),
        symbols: cli.symbols,
        shards: cli.shards,
        consumers: cli.consumers,
        rate: cli.rate,
        fault_every: cli.fault_every,
        bin_dir: cli.bin_dir.unwrap_or_else(default_bin_dir),
        keep_logs: cli.keep_logs,
        stall_timeout: cli.stall_timeout,
        redis_cluster: cli.redis_cluster,
        api_faults: cli.api_faults,
        api_fault_only: cli.api_fault_only,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        let stop = tradeflow_shared::shutdown::on_signals();
        tokio::select! {
            r = run(cfg, |line| eprintln!("chaos: {line}")) => r.map(Some),
            // Dropping the run's future drops every server and process it started, each
            // stopped by its pid and its temp dir removed: a ^C leaves nothing behind.
            _ = stop.cancelled() => Ok(None),
        }
    })?;
    let Some(report) = report else {
        // Tasks the run spawned own servers too: dropping the runtime drops them.
        rt.shutdown_timeout(Duration::from_secs(10));
        eprintln!("chaos: interrupted; every process it started was stopped");
        std::process::exit(130);
    };
    println!("{report}");
    if !report.verdict.exact() {
        std::process::exit(1);
    }
    Ok(())
}
