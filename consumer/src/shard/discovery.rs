//! Shard discovery: lists the stream's shards (ListShards, paginated) and makes sure
//! each has a lease row with its lineage (parents, children) and hash range. Where a
//! new row starts is decided by the pure [`plan_sync`] from the lineage of the rows that
//! exist ([`super::lineage`]): SHARD_END for a shard the table's previous owner finished
//! (an adopted KCL table whose finished parents were deleted), TRIM_HORIZON for reshard
//! children (nothing written to a child is skipped), the configured initial position
//! for shards nothing in the table reaches (a new table, or a bootstrap cut short), and
//! no row at all where the rows contradict each other.

use std::collections::{HashMap, HashSet};

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::lineage::{self, Rowless};
use crate::lease::model::{Checkpoint, InitialPosition, Lease};
use crate::lease::{LeaseError, LeaseTable};

/// What discovery needs to know about one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    /// ParentShardId then AdjacentParentShardId, when present.
    pub parents: Vec<String>,
    pub starting_hash_key: Option<String>,
    pub ending_hash_key: Option<String>,
    /// Has an ending sequence number: no more records will be written to it.
    pub closed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("ListShards on stream {stream} failed: {message}")]
    ListShards {
        stream: String,
        message: String,
        retryable: bool,
    },
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

impl DiscoveryError {
    pub fn is_retryable(&self) -> bool {
        match self {
            DiscoveryError::ListShards { retryable, .. } => *retryable,
            DiscoveryError::Lease(e) => e.is_retryable(),
        }
    }
}

