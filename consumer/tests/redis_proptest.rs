//! Property: whatever the delivery — ids out of order, trades written several times,
//! any batch boundaries, replays from old checkpoints, a reshard moving the rest of the
//! stream to a child shard — the totals in Redis equal the exact sums of the distinct
//! trades. One real redis-server for all cases; each case uses its own symbols/prefix.

use crate::proptest_support::{case_runner, current_thread_runtime};
use crate::redis_common;

use proptest::prelude::*;
use redis_common::*;
use tradeflow_consumer::record::DecodedRecord;
use tradeflow_shared::testkit;

#[test]
fn arbitrary_delivery_gives_exact_totals() {
    let redis = testkit::redis();
    let rt = current_thread_runtime();
    let strategy = (
        prop::collection::vec((0usize..3, 1u64..40), 1..150),
        prop::collection::vec(1usize..25, 1..5),
        0usize..150,
        prop::collection::vec((0usize..150, 1usize..30), 0..4),
    );
    let mut runner = case_runner(128);
    let counter = std::sync::atomic::AtomicU32::new(0);
    runner
        .run(&strategy, |(stream, sizes, split_at, replays)| {
            let case = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let prefix = format!("p{case}:");
            let names: Vec<String> = (0..3).map(|k| format!("C{case}S{k}")).collect();
            let trades: Vec<_> = stream.iter().map(|&(s, id)| trade(&names[s], id)).collect();
            let split = split_at.min(trades.len());
            let parent = shard_of(&trades[..split]);
            let child = shard_of(&trades[split..]);
            rt.block_on(async {
                let sink = sink(&redis, &prefix).await;
                for (shard_id, records) in [("shardId-0", &parent), ("shardId-1", &child)] {
                    apply_varied(&sink, shard_id, records, &sizes).await;
                    for &(from, size) in &replays {
                        let from = from.min(records.len());
                        apply_varied(&sink, shard_id, &records[from..], &[size]).await;
                    }
                }
                let got = actual(&redis, &prefix).await;
                prop_assert_eq!(got, expected(&trades));
                Ok(())
            })
        })
        .unwrap();
}

/// Applies `records` in order with batch sizes cycling through `sizes`.
async fn apply_varied(
    sink: &tradeflow_consumer::apply::RedisSink,
    shard: &str,
    records: &[DecodedRecord],
    sizes: &[usize],
) {
    let mut i = 0;
    let mut k = 0;
    while i < records.len() {
        let n = sizes[k % sizes.len()].max(1).min(records.len() - i);
        let batch = tradeflow_consumer::apply::fold(&records[i..i + n]);
        apply_retrying(sink, shard, &batch).await;
        i += n;
        k += 1;
    }
}
