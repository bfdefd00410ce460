//! Batch apply cost against a real redis-server (started on a free loopback port and
//! stopped at the end): `RedisSink::apply` of 500-trade batches versus the seed's way,
//! one `INCR symbol:<SYM>` round trip per trade (and, as a bonus, one `INCRBYFLOAT`
//! for the volume). Also the in-memory cost of `fold` alone, the CPU Redis itself
//! spends per trade (`INFO cpu`) beside the client's (this process), and what a
//! symbol-day of candles (1,440 minute, 24 hour and 1 day buckets) costs in Redis
//! memory.
//!
//! `cargo bench -p tradeflow-benches --bench apply_redis` runs 200 batches (100,000
//! trades; `APPLY_REDIS_BATCHES=N` for another number); under `cargo test` it does a
//! 2-batch smoke run. `benches/redis-instructions` runs it with Redis under callgrind
//! for an instruction count per trade that does not vary from run to run.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::json;
use tradeflow_benches::{full_mode, sequence_number, trade_jsons, write_results};
use tradeflow_consumer::apply::{fold, BatchDelta, RedisSink, SinkConfig};
use tradeflow_consumer::record::{decode_record, DecodedRecord, Item};
use tradeflow_shared::testkit;

const BATCH: usize = 500;

fn batches(n_batches: usize) -> Vec<Vec<DecodedRecord>> {
    let jsons = trade_jsons(n_batches * BATCH, 21);
    let mut all = Vec::with_capacity(jsons.len());
    for (i, j) in jsons.iter().enumerate() {
        decode_record(&sequence_number(i as u64), j.as_bytes(), &mut all);
    }
    all.chunks(BATCH).map(<[DecodedRecord]>::to_vec).collect()
}

/// One `INFO` section's text (empty when Redis does not answer).
async fn info(con: &mut redis::aio::MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query_async(con)
        .await
        .unwrap_or_default()
}

/// A numeric field of an `INFO` text (0 when absent).
fn field(info: &str, name: &str) -> f64 {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Redis's own count of commands processed (INFO stats), to check round trips.
async fn commands_processed(con: &mut redis::aio::MultiplexedConnection) -> u64 {
    field(&info(con, "stats").await, "total_commands_processed") as u64
}

/// The seed's way on an empty Redis: per trade one INCR (and one INCRBYFLOAT of the
/// volume with `volume`), awaited one by one. How long it took.
async fn seed_pass(
    con: &mut redis::aio::MultiplexedConnection,
    items: &[&Item],
    volume: bool,
) -> Duration {
    let _: () = redis::cmd("FLUSHALL")
        .query_async(con)
        .await
        .expect("flush");
    let t = Instant::now();
    for item in items {
        if let Item::Trade(tr) = item {
            let _: i64 = con
                .incr(format!("symbol:{}", tr.symbol), 1)
                .await
                .expect("INCR");
            if volume {
                let vol = tr.quote_units() as f64 / 1e16;
                let _: f64 = redis::cmd("INCRBYFLOAT")
                    .arg(format!("volume:{}", tr.symbol))
                    .arg(vol)
                    .query_async(con)
                    .await
                    .expect("INCRBYFLOAT");
            }
        }
    }
    t.elapsed()
}

/// Redis's own CPU time so far (user + sys, seconds), from `INFO cpu`.
async fn redis_cpu(con: &mut redis::aio::MultiplexedConnection) -> f64 {
    let cpu = info(con, "cpu").await;
    field(&cpu, "used_cpu_user") + field(&cpu, "used_cpu_sys")
}

/// This process's CPU time so far (user + sys, seconds).
fn own_cpu() -> f64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    tradeflow_benches::e2e::procstat::parse_stat(&text).map_or(0.0, |s| s.cpu_seconds)
}

async fn used_memory(con: &mut redis::aio::MultiplexedConnection) -> i64 {
    field(&info(con, "memory").await, "used_memory") as i64
}

