//! Helpers shared by the Redis sink tests: trades at positions, batches, totals read
//! back, and the expected exact sums computed independently (u128 → decimal string).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use tradeflow_consumer::apply::{fold, ApplyOutcome, RedisSink, SinkConfig, SinkError};
use tradeflow_consumer::record::{DecodedRecord, Item, Poison};
use tradeflow_shared::decimal::format_scaled;
use tradeflow_shared::kline::Kline;
use tradeflow_shared::testkit::{RedisCluster, Service};
use tradeflow_shared::{Fixed8, Position, SequenceNumber, Symbol, Trade};

pub const STREAM: &str = "trades";
pub const T0: u64 = 1_717_000_020_000;

pub fn url(redis: &Service) -> String {
    format!("redis://127.0.0.1:{}", redis.port)
}

pub fn config(redis: &Service, prefix: &str) -> SinkConfig {
    SinkConfig {
        url: url(redis),
        key_prefix: prefix.to_string(),
        minute_ttl: Duration::from_secs(3600),
        dead_letter_maxlen: 1000,
        ..SinkConfig::default()
    }
}

pub async fn sink(redis: &Service, prefix: &str) -> RedisSink {
    RedisSink::connect(&config(redis, prefix))
        .await
        .expect("connect")
}

pub async fn raw(redis: &Service) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url(redis))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A Redis Cluster of `primaries` primaries with `replicas` replicas each, started off
/// the async threads (it takes seconds of blocking waits).
pub async fn start_cluster(primaries: usize, replicas: usize) -> RedisCluster {
    tokio::task::spawn_blocking(move || RedisCluster::start(primaries, replicas))
        .await
        .unwrap()
}

/// A sink's settings for a cluster started without replicas: no `WAIT`.
pub fn without_replicas() -> SinkConfig {
    SinkConfig {
        wait_replicas: 0,
        ..SinkConfig::default()
    }
}

/// A sink on the cluster at `url` with the key prefix `tradeflow:`, else as `cfg` says.
pub async fn cluster_sink(url: &str, cfg: SinkConfig) -> RedisSink {
    RedisSink::connect(&SinkConfig {
        url: url.to_string(),
        key_prefix: "tradeflow:".into(),
        ..cfg
    })
    .await
    .expect("connect to the cluster")
}

/// A realistic-looking sequence number for index `i` (ascending with `i`).
pub fn seq(i: u64) -> SequenceNumber {
    SequenceNumber::parse(&format!(
        "4959033827149025660855969253836157109592157598913{i:07}"
    ))
    .unwrap()
}

pub fn trade(sym: &str, id: u64) -> Trade {
    // Deterministic, varied amounts with all 8 decimals in use.
    let price = 1_000_000 + (id * 7_919) % 9_000_000_000_000;
    let qty = 1 + (id * 104_729) % 100_000_000_000;
    Trade {
        symbol: Symbol::new(sym).unwrap(),
        trade_id: id,
        price: Fixed8(price),
        qty: Fixed8(qty),
        trade_time_ms: T0 + id * 250,
        event_time_ms: T0 + id * 250,
        buyer_is_maker: id.is_multiple_of(2),
    }
}

pub fn rec(i: u64, t: Trade) -> DecodedRecord {
    DecodedRecord {
        pos: Position::new(seq(i), 0),
        item: Item::Trade(t),
    }
}

pub fn poison_rec(i: u64, why: &str) -> DecodedRecord {
    DecodedRecord {
        pos: Position::new(seq(i), 0),
        item: Item::Poison(Poison {
            kind: "json",
            reason: why.to_string(),
            data: why.as_bytes().to_vec(),
        }),
    }
}

/// A shard's records: the given trades at positions 1.. in order.
pub fn shard_of(trades: &[Trade]) -> Vec<DecodedRecord> {
    trades
        .iter()
        .enumerate()
        .map(|(i, t)| rec(i as u64 + 1, *t))
        .collect()
}