/// Every shard of the stream, open and closed (still within retention).
pub async fn list_shards(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<ShardInfo>, DiscoveryError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        metrics::counter!("tradeflow_consumer_kinesis_requests_total", "op" => "list_shards")
            .increment(1);
        // ListShards refuses StreamName together with NextToken.
        let req = match token.take() {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let page = req.send().await.map_err(|e| {
            let retryable = match &e {
                SdkError::ServiceError(se) => matches!(
                    se.err().code(),
                    Some("LimitExceededException" | "InternalFailure" | "ServiceUnavailable")
                ),
                SdkError::ConstructionFailure(_) => false,
                _ => true,
            };
            DiscoveryError::ListShards {
                stream: stream.to_string(),
                message: format!("{}", DisplayErrorContext(&e)),
                retryable,
            }
        })?;
        for s in page.shards() {
            let mut parents = Vec::new();
            parents.extend(s.parent_shard_id().map(str::to_string));
            parents.extend(s.adjacent_parent_shard_id().map(str::to_string));
            out.push(ShardInfo {
                shard_id: s.shard_id().to_string(),
                parents,
                starting_hash_key: s
                    .hash_key_range()
                    .map(|h| h.starting_hash_key().to_string()),
                ending_hash_key: s.hash_key_range().map(|h| h.ending_hash_key().to_string()),
                closed: s
                    .sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_some(),
            });
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    metrics::gauge!("tradeflow_consumer_shards_discovered").set(out.len() as f64);
    Ok(out)
}

/// The writes a sync needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncPlan {
    /// New free lease rows to create (put-if-absent), in this order: rows to read in
    /// listing order (parents first, so a sync cut short leaves no child without its
    /// parent), then rows of shards found finished (after their children, so that a cut
    /// short sync cannot leave a finished-looking parent above a child without a row).
    pub create: Vec<Lease>,
    /// Existing parent rows missing some of their children's ids.
    pub add_children: Vec<(String, Vec<String>)>,
    /// Finished rows (SHARD_END) of shards the stream no longer lists — aged out past
    /// the retention period — with the counter seen: deleted so that months of
    /// resharding do not grow the table (and every scan) forever.
    pub delete: Vec<(String, u64)>,
    /// Listed shards given a SHARD_END row because the previous owner finished them,
    /// with the evidence (a descendant's row).
    pub finished: Vec<(String, String)>,
    /// Listed shards left without a row because the table cannot tell whether they
    /// were read, with the reason. Their children wait until a person decides.
    pub unknown: Vec<(String, String)>,
}

/// Decides the rows to create and the lineage to record.
///
/// A listed shard without a row starts as [`lineage::classify`] decides: finished by
/// the previous owner (SHARD_END), a reshard child (TRIM_HORIZON), or reached by
/// nothing in the table — an empty table, or a bootstrap cut short — at `initial`,
/// except that with LATEST a closed shard starts at SHARD_END (it holds nothing newer
/// than now), so its open children are not held back.
pub fn plan_sync(shards: &[ShardInfo], existing: &[Lease], initial: InitialPosition) -> SyncPlan {
    let rows: HashMap<&str, &Lease> = existing.iter().map(|l| (l.shard_id.as_str(), l)).collect();
    let children = lineage::children_of(shards);
    let decisions = lineage::classify(shards, &rows);

    let mut plan = SyncPlan::default();
    // A row is only garbage once its shard has left a listing that is not empty: an
    // empty answer more likely means a wrong or recreated stream than a fully trimmed
    // one. A finished row of a still-listed shard must stay, or the next sync would
    // have to work out again that it was finished. Unfinished rows of unlisted shards
    // stay too: their data expired unread, which is for a human to see.
    if !shards.is_empty() {
        let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
        plan.delete = existing
            .iter()
            .filter(|l| l.is_shard_end() && !listed.contains(l.shard_id.as_str()))
            .map(|l| (l.shard_id.clone(), l.counter))
            .collect();
    }
    let mut finished_rows = Vec::new();
    for s in shards {
        let kids: Vec<String> = children
            .get(s.shard_id.as_str())
            .map(|k| k.iter().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        if let Some(row) = rows.get(s.shard_id.as_str()) {
            let known: HashSet<&str> = row.children.iter().map(String::as_str).collect();
            let missing: Vec<String> = kids
                .into_iter()
                .filter(|k| !known.contains(k.as_str()))
                .collect();
            if !missing.is_empty() {
                plan.add_children.push((s.shard_id.clone(), missing));
            }
            continue;
        }
        let start = match decisions.get(&s.shard_id) {
            Some(Rowless::Finished { evidence }) => {
                plan.finished.push((s.shard_id.clone(), evidence.clone()));
                Checkpoint::ShardEnd
            }
            Some(Rowless::Unknown { reason }) => {
                plan.unknown.push((s.shard_id.clone(), reason.clone()));
                continue;
            }
            Some(Rowless::Child) => Checkpoint::TrimHorizon,
            Some(Rowless::Fresh) | None => {
                if initial == InitialPosition::Latest && s.closed {
                    Checkpoint::ShardEnd
                } else {
                    initial.as_checkpoint()
                }
            }
        };
        let finished = matches!(decisions.get(&s.shard_id), Some(Rowless::Finished { .. }));
        let mut l = Lease::new(s.shard_id.clone(), &start);
        l.parents = s.parents.clone();
        l.children = kids;
        l.starting_hash_key = s.starting_hash_key.clone();
        l.ending_hash_key = s.ending_hash_key.clone();
        if finished {
            finished_rows.push(l);
        } else {
            plan.create.push(l);
        }
    }
    plan.create.extend(finished_rows);
    plan
}

/// What a sync found and did.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    pub shards: Vec<ShardInfo>,
    /// Rows this sync created (another worker may have created others meanwhile).
    pub created: Vec<Lease>,
    /// Finished rows of aged-out shards this sync deleted.
    pub deleted: Vec<String>,
    /// Listed shards left without a row: the table cannot tell whether they were read.
    pub unknown: Vec<String>,
}

/// Lists the shards and writes what [`plan_sync`] decides, given the rows of a scan
/// just made (so a sync costs no scan of its own).
pub async fn sync_leases(
    table: &LeaseTable,
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    existing: &[Lease],
    initial: InitialPosition,
) -> Result<SyncOutcome, DiscoveryError> {
    let shards = list_shards(kinesis, stream).await?;
    let plan = plan_sync(&shards, existing, initial);
    metrics::gauge!("tradeflow_consumer_shards_lineage_unknown").set(plan.unknown.len() as f64);
    for (shard, reason) in &plan.unknown {
        tracing::error!(
            %shard,
            %reason,
            table = table.name(),
            "shard has no lease row and the table cannot tell whether its previous owner read it: \
             not reading it (that could count it twice) nor skipping it (that could lose it); its \
             children wait. Write its row by hand: checkpoint SHARD_END if the old application \
             read it to its end, TRIM_HORIZON to read it"
        );
    }
    let evidence: HashMap<&str, &str> = plan
        .finished
        .iter()
        .map(|(s, e)| (s.as_str(), e.as_str()))
        .collect();
    let mut created = Vec::new();
    for l in plan.create {
        if table.create_if_absent(&l).await? {
            metrics::counter!("tradeflow_consumer_leases_created_total").increment(1);
            match evidence.get(l.shard_id.as_str()) {
                Some(why) => {
                    metrics::counter!("tradeflow_consumer_leases_inferred_finished_total")
                        .increment(1);
                    tracing::info!(shard = %l.shard_id, evidence = %why, "listed shard without a lease row recorded as finished (SHARD_END): the table's previous owner read it, so it is not read again");
                }
                None => {
                    tracing::info!(shard = %l.shard_id, checkpoint = ?l.checkpoint, parents = ?l.parents, "lease created for new shard")
                }
            }
            created.push(l);
        }
    }
    for (parent, kids) in plan.add_children {
        table.add_children(&parent, &kids).await?;
    }
    let mut deleted = Vec::new();
    for (shard, counter) in plan.delete {
        // Conditional: a row someone changed since our scan is left for the next sync.
        if table.delete_finished(&shard, counter).await? {
            metrics::counter!("tradeflow_consumer_leases_deleted_total").increment(1);
            tracing::info!(%shard, "finished lease deleted: its shard is past the stream's retention");
            deleted.push(shard);
        }
    }
    Ok(SyncOutcome {
        shards,
        created,
        deleted,
        unknown: plan.unknown.into_iter().map(|(s, _)| s).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::test_support::shard;

    #[test]
    fn bootstrap_uses_initial_position() {
        let shards = [shard("a", &[], false), shard("b", &[], false)];
        let p = plan_sync(&shards, &[], InitialPosition::AtTimestamp(5));
        assert_eq!(p.create.len(), 2);
        assert!(p
            .create
            .iter()
            .all(|l| l.checkpoint.as_deref() == Some("AT_TIMESTAMP")));
    }

    #[test]
    fn bootstrap_latest_skips_closed_parents() {
        let shards = [
            shard("p", &[], true),
            shard("c1", &["p"], false),
            shard("c2", &["p"], false),
        ];
        let p = plan_sync(&shards, &[], InitialPosition::Latest);
        let by: HashMap<_, _> = p.create.iter().map(|l| (l.shard_id.as_str(), l)).collect();
        assert_eq!(by["p"].checkpoint.as_deref(), Some("SHARD_END"));
        assert_eq!(by["p"].children, vec!["c1".to_string(), "c2".to_string()]);
        assert_eq!(by["c1"].checkpoint.as_deref(), Some("LATEST"));
        assert_eq!(by["c1"].parents, vec!["p".to_string()]);
    }

    #[test]
    fn reshard_children_start_at_trim_horizon_and_parents_learn_them() {
        let existing = vec![
            Lease::new("a", &Checkpoint::Latest),
            Lease::new("b", &Checkpoint::Latest),
        ];
        let shards = [
            shard("a", &[], true),
            shard("b", &[], true),
            shard("m", &["a", "b"], false),
        ];
        let p = plan_sync(&shards, &existing, InitialPosition::Latest);
        assert_eq!(p.create.len(), 1);
        assert_eq!(p.create[0].checkpoint.as_deref(), Some("TRIM_HORIZON"));
        assert_eq!(p.create[0].parents, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(
            p.add_children,
            vec![
                ("a".to_string(), vec!["m".to_string()]),
                ("b".to_string(), vec!["m".to_string()])
            ]
        );
        // Once recorded, nothing more to do.
        let mut existing = existing;
        for l in &mut existing {
            l.children = vec!["m".into()];
        }
        existing.push(p.create[0].clone());
        assert_eq!(
            plan_sync(&shards, &existing, InitialPosition::Latest),
            SyncPlan::default()
        );
    }

    /// A KCL 3.x table after a split (0 -> 2, 3) and a merge (3 + 1 -> 4) whose
    /// worker deleted the finished parents' rows, as it does by default.
    fn kcl_after_split_and_merge() -> (Vec<ShardInfo>, Vec<Lease>) {
        let shards = vec![
            shard("0", &[], true),
            shard("1", &[], true),
            shard("2", &["0"], false),
            shard("3", &["0"], true),
            shard("4", &["3", "1"], false),
        ];
        let seq = |s: &str| {
            Checkpoint::At(tradeflow_shared::Position::new(
                tradeflow_shared::SequenceNumber::parse(s).unwrap(),
                0,
            ))
        };
        let mut two = Lease::new("2", &seq("4968078816250335368088533282343143899"));
        let mut four = Lease::new("4", &seq("4968078817824767979104795276142335593"));
        for l in [&mut two, &mut four] {
            l.owner = Some("kcl-1".into());
            l.counter = 9;
        }
        two.parents = vec!["0".into()];
        four.parents = vec!["3".into(), "1".into()];
        (shards, vec![two, four])
    }

    #[test]
    fn parents_a_kcl_finished_and_deleted_are_not_read_again() {
        let (shards, rows) = kcl_after_split_and_merge();
        for initial in [InitialPosition::TrimHorizon, InitialPosition::Latest] {
            let p = plan_sync(&shards, &rows, initial);
            let by: HashMap<_, _> = p.create.iter().map(|l| (l.shard_id.as_str(), l)).collect();
            for parent in ["0", "1", "3"] {
                assert_eq!(
                    by.get(parent).and_then(|l| l.checkpoint.as_deref()),
                    Some("SHARD_END"),
                    "{parent} with {initial:?}: {:?}",
                    p.create
                );
            }
            assert_eq!(by["3"].children, vec!["4".to_string()]);
            assert_eq!(by["3"].parents, vec!["0".to_string()]);
            assert_eq!(p.create.len(), 3);
        }
    }

    #[test]
    fn a_bootstrap_cut_short_continues_at_the_initial_position() {
        let shards = [
            shard("a", &[], false),
            shard("b", &[], false),
            shard("c", &[], false),
        ];
        for initial in [InitialPosition::Latest, InitialPosition::AtTimestamp(5)] {
            let existing = vec![Lease::new("a", &initial.as_checkpoint())];
            let p = plan_sync(&shards, &existing, initial);
            assert_eq!(p.create.len(), 2);
            for l in &p.create {
                assert_eq!(
                    l.checkpoint.as_deref(),
                    Some(initial.as_checkpoint().to_attr().0.as_str()),
                    "{} with {initial:?}",
                    l.shard_id
                );
            }
        }
    }

    #[test]
    fn a_parent_whose_row_vanished_under_a_waiting_child_is_not_guessed() {
        let (shards, _) = kcl_after_split_and_merge();
        // 0's children wait at TRIM_HORIZON, as the KCL makes them when 0 ends, yet 0's
        // row is gone (the KCL deletes a parent only once its children moved on): nothing
        // shows whether the old application read 0. Neither re-read nor skip it.
        let rows: Vec<Lease> = ["2", "3"]
            .iter()
            .map(|c| {
                let mut l = Lease::new(*c, &Checkpoint::TrimHorizon);
                l.parents = vec!["0".into()];
                l
            })
            .collect();
        let p = plan_sync(&shards, &rows, InitialPosition::TrimHorizon);
        assert!(p.create.iter().all(|l| l.shard_id != "0"), "{:?}", p.create);
        assert_eq!(p.unknown.len(), 1, "{:?}", p.unknown);
        assert_eq!(p.unknown[0].0, "0");
    }

    #[test]
    fn only_finished_rows_of_unlisted_shards_are_deleted() {
        let mut gone_done = Lease::new("gone-done", &Checkpoint::ShardEnd);
        gone_done.counter = 7;
        let gone_unread = Lease::new("gone-unread", &Checkpoint::TrimHorizon);
        let listed_done = Lease::new("p", &Checkpoint::ShardEnd);
        let listed_open = Lease::new("c", &Checkpoint::TrimHorizon);
        let existing = vec![gone_done, gone_unread, listed_done, listed_open];
        let shards = [shard("p", &[], true), shard("c", &["p"], false)];
        let p = plan_sync(&shards, &existing, InitialPosition::Latest);
        assert_eq!(p.delete, vec![("gone-done".to_string(), 7)]);
        assert!(p.create.is_empty());
        // An empty listing deletes nothing.
        assert!(plan_sync(&[], &existing, InitialPosition::Latest)
            .delete
            .is_empty());
    }
}
