//! End-to-end benchmark (issues #8, #24): N synthetic trades through the real
//! `tradeflow-producer` → ferrokinesis → `tradeflow-consumer` → redis-server, each
//! process measured on its own (its CPU clock; VmHWM from /proc), plus the seed's
//! per-record consumer in Python (boto3 + redis-py, one INCR per record) over the
//! same plain records, and the ratio. Fails (non-zero) if Redis's counts are not exact.
//!
//!   cargo build --release -p tradeflow-producer -p tradeflow-consumer
//!   cargo bench -p tradeflow-benches --bench e2e -- [--trades N] [--shards S]
//!       [--consumers C] [--plain-trades N] [--baseline-records N] [--no-baseline]
//!       [--runs R] [--idle-secs T] [--idle-settle-secs T] [--idle-shards S]
//!       [--no-cluster] [--scaling] [--bin-dir target/release] [--compare DIR]
//!
//! Defaults: 1,000,000 trades aggregated, 4 shards, 1 consumer; 500,000 plain; the
//! baseline over the first min(plain, 50,000) plain records. Each kind of record also
//! runs a pass of a fifth of the trades on the same stack first: the difference of the
//! two passes' consumer CPU over their difference in trades is the MARGINAL cost per
//! trade (the fixed part — start-up, lease renewals, scans, idle polls — cancels out).
//! `--runs R` repeats all of it on R fresh stacks and prints mean, min and max. Then
//! one consumer on an idle `--idle-shards` (16) stream for `--idle-secs` (60), after
//! `--idle-settle-secs` (30) for start-up and the quiet-shard back-off: CPU per
//! shard-hour. The aggregated pass again into a Redis Cluster (last run only, unless
//! `--no-cluster`). `--scaling` runs the aggregated pass at 1, 4, 16 shards with 1
//! consumer and 16 shards with 2 and 4.
//!
//! `--compare DIR` judges a change on a machine whose speed drifts: each run (and each
//! idle pass) goes once with the `--bin-dir` binaries (A) and once with DIR's (B), on
//! fresh stacks, in the order A B, B A, A B, …, and the table puts A, B and B ÷ A (the
//! mean of the runs' own ratios) side by side. No cluster pass.
//!
//! Under `cargo test` (no `--bench` argument) it does a smoke run: 3,000 trades,
//! 2 shards, the baseline over all of them, a 2 s idle pass, using target/debug.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};
use tradeflow_benches::e2e::idle;
use tradeflow_benches::e2e::marginal::Marginal;
use tradeflow_benches::e2e::report::{self, Phase};
use tradeflow_benches::e2e::run::{self, E2eError, PhaseSpec};
use tradeflow_benches::e2e::stack::{Paths, Stack};
use tradeflow_benches::e2e::summary::{self, RunFigures};
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
    runs: u32,
    idle_secs: u64,
    idle_settle_secs: u64,
    idle_shards: u32,
    cluster: bool,
    compare: Option<PathBuf>,
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
        runs: 1,
        idle_secs: if full { 60 } else { 2 },
        idle_settle_secs: if full { 30 } else { 1 },
        idle_shards: if full { 16 } else { 2 },
        cluster: true,
        compare: None,
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
            "--runs" => o.runs = num("--runs")? as u32,
            "--idle-secs" => o.idle_secs = num("--idle-secs")?,
            "--idle-settle-secs" => o.idle_settle_secs = num("--idle-settle-secs")?,
            "--idle-shards" => o.idle_shards = num("--idle-shards")? as u32,
            "--no-cluster" => o.cluster = false,
            "--bin-dir" => o.bin_dir = Some(args.next().ok_or("--bin-dir needs a folder")?.into()),
            "--compare" => o.compare = Some(args.next().ok_or("--compare needs a folder")?.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.trades < 5 || o.shards == 0 || o.consumers == 0 || o.runs == 0 {
        return Err("--trades must be >= 5, --shards, --consumers and --runs > 0".into());
    }
    Ok(o)
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn paths(stamp: &str, bin_dir: Option<&PathBuf>) -> Result<Paths, E2eError> {
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

/// The baseline's lines, beside our plain pass of the same run.
fn baseline_rows(b: &report::Baseline, plain: &Phase, plain_n: u64) -> Vec<(String, String)> {
    vec![
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
            "ours (plain, whole run) / baseline: CPU per trade".into(),
            format!(
                "{:.2} vs {:.1} s/M: {:.0}x less",
                plain.consumer_cpu_per_m(),
                b.cpu_per_m(),
                b.cpu_per_m() / plain.consumer_cpu_per_m().max(1e-9)
            ),
        ),
    ]
}

/// What one run on one fresh stack gave.
struct OneRun {
    figs: RunFigures,
    agg: Phase,
    agg_counts: BTreeMap<String, u64>,
    plain: Phase,
    base: Option<report::Baseline>,
}

/// A small and a large aggregated pass, a small and a large plain pass, the baseline
/// over the large plain stream: all on `stack`. `details` prints every figure.
fn one_run(o: &Opts, paths: &Paths, stack: &Stack, details: bool) -> Result<OneRun, E2eError> {
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
    // The small pass of each kind first (a fifth of the trades), each on its own
    // stream and Redis database: the marginal cost is the large pass's extra CPU
    // over its extra trades.
    let (agg_small, _) = run::run_phase(
        stack,
        paths,
        &spec("aggregated, small", "e2e-agg-small", true, o.trades / 5, 3),
    )?;
    let (agg, agg_counts) = run::run_phase(
        stack,
        paths,
        &spec("aggregated", "e2e-agg", true, o.trades, 0),
    )?;
    if details {
        print!(
            "{}",
            report::render_pairs("aggregated (KPL)", &report::phase_lines(&agg))
        );
    }
    // Plain records cost the emulator far more per trade; half a million is enough
    // for the fixed part to be a small share of the large pass.
    let plain_n = o.plain_trades.unwrap_or(o.trades.min(500_000)).max(5);
    let (plain_small, _) = run::run_phase(
        stack,
        paths,
        &spec("plain, small", "e2e-plain-small", false, plain_n / 5, 4),
    )?;
    let (plain, plain_counts) =
        run::run_phase(stack, paths, &spec("plain", "e2e-plain", false, plain_n, 1))?;
    if details {
        print!(
            "{}",
            report::render_pairs("plain (one trade per record)", &report::phase_lines(&plain))
        );
    }
    if plain_n == o.trades {
        // Same seed and count: the same trades, so the same totals either way.
        same_counts("aggregated vs plain", &agg_counts, &plain_counts)?;
    }
    let base = if o.baseline {
        let n = o.baseline_records.unwrap_or(50_000).min(plain_n);
        let (b, counts) = run::run_baseline(stack, paths, "e2e-plain", n, 2)?;
        if n == plain_n {
            same_counts(
                "ours vs the Python baseline (plain)",
                &plain_counts,
                &counts,
            )?;
        }
        if details {
            print!(
                "{}",
                report::render_pairs(
                    "Python baseline (the seed's per-record INCR)",
                    &baseline_rows(&b, &plain, plain_n)
                )
            );
        }
        Some(b)
    } else {
        None
    };
    let m = |small: &Phase, large: &Phase| Marginal {
        small_trades: small.trades,
        small_cpu: small.consumer_cpu,
        large_trades: large.trades,
        large_cpu: large.consumer_cpu,
    };
    let figs = RunFigures {
        plain: m(&plain_small, &plain),
        agg: m(&agg_small, &agg),
        baseline_us: base.as_ref().map(|b| b.cpu_per_m()),
    };
    Ok(OneRun {
        figs,
        agg,
        agg_counts,
        plain,
        base,
    })
}

fn main_run(o: &Opts, paths: &Paths) -> Result<Value, E2eError> {
    let mut runs: Vec<RunFigures> = Vec::new();
    let mut last = None;
    for i in 0..o.runs {
        // A fresh stack each run, so no run pays for the last one's data.
        let stack = Stack::start();
        let r = one_run(o, paths, &stack, i == 0)?;
        println!(
            "run {}: marginal µs per trade plain {:.3} (whole run {:.3}), aggregated {:.3} \
             (whole run {:.3}); baseline {}",
            i + 1,
            r.figs.plain.us_per_trade(),
            r.figs.plain.whole_run_us(),
            r.figs.agg.us_per_trade(),
            r.figs.agg.whole_run_us(),
            r.figs
                .baseline_us
                .map_or("not run".into(), |b| format!("{b:.1} µs per record")),
        );
        runs.push(r.figs.clone());
        last = Some(r);
    }
    let last = last.expect("at least one run");
    let idle = if o.idle_secs > 0 {
        Some(idle_pass(o, paths)?)
    } else {
        None
    };
    // The aggregated pass again, counting into a Redis Cluster (3 primaries, a replica
    // each): its own stack, since a cluster has one database.
    let cluster = if o.cluster {
        let stack = Stack::start_cluster();
        let (c, counts) = run::run_phase(
            &stack,
            paths,
            &PhaseSpec {
                label: "aggregated, Redis Cluster",
                stream: "e2e-cluster".into(),
                aggregate: true,
                trades: o.trades,
                shards: o.shards,
                consumers: o.consumers,
                redis_db: 0,
                prefill: false,
            },
        )?;
        same_counts("one Redis vs a Redis Cluster", &last.agg_counts, &counts)?;
        print!("{}", report::render_cluster(&last.agg, &c));
        Some(c)
    } else {
        None
    };
    print!("{}", summary::render(&runs, idle.as_ref()));
    let mut checks = report::checks(&last.plain, Some(&last.agg), last.base.as_ref());
    checks.extend(summary::checks(&runs, idle.as_ref()));
    print!("{}", report::render_checks(&checks));
    println!(
        "(units: CPU seconds from each process's own CPU clock; RSS = VmHWM; emulator \
         cost counted separately; the first goals use the last run's whole-run figures)"
    );
    Ok(json!({
        "aggregated": last.agg.to_json(),
        "plain": last.plain.to_json(),
        "redis_cluster": cluster.as_ref().map(Phase::to_json),
        "baseline": last.base.as_ref().map(report::Baseline::to_json),
        "marginal": summary::to_json(&runs, idle.as_ref()),
        "checks": checks.iter().map(|c| json!({
            "name": c.name, "value": c.value, "goal": c.goal, "ok": c.ok,
        })).collect::<Vec<_>>(),
    }))
}

fn idle_pass(o: &Opts, paths: &Paths) -> Result<idle::Idle, E2eError> {
    let stack = Stack::start();
    idle::run_idle(
        &stack,
        paths,
        o.idle_shards,
        Duration::from_secs(o.idle_secs),
        Duration::from_secs(o.idle_settle_secs),
    )
}

/// `--compare`: the same runs with two sets of binaries, interleaved A B, B A, …
fn compare_run(o: &Opts, a: &Paths, b: &Paths) -> Result<Value, E2eError> {
    let mut runs: [Vec<RunFigures>; 2] = [Vec::new(), Vec::new()];
    let mut idles: [Vec<idle::Idle>; 2] = [Vec::new(), Vec::new()];
    for i in 0..o.runs {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let paths = [a, b][which];
            let name = ["A", "B"][which];
            let stack = Stack::start();
            let r = one_run(o, paths, &stack, false)?;
            drop(stack);
            println!(
                "run {} {name}: marginal µs per trade plain {:.3}, aggregated {:.3}; baseline {}",
                i + 1,
                r.figs.plain.us_per_trade(),
                r.figs.agg.us_per_trade(),
                r.figs
                    .baseline_us
                    .map_or("not run".into(), |b| format!("{b:.1} µs per record")),
            );
            runs[which].push(r.figs);
            if o.idle_secs > 0 {
                let idle = idle_pass(o, paths)?;
                println!(
                    "run {} {name}: idle {:.2} CPU s per shard-hour",
                    i + 1,
                    idle.cpu_per_shard_hour()
                );
                idles[which].push(idle);
            }
        }
    }
    print!(
        "{}",
        summary::render_compare(&runs[0], &runs[1], &idles[0], &idles[1])
    );
    Ok(json!({
        "a": summary::to_json(&runs[0], idles[0].last()),
        "b": summary::to_json(&runs[1], idles[1].last()),
        "a_idle": idles[0].iter().map(idle::Idle::to_json).collect::<Vec<_>>(),
        "b_idle": idles[1].iter().map(idle::Idle::to_json).collect::<Vec<_>>(),
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
    let result = paths(&stamp.to_string(), o.bin_dir.as_ref()).and_then(|p| {
        if let Some(dir) = &o.compare {
            let b = paths(&format!("{stamp}-b"), Some(dir))?;
            compare_run(&o, &p, &b)
        } else if o.scaling {
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
