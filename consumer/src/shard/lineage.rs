//! Where a listed shard that has no lease row starts, judged from the lineage of the
//! rows that exist. Pure: no I/O.
//!
//! An adopted table can lack rows for shards the stream still lists: the KCL (1.x to
//! 3.x, `cleanupLeasesUponShardCompletion`, on by default) deletes a finished parent's
//! lease once every child's checkpoint has left TRIM_HORIZON; a KCL started at LATEST
//! never makes rows for shards closed before it started; and a bootstrap of ours can
//! be cut short. Reading such a shard from TRIM_HORIZON would count again what the
//! previous owner counted (its Redis holds no positions of ours to dedupe against).
//!
//! The rule, from the KCL's own invariants (a child is read only once its parents are
//! done or rowless; a finished lease is deleted only once its children moved on):
//! - **Finished**: some child has a row whose checkpoint is past TRIM_HORIZON (a
//!   sequence number, SHARD_END, or LATEST/AT_TIMESTAMP — the previous owner started
//!   that child without reading this shard first), or a rowless child is itself
//!   finished. The shard gets a SHARD_END row and is never read.
//! - **Child**: otherwise, a shard with a parent that is read (or was finished) is a
//!   reshard child: read from TRIM_HORIZON, so nothing written to it is skipped.
//! - **Fresh**: a shard nothing in the table reaches (an empty table, or a bootstrap cut
//!   short) starts at the configured initial position, as a bootstrap would.
//! - **Unknown**: a child's row waits at TRIM_HORIZON (or has no readable checkpoint)
//!   for a parent whose row is gone with no sign that it was finished. Neither the KCL
//!   nor tradeflow leaves a table so; re-reading could double count and skipping could
//!   lose data, so no row is written: its children stay blocked, and the sync logs an
//!   error and sets `tradeflow_consumer_shards_lineage_unknown` until a person writes
//!   the row (SHARD_END if the old application read the shard, TRIM_HORIZON to read it).

use std::collections::{HashMap, HashSet};

use crate::lease::model::{Lease, AT_TIMESTAMP, SHARD_END, TRIM_HORIZON};

use super::discovery::ShardInfo;

/// The decision for one listed shard without a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rowless {
    /// Finished by the table's previous owner; `evidence` is the descendant whose row
    /// shows it.
    Finished { evidence: String },
    /// A reshard child of a shard that is read: TRIM_HORIZON.
    Child,
    /// Reached by nothing in the table: the configured initial position.
    Fresh,
    /// The rows contradict each other; `reason` says how.
    Unknown { reason: String },
}

/// Each listed parent's listed children, in listing order.
pub fn children_of(shards: &[ShardInfo]) -> HashMap<&str, Vec<&str>> {
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for s in shards {
        for p in &s.parents {
            children
                .entry(p.as_str())
                .or_default()
                .push(s.shard_id.as_str());
        }
    }
    children
}

/// Decides every listed shard that has no row in `rows`.
pub fn classify(shards: &[ShardInfo], rows: &HashMap<&str, &Lease>) -> HashMap<String, Rowless> {
    let listed: HashMap<&str, &ShardInfo> =
        shards.iter().map(|s| (s.shard_id.as_str(), s)).collect();
    let mut c = Classifier {
        listed,
        children: children_of(shards),
        rows,
        done: HashMap::new(),
        decided: HashMap::new(),
        visiting: HashSet::new(),
    };
    // Descendants first (finished/unknown look down), then ancestors (child/fresh look up).
    for s in shards {
        if !rows.contains_key(s.shard_id.as_str()) {
            c.down(&s.shard_id);
        }
    }
    let mut out = HashMap::new();
    for s in shards {
        if !rows.contains_key(s.shard_id.as_str()) {
            let d = c.up(&s.shard_id);
            out.insert(s.shard_id.clone(), d);
        }
    }
    out
}

/// What the descendants say about a rowless shard.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Down {
    Finished(String),
    Unknown(String),
    Silent,
}

struct Classifier<'a> {
    listed: HashMap<&'a str, &'a ShardInfo>,
    children: HashMap<&'a str, Vec<&'a str>>,
    rows: &'a HashMap<&'a str, &'a Lease>,
    done: HashMap<String, Down>,
    decided: HashMap<String, Rowless>,
    /// Guards against a (malformed) cyclic lineage.
    visiting: HashSet<String>,
}

