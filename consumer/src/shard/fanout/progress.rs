//! The fan-out reader's pure side: where the next subscription starts, which records
//! are new, when a shard has ended and when a subscription is renewed. No I/O, so it
//! is unit-tested alone.

use std::time::Duration;

use aws_sdk_kinesis::types::{Record, ShardIteratorType, StartingPosition};
use tokio::time::Instant;
use tradeflow_shared::Position;

use crate::shard::page::{HandedOut, Page};
use crate::shard::reader::StartPosition;

/// Where one SubscribeToShard call starts (pure: what the reader knows → the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeFrom {
    TrimHorizon,
    Latest,
    AtTimestamp(i64),
    /// At this record: used when resuming from a handed-out position, which may sit
    /// inside an aggregate (its remaining sub-records are kept, earlier ones filtered).
    AtSequence(String),
    /// After the last event's continuation: every record up to it was handed out whole.
    AfterSequence(String),
}

/// The reader's bookkeeping, kept apart from I/O so it is unit-tested.
#[derive(Debug, Clone)]
pub struct Progress {
    start: StartPosition,
    /// The user records handed out (records at or before the last are dropped).
    handed: HandedOut,
    /// The last event's continuation sequence number.
    continuation: Option<String>,
}

impl Progress {
    pub fn new(start: StartPosition) -> Self {
        Progress {
            handed: HandedOut::from_start(&start),
            start,
            continuation: None,
        }
    }

    /// Where the next subscription starts.
    pub fn subscribe_from(&self) -> SubscribeFrom {
        if let Some(c) = &self.continuation {
            return SubscribeFrom::AfterSequence(c.clone());
        }
        if let Some(p) = self.handed.through() {
            // Same as the polling reader: AT the record, then filter by sub-sequence, so
            // a checkpoint inside a KPL aggregate neither skips nor repeats user records.
            return SubscribeFrom::AtSequence(p.seq.as_str().to_string());
        }
        match &self.start {
            StartPosition::TrimHorizon => SubscribeFrom::TrimHorizon,
            StartPosition::Latest => SubscribeFrom::Latest,
            StartPosition::AtTimestamp(ms) => SubscribeFrom::AtTimestamp(*ms),
            StartPosition::After(p) => SubscribeFrom::AtSequence(p.seq.as_str().to_string()),
        }
    }

    /// Whether a decoded user record is new (after everything handed out).
    pub fn is_new(&self, pos: &Position) -> bool {
        self.handed.is_new(pos)
    }

    /// An event's new user records, handed out from here on; renewal continues after
    /// its continuation (an event without one keeps the last).
    pub fn take_event(&mut self, records: &[Record], continuation: &str) -> Page {
        let page = self.handed.take_page(records);
        if !continuation.is_empty() {
            self.continuation = Some(continuation.to_string());
        }
        page
    }
}

/// Whether an event marks the end of a closed shard: the service then sends the
/// children and no continuation.
pub fn is_shard_end(continuation: &str, children: usize) -> bool {
    continuation.is_empty() || children > 0
}

/// Whether a subscription opened at `opened` should be renewed by us now.
pub fn lifetime_over(opened: Instant, now: Instant, lifetime: Duration) -> bool {
    now.saturating_duration_since(opened) >= lifetime
}

/// The request's starting position for `from`.
pub(super) fn starting_position(from: &SubscribeFrom) -> StartingPosition {
    let b = StartingPosition::builder();
    let b = match from {
        SubscribeFrom::TrimHorizon => b.r#type(ShardIteratorType::TrimHorizon),
        SubscribeFrom::Latest => b.r#type(ShardIteratorType::Latest),
        SubscribeFrom::AtTimestamp(ms) => b
            .r#type(ShardIteratorType::AtTimestamp)
            .timestamp(aws_sdk_kinesis::primitives::DateTime::from_millis(*ms)),
        SubscribeFrom::AtSequence(s) => b
            .r#type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(s),
        SubscribeFrom::AfterSequence(s) => b
            .r#type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(s),
    };
    b.build().expect("the type is always set")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::test_support::{kinesis_record, pos};

    #[test]
    fn fresh_shards_start_where_configured() {
        assert_eq!(
            Progress::new(StartPosition::TrimHorizon).subscribe_from(),
            SubscribeFrom::TrimHorizon
        );
        assert_eq!(
            Progress::new(StartPosition::Latest).subscribe_from(),
            SubscribeFrom::Latest
        );
        assert_eq!(
            Progress::new(StartPosition::AtTimestamp(42)).subscribe_from(),
            SubscribeFrom::AtTimestamp(42)
        );
    }

    #[test]
    fn a_checkpoint_resumes_at_its_record_and_filters_its_sub_records() {
        // Inside an aggregate: sub-records 0..=2 of 500 were applied, 3.. were not.
        let p = Progress::new(StartPosition::After(pos("500", 2)));
        assert_eq!(p.subscribe_from(), SubscribeFrom::AtSequence("500".into()));
        assert!(!p.is_new(&pos("500", 2)));
        assert!(!p.is_new(&pos("499", 9)));
        assert!(p.is_new(&pos("500", 3)));
        assert!(p.is_new(&pos("501", 0)));
    }

    #[test]
    fn renewal_continues_after_the_last_event() {
        let mut p = Progress::new(StartPosition::TrimHorizon);
        let page = p.take_event(&[kinesis_record("700", b"{}")], "700");
        assert_eq!(page.records.len(), 1);
        assert_eq!(
            p.subscribe_from(),
            SubscribeFrom::AfterSequence("700".into())
        );
        // An empty event (idle shard) moves the continuation on but not the filter.
        p.take_event(&[], "800");
        assert_eq!(
            p.subscribe_from(),
            SubscribeFrom::AfterSequence("800".into())
        );
        assert!(!p.is_new(&pos("700", 0)));
        assert!(p.is_new(&pos("801", 0)));
    }

    #[test]
    fn an_event_without_continuation_does_not_forget_the_last_one() {
        let mut p = Progress::new(StartPosition::Latest);
        p.take_event(&[kinesis_record("10", b"{}")], "");
        assert_eq!(p.subscribe_from(), SubscribeFrom::AtSequence("10".into()));
        p.take_event(&[], "12");
        p.take_event(&[], "");
        assert_eq!(
            p.subscribe_from(),
            SubscribeFrom::AfterSequence("12".into())
        );
    }

    #[test]
    fn shard_end_is_children_or_no_continuation() {
        assert!(is_shard_end("", 0));
        assert!(is_shard_end("", 2));
        assert!(!is_shard_end("123", 0));
        assert!(is_shard_end("123", 2));
    }

    #[test]
    fn subscriptions_are_renewed_after_their_lifetime() {
        let t0 = Instant::now();
        let life = Duration::from_secs(300);
        assert!(!lifetime_over(t0, t0 + Duration::from_secs(299), life));
        assert!(lifetime_over(t0, t0 + Duration::from_secs(300), life));
        // A clock read before `opened` is not "over".
        assert!(!lifetime_over(t0 + Duration::from_secs(1), t0, life));
    }

    #[test]
    fn starting_positions_carry_their_sequence_numbers() {
        let sp = starting_position(&SubscribeFrom::AfterSequence("9".into()));
        assert_eq!(sp.r#type(), &ShardIteratorType::AfterSequenceNumber);
        assert_eq!(sp.sequence_number(), Some("9"));
        let sp = starting_position(&SubscribeFrom::AtSequence("8".into()));
        assert_eq!(sp.r#type(), &ShardIteratorType::AtSequenceNumber);
    }
}