/// Applies `records` in batches of `size`, retrying retryable errors.
pub async fn apply_in_batches(
    sink: &RedisSink,
    shard: &str,
    records: &[DecodedRecord],
    size: usize,
) -> ApplyOutcome {
    let mut total = ApplyOutcome::default();
    for chunk in records.chunks(size.max(1)) {
        let o = apply_retrying(sink, shard, &fold(chunk)).await;
        total.trades_applied += o.trades_applied;
        total.duplicates += o.duplicates;
        total.poison += o.poison;
        total.late_dropped += o.late_dropped;
        total.round_trips += o.round_trips;
    }
    total
}

pub async fn apply_retrying(
    sink: &RedisSink,
    shard: &str,
    batch: &tradeflow_consumer::apply::BatchDelta,
) -> ApplyOutcome {
    let mut tries = 0;
    loop {
        match sink.apply(STREAM, shard, batch).await {
            Ok(o) => return o,
            Err(e) if e.is_retryable() && tries < 200 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("apply failed: {e}"),
        }
    }
}

pub fn is_retryable(e: &SinkError) -> bool {
    e.is_retryable()
}

/// What Redis should hold for a set of distinct trades.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Totals {
    pub count: u64,
    pub base: String,
    pub quote: String,
}

pub fn expected(trades: &[Trade]) -> BTreeMap<String, Totals> {
    let mut sums: BTreeMap<String, (u64, u128, u128, std::collections::BTreeSet<u64>)> =
        BTreeMap::new();
    for t in trades {
        let e = sums.entry(t.symbol.to_string()).or_default();
        if e.3.insert(t.trade_id) {
            e.0 += 1;
            e.1 += t.qty.0 as u128;
            e.2 += t.quote_units();
        }
    }
    sums.into_iter()
        .map(|(s, (c, b, q, _))| {
            (
                s,
                Totals {
                    count: c,
                    base: format_scaled(b, 8),
                    quote: format_scaled(q, 16),
                },
            )
        })
        .collect()
}

/// Totals as Redis holds them, for every symbol in the symbols index.
pub async fn actual(redis: &Service, prefix: &str) -> BTreeMap<String, Totals> {
    let mut con = raw(redis).await;
    let syms: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{prefix}symbols"))
        .query_async(&mut con)
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for s in syms {
        let count: u64 = redis::cmd("GET")
            .arg(format!("symbol:{s}"))
            .query_async(&mut con)
            .await
            .unwrap();
        let (base, quote): (String, String) = redis::cmd("HMGET")
            .arg(format!("{prefix}stats:{s}"))
            .arg("base")
            .arg("quote")
            .query_async(&mut con)
            .await
            .unwrap();
        out.insert(s, Totals { count, base, quote });
    }
    out
}

/// The candles of `bucket_ms` computed the plain way: distinct trades sorted by id,
/// grouped by bucket; open/close the first/last of each group, sums, max, min.
pub fn plain_klines(trades: &[Trade], bucket_ms: u64) -> Vec<Kline> {
    let mut distinct: BTreeMap<u64, Trade> = BTreeMap::new();
    for t in trades {
        distinct.entry(t.trade_id).or_insert(*t);
    }
    let mut groups: BTreeMap<u64, Vec<Trade>> = BTreeMap::new();
    for t in distinct.values() {
        groups
            .entry(t.trade_time_ms - t.trade_time_ms % bucket_ms)
            .or_default()
            .push(*t);
    }
    groups
        .into_iter()
        .map(|(open_time_ms, g)| {
            let (first, last) = (g[0], g[g.len() - 1]);
            let taker: Vec<&Trade> = g.iter().filter(|t| !t.buyer_is_maker).collect();
            Kline {
                open_time_ms,
                interval_ms: bucket_ms,
                open: first.price,
                close: last.price,
                open_id: first.trade_id,
                close_id: last.trade_id,
                high: g.iter().map(|t| t.price).max().unwrap(),
                low: g.iter().map(|t| t.price).min().unwrap(),
                count: g.len() as u64,
                base: g.iter().map(|t| t.qty.0 as u128).sum(),
                quote: g.iter().map(|t| t.quote_units()).sum(),
                taker_base: taker.iter().map(|t| t.qty.0 as u128).sum(),
                taker_quote: taker.iter().map(|t| t.quote_units()).sum(),
            }
        })
        .collect()
}
