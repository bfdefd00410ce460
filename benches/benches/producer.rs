//! The producer's figures (issue #4):
//!
//! 1. Pure part, criterion group `producer_pure`: decode → per-shard batching (plain,
//!    and KPL-aggregated) of in-memory trade JSON, no I/O.
//! 2. PUT payload units per 1,000,000 trades, plain vs aggregated, summed over what
//!    the batcher emits (units = Σ ceil((data + partition key) / 25 KiB)). Model: 14
//!    seed symbols, every shard's queue cut into batches every 1,000 trades (10,000
//!    trades/s × the default 100 ms linger).
//! 3. The real pipeline (`pipeline::run`, synthetic source as fast as it goes) into a
//!    real ferrokinesis (testkit, free loopback port), in this process: wall time,
//!    trades/s, CPU seconds of this process per million trades (/proc/self/stat;
//!    ferrokinesis is a separate process), PutRecords calls and payload units from
//!    the producer's own metrics.
//! 4. The real `tradeflow-producer` binary with the synthetic source at 10,000
//!    trades/s for 30 s against ferrokinesis: peak resident memory (VmHWM), CPU, and
//!    the rate actually written (plain mode sends one record per symbol per call, so
//!    it may not keep up: the written rate and the backlog say how far it gets).
//!    The binary is `$TRADEFLOW_PRODUCER_BIN`, else `target/{release,debug}/…`
//!    (`cargo build --release -p tradeflow-producer` first for figures).
//!
//! `cargo bench -p tradeflow-benches --bench producer` writes
//! `target/bench-results/producer-latest.json`; under `cargo test --benches` a small
//! smoke run checks every part (seconds) and writes nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use criterion::{BenchmarkId, Throughput};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tradeflow_benches::e2e::procstat;
use tradeflow_benches::{full_mode, target_dir, trade_jsons, write_results};
use tradeflow_producer::batcher::{payload_units, Batcher, Limits, Pending, TradeRef};
use tradeflow_producer::config::{Config, PAYLOAD_UNIT_BYTES};
use tradeflow_producer::metrics as pm;
use tradeflow_producer::pipeline;
use tradeflow_producer::shard_map::{ShardMap, ShardRange};
use tradeflow_shared::testkit::{self, Process};
use tradeflow_shared::{decode_event, Event};

const SHARDS: usize = 4;
/// Trades between two batch cuts in the pure model (10,000/s × 100 ms linger).
const CYCLE: usize = 1_000;
/// The default `--aggregate-bytes` (4 payload units).
const AGGREGATE_BYTES: usize = 4 * PAYLOAD_UNIT_BYTES;

fn shard_map(n: usize) -> ShardMap {
    let step = u128::MAX / n as u128;
    let ranges = (0..n)
        .map(|i| ShardRange {
            shard_id: format!("shardId-{i:012}"),
            start: if i == 0 { 0 } else { step * i as u128 + 1 },
            end: if i + 1 == n {
                u128::MAX
            } else {
                step * (i as u128 + 1)
            },
        })
        .collect();
    ShardMap::new(ranges).expect("valid ranges")
}

/// What the batcher emitted for a run of trades.
#[derive(Debug, Default, Clone, Copy)]
struct Emitted {
    trades: u64,
    records: u64,
    calls: u64,
    bytes: u64,
    units: u64,
}

/// Decodes every JSON, queues it, and cuts every shard's queue into batches every
/// `CYCLE` trades (and at the end): the pipeline's pure work.
fn pure_pass(jsons: &[String], aggregate: Option<usize>) -> Emitted {
    let mut b = Batcher::new(
        Limits {
            aggregate,
            ..Limits::default()
        },
        shard_map(SHARDS),
    );
    let now = Instant::now();
    let mut out = Emitted::default();
    for (i, j) in jsons.iter().enumerate() {
        let Ok(Event::Trade { trade, json }) = decode_event(j) else {
            panic!("not a trade: {j}");
        };
        let p = Pending {
            trade: TradeRef {
                symbol: trade.symbol,
                trade_id: trade.trade_id,
                trade_time_ms: trade.trade_time_ms,
            },
            data: json.as_bytes().to_vec(),
        };
        b.push(p, now).expect("a trade fits a record");
        if (i + 1) % CYCLE == 0 {
            cut(&mut b, &mut out);
        }
    }
    cut(&mut b, &mut out);
    assert_eq!(b.pending(), 0);
    out
}

