//! Where a partition key goes: the open shards' hash-key ranges and Kinesis's own
//! routing rule (MD5 of the key, read as a big-endian u128), so the producer can keep
//! one batch in flight per shard.

use md5::{Digest, Md5};

/// The hash key Kinesis derives from a partition key: MD5, read as a big-endian u128.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// One open shard and the hash keys it owns (inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    pub shard_id: String,
    pub start: u128,
    pub end: u128,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardMapError {
    #[error("the stream has no open shard")]
    Empty,
    #[error("shard {0} has a hash range that ends before it starts")]
    BadRange(String),
}

/// The open shards of the stream, sorted by starting hash key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    ranges: Vec<ShardRange>,
}

impl ShardMap {
    pub fn new(mut ranges: Vec<ShardRange>) -> Result<Self, ShardMapError> {
        if ranges.is_empty() {
            return Err(ShardMapError::Empty);
        }
        if let Some(bad) = ranges.iter().find(|r| r.end < r.start) {
            return Err(ShardMapError::BadRange(bad.shard_id.clone()));
        }
        ranges.sort_by_key(|r| r.start);
        Ok(ShardMap { ranges })
    }

    /// One shard owning every hash key (for tests and single-shard streams).
    pub fn single(shard_id: &str) -> Self {
        ShardMap {
            ranges: vec![ShardRange {
                shard_id: shard_id.to_string(),
                start: 0,
                end: u128::MAX,
            }],
        }
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn shard_id(&self, index: usize) -> &str {
        &self.ranges[index].shard_id
    }

    /// Index of the shard owning `partition_key`. A hash in a hole of the map (a
    /// reshard seen half-way) goes to the nearest shard below: any grouping works for
    /// correctness as long as one key always maps to one group.
    pub fn route(&self, partition_key: &str) -> usize {
        let h = hash_key(partition_key);
        match self.ranges.partition_point(|r| r.start <= h) {
            0 => 0,
            n => n - 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_key_is_md5_big_endian() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    #[test]
    fn routes_by_hash_range() {
        let half = u128::MAX / 2;
        let map = ShardMap::new(vec![
            ShardRange {
                shard_id: "b".into(),
                start: half + 1,
                end: u128::MAX,
            },
            ShardRange {
                shard_id: "a".into(),
                start: 0,
                end: half,
            },
        ])
        .unwrap();
        for key in ["BTCUSDT", "ETHUSDT", "LTCBTC", "NEOBNB", "x", "y"] {
            let want = if hash_key(key) <= half { "a" } else { "b" };
            assert_eq!(map.shard_id(map.route(key)), want, "{key}");
        }
        assert_eq!(ShardMap::new(vec![]), Err(ShardMapError::Empty));
    }
}
