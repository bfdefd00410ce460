//! The run's reshard faults: a split of one open shard at the middle of its hash range,
//! a merge of two adjacent open ones, each retried while the stream is still UPDATING.

use std::time::Duration;

use aws_sdk_kinesis::Client as Kinesis;
use tradeflow_shared::testkit;

use crate::run::STREAM;

/// The open shards: (id, first hash key, last hash key), by hash key.
async fn open_shards(k: &Kinesis) -> Vec<(String, u128, u128)> {
    let Ok(out) = k.list_shards().stream_name(STREAM).send().await else {
        return Vec::new();
    };
    let mut v: Vec<(String, u128, u128)> = out
        .shards()
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .is_some_and(|r| r.ending_sequence_number().is_none())
        })
        .filter_map(|s| {
            let r = s.hash_key_range()?;
            Some((
                s.shard_id().to_string(),
                r.starting_hash_key().parse().ok()?,
                r.ending_hash_key().parse().ok()?,
            ))
        })
        .collect();
    v.sort_by_key(|s| s.1);
    v
}

/// A reshard is refused while the stream is still UPDATING from the last one (faults
/// can come back to back, e.g. after a long Redis failover): wait for ACTIVE and try a
/// few times before calling it skipped.
async fn reshard_when_active<F, Fut>(k: &Kinesis, mut attempt: F) -> bool
where
    F: FnMut(Vec<(String, u128, u128)>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..5 {
        // Still UPDATING after that: try anyway (the attempt says whether it took).
        let _ = testkit::wait_stream_active(k, STREAM, Duration::from_secs(15)).await;
        if attempt(open_shards(k).await).await {
            return true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    false
}

pub async fn split(k: &Kinesis, pick: u64) -> bool {
    reshard_when_active(k, |open| async move {
        if open.is_empty() {
            return false;
        }
        let (id, lo, hi) = &open[(pick % open.len() as u64) as usize];
        let mid = lo + (hi - lo) / 2 + 1;
        k.split_shard()
            .stream_name(STREAM)
            .shard_to_split(id)
            .new_starting_hash_key(mid.to_string())
            .send()
            .await
            .is_ok()
    })
    .await
}

pub async fn merge(k: &Kinesis, pick: u64) -> bool {
    reshard_when_active(k, |open| async move {
        let pairs: Vec<(&String, &String)> = open
            .windows(2)
            .filter(|w| w[0].2 + 1 == w[1].1)
            .map(|w| (&w[0].0, &w[1].0))
            .collect();
        if pairs.is_empty() {
            return false;
        }
        let (a, b) = pairs[(pick % pairs.len() as u64) as usize];
        k.merge_shards()
            .stream_name(STREAM)
            .shard_to_merge(a)
            .adjacent_shard_to_merge(b)
            .send()
            .await
            .is_ok()
    })
    .await
}