impl Classifier<'_> {
    fn down(&mut self, shard: &str) -> Down {
        if let Some(d) = self.done.get(shard) {
            return d.clone();
        }
        if !self.visiting.insert(shard.to_string()) {
            return Down::Silent;
        }
        let rows = self.rows;
        let kids = self.children.get(shard).cloned().unwrap_or_default();
        let mut finished = None;
        let mut unknown = None;
        for kid in kids {
            match rows.get(kid) {
                Some(row) => match row.checkpoint.as_deref() {
                    Some(TRIM_HORIZON) | None => {
                        unknown.get_or_insert_with(|| {
                            format!(
                                "child {kid} waits at {} for it, and its row is gone",
                                row.checkpoint.as_deref().unwrap_or("no checkpoint")
                            )
                        });
                    }
                    Some(cp) => {
                        finished.get_or_insert_with(|| format!("child {kid} is at {cp}"));
                    }
                },
                None => match self.down(kid) {
                    Down::Finished(e) => {
                        finished.get_or_insert_with(|| format!("child {kid} finished: {e}"));
                    }
                    Down::Unknown(r) => {
                        unknown.get_or_insert_with(|| format!("child {kid} unknown: {r}"));
                    }
                    Down::Silent => {}
                },
            }
        }
        // One child that moved on proves the previous owner was done with this shard.
        let d = match (finished, unknown) {
            (Some(e), _) => Down::Finished(e),
            (None, Some(r)) => Down::Unknown(r),
            (None, None) => Down::Silent,
        };
        self.visiting.remove(shard);
        self.done.insert(shard.to_string(), d.clone());
        d
    }

    fn up(&mut self, shard: &str) -> Rowless {
        if let Some(d) = self.decided.get(shard) {
            return d.clone();
        }
        let d = self.decide(shard);
        self.decided.insert(shard.to_string(), d.clone());
        d
    }

    fn decide(&mut self, shard: &str) -> Rowless {
        match self.down(shard) {
            Down::Finished(evidence) => return Rowless::Finished { evidence },
            Down::Unknown(reason) => return Rowless::Unknown { reason },
            Down::Silent => {}
        }
        if !self.visiting.insert(shard.to_string()) {
            return Rowless::Fresh;
        }
        let parents = self
            .listed
            .get(shard)
            .map(|s| s.parents.clone())
            .unwrap_or_default();
        let rows = self.rows;
        let mut child = false;
        for p in parents {
            child |= match rows.get(p.as_str()) {
                // Listed or aged out: a parent someone reads makes this a reshard child.
                Some(row) => parent_row_is_read(row),
                None if self.listed.contains_key(p.as_str()) => {
                    !matches!(self.up(&p), Rowless::Fresh)
                }
                None => false, // aged out without a row: nothing says it was read
            };
        }
        self.visiting.remove(shard);
        if child {
            Rowless::Child
        } else {
            Rowless::Fresh
        }
    }
}

