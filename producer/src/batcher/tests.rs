//! The batcher's rules: limits, per-key order, aggregation, rerouting.

use super::*;
use crate::shard_map::ShardRange;
use tradeflow_shared::kpl::deaggregate;

fn p(sym: &str, id: u64, len: usize) -> Pending {
    Pending {
        trade: TradeRef {
            symbol: Symbol::new(sym).unwrap(),
            trade_id: id,
            trade_time_ms: 1_700_000_000_000 + id,
        },
        data: vec![b'x'; len],
    }
}

fn limits(per_key: usize) -> Limits {
    Limits {
        per_key_limit: per_key,
        ..Limits::default()
    }
}

#[test]
fn at_most_500_records_per_batch() {
    let mut b = Batcher::new(limits(MAX_RECORDS_PER_CALL), ShardMap::single("s"));
    let now = Instant::now();
    for id in 0..1200 {
        b.push(p("BTCUSDT", id, 10), now).unwrap();
    }
    assert!(b.ready(0, now, false), "a full batch is due at once");
    let sizes: Vec<usize> =
        std::iter::from_fn(|| b.take_batch(0).map(|x| x.entries.len())).collect();
    assert_eq!(sizes, vec![500, 500, 200]);
    assert_eq!(b.pending(), 0);
}

#[test]
fn at_most_5_mib_per_batch() {
    let mut b = Batcher::new(limits(MAX_RECORDS_PER_CALL), ShardMap::single("s"));
    let now = Instant::now();
    for id in 0..12 {
        b.push(p("BTCUSDT", id, 1_000_000), now).unwrap();
    }
    let batch = b.take_batch(0).unwrap();
    assert_eq!(batch.entries.len(), 5);
    assert!(batch.bytes() <= MAX_BYTES_PER_CALL);
    // Order kept across batches.
    let next = b.take_batch(0).unwrap();
    assert_eq!(next.entries[0].trades[0].trade_id, 5);
}

#[test]
fn records_above_1_mib_are_refused() {
    let mut b = Batcher::new(limits(1), ShardMap::single("s"));
    let err = b.push(p("BTCUSDT", 1, MAX_BYTES_PER_RECORD), Instant::now());
    assert!(matches!(err, Err(PushError::TooLarge(_))));
    assert!(b
        .push(p("BTCUSDT", 2, MAX_BYTES_PER_RECORD - 7), Instant::now())
        .is_ok());
}

#[test]
fn linger_then_flush() {
    let mut b = Batcher::new(limits(1), ShardMap::single("s"));
    let t0 = Instant::now();
    b.push(p("BTCUSDT", 1, 10), t0).unwrap();
    assert!(!b.ready(0, t0, false));
    assert!(b.ready(0, t0, true), "flush sends at once");
    assert_eq!(b.next_deadline(0..1), Some(t0 + Duration::from_millis(100)));
    assert!(b.ready(0, t0 + Duration::from_millis(100), false));
}

#[test]
fn strict_order_takes_one_record_per_key_in_queue_order() {
    let mut b = Batcher::new(limits(1), ShardMap::single("s"));
    let now = Instant::now();
    for (sym, id) in [
        ("AAA", 1),
        ("AAA", 2),
        ("BBB", 1),
        ("AAA", 3),
        ("BBB", 2),
        ("CCC", 1),
    ] {
        b.push(p(sym, id, 5), now).unwrap();
    }
    assert_eq!(
        first_ids(b.take_batch(0).unwrap()),
        [("AAA".into(), 1), ("BBB".into(), 1), ("CCC".into(), 1)]
    );
    assert_eq!(
        first_ids(b.take_batch(0).unwrap()),
        [("AAA".into(), 2), ("BBB".into(), 2)]
    );
    assert_eq!(first_ids(b.take_batch(0).unwrap()), [("AAA".into(), 3)]);
    assert!(b.take_batch(0).is_none());
}

#[test]
fn a_key_skipped_for_size_keeps_its_later_trades_back() {
    let mut b = Batcher::new(
        Limits {
            max_bytes: 1000,
            per_key_limit: 10,
            ..Limits::default()
        },
        ShardMap::single("s"),
    );
    let now = Instant::now();
    b.push(p("AAA", 1, 600), now).unwrap();
    b.push(p("AAA", 2, 600), now).unwrap(); // does not fit
    b.push(p("AAA", 3, 10), now).unwrap(); // would fit, but must wait for 2
    b.push(p("BBB", 1, 10), now).unwrap();
    assert_eq!(
        first_ids(b.take_batch(0).unwrap()),
        [("AAA".into(), 1), ("BBB".into(), 1)]
    );
    assert_eq!(
        first_ids(b.take_batch(0).unwrap()),
        [("AAA".into(), 2), ("AAA".into(), 3)]
    );
}