fn cut(b: &mut Batcher, out: &mut Emitted) {
    loop {
        let mut any = false;
        for shard in 0..b.shards() {
            if let Some(batch) = b.take_batch(shard) {
                any = true;
                out.calls += 1;
                for e in &batch.entries {
                    out.records += 1;
                    out.trades += e.trades.len() as u64;
                    out.bytes += e.size() as u64;
                    out.units += payload_units(e.size());
                }
            }
        }
        if !any {
            return;
        }
    }
}

fn criterion_part(jsons: &[String]) {
    let mut c = tradeflow_benches::criterion();
    let mut g = c.benchmark_group("producer_pure");
    g.throughput(Throughput::Elements(jsons.len() as u64));
    g.sample_size(10);
    for (name, agg) in [("plain", None), ("aggregate", Some(AGGREGATE_BYTES))] {
        g.bench_with_input(
            BenchmarkId::new("decode_batch", name),
            &agg,
            |bench, agg| bench.iter(|| pure_pass(jsons, *agg)),
        );
    }
    g.finish();
    c.final_summary();
}

fn units_part(n: usize) -> Value {
    let jsons = trade_jsons(n, 5);
    let plain = pure_pass(&jsons, None);
    let agg = pure_pass(&jsons, Some(AGGREGATE_BYTES));
    assert_eq!(plain.trades, n as u64, "every trade emitted once (plain)");
    assert_eq!(
        agg.trades, n as u64,
        "every trade emitted once (aggregated)"
    );
    assert!(agg.units < plain.units, "aggregation saves units");
    let per_m = |u: u64| u as f64 * 1e6 / n as f64;
    println!(
        "payload units per 1M trades: plain {:.0} ({:.0} records, {:.0} calls), aggregated {:.0} ({:.0} records, {:.0} calls); ratio {:.1}×",
        per_m(plain.units),
        per_m(plain.records),
        per_m(plain.calls),
        per_m(agg.units),
        per_m(agg.records),
        per_m(agg.calls),
        plain.units as f64 / agg.units as f64
    );
    json!({
        "trades": n,
        "model": "14 seed symbols, 4 shards, queues cut every 1000 trades (10k/s x 100 ms linger), aggregate 100 KiB",
        "plain": emitted_json(&plain, n),
        "aggregated": emitted_json(&agg, n),
        "ratio_plain_over_aggregated": plain.units as f64 / agg.units as f64,
    })
}

fn emitted_json(e: &Emitted, n: usize) -> Value {
    let per_m = |u: u64| u as f64 * 1e6 / n as f64;
    json!({
        "units_per_million_trades": per_m(e.units),
        "records_per_million_trades": per_m(e.records),
        "put_calls_per_million_trades": per_m(e.calls),
        "bytes_per_trade": e.bytes as f64 / n as f64,
    })
}

/// The sum of every series of `name` in a Prometheus text scrape.
fn metric_sum(scrape: &str, name: &str) -> f64 {
    testkit::sum_metric(scrape, name)
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    calls: f64,
    records: f64,
    trades: f64,
    units: f64,
}

fn counters(scrape: &str) -> Counters {
    Counters {
        calls: metric_sum(scrape, pm::PUT_CALLS),
        records: metric_sum(scrape, pm::RECORDS_WRITTEN),
        trades: metric_sum(scrape, pm::TRADES_WRITTEN),
        units: metric_sum(scrape, pm::PAYLOAD_UNITS),
    }
}

fn sub(a: Counters, b: Counters) -> Counters {
    Counters {
        calls: a.calls - b.calls,
        records: a.records - b.records,
        trades: a.trades - b.trades,
        units: a.units - b.units,
    }
}

fn config(args: &[String]) -> Config {
    let mut v = vec!["tradeflow-producer".to_string()];
    v.extend_from_slice(args);
    Config::try_parse_from(v).expect("valid flags")
}

