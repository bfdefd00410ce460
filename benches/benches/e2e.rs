//! End-to-end benchmark (issue #8): N synthetic trades through the real
//! `tradeflow-producer` → ferrokinesis → `tradeflow-consumer` → redis-server, each
//! process measured on its own from /proc (CPU utime+stime, VmHWM), plus the seed's
//! per-record consumer in Python (boto3 + redis-py, one INCR per record) over the
//! same plain records, and the ratio. Fails (non-zero) if Redis's counts are not exact.
//!
//!   cargo build --release -p tradeflow-producer -p tradeflow-consumer
//!   cargo bench -p tradeflow-benches --bench e2e -- [--trades N] [--shards S]
//!       [--consumers C] [--plain-trades N] [--baseline-records N] [--no-baseline]
//!       [--scaling] [--bin-dir target/release]
//!
//! Defaults: 1,000,000 trades aggregated, 4 shards, 1 consumer; the plain pass (and
//! the baseline over the same records) min(trades, 50,000). `--scaling` runs the
//! aggregated pass at 1, 4, 16 shards with 1 consumer and 16 shards with 2 and 4.
//!
//! Under `cargo test` (no `--bench` argument) it does a smoke run: 3,000 trades,
//! 2 shards, the baseline over all of them, using the binaries in target/debug.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};
use tradeflow_benches::e2e::report::{self, Phase};
use tradeflow_benches::e2e::run::{self, E2eError, PhaseSpec};
use tradeflow_benches::e2e::stack::{Paths, Stack};
use tradeflow_benches::{full_mode, target_dir, write_results};

#[derive(Debug)]
struct Opts {
    trades: u64,
    shards: u32,
    consumers: u32,
    plain_trades: Option<u64>,
    baseline_records: Option<u64>,
    baseline: bool,
    scaling: bool,
    bin_dir: Option<PathBuf>,
}

