//! Fixtures the unit tests of the shard readers, discovery, lineage and the worker
//! share.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::Record;
use tradeflow_shared::{Position, SequenceNumber};

use super::discovery::ShardInfo;

/// User record `sub` of Kinesis record `seq`.
pub fn pos(seq: &str, sub: u64) -> Position {
    Position::new(SequenceNumber::parse(seq).unwrap(), sub)
}

/// A Kinesis record as either API hands it out.
pub fn kinesis_record(seq: &str, data: &[u8]) -> Record {
    Record::builder()
        .sequence_number(seq)
        .data(Blob::new(data))
        .partition_key("k")
        .build()
        .unwrap()
}

/// A listed shard with its parents; its hash range is the whole of "0" to "9".
pub fn shard(id: &str, parents: &[&str], closed: bool) -> ShardInfo {
    ShardInfo {
        shard_id: id.into(),
        parents: parents.iter().map(|p| p.to_string()).collect(),
        starting_hash_key: Some("0".into()),
        ending_hash_key: Some("9".into()),
        closed,
    }
}
