//! Helpers for the fleet tests: consumer processes with JSON logs and a metrics port,
//! a background writer putting per-symbol consecutive trade ids straight into the
//! stream (plain JSON or KPL aggregates), lease-table snapshots, /metrics scrapes and
//! log queries; the fleet tests' scenarios in `workers`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tokio_util::sync::CancellationToken;
use tradeflow_consumer::lease::LeaseTable;
use tradeflow_shared::kpl::Aggregator;
use tradeflow_shared::testkit;
pub use tradeflow_shared::testkit::wait_for;

use crate::e2e_support::{bin, redis_hget, Proc, Stack, STREAM};

pub mod workers;

pub const APP: &str = "tradeflow-fleet";

/// One consumer process with the short test timings (failover 2 s, take every 1 s),
/// JSON logs and /metrics on a free port.
pub fn consumer(stack: &Stack, name: &str, extra: &[&str]) -> Proc {
    let mut flags = vec!["--take-interval", "1s", "--log-format", "json"];
    flags.extend(extra);
    Proc::spawn(
        name,
        &bin("tradeflow-consumer"),
        &testkit::consumer_args(STREAM, APP, name, &flags),
        &stack.env(),
        stack.dir.path(),
    )
}

/// The JSON log lines of a process (lines that do not parse are skipped).
pub fn log_events(p: &Proc) -> Vec<serde_json::Value> {
    p.output()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Log events whose message contains `needle`.
pub fn events_with(p: &Proc, needle: &str) -> Vec<serde_json::Value> {
    log_events(p)
        .into_iter()
        .filter(|e| e["message"].as_str().is_some_and(|m| m.contains(needle)))
        .collect()
}

/// The address the process serves /metrics on, once it logged it.
pub async fn metrics_addr(p: &Proc) -> String {
    p.wait_for_log_async("/metrics address", Duration::from_secs(60), |l| {
        let e: serde_json::Value = serde_json::from_str(l).ok()?;
        if !e["message"].as_str()?.contains("serving /metrics") {
            return None;
        }
        e["local"].as_str().map(str::to_string)
    })
    .await
}

/// Sum of every series of a metric in a Prometheus scrape of `addr` (0 when absent).
pub fn scrape(addr: &str, metric: &str) -> f64 {
    let text = testkit::scrape_metrics(addr).expect("scrape /metrics");
    testkit::sum_metric(&text, metric)
}

pub async fn lease_table(stack: &Stack) -> LeaseTable {
    LeaseTable::new(stack.dynamodb_client().await, APP)
}

/// shard → owner, for leases not finished (SHARD_END rows are left out). Empty while
/// the table does not exist yet.
pub async fn owners(t: &LeaseTable) -> BTreeMap<String, Option<String>> {
    t.list()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|l| !l.is_shard_end())
        .map(|l| (l.shard_id, l.owner))
        .collect()
}

/// worker → number of leases.
pub fn loads(o: &BTreeMap<String, Option<String>>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for w in o.values().flatten() {
        *m.entry(w.clone()).or_default() += 1;
    }
    m
}

pub fn shards_of(o: &BTreeMap<String, Option<String>>, worker: &str) -> Vec<String> {
    o.iter()
        .filter(|(_, w)| w.as_deref() == Some(worker))
        .map(|(s, _)| s.clone())
        .collect()
}

/// Kinesis sequence numbers are decimal big integers: compare by length, then text.
pub fn seq_ge(a: &str, b: &str) -> bool {
    (a.len(), a) >= (b.len(), b)
}

/// The highest position Redis has applied for a shard (its `seq`).
pub async fn redis_pos(stack: &Stack, shard: &str) -> Option<String> {
    let key = format!("tradeflow:pos:{STREAM}:{shard}");
    redis_hget(&stack.redis_url(), &key, "seq").await
}

/// Where a symbol's trades go: its partition key is the symbol, its explicit hash key
/// pins it inside one shard's range (so every shard gets traffic, deterministically).
#[derive(Debug, Clone)]
pub struct Route {
    pub symbol: String,
    pub hash_key: String,
}

/// `per_shard` symbols inside each open shard's hash range, spread over the range so
/// that a split at the midpoint gives each child some of them.
pub async fn routes(client: &aws_sdk_kinesis::Client, per_shard: u32) -> Vec<Route> {
    let out = client
        .list_shards()
        .stream_name(STREAM)
        .send()
        .await
        .expect("ListShards");
    let mut routes = Vec::new();
    for (i, s) in out.shards().iter().enumerate() {
        let r = s.hash_key_range().expect("hash range");
        let lo: u128 = r.starting_hash_key().parse().expect("hash key");
        let hi: u128 = r.ending_hash_key().parse().expect("hash key");
        let step = (hi - lo) / u128::from(2 * per_shard);
        for k in 0..per_shard {
            routes.push(Route {
                symbol: format!("S{i}X{k}USDT"),
                hash_key: (lo + step * u128::from(2 * k + 1)).to_string(),
            });
        }
    }
    routes
}

#[derive(Debug, Clone, Copy)]
pub enum Format {
    /// One Kinesis record per trade.
    Json,
    /// One KPL aggregate of this many consecutive trades of one symbol per record.
    Kpl(u64),
}

#[derive(Default)]
struct Written {
    /// Highest trade id written per symbol (ids start at 1 and are consecutive).
    last_id: BTreeMap<String, u64>,
    /// Per shard, the latest successful put: when its call started and its sequence
    /// number.
    latest: HashMap<String, (Instant, String)>,
    rounds: u64,
}