/// N synthetic trades through the real pipeline into ferrokinesis, in this process.
async fn pipeline_part(
    endpoint: &str,
    render: &impl Fn() -> String,
    n: u64,
    aggregate: bool,
) -> Value {
    let stream = if aggregate {
        "bench-agg"
    } else {
        "bench-plain"
    };
    create_stream(endpoint, stream).await;
    let mut args: Vec<String> = [
        "--source=synthetic",
        "--synthetic-rate=0",
        &format!("--synthetic-count={n}"),
        &format!("--stream={stream}"),
        &format!("--kinesis-endpoint={endpoint}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if aggregate {
        args.push("--aggregate".into());
    }
    let before = counters(&render());
    let cpu0 = procstat::cpu_seconds(std::process::id());
    let t = Instant::now();
    let report = pipeline::run(config(&args), CancellationToken::new())
        .await
        .expect("pipeline run");
    let wall = t.elapsed().as_secs_f64();
    let cpu = procstat::cpu_seconds(std::process::id()) - cpu0;
    let c = sub(counters(&render()), before);
    assert_eq!(report.written_trades, n, "{report:?}");
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(c.trades as u64, n, "metrics agree with the report");
    let mode = if aggregate { "aggregate" } else { "plain" };
    println!(
        "pipeline {mode:>9}: {n} trades in {wall:.2} s = {:.0} trades/s; CPU {:.2} s per million trades; {} PutRecords calls, {} records, {} payload units ({:.0} per million trades)",
        n as f64 / wall,
        cpu * 1e6 / n as f64,
        c.calls,
        c.records,
        c.units,
        c.units * 1e6 / n as f64
    );
    json!({
        "mode": mode,
        "trades": n,
        "wall_seconds": wall,
        "trades_per_second": n as f64 / wall,
        "cpu_seconds": cpu,
        "cpu_seconds_per_million_trades": cpu * 1e6 / n as f64,
        "put_records_calls": c.calls,
        "records": c.records,
        "payload_units": c.units,
        "payload_units_per_million_trades": c.units * 1e6 / n as f64,
    })
}

async fn create_stream(endpoint: &str, name: &str) {
    testkit::create_stream_at(endpoint, name, SHARDS as i32)
        .await
        .expect("create stream");
}

fn producer_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TRADEFLOW_PRODUCER_BIN") {
        return Some(PathBuf::from(p));
    }
    let profiles: &[&str] = if full_mode() {
        &["release", "debug"]
    } else {
        &["debug", "release"]
    };
    profiles
        .iter()
        .map(|p| target_dir().join(p).join("tradeflow-producer"))
        .find(|p| p.is_file())
}

/// One scrape of the binary's /metrics; empty while it does not answer.
fn scrape(addr: &str) -> String {
    testkit::scrape_metrics_within(addr, Duration::from_secs(5)).unwrap_or_default()
}

/// The binary at `rate` trades/s for `secs`: memory, CPU, what it wrote.
async fn binary_part(bin: &Path, endpoint: &str, rate: u64, secs: u64, aggregate: bool) -> Value {
    let mode = if aggregate { "aggregate" } else { "plain" };
    let stream = format!("bench-bin-{mode}");
    create_stream(endpoint, &stream).await;
    let addr = format!("127.0.0.1:{}", testkit::free_port());
    let mut args = testkit::strings(&[
        "--source=synthetic",
        &format!("--synthetic-rate={rate}"),
        &format!("--stream={stream}"),
        &format!("--kinesis-endpoint={endpoint}"),
        &format!("--metrics-addr={addr}"),
        "--log=warn",
        // Plain mode falls behind at 10k/s: what it has not written at the end is
        // given up quickly (and the exit status says so) instead of draining for 30 s.
        "--drain-timeout=3s",
    ]);
    if aggregate {
        args.push("--aggregate".into());
    }
    // Its output (plain mode logs every symbol's given-up range at exit) goes to a log
    // under the results; the exit status tells what matters.
    let logs = target_dir().join("bench-results/producer-logs");
    std::fs::create_dir_all(&logs).expect("log folder");
    let mut producer = Process::new(&stream, bin, &logs).args(&args);
    producer.start().expect("start tradeflow-producer");
    let pid = producer.pid().expect("started");
    let t0 = Instant::now();
    // Written once the metrics endpoint answers: start of the measured window.
    let mut start: Option<(Instant, Counters)> = None;
    let mut rss_peak_samples = Vec::new();
    while t0.elapsed() < Duration::from_secs(secs + 10) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(status) = producer.wait_exit(Duration::ZERO) {
            panic!("tradeflow-producer exited early: {status}");
        }
        let s = scrape(&addr);
        if s.is_empty() {
            continue;
        }
        let c = counters(&s);
        match start {
            None if c.trades > 0.0 => start = Some((Instant::now(), c)),
            Some((at, _)) if at.elapsed() >= Duration::from_secs(secs) => break,
            _ => {}
        }
        rss_peak_samples.push(procstat::status_kib(pid, "VmRSS").unwrap_or(0));
    }
    let (at, c0) = start.expect("the producer wrote trades");
    let end = counters(&scrape(&addr));
    let window = at.elapsed().as_secs_f64();
    let final_scrape = scrape(&addr);
    let backlog = metric_sum(&final_scrape, pm::BUFFER_RECORDS);
    let hwm = procstat::status_kib(pid, "VmHWM").unwrap_or(0);
    let rss = procstat::status_kib(pid, "VmRSS").unwrap_or(0);
    let cpu = procstat::cpu_seconds(pid);
    // SIGTERM, up to 40 s to drain, then SIGKILL; nothing else runs meanwhile.
    let status = tokio::task::block_in_place(|| producer.stop(Duration::from_secs(40)));
    let c = sub(end, c0);
    let written_rate = c.trades / window;
    let total_trades = end.trades.max(1.0);
    println!(
        "binary {mode:>9} at {rate}/s for {window:.1} s: written {written_rate:.0} trades/s ({:.0}% of the offered rate), backlog {backlog:.0} trades; VmHWM {:.1} MiB (VmRSS {:.1} MiB); CPU {:.2} s per million trades; {:.0} PutRecords calls/s; exit {status:?}",
        100.0 * written_rate / rate as f64,
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0,
        cpu * 1e6 / total_trades,
        c.calls / window,
    );
    // A producer that kept up drains cleanly; one that fell behind gives up its
    // backlog after --drain-timeout and says so with its exit status (recorded).
    let kept_up = backlog < rate as f64 && written_rate >= 0.9 * rate as f64;
    if kept_up {
        assert!(
            status.is_some_and(|s| s.success()),
            "clean exit after SIGTERM"
        );
    }
    assert!(hwm > 0, "VmHWM read");
    assert!(c.trades > 0.0, "the binary wrote trades");
    json!({
        "mode": mode,
        "binary": bin.display().to_string(),
        "offered_trades_per_second": rate,
        "window_seconds": window,
        "written_trades_per_second": written_rate,
        "sustained_fraction": written_rate / rate as f64,
        "backlog_trades_at_end": backlog,
        "vm_hwm_kib": hwm,
        "vm_hwm_mib": hwm as f64 / 1024.0,
        "vm_rss_kib_at_end": rss,
        "vm_rss_kib_samples": rss_peak_samples,
        "cpu_seconds_total": cpu,
        "cpu_seconds_per_million_trades": cpu * 1e6 / total_trades,
        "put_records_calls_per_second": c.calls / window,
        "payload_units_per_million_trades": c.units * 1e6 / c.trades.max(1.0),
        "goal_vm_hwm_mib": 32,
        "exit_success": status.map(|s| s.success()),
        "kept_up": kept_up,
    })
}

