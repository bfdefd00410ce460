//! What to do with a PutRecords answer: which entries were written and which failed
//! (only those are resent, before the shard's next batch). How long to wait between
//! attempts is the house's one retry policy (`tradeflow_shared::retry`).

use crate::batcher::Entry;

/// The answer for one entry of a PutRecords call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    Written { shard_id: String },
    Failed { code: String },
}

/// A call's entries sorted into written and failed (in their original order).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub written: Vec<Entry>,
    pub failed: Vec<(Entry, String)>,
    /// An entry landed on another shard than the map said: the map is stale.
    pub misrouted: bool,
}

/// Pairs entries with their results. A missing result counts as a failure (resent),
/// never as written.
pub fn split_results(entries: Vec<Entry>, results: &[EntryResult], expected_shard: &str) -> Split {
    let mut split = Split::default();
    for (i, e) in entries.into_iter().enumerate() {
        match results.get(i) {
            Some(EntryResult::Written { shard_id }) => {
                if shard_id != expected_shard {
                    split.misrouted = true;
                }
                split.written.push(e);
            }
            Some(EntryResult::Failed { code }) => split.failed.push((e, code.clone())),
            None => split.failed.push((e, "missing_result".into())),
        }
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failed_entries_are_retried() {
        let entries: Vec<Entry> = (0..4)
            .map(|i| Entry {
                partition_key: format!("K{i}"),
                data: vec![i as u8],
                trades: vec![],
            })
            .collect();
        let results = vec![
            EntryResult::Written {
                shard_id: "s".into(),
            },
            EntryResult::Failed {
                code: "ProvisionedThroughputExceededException".into(),
            },
            EntryResult::Written {
                shard_id: "s".into(),
            },
            EntryResult::Failed {
                code: "InternalFailure".into(),
            },
        ];
        let split = split_results(entries.clone(), &results, "s");
        assert_eq!(split.written, vec![entries[0].clone(), entries[2].clone()]);
        assert_eq!(split.failed.len(), 2);
        assert_eq!(split.failed[0].0, entries[1]);
        assert_eq!(split.failed[1].1, "InternalFailure");
        assert!(!split.misrouted);
        // Fewer results than entries: the rest are failures, never "written".
        let short = split_results(entries.clone(), &results[..1], "other");
        assert_eq!(short.failed.len(), 3);
        assert!(short.misrouted);
    }
}