/// Whether a parent's row means its children must be read from their first record.
/// Only a row no worker ever took (counter 0, no owner) that a bootstrap placed at
/// SHARD_END (closed before a LATEST start) or AT_TIMESTAMP leaves its children to the
/// initial position too: that is how a bootstrap cut short continues as it began.
fn parent_row_is_read(row: &Lease) -> bool {
    let untouched = row.counter == 0 && row.owner.is_none();
    !(untouched && matches!(row.checkpoint.as_deref(), Some(SHARD_END | AT_TIMESTAMP)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::model::Checkpoint;
    use crate::shard::test_support::{pos, shard};

    fn row(id: &str, cp: Checkpoint, counter: u64) -> Lease {
        let mut l = Lease::new(id, &cp);
        l.counter = counter;
        if counter > 0 {
            l.owner = Some("kcl-1".into());
        }
        l
    }

    fn at() -> Checkpoint {
        Checkpoint::At(pos("4968", 0))
    }

    fn run(shards: &[ShardInfo], rows: &[Lease]) -> HashMap<String, Rowless> {
        let by: HashMap<&str, &Lease> = rows.iter().map(|l| (l.shard_id.as_str(), l)).collect();
        classify(shards, &by)
    }

    /// 0 split into 2 and 3; 3 merged with 1 into 4.
    fn split_merge() -> Vec<ShardInfo> {
        vec![
            shard("0", &[], true),
            shard("1", &[], true),
            shard("2", &["0"], false),
            shard("3", &["0"], true),
            shard("4", &["3", "1"], false),
        ]
    }

    #[test]
    fn parents_the_kcl_deleted_are_finished() {
        let rows = [row("2", at(), 9), row("4", at(), 5)];
        let got = run(&split_merge(), &rows);
        for p in ["0", "1", "3"] {
            assert!(
                matches!(got[p], Rowless::Finished { .. }),
                "{p}: {:?}",
                got[p]
            );
        }
    }

    #[test]
    fn a_kcl_started_at_latest_skipped_closed_parents() {
        let rows = [
            row("2", Checkpoint::Latest, 0),
            row("4", Checkpoint::Latest, 0),
        ];
        let got = run(&split_merge(), &rows);
        assert!(got.values().all(|d| matches!(d, Rowless::Finished { .. })));
    }

    #[test]
    fn a_child_waiting_at_trim_horizon_for_a_vanished_parent_is_unknown() {
        let rows = [
            row("2", Checkpoint::TrimHorizon, 0),
            row("3", Checkpoint::TrimHorizon, 0),
            row("4", at(), 3),
        ];
        let got = run(&split_merge(), &rows);
        assert!(
            matches!(got["0"], Rowless::Unknown { .. }),
            "{:?}",
            got["0"]
        );
        assert!(matches!(got["1"], Rowless::Finished { .. }));
    }

    #[test]
    fn one_child_that_moved_on_outweighs_a_sibling_not_started() {
        let rows = [row("2", Checkpoint::TrimHorizon, 0), row("3", at(), 4)];
        let got = run(&split_merge(), &rows[..]);
        assert!(matches!(got["0"], Rowless::Finished { .. }));
        // 1 is closed and nothing below it has a row: not reached; 4 follows 3 (read).
        assert_eq!(got["1"], Rowless::Fresh);
        assert_eq!(got["4"], Rowless::Child);
    }

    #[test]
    fn children_of_read_parents_start_from_their_first_record() {
        let rows = [row("0", at(), 7), row("1", Checkpoint::Latest, 0)];
        let got = run(&split_merge(), &rows);
        assert_eq!(got["2"], Rowless::Child);
        assert_eq!(got["3"], Rowless::Child);
        assert_eq!(got["4"], Rowless::Child);
    }

    #[test]
    fn a_bootstrap_cut_short_continues_at_the_initial_position() {
        // A LATEST bootstrap wrote 0 (closed: SHARD_END, never taken) and stopped.
        let rows = [row("0", Checkpoint::ShardEnd, 0)];
        let got = run(&split_merge(), &rows);
        for s in ["1", "2", "3", "4"] {
            assert_eq!(got[s], Rowless::Fresh, "{s}");
        }
        // An AT_TIMESTAMP bootstrap likewise.
        let rows = [row("0", Checkpoint::AtTimestamp(5), 0)];
        assert!(run(&split_merge(), &rows)
            .values()
            .all(|d| *d == Rowless::Fresh));
    }

    #[test]
    fn children_of_a_read_parent_past_retention_start_from_their_first_record() {
        // The consumers were down longer than the retention: 0 is no longer listed.
        let rows = [row("0", at(), 7)];
        let got = run(&split_merge()[2..], &rows);
        assert_eq!(got["2"], Rowless::Child);
        assert_eq!(got["3"], Rowless::Child);
    }

    #[test]
    fn an_empty_table_is_all_fresh() {
        assert!(run(&split_merge(), &[])
            .values()
            .all(|d| *d == Rowless::Fresh));
    }

    #[test]
    fn a_cyclic_lineage_does_not_hang() {
        let shards = [shard("a", &["b"], true), shard("b", &["a"], true)];
        let got = run(&shards, &[]);
        assert_eq!(got.len(), 2);
    }
}