/// One symbol trading all day (a trade every 20 s, 4,320 trades): Redis memory of its
/// candles — used_memory's growth (with the TTLs' expiry entries) and `MEMORY USAGE`
/// of each kind of bucket. Returns (bytes per symbol-day, [minute, hour, day] bytes
/// per bucket).
async fn candle_memory(url: &str, con: &mut redis::aio::MultiplexedConnection) -> (i64, [u64; 3]) {
    let _: () = redis::cmd("FLUSHALL")
        .query_async(con)
        .await
        .expect("flush");
    let day0 = 1_717_027_200_000u64; // a UTC midnight
    let jsons: Vec<String> = (0..4_320u64)
        .map(|i| {
            let t = day0 + i * 20_000;
            format!(
                r#"{{"e":"trade","E":{t},"s":"BTCUSDT","t":{},"p":"67{:03}.{:08}","q":"0.{:08}","T":{t},"m":{},"M":true}}"#,
                5_000_000_000u64 + i,
                i % 1000,
                (i * 7_919) % 100_000_000,
                1 + (i * 104_729) % 99_999_999,
                i % 3 == 0
            )
        })
        .collect();
    let mut recs = Vec::new();
    for (i, j) in jsons.iter().enumerate() {
        decode_record(&sequence_number(i as u64), j.as_bytes(), &mut recs);
    }
    let sink = RedisSink::connect(&SinkConfig {
        url: url.to_string(),
        key_prefix: "mem:".into(),
        ..SinkConfig::default()
    })
    .await
    .expect("sink connects");
    // Everything but the buckets (stats, dedupe, position…) first, so the growth
    // measured below is the candles' alone.
    sink.apply("bench", "shardId-m", &fold(&recs[..1]))
        .await
        .expect("apply");
    let before = used_memory(con).await;
    for chunk in recs[1..].chunks(BATCH) {
        sink.apply("bench", "shardId-m", &fold(chunk))
            .await
            .expect("apply");
    }
    // The hours rolled up into hour and day buckets, as the consumer does once closed.
    sink.seal_hours((day0 + 86_400_000) / 3_600_000)
        .await
        .expect("roll-up");
    let grown = used_memory(con).await - before;
    let mut per_kind = [0u64; 3];
    for (k, pattern) in ["mem:min:*", "mem:hour:*", "mem:day:*"].iter().enumerate() {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(*pattern)
            .query_async(con)
            .await
            .unwrap();
        let mut total = 0u64;
        for key in &keys {
            let n: u64 = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .query_async(con)
                .await
                .unwrap_or(0);
            total += n;
        }
        per_kind[k] = total / keys.len().max(1) as u64;
    }
    (grown, per_kind)
}