/// A backlog dominated by one symbol, rarer ones mixed in (also the last one deep in
/// the queue): each strict batch is the first queued trade of every symbol, as a full
/// scan finds it, though the scan now stops once every symbol has had its say.
#[test]
fn strict_batches_of_a_long_backlog_are_the_first_trade_of_every_symbol() {
    let mut b = Batcher::new(limits(1), ShardMap::single("s"));
    let now = Instant::now();
    let mut model: Vec<(String, u64)> = Vec::new();
    for id in 0..3_000u64 {
        let sym = match id {
            2_999 => "ZZZ",
            _ if id % 7 == 0 => "BBB",
            _ if id % 50 == 3 => "CCC",
            _ => "AAA",
        };
        b.push(p(sym, id, 5), now).unwrap();
        model.push((sym.into(), id));
    }
    let mut batches = 0;
    while let Some(batch) = b.take_batch(0) {
        // The model: the first remaining trade of each symbol, in queue order.
        let mut want = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (sym, id) in &model {
            if seen.insert(sym.clone()) {
                want.push((sym.clone(), *id));
            }
        }
        model.retain(|t| !want.contains(t));
        assert_eq!(first_ids(batch), want, "batch {batches}");
        batches += 1;
    }
    assert!(model.is_empty());
    assert_eq!(b.pending(), 0);
    assert!(
        b.queues[0].keys.is_empty(),
        "symbol counts follow the queue"
    );
}

/// Each entry of a batch as (partition key, id of its first trade).
fn first_ids(batch: Batch) -> Vec<(String, u64)> {
    batch
        .entries
        .iter()
        .map(|e| (e.partition_key.clone(), e.trades[0].trade_id))
        .collect()
}

#[test]
fn aggregates_group_per_symbol_within_size_bounds() {
    let max_agg = 4096;
    let mut b = Batcher::new(
        Limits {
            aggregate: Some(max_agg),
            ..Limits::default()
        },
        ShardMap::single("s"),
    );
    let now = Instant::now();
    for id in 0..300 {
        b.push(p("BTCUSDT", id, 100), now).unwrap();
        if id % 3 == 0 {
            b.push(p("ETHUSDT", id, 100), now).unwrap();
        }
    }
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    while let Some(batch) = b.take_batch(0) {
        let mut keys: Vec<&str> = batch
            .entries
            .iter()
            .map(|e| e.partition_key.as_str())
            .collect();
        keys.dedup();
        assert_eq!(
            keys.len(),
            batch.entries.len(),
            "one aggregate per key per call"
        );
        for e in &batch.entries {
            assert!(e.size() <= max_agg);
            let recs = deaggregate(&e.data).unwrap();
            assert_eq!(recs.len(), e.trades.len());
            for r in &recs {
                assert_eq!(r.partition_key, e.partition_key);
            }
            seen.entry(e.partition_key.clone())
                .or_default()
                .extend(e.trades.iter().map(|t| t.trade_id));
        }
    }
    assert_eq!(seen["BTCUSDT"], (0..300).collect::<Vec<_>>());
    assert_eq!(seen["ETHUSDT"], (0..300).step_by(3).collect::<Vec<_>>());
    assert_eq!(b.pending(), 0);
}

#[test]
fn reroute_keeps_per_symbol_order() {
    let mut b = Batcher::new(limits(500), ShardMap::single("old"));
    let now = Instant::now();
    for id in 0..50 {
        b.push(p(if id % 2 == 0 { "AAA" } else { "BBB" }, id, 5), now)
            .unwrap();
    }
    let half = u128::MAX / 2;
    b.reroute(
        ShardMap::new(vec![
            ShardRange {
                shard_id: "l".into(),
                start: 0,
                end: half,
            },
            ShardRange {
                shard_id: "h".into(),
                start: half + 1,
                end: u128::MAX,
            },
        ])
        .unwrap(),
    );
    assert_eq!(b.pending(), 50);
    let mut all = Vec::new();
    for s in 0..2 {
        while let Some(batch) = b.take_batch(s) {
            all.extend(batch.entries.into_iter().map(|e| e.trades[0]));
        }
    }
    for sym in ["AAA", "BBB"] {
        let ids: Vec<u64> = all
            .iter()
            .filter(|t| t.symbol.as_str() == sym)
            .map(|t| t.trade_id)
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ids.len(), 25);
    }
}

#[test]
fn payload_units_are_per_25_kb() {
    assert_eq!(payload_units(1), 1);
    assert_eq!(payload_units(25 * 1024), 1);
    assert_eq!(payload_units(25 * 1024 + 1), 2);
}