fn parse_args(full: bool) -> Result<Opts, String> {
    let mut o = Opts {
        trades: if full { 1_000_000 } else { 3_000 },
        shards: if full { 4 } else { 2 },
        consumers: 1,
        plain_trades: None,
        baseline_records: None,
        baseline: true,
        scaling: false,
        bin_dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .ok_or_else(|| format!("{what} needs a number"))
        };
        match a.as_str() {
            "--bench" => {}
            "--trades" => o.trades = num("--trades")?,
            "--shards" => o.shards = num("--shards")? as u32,
            "--consumers" => o.consumers = num("--consumers")? as u32,
            "--plain-trades" => o.plain_trades = Some(num("--plain-trades")?),
            "--baseline-records" => o.baseline_records = Some(num("--baseline-records")?),
            "--no-baseline" => o.baseline = false,
            "--scaling" => o.scaling = true,
            "--bin-dir" => o.bin_dir = Some(args.next().ok_or("--bin-dir needs a folder")?.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.trades == 0 || o.shards == 0 || o.consumers == 0 {
        return Err("--trades, --shards and --consumers must be > 0".into());
    }
    Ok(o)
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn paths(stamp: u64, bin_dir: Option<&PathBuf>) -> Result<Paths, E2eError> {
    // target/<profile>/deps/<bench exe> → target/<profile>/
    let exe = std::env::current_exe().map_err(|e| E2eError::Setup(e.to_string()))?;
    let bin_dir = bin_dir.cloned().unwrap_or_else(|| {
        exe.parent()
            .and_then(|d| d.parent())
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir().join("debug"))
    });
    let logs = target_dir().join(format!("bench-results/e2e-logs/{stamp}"));
    std::fs::create_dir_all(&logs).map_err(|e| E2eError::Setup(e.to_string()))?;
    let p = Paths::discover(&bin_dir, &logs)?;
    println!(
        "binaries: {} and {}\nlogs: {}",
        p.producer.display(),
        p.consumer.display(),
        logs.display()
    );
    Ok(p)
}

fn same_counts(
    what: &str,
    a: &BTreeMap<String, u64>,
    b: &BTreeMap<String, u64>,
) -> Result<(), E2eError> {
    if a == b {
        println!("per-symbol counts identical: {what}");
        Ok(())
    } else {
        Err(E2eError::Inexact(format!("{what}: {a:?} vs {b:?}")))
    }
}

fn main_run(o: &Opts, paths: &Paths) -> Result<Value, E2eError> {
    let stack = Stack::start();
    let spec = |label, stream: &str, aggregate, trades, db| PhaseSpec {
        label,
        stream: stream.to_string(),
        aggregate,
        trades,
        shards: o.shards,
        consumers: o.consumers,
        redis_db: db,
        // The plain pass feeds the baseline: both read a stream already written.
        prefill: !aggregate,
    };
    let (agg, agg_counts) = run::run_phase(
        &stack,
        paths,
        &spec("aggregated", "e2e-agg", true, o.trades, 0),
    )?;
    print!(
        "{}",
        report::render_pairs("aggregated (KPL)", &report::phase_lines(&agg))
    );
    // Plain records cost the emulator far more (ferrokinesis logs every record to its
    // write-ahead log); a smaller count gives the same per-trade ratios.
    let plain_n = o.plain_trades.unwrap_or(o.trades.min(50_000));
    let (plain, plain_counts) = run::run_phase(
        &stack,
        paths,
        &spec("plain", "e2e-plain", false, plain_n, 1),
    )?;
    print!(
        "{}",
        report::render_pairs("plain (one trade per record)", &report::phase_lines(&plain))
    );
    if plain_n == o.trades {
        // Same seed and count: the same trades, so the same totals either way.
        same_counts("aggregated vs plain", &agg_counts, &plain_counts)?;
    }
    let base = if o.baseline {
        let n = o.baseline_records.unwrap_or(plain_n).min(plain_n);
        let (b, counts) = run::run_baseline(&stack, paths, "e2e-plain", n, 2)?;
        if n == plain_n {
            same_counts(
                "ours vs the Python baseline (plain)",
                &plain_counts,
                &counts,
            )?;
        }
        let rows = vec![
            (
                "records (first of the plain stream)".to_string(),
                format!("{} of {plain_n}", b.records),
            ),
            (
                "throughput".into(),
                format!("{:.0} records/s ({:.1} s)", b.records_per_sec(), b.seconds),
            ),
            (
                "CPU per million, read+count loop / whole process".into(),
                format!("{:.1} s / {:.1} s", b.cpu_per_m(), b.cpu_total_per_m()),
            ),
            (
                "peak RSS".into(),
                format!("{:.1} MiB", b.rss_kib as f64 / 1024.0),
            ),
            (
                "Redis commands per million".into(),
                format!("{:.0}", b.redis_commands_per_m()),
            ),
            (
                "ours (plain) / baseline: CPU per trade".into(),
                format!(
                    "{:.2} vs {:.1} s/M: {:.0}x less",
                    plain.consumer_cpu_per_m(),
                    b.cpu_per_m(),
                    b.cpu_per_m() / plain.consumer_cpu_per_m().max(1e-9)
                ),
            ),
        ];
        print!(
            "{}",
            report::render_pairs("Python baseline (the seed's per-record INCR)", &rows)
        );
        Some(b)
    } else {
        None
    };
    // The aggregated pass again, counting into a Redis Cluster (3 primaries, a replica
    // each): its own stack, since a cluster has one database.
    let cluster = {
        let stack = Stack::start_cluster();
        let (c, counts) = run::run_phase(
            &stack,
            paths,
            &PhaseSpec {
                label: "aggregated, Redis Cluster",
                stream: "e2e-cluster".into(),
                ..spec("aggregated", "e2e-agg", true, o.trades, 0)
            },
        )?;
        same_counts("one Redis vs a Redis Cluster", &agg_counts, &counts)?;
        print!("{}", report::render_cluster(&agg, &c));
        c
    };
    let checks = report::checks(&plain, Some(&agg), base.as_ref());
    print!("{}", report::render_checks(&checks));
    println!(
        "(units: CPU seconds per million trades from /proc utime+stime of each process; \
         RSS = VmHWM; emulator cost counted separately)"
    );
    Ok(json!({
        "aggregated": agg.to_json(),
        "plain": plain.to_json(),
        "redis_cluster": cluster.to_json(),
        "baseline": base.as_ref().map(report::Baseline::to_json),
        "checks": checks.iter().map(|c| json!({
            "name": c.name, "value": c.value, "goal": c.goal, "ok": c.ok,
        })).collect::<Vec<_>>(),
    }))
}

fn scaling_run(o: &Opts, paths: &Paths) -> Result<Value, E2eError> {
    let mut rows: Vec<Phase> = Vec::new();
    for (shards, consumers) in [(1, 1), (4, 1), (16, 1), (16, 2), (16, 4)] {
        // A fresh stack each, so no run pays for the last one's data.
        let stack = Stack::start();
        let (p, _) = run::run_phase(
            &stack,
            paths,
            &PhaseSpec {
                label: "aggregated",
                stream: format!("e2e-s{shards}-c{consumers}"),
                aggregate: true,
                trades: o.trades,
                shards,
                consumers,
                redis_db: 0,
                prefill: false,
            },
        )?;
        println!(
            "{shards} shards, {consumers} consumers: {:.0} trades/s",
            p.trades_per_sec()
        );
        rows.push(p);
    }
    print!("{}", report::render_scaling(&rows));
    Ok(json!({ "scaling": rows.iter().map(Phase::to_json).collect::<Vec<_>>() }))
}

fn main() -> ExitCode {
    let full = full_mode();
    let o = match parse_args(full) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("e2e: {e}");
            return ExitCode::from(2);
        }
    };
    let stamp = unix_time();
    let started = std::time::Instant::now();
    let result = paths(stamp, o.bin_dir.as_ref()).and_then(|p| {
        if o.scaling {
            scaling_run(&o, &p)
        } else {
            main_run(&o, &p)
        }
    });
    match result {
        Ok(v) => {
            let doc = json!({ "options": format!("{o:?}"), "full": full, "figures": v });
            write_results(&format!("e2e-{stamp}"), doc.clone());
            write_results("e2e-latest", doc);
            println!("e2e done in {:.1} s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("e2e FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