/// Writes one record per symbol every `interval`, in order per symbol (a round is
/// complete — failed entries re-sent — before the next starts).
pub struct Writer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    state: Arc<Mutex<Written>>,
}

impl Writer {
    pub fn start(
        client: aws_sdk_kinesis::Client,
        routes: Vec<Route>,
        format: Format,
        interval: Duration,
        max_rounds: Option<u64>,
    ) -> Writer {
        let stop = CancellationToken::new();
        let state = Arc::new(Mutex::new(Written::default()));
        let task = tokio::spawn(write_loop(
            client,
            routes,
            format,
            interval,
            max_rounds,
            stop.clone(),
            state.clone(),
        ));
        Writer { stop, task, state }
    }

    pub fn rounds(&self) -> u64 {
        self.state.lock().unwrap().rounds
    }

    /// Per shard in `shards`, the sequence number of a record whose put started after
    /// `t` (waits for the next rounds as needed).
    pub async fn written_after(&self, t: Instant, shards: &[String]) -> HashMap<String, String> {
        wait_for(
            "records written after the event",
            Duration::from_secs(60),
            || async {
                let st = self.state.lock().unwrap();
                let mut out = HashMap::new();
                for s in shards {
                    match st.latest.get(s) {
                        Some((at, seq)) if *at >= t => {
                            out.insert(s.clone(), seq.clone());
                        }
                        _ => return None,
                    }
                }
                Some(out)
            },
        )
        .await
    }

    /// Stops after the round in flight; returns the highest id written per symbol.
    pub async fn stop(self) -> BTreeMap<String, u64> {
        self.stop.cancel();
        self.task.await.expect("writer task");
        let st = self.state.lock().unwrap();
        st.last_id.clone()
    }

    /// Waits for `max_rounds` to be written, then returns as `stop` does.
    pub async fn finish(self) -> BTreeMap<String, u64> {
        let _ = tokio::time::timeout(Duration::from_secs(120), async {
            while !self.task.is_finished() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        self.stop().await
    }
}

fn trade_json(symbol: &str, id: u64) -> String {
    let t = 1_717_000_000_000 + id;
    format!(
        r#"{{"e":"trade","E":{t},"s":"{symbol}","t":{id},"p":"100.5","q":"0.00100000","T":{t},"m":false,"M":true}}"#
    )
}

async fn write_loop(
    client: aws_sdk_kinesis::Client,
    routes: Vec<Route>,
    format: Format,
    interval: Duration,
    max_rounds: Option<u64>,
    stop: CancellationToken,
    state: Arc<Mutex<Written>>,
) {
    let mut next_id: HashMap<String, u64> = routes.iter().map(|r| (r.symbol.clone(), 1)).collect();
    let mut round = 0;
    while !stop.is_cancelled() && max_rounds.is_none_or(|m| round < m) {
        // (entry, symbol, last id in it)
        let mut pending: Vec<(PutRecordsRequestEntry, String, u64)> = Vec::new();
        for r in &routes {
            let first = next_id[&r.symbol];
            let (data, last) = match format {
                Format::Json => (trade_json(&r.symbol, first).into_bytes(), first),
                Format::Kpl(n) => {
                    let mut agg = Aggregator::new();
                    for id in first..first + n {
                        agg.push(&r.symbol, trade_json(&r.symbol, id).as_bytes());
                    }
                    (agg.finish(), first + n - 1)
                }
            };
            next_id.insert(r.symbol.clone(), last + 1);
            let entry = PutRecordsRequestEntry::builder()
                .data(Blob::new(data))
                .partition_key(&r.symbol)
                .explicit_hash_key(&r.hash_key)
                .build()
                .expect("entry");
            pending.push((entry, r.symbol.clone(), last));
        }
        // Re-send failed entries until the whole round is in: order per symbol holds
        // because a symbol has one entry per round.
        while !pending.is_empty() {
            let started = Instant::now();
            let res = client
                .put_records()
                .stream_name(STREAM)
                .set_records(Some(pending.iter().map(|p| p.0.clone()).collect()))
                .send()
                .await;
            let out = match res {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("writer: PutRecords failed, retrying: {e:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let mut failed = Vec::new();
            {
                let mut st = state.lock().unwrap();
                for (p, r) in pending.into_iter().zip(out.records()) {
                    match (r.shard_id(), r.sequence_number()) {
                        (Some(shard), Some(seq)) if r.error_code().is_none() => {
                            st.last_id.insert(p.1.clone(), p.2);
                            st.latest
                                .insert(shard.to_string(), (started, seq.to_string()));
                        }
                        _ => failed.push(p),
                    }
                }
            }
            pending = failed;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        round += 1;
        state.lock().unwrap().rounds = round;
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Waits until Redis's count of every symbol equals its highest written id and its
/// `last_trade_id` equals that id (ids are 1..=n, so the count is the number of
/// distinct ids: complete and nothing twice).
pub async fn assert_exact(stack: &Stack, last_ids: &BTreeMap<String, u64>, logs: &[&Proc]) {
    let got = stack
        .wait_for_counts(last_ids, Duration::from_secs(90))
        .await;
    if &got != last_ids {
        let mut dump = String::new();
        for p in logs {
            dump.push_str(&format!("==== {} ====\n{}\n", p.name, p.output()));
        }
        panic!("counts differ:\n got {got:?}\nwant {last_ids:?}\n{dump}");
    }
    for (sym, last) in last_ids {
        let stored = stack.stat(sym, "last_trade_id").await;
        assert_eq!(stored, Some(last.to_string()), "{sym} last_trade_id");
    }
}