fn per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n.max(1) as f64
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let full = full_mode();
    let n_batches = if full {
        std::env::var("APPLY_REDIS_BATCHES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200)
    } else {
        2
    };
    let server = testkit::redis();
    let url = format!("redis://127.0.0.1:{}", server.port);
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the bench redis-server");

    let recs = batches(n_batches);
    let trades: usize = recs.iter().map(Vec::len).sum();

    // 1. fold alone, in memory.
    let t = Instant::now();
    let deltas: Vec<BatchDelta> = recs.iter().map(|b| fold(b)).collect();
    let fold_time = t.elapsed();

    // 2. RedisSink::apply, one batch after another as one shard worker does.
    let sink = RedisSink::connect(&SinkConfig {
        url: url.clone(),
        ..SinkConfig::default()
    })
    .await
    .expect("sink connects");
    let cmds_before = commands_processed(&mut con).await;
    let mut round_trips = 0u64;
    let mut applied = 0u64;
    let redis_cpu_before = redis_cpu(&mut con).await;
    let own_cpu_before = own_cpu();
    let t = Instant::now();
    for d in &deltas {
        let o = sink
            .apply("bench", "shardId-000000000000", d)
            .await
            .expect("apply");
        round_trips += u64::from(o.round_trips);
        applied += o.trades_applied;
    }
    let apply_time = t.elapsed();
    let apply_own_cpu = own_cpu() - own_cpu_before;
    let apply_redis_cpu = redis_cpu(&mut con).await - redis_cpu_before;
    // INFO itself counts twice (cpu, stats); the sink's EVALSHA is one command per
    // round trip.
    let sink_cmds = commands_processed(&mut con).await - cmds_before - 2;
    assert_eq!(applied as usize, trades, "every trade applied once");

    // 3. The seed: one INCR per trade, awaited one by one; 3b. its bonus, INCR and
    // INCRBYFLOAT (volume as a float, inexact).
    // At most 100,000 trades: its cost per trade does not change with more, and a
    // long apply pass (APPLY_REDIS_BATCHES) then stays quick.
    let symbols: Vec<&Item> = recs
        .iter()
        .flatten()
        .map(|r| &r.item)
        .take(100_000)
        .collect();
    let seed_trades = symbols.len();
    let seed_cpu_before = redis_cpu(&mut con).await;
    let seed_time = seed_pass(&mut con, &symbols, false).await;
    let seed_redis_cpu = redis_cpu(&mut con).await - seed_cpu_before;
    let seed2_time = seed_pass(&mut con, &symbols, true).await;

    let apply_us_batch = per(apply_time, n_batches);
    let apply_us_trade = per(apply_time, trades);
    let seed_us_trade = per(seed_time, seed_trades);
    let seed2_us_trade = per(seed2_time, seed_trades);
    println!(
        "apply_redis: {n_batches} batches of {BATCH} trades ({trades} trades), mode {}",
        if full { "full" } else { "smoke" }
    );
    println!(
        "  fold alone          : {:>9.3} µs/batch {:>8.3} µs/trade  ({:.2} M trades/s)",
        per(fold_time, n_batches),
        per(fold_time, trades),
        trades as f64 / fold_time.as_secs_f64() / 1e6
    );
    println!("  RedisSink::apply    : {apply_us_batch:>9.1} µs/batch {apply_us_trade:>8.3} µs/trade  {:.2} round trips/batch ({sink_cmds} Redis commands incl. those inside the script)", round_trips as f64 / n_batches as f64);
    let us = |cpu: f64| cpu * 1e6 / trades.max(1) as f64;
    let seed_us = |cpu: f64| cpu * 1e6 / seed_trades.max(1) as f64;
    println!(
        "  CPU per trade       : Redis {:.3} µs (seed INCR: {:.3} µs, {:.1}×), this client {:.3} µs (fold, arguments, reply)",
        us(apply_redis_cpu),
        seed_us(seed_redis_cpu),
        seed_us(seed_redis_cpu) / us(apply_redis_cpu).max(1e-9),
        us(apply_own_cpu)
    );
    println!("  seed INCR per trade : {:>9.1} µs/batch {seed_us_trade:>8.3} µs/trade  {BATCH} round trips/batch", seed_us_trade * BATCH as f64);
    println!("  seed INCR+INCRBYFLOAT: {:>8.1} µs/batch {seed2_us_trade:>8.3} µs/trade  {} round trips/batch", seed2_us_trade * BATCH as f64, 2 * BATCH);
    println!(
        "  ratio seed/apply    : {:.1}× (INCR only), {:.1}× (with INCRBYFLOAT)",
        seed_us_trade / apply_us_trade,
        seed2_us_trade / apply_us_trade
    );

    // On a Redis of its own, so that the server above ran only the apply and seed
    // passes (a profiler attached to it sees nothing else).
    let mem_server = testkit::redis();
    let mem_url = format!("redis://127.0.0.1:{}", mem_server.port);
    let mut mem_con = redis::Client::open(mem_url.as_str())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the memory bench redis-server");
    let (day_bytes, bucket_bytes) = candle_memory(&mem_url, &mut mem_con).await;
    println!(
        "  candles in memory   : {:.1} KiB per symbol-day (used_memory growth); MEMORY USAGE per bucket: minute {} B, hour {} B, day {} B",
        day_bytes as f64 / 1024.0,
        bucket_bytes[0],
        bucket_bytes[1],
        bucket_bytes[2]
    );

    let results = json!({
        "mode": if full { "full" } else { "smoke" },
        "batches": n_batches,
        "batch_size": BATCH,
        "trades": trades,
        "fold_us_per_batch": per(fold_time, n_batches),
        "fold_us_per_trade": per(fold_time, trades),
        "apply_us_per_batch": apply_us_batch,
        "apply_us_per_trade": apply_us_trade,
        "apply_round_trips_per_batch": round_trips as f64 / n_batches as f64,
        "apply_redis_commands_incl_script": sink_cmds,
        "apply_redis_cpu_us_per_trade": us(apply_redis_cpu),
        "apply_client_cpu_us_per_trade": us(apply_own_cpu),
        "seed_incr_redis_cpu_us_per_trade": seed_us(seed_redis_cpu),
        "candle_bytes_per_symbol_day": day_bytes,
        "candle_bucket_bytes": {"minute": bucket_bytes[0], "hour": bucket_bytes[1], "day": bucket_bytes[2]},
        "seed_incr_us_per_trade": seed_us_trade,
        "seed_incr_round_trips_per_batch": BATCH,
        "seed_incr_incrbyfloat_us_per_trade": seed2_us_trade,
        "seed_incr_incrbyfloat_round_trips_per_batch": 2 * BATCH,
        "ratio_seed_incr_over_apply": seed_us_trade / apply_us_trade,
        "ratio_seed_incr_incrbyfloat_over_apply": seed2_us_trade / apply_us_trade,
    });
    if full {
        write_results("apply_redis", results);
    }
    drop(con);
    drop(server);
}
