//! Pure batching: routes trades to shards by the MD5 hash of their partition key (the
//! symbol), queues them per shard, and cuts PutRecords batches that respect the service
//! limits (≤ 500 records, ≤ 5 MiB, ≤ 1 MiB per record) and the ordering rule.
//!
//! Ordering rule: a partial PutRecords failure can fail entry i and accept a later entry
//! j of the same partition key; resending i then puts it after j. So, by default, a
//! batch carries at most ONE record per partition key (`per_key_limit = 1`): with KPL
//! aggregation that record is an aggregate holding many of the symbol's trades; without
//! it, `--relaxed-order` lifts the limit for throughput at the cost of that guarantee.
//! Together with one batch in flight per shard and "retry the failed entries before the
//! next batch", every symbol's trades reach the stream in the order they were queued.

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt};
use std::time::{Duration, Instant};

use tradeflow_shared::kpl::Aggregator;
use tradeflow_shared::Symbol;

use crate::config::{
    MAX_BYTES_PER_CALL, MAX_BYTES_PER_RECORD, MAX_RECORDS_PER_CALL, PAYLOAD_UNIT_BYTES,
};
use crate::shard_map::ShardMap;

/// PUT payload units (25 KB each) one record of `bytes` costs.
pub fn payload_units(bytes: usize) -> u64 {
    bytes.div_ceil(PAYLOAD_UNIT_BYTES).max(1) as u64
}

/// What the sink needs to know about a trade inside a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradeRef {
    pub symbol: Symbol,
    pub trade_id: u64,
    pub trade_time_ms: u64,
}

/// A trade waiting in a shard queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub trade: TradeRef,
    /// The JSON exactly as the exchange sent it.
    pub data: Vec<u8>,
}

/// One PutRecords entry: a plain trade or a KPL aggregate of one symbol's trades.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub partition_key: String,
    pub data: Vec<u8>,
    pub trades: Vec<TradeRef>,
}

impl Entry {
    /// Size counted against the limits: data plus partition key.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }

    pub fn newest_trade_ms(&self) -> u64 {
        self.trades
            .iter()
            .map(|t| t.trade_time_ms)
            .max()
            .unwrap_or(0)
    }
}

/// A PutRecords call's worth of entries for one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub shard: usize,
    pub shard_id: String,
    pub entries: Vec<Entry>,
}

impl Batch {
    pub fn trades(&self) -> usize {
        self.entries.iter().map(|e| e.trades.len()).sum()
    }
    pub fn bytes(&self) -> usize {
        self.entries.iter().map(Entry::size).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_records: usize,
    pub max_bytes: usize,
    /// Records per partition key per call (1 keeps order under partial failures).
    pub per_key_limit: usize,
    /// Some(max aggregate bytes) to write KPL aggregates.
    pub aggregate: Option<usize>,
    pub linger: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_records: MAX_RECORDS_PER_CALL,
            max_bytes: MAX_BYTES_PER_CALL,
            per_key_limit: 1,
            aggregate: None,
            linger: Duration::from_millis(100),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("record of {0} bytes is above the 1 MiB Kinesis limit")]
    TooLarge(usize),
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<(Pending, Instant)>,
    bytes: usize,
    /// Queued trades per symbol: a plain batch's scan stops once every symbol present
    /// has had its say (issue #24: in strict mode it scanned up to `SCAN_WINDOW_PLAIN`
    /// items of a backlog per call to take one record per symbol).
    keys: HashMap<Symbol, usize>,
}

impl Queue {
    fn add_key(&mut self, sym: Symbol) {
        *self.keys.entry(sym).or_insert(0) += 1;
    }

    fn remove_key(&mut self, sym: Symbol) {
        if let Some(n) = self.keys.get_mut(&sym) {
            *n -= 1;
            if *n == 0 {
                self.keys.remove(&sym);
            }
        }
    }
}

/// How far into a queue one batch looks for records of other symbols; bounds the work
/// per batch when one symbol dominates a backlog.
const SCAN_WINDOW_PLAIN: usize = 4096;
const SCAN_WINDOW_AGGREGATE: usize = 65_536;

#[derive(Debug)]
pub struct Batcher {
    limits: Limits,
    map: ShardMap,
    queues: Vec<Queue>,
    pending: usize,
    /// Each symbol's shard under `map` (routing hashes the key with MD5: once per
    /// symbol, not per trade). Cleared with the map.
    routes: HashMap<Symbol, usize>,
}

