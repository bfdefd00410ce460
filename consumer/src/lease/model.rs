//! Lease types and their KCL 2.x item layout (attribute names and types), independent
//! of any I/O. Unknown attributes are never read here and never written by us, so
//! items written by KCL 3.x (`entityType`, `throughputKBps`, `checkpointOwner`, …)
//! keep them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tradeflow_shared::{Position, SequenceNumber};

/// KCL sentinel checkpoint values.
pub const TRIM_HORIZON: &str = "TRIM_HORIZON";
pub const LATEST: &str = "LATEST";
pub const AT_TIMESTAMP: &str = "AT_TIMESTAMP";
pub const SHARD_END: &str = "SHARD_END";

/// Attribute names of the KCL lease table.
pub mod attr {
    pub const LEASE_KEY: &str = "leaseKey";
    pub const LEASE_OWNER: &str = "leaseOwner";
    pub const LEASE_COUNTER: &str = "leaseCounter";
    pub const CHECKPOINT: &str = "checkpoint";
    pub const CHECKPOINT_SUB: &str = "checkpointSubSequenceNumber";
    pub const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
    pub const PARENT_SHARD_IDS: &str = "parentShardId";
    pub const CHILD_SHARD_IDS: &str = "childShardIds";
    pub const PENDING_CHECKPOINT: &str = "pendingCheckpoint";
    pub const PENDING_CHECKPOINT_SUB: &str = "pendingCheckpointSubSequenceNumber";
    pub const PENDING_CHECKPOINT_STATE: &str = "pendingCheckpointState";
    pub const STARTING_HASH_KEY: &str = "startingHashKey";
    pub const ENDING_HASH_KEY: &str = "endingHashKey";
    /// KCL 3.x: what a row is. Absent or `LEASE` on lease rows; KCL 3.5 keeps its other
    /// state in the lease table too (`WORKER_METRIC_STATS`, `LEADER`, `STREAM`,
    /// `CLIENT_VERSION_MIGRATION`, `TABLE_MIGRATION`), which is not ours to read or write.
    pub const ENTITY_TYPE: &str = "entityType";
}

/// The `entityType` of lease rows (KCL 3.x writes it on every lease it creates).
pub const LEASE_ENTITY: &str = "LEASE";

/// Where a consumer starts in a shard that has no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialPosition {
    TrimHorizon,
    Latest,
    /// Milliseconds since the Unix epoch.
    AtTimestamp(u64),
}

impl InitialPosition {
    pub fn at(time: SystemTime) -> Self {
        let ms = time
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis();
        InitialPosition::AtTimestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    pub fn as_checkpoint(self) -> Checkpoint {
        match self {
            InitialPosition::TrimHorizon => Checkpoint::TrimHorizon,
            InitialPosition::Latest => Checkpoint::Latest,
            InitialPosition::AtTimestamp(ms) => Checkpoint::AtTimestamp(ms),
        }
    }
}

/// A lease's checkpoint: where the next reader starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    TrimHorizon,
    Latest,
    /// Milliseconds since the Unix epoch. The table stores only `AT_TIMESTAMP` (as the
    /// KCL does); the time comes from the configured initial position.
    AtTimestamp(u64),
    ShardEnd,
    /// The last user record processed: the reader resumes after it.
    At(Position),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable checkpoint {value:?}")]
pub struct BadCheckpoint {
    pub value: String,
}

impl Checkpoint {
    /// Parses the table's `checkpoint` / `checkpointSubSequenceNumber` pair. An
    /// `AT_TIMESTAMP` sentinel takes its time from `initial`, or falls back to
    /// TRIM_HORIZON (reads more, loses nothing) when not configured with a timestamp.
    pub fn parse(
        value: &str,
        sub: u64,
        initial: InitialPosition,
    ) -> Result<Checkpoint, BadCheckpoint> {
        Ok(match value {
            TRIM_HORIZON => Checkpoint::TrimHorizon,
            LATEST => Checkpoint::Latest,
            SHARD_END => Checkpoint::ShardEnd,
            AT_TIMESTAMP => match initial {
                InitialPosition::AtTimestamp(ms) => Checkpoint::AtTimestamp(ms),
                _ => Checkpoint::TrimHorizon,
            },
            other => Checkpoint::At(Position::new(
                SequenceNumber::parse(other).map_err(|_| BadCheckpoint {
                    value: other.chars().take(140).collect(),
                })?,
                sub,
            )),
        })
    }

    /// The table's `checkpoint` string and sub-sequence number.
    pub fn to_attr(&self) -> (String, u64) {
        match self {
            Checkpoint::TrimHorizon => (TRIM_HORIZON.into(), 0),
            Checkpoint::Latest => (LATEST.into(), 0),
            Checkpoint::AtTimestamp(_) => (AT_TIMESTAMP.into(), 0),
            Checkpoint::ShardEnd => (SHARD_END.into(), 0),
            Checkpoint::At(p) => (p.seq.as_str().to_string(), p.sub),
        }
    }

    pub fn is_shard_end(&self) -> bool {
        matches!(self, Checkpoint::ShardEnd)
    }
}

/// One lease row as read from the table (only the attributes we use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub shard_id: String,
    pub owner: Option<String>,
    pub counter: u64,
    /// Raw `checkpoint` attribute (absent in malformed rows).
    pub checkpoint: Option<String>,
    pub checkpoint_sub: u64,
    pub owner_switches: u64,
    pub parents: Vec<String>,
    pub children: Vec<String>,
    pub starting_hash_key: Option<String>,
    pub ending_hash_key: Option<String>,
}

impl Lease {
    /// A free lease row, as discovery creates it.
    pub fn new(shard_id: impl Into<String>, checkpoint: &Checkpoint) -> Self {
        let (cp, sub) = checkpoint.to_attr();
        Lease {
            shard_id: shard_id.into(),
            owner: None,
            counter: 0,
            checkpoint: Some(cp),
            checkpoint_sub: sub,
            owner_switches: 0,
            parents: Vec::new(),
            children: Vec::new(),
            starting_hash_key: None,
            ending_hash_key: None,
        }
    }

    pub fn is_shard_end(&self) -> bool {
        self.checkpoint.as_deref() == Some(SHARD_END)
    }

    pub fn is_owned_by(&self, worker: &str) -> bool {
        self.owner.as_deref() == Some(worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip() {
        let init = InitialPosition::AtTimestamp(1234);
        for cp in [
            Checkpoint::TrimHorizon,
            Checkpoint::Latest,
            Checkpoint::ShardEnd,
            Checkpoint::AtTimestamp(1234),
            Checkpoint::At(Position::new(
                SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898")
                    .unwrap(),
                7,
            )),
        ] {
            let (s, sub) = cp.to_attr();
            assert_eq!(Checkpoint::parse(&s, sub, init).unwrap(), cp);
        }
    }

    #[test]
    fn at_timestamp_without_a_time_reads_from_the_start() {
        assert_eq!(
            Checkpoint::parse(AT_TIMESTAMP, 0, InitialPosition::Latest).unwrap(),
            Checkpoint::TrimHorizon
        );
    }

    #[test]
    fn garbage_checkpoint_is_an_error() {
        assert!(Checkpoint::parse("12x", 0, InitialPosition::Latest).is_err());
        assert!(Checkpoint::parse("", 0, InitialPosition::Latest).is_err());
    }
}
