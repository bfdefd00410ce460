//! Shard discovery: lists the stream's shards (ListShards, paginated) and makes sure
//! each has a lease row with its lineage (parents, children) and hash range. Where a
//! new row starts is decided by the pure [`plan_sync`]: the configured initial position
//! only when the table is being bootstrapped, TRIM_HORIZON for shards that appear
//! later (reshard children), so nothing written to a child is ever skipped.

use std::collections::{HashMap, HashSet};

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

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
    /// New free lease rows to create (put-if-absent).
    pub create: Vec<Lease>,
    /// Existing parent rows missing some of their children's ids.
    pub add_children: Vec<(String, Vec<String>)>,
    /// Finished rows (SHARD_END) of shards the stream no longer lists — aged out past
    /// the retention period — with the counter seen: deleted so that months of
    /// resharding do not grow the table (and every scan) forever.
    pub delete: Vec<(String, u64)>,
}

/// Decides the rows to create and the lineage to record.
///
/// Bootstrap (empty table): every shard starts at `initial`, except that with LATEST a
/// closed shard starts at SHARD_END (it holds nothing newer than now), so its open
/// children are not held back. Later: a new shard starts at TRIM_HORIZON regardless of
/// `initial` — it is a reshard child, read after its parents, from its first record.
pub fn plan_sync(shards: &[ShardInfo], existing: &[Lease], initial: InitialPosition) -> SyncPlan {
    let bootstrap = existing.is_empty();
    let rows: HashMap<&str, &Lease> = existing.iter().map(|l| (l.shard_id.as_str(), l)).collect();
    let mut children: HashMap<&str, Vec<String>> = HashMap::new();
    for s in shards {
        for p in &s.parents {
            children
                .entry(p.as_str())
                .or_default()
                .push(s.shard_id.clone());
        }
    }

    let mut plan = SyncPlan::default();
    // A row is only garbage once its shard has left a listing that is not empty: an
    // empty answer more likely means a wrong or recreated stream than a fully trimmed
    // one. A finished row of a still-listed shard must stay, or the next sync would
    // recreate it at TRIM_HORIZON and read the whole shard again. Unfinished rows of
    // unlisted shards stay too: their data expired unread, which is for a human to see.
    if !shards.is_empty() {
        let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
        plan.delete = existing
            .iter()
            .filter(|l| l.is_shard_end() && !listed.contains(l.shard_id.as_str()))
            .map(|l| (l.shard_id.clone(), l.counter))
            .collect();
    }
    for s in shards {
        let kids = children
            .get(s.shard_id.as_str())
            .cloned()
            .unwrap_or_default();
        match rows.get(s.shard_id.as_str()) {
            Some(row) => {
                let known: HashSet<&str> = row.children.iter().map(String::as_str).collect();
                let missing: Vec<String> = kids
                    .into_iter()
                    .filter(|k| !known.contains(k.as_str()))
                    .collect();
                if !missing.is_empty() {
                    plan.add_children.push((s.shard_id.clone(), missing));
                }
            }
            None => {
                let start = if !bootstrap {
                    Checkpoint::TrimHorizon
                } else if initial == InitialPosition::Latest && s.closed {
                    Checkpoint::ShardEnd
                } else {
                    initial.as_checkpoint()
                };
                let mut l = Lease::new(s.shard_id.clone(), &start);
                l.parents = s.parents.clone();
                l.children = kids;
                l.starting_hash_key = s.starting_hash_key.clone();
                l.ending_hash_key = s.ending_hash_key.clone();
                plan.create.push(l);
            }
        }
    }
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
    let mut created = Vec::new();
    for l in plan.create {
        if table.create_if_absent(&l).await? {
            metrics::counter!("tradeflow_consumer_leases_created_total").increment(1);
            tracing::info!(shard = %l.shard_id, checkpoint = ?l.checkpoint, parents = ?l.parents, "lease created for new shard");
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str], closed: bool) -> ShardInfo {
        ShardInfo {
            shard_id: id.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            starting_hash_key: Some("0".into()),
            ending_hash_key: Some("9".into()),
            closed,
        }
    }

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