impl Batcher {
    pub fn new(limits: Limits, map: ShardMap) -> Self {
        let queues = (0..map.len()).map(|_| Queue::default()).collect();
        Batcher {
            limits,
            map,
            queues,
            pending: 0,
            routes: HashMap::new(),
        }
    }

    pub fn map(&self) -> &ShardMap {
        &self.map
    }

    /// Trades queued and not yet handed out in a batch.
    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn shards(&self) -> usize {
        self.queues.len()
    }

    /// Queues a trade on its shard.
    pub fn push(&mut self, p: Pending, now: Instant) -> Result<usize, PushError> {
        let key = p.trade.symbol.as_str();
        let size = p.data.len() + key.len();
        // An aggregate of one adds a few framing bytes (magic, protobuf, digest).
        let framed = size
            + if self.limits.aggregate.is_some() {
                64
            } else {
                0
            };
        if framed > MAX_BYTES_PER_RECORD {
            return Err(PushError::TooLarge(size));
        }
        let shard = self.route(p.trade.symbol);
        let q = &mut self.queues[shard];
        q.bytes += size;
        q.add_key(p.trade.symbol);
        q.items.push_back((p, now));
        self.pending += 1;
        Ok(shard)
    }

    fn route(&mut self, symbol: Symbol) -> usize {
        if let Some(&shard) = self.routes.get(&symbol) {
            return shard;
        }
        let shard = self.map.route(symbol.as_str());
        // Symbols come from the exchange's listing (thousands at most); the bound only
        // guards against a feed gone mad.
        if self.routes.len() >= 100_000 {
            self.routes.clear();
        }
        self.routes.insert(symbol, shard);
        shard
    }

    /// Is a batch due on `shard`: full enough, lingered long enough, or flushing?
    pub fn ready(&self, shard: usize, now: Instant, flush: bool) -> bool {
        let q = &self.queues[shard];
        let Some((_, first)) = q.items.front() else {
            return false;
        };
        flush
            || q.items.len() >= self.limits.max_records
            || q.bytes >= self.limits.max_bytes
            || now.duration_since(*first) >= self.limits.linger
    }

    /// When the earliest non-empty queue among `shards` lingers out.
    pub fn next_deadline(&self, shards: impl Iterator<Item = usize>) -> Option<Instant> {
        shards
            .filter_map(|s| {
                self.queues[s]
                    .items
                    .front()
                    .map(|(_, t)| *t + self.limits.linger)
            })
            .min()
    }

    /// Cuts the next batch for `shard` (None if its queue is empty).
    pub fn take_batch(&mut self, shard: usize) -> Option<Batch> {
        if self.queues[shard].items.is_empty() {
            return None;
        }
        let entries = match self.limits.aggregate {
            None => self.take_plain(shard),
            Some(max_agg) => self.take_aggregated(shard, max_agg),
        };
        let taken: usize = entries.iter().map(|e| e.trades.len()).sum();
        self.pending -= taken;
        Some(Batch {
            shard,
            shard_id: self.map.shard_id(shard).to_string(),
            entries,
        })
    }

    fn take_plain(&mut self, shard: usize) -> Vec<Entry> {
        let limits = self.limits;
        let q = &mut self.queues[shard];
        let window = q.items.len().min(SCAN_WINDOW_PLAIN);
        let mut per_key: HashMap<Symbol, usize> = HashMap::new();
        let mut kept = Vec::new();
        let mut entries = Vec::new();
        let mut bytes = 0;
        // Symbols that can give no more to this batch (at their limit, or blocked): once
        // that is all of the queue's symbols, or the batch is full, nothing later can be
        // taken and the rest of the queue stays as it is.
        let symbols = q.keys.len();
        let mut decided = 0;
        for _ in 0..window {
            if decided == symbols || entries.len() >= limits.max_records {
                break;
            }
            let (p, at) = q.items.pop_front().expect("within window");
            let key = p.trade.symbol;
            let n = per_key.entry(key).or_insert(0);
            let size = p.data.len() + key.as_str().len();
            let fits = entries.len() < limits.max_records && bytes + size <= limits.max_bytes;
            if *n < limits.per_key_limit && fits {
                *n += 1;
                if *n == limits.per_key_limit {
                    decided += 1;
                }
                bytes += size;
                q.bytes -= size;
                q.remove_key(key);
                entries.push(Entry {
                    partition_key: key.as_str().to_string(),
                    data: p.data,
                    trades: vec![p.trade],
                });
            } else {
                // Once one of a key's trades stays, all its later ones stay too.
                if *n < limits.per_key_limit {
                    decided += 1;
                }
                *n = usize::MAX;
                kept.push((p, at));
            }
        }
        for item in kept.into_iter().rev() {
            q.items.push_front(item);
        }
        entries
    }

