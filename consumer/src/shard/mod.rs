//! Shards: discovery and lineage (which shards exist, which are children of which),
//! and the two readers behind one seam: polling (GetRecords) and enhanced fan-out
//! (SubscribeToShard), which decode their pages the same way ([`page`]).
pub mod budget;
pub mod discovery;
pub mod fanout;
pub mod lean;
pub mod lineage;
pub mod page;
pub mod raw_page;
pub mod reader;
#[cfg(test)]
pub(crate) mod test_support;

use fanout::FanOutReader;
use reader::{ReadBatch, ReadError, ShardReader};

/// Where a shard task gets its batches from; both readers hand out the same batches
/// (user records after the start position, the end marker with the children).
// One per shard task, built once and kept: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum RecordSource {
    Polling(ShardReader),
    FanOut(FanOutReader),
}

impl RecordSource {
    pub async fn next_batch(&mut self) -> Result<ReadBatch, ReadError> {
        match self {
            RecordSource::Polling(r) => r.next_batch().await,
            RecordSource::FanOut(r) => r.next_batch().await,
        }
    }
}