fn main() {
    let full = full_mode();
    let mode = if full { "full" } else { "smoke" };

    // 1. The pure part under criterion (one pass each in test mode).
    let jsons = trade_jsons(if full { 20_000 } else { 2_000 }, 3);
    criterion_part(&jsons);
    tradeflow_benches::export_criterion("producer-pure", &["producer_pure"]);

    // 2. Payload units.
    let units = units_part(if full { 1_000_000 } else { 20_000 });

    // 3 and 4 need a runtime, ferrokinesis and the metrics recorder.
    testkit::local_aws_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (pipeline_results, binary_results) = rt.block_on(async {
        // A fresh ferrokinesis per run: its writes slow down as its streams fill, which
        // would make each run measure the ones before it.
        let handle = tradeflow_shared::telemetry::install_metrics().expect("recorder");
        let render = || handle.render();
        // Plain mode writes ≤ 1 record per symbol per call: far fewer trades per call.
        let (n_plain, n_agg) = if full { (5_000, 200_000) } else { (300, 3_000) };
        let mut p = Vec::new();
        for (aggregate, n) in [(false, n_plain), (true, n_agg)] {
            let fk = testkit::ferrokinesis_volatile(&[]);
            p.push(pipeline_part(&fk.endpoint(), &render, n, aggregate).await);
        }
        let mut b = Vec::new();
        match producer_binary() {
            Some(bin) => {
                let (rate, secs) = if full { (10_000, 30) } else { (2_000, 2) };
                for aggregate in [true, false] {
                    let fk = testkit::ferrokinesis_volatile(&[]);
                    b.push(binary_part(&bin, &fk.endpoint(), rate, secs, aggregate).await);
                }
            }
            None => println!(
                "tradeflow-producer binary not found under {}: build it (cargo build -p tradeflow-producer) or set TRADEFLOW_PRODUCER_BIN; memory figures skipped",
                target_dir().display()
            ),
        }
        (p, b)
    });
    let results = json!({
        "mode": mode,
        "pure_trades_per_iteration": jsons.len(),
        "pure_criterion_results": "target/bench-results/producer-pure.json",
        "payload_units": units,
        "pipeline": pipeline_results,
        "binary_10k_per_second": binary_results,
    });
    if full {
        write_results("producer-latest", results);
    }
}
