//! Fixtures the unit tests of the shard readers share.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::Record;
use tradeflow_shared::{Position, SequenceNumber};

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