    fn take_aggregated(&mut self, shard: usize, max_agg: usize) -> Vec<Entry> {
        let limits = self.limits;
        let q = &mut self.queues[shard];
        let window = q.items.len().min(SCAN_WINDOW_AGGREGATE);
        // One aggregate per symbol per call (see the module docs).
        let mut aggs: Vec<(Symbol, Aggregator, Vec<TradeRef>)> = Vec::new();
        let mut index: HashMap<Symbol, Option<usize>> = HashMap::new(); // None = blocked
        let mut total = 0usize;
        let mut kept = Vec::new();
        for _ in 0..window {
            let (p, at) = q.items.pop_front().expect("within window");
            let sym = p.trade.symbol;
            let key = sym.as_str();
            let slot = match index.get(&sym) {
                Some(None) => {
                    kept.push((p, at));
                    continue;
                }
                Some(Some(i)) => Some(*i),
                None => None,
            };
            let accepted = match slot {
                Some(i) => {
                    let agg = &aggs[i].1;
                    let new_size = agg.size_with(key, &p.data) + key.len();
                    let grow = new_size - (agg.size() + key.len());
                    if new_size <= max_agg && total + grow <= limits.max_bytes {
                        total += grow;
                        Some(i)
                    } else {
                        None
                    }
                }
                None => {
                    let fresh = Aggregator::new().size_with(key, &p.data) + key.len();
                    // A single huge trade may exceed the aggregate target, never 1 MiB
                    // (checked on push).
                    if aggs.len() < limits.max_records && total + fresh <= limits.max_bytes {
                        total += fresh;
                        aggs.push((sym, Aggregator::new(), Vec::new()));
                        Some(aggs.len() - 1)
                    } else {
                        None
                    }
                }
            };
            match accepted {
                Some(i) => {
                    q.bytes -= p.data.len() + key.len();
                    q.remove_key(sym);
                    aggs[i].1.push(key, &p.data);
                    aggs[i].2.push(p.trade);
                    if slot.is_none() {
                        index.insert(sym, Some(i));
                    }
                }
                None => {
                    index.insert(sym, None);
                    kept.push((p, at));
                }
            }
        }
        for item in kept.into_iter().rev() {
            q.items.push_front(item);
        }
        // Every aggregate of the batch finished together: their digests side by side.
        let datas = Aggregator::finish_all(aggs.iter_mut().map(|(_, agg, _)| agg));
        aggs.into_iter()
            .zip(datas)
            .map(|((sym, _, trades), data)| Entry {
                partition_key: sym.as_str().to_string(),
                data,
                trades,
            })
            .collect()
    }

    /// Moves every queued trade onto the shards of a new map, keeping each symbol's
    /// order (a symbol's trades all sit in one old queue, in order).
    pub fn reroute(&mut self, map: ShardMap) {
        let old = std::mem::take(&mut self.queues);
        self.map = map;
        self.routes.clear();
        self.queues = (0..self.map.len()).map(|_| Queue::default()).collect();
        for q in old {
            for (p, at) in q.items {
                let shard = self.map.route(p.trade.symbol.as_str());
                let nq = &mut self.queues[shard];
                nq.bytes += p.data.len() + p.trade.symbol.as_str().len();
                nq.add_key(p.trade.symbol);
                nq.items.push_back((p, at));
            }
        }
    }

    /// Everything still queued, in queue order (for the loss report at the deadline).
    pub fn drain_all(&mut self) -> Vec<Pending> {
        self.pending = 0;
        self.queues
            .iter_mut()
            .flat_map(|q| {
                q.bytes = 0;
                q.keys.clear();
                std::mem::take(&mut q.items).into_iter().map(|(p, _)| p)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
