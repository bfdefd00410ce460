//! A lease row's DynamoDB item: which rows are leases, and the attributes we read and
//! write (the KCL 2.x/3.x layout). Everything else in an item is ignored and left in
//! place.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::model::{attr, Lease, LEASE_ENTITY};

pub type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n(item: &Item, k: &str) -> Result<Option<u64>, String> {
    match item.get(k) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{k} is not a whole number: {v:?}")),
        Some(_) => Err(format!("{k} is not a number")),
    }
}

fn get_ss(item: &Item, k: &str) -> Vec<String> {
    match item.get(k) {
        Some(AttributeValue::Ss(v)) => v.clone(),
        // Some ports write a single string or a list; accept them rather than stall.
        Some(AttributeValue::S(v)) if !v.is_empty() => vec![v.clone()],
        Some(AttributeValue::L(v)) => v.iter().filter_map(|x| x.as_s().ok().cloned()).collect(),
        _ => Vec::new(),
    }
}

/// Whether a row is a lease: KCL 2.x rows have no `entityType`, KCL 3.x lease rows say
/// `LEASE` (as the KCL itself reads them: absent means lease).
pub fn is_lease_item(item: &Item) -> bool {
    match item.get(attr::ENTITY_TYPE) {
        None => true,
        Some(v) => v.as_s().is_ok_and(|t| t == LEASE_ENTITY),
    }
}

/// Reads the attributes we know; everything else is ignored (and left in place).
pub fn parse_item(item: &Item) -> Result<Lease, String> {
    let shard_id = get_s(item, attr::LEASE_KEY)
        .ok_or_else(|| "no leaseKey".to_string())?
        .to_string();
    let counter = get_n(item, attr::LEASE_COUNTER)
        .map_err(|e| format!("{shard_id}: {e}"))?
        .unwrap_or(0);
    Ok(Lease {
        owner: get_s(item, attr::LEASE_OWNER).map(str::to_string),
        counter,
        checkpoint: get_s(item, attr::CHECKPOINT).map(str::to_string),
        checkpoint_sub: get_n(item, attr::CHECKPOINT_SUB)
            .map_err(|e| format!("{shard_id}: {e}"))?
            .unwrap_or(0),
        owner_switches: get_n(item, attr::OWNER_SWITCHES)
            .ok()
            .flatten()
            .unwrap_or(0),
        parents: get_ss(item, attr::PARENT_SHARD_IDS),
        children: get_ss(item, attr::CHILD_SHARD_IDS),
        starting_hash_key: get_s(item, attr::STARTING_HASH_KEY).map(str::to_string),
        ending_hash_key: get_s(item, attr::ENDING_HASH_KEY).map(str::to_string),
        shard_id,
    })
}

/// The item of a new row, as the KCL 3.x writes one (`entityType` LEASE, which KCL 2.x
/// ignores). String sets cannot be empty in DynamoDB, so empty parent/child lists are
/// left out.
pub fn to_item(l: &Lease) -> Item {
    let mut item = Item::new();
    item.insert(attr::LEASE_KEY.into(), s(l.shard_id.clone()));
    item.insert(attr::ENTITY_TYPE.into(), s(LEASE_ENTITY));
    if let Some(o) = &l.owner {
        item.insert(attr::LEASE_OWNER.into(), s(o.clone()));
    }
    item.insert(attr::LEASE_COUNTER.into(), n(l.counter));
    if let Some(cp) = &l.checkpoint {
        item.insert(attr::CHECKPOINT.into(), s(cp.clone()));
    }
    item.insert(attr::CHECKPOINT_SUB.into(), n(l.checkpoint_sub));
    item.insert(attr::OWNER_SWITCHES.into(), n(l.owner_switches));
    if !l.parents.is_empty() {
        item.insert(
            attr::PARENT_SHARD_IDS.into(),
            AttributeValue::Ss(l.parents.clone()),
        );
    }
    if !l.children.is_empty() {
        item.insert(
            attr::CHILD_SHARD_IDS.into(),
            AttributeValue::Ss(l.children.clone()),
        );
    }
    if let Some(h) = &l.starting_hash_key {
        item.insert(attr::STARTING_HASH_KEY.into(), s(h.clone()));
    }
    if let Some(h) = &l.ending_hash_key {
        item.insert(attr::ENDING_HASH_KEY.into(), s(h.clone()));
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::model::Checkpoint;

    #[test]
    fn item_round_trip_and_unknown_attributes_ignored() {
        let mut l = Lease::new("shardId-000000000001", &Checkpoint::TrimHorizon);
        l.owner = Some("w1".into());
        l.counter = 42;
        l.parents = vec!["shardId-000000000000".into()];
        l.starting_hash_key = Some("0".into());
        l.ending_hash_key = Some("340282366920938463463374607431768211455".into());
        let mut item = to_item(&l);
        item.insert("entityType".into(), s("LEASE"));
        item.insert("throughputKBps".into(), AttributeValue::N("1.5".into()));
        assert_eq!(parse_item(&item).unwrap(), l);
    }

    #[test]
    fn only_lease_rows_are_leases() {
        let mut item = to_item(&Lease::new("s", &Checkpoint::Latest));
        assert!(is_lease_item(&item));
        item.remove(attr::ENTITY_TYPE);
        assert!(is_lease_item(&item), "KCL 2.x rows have no entityType");
        for other in ["WORKER_METRIC_STATS", "LEADER", "CLIENT_VERSION_MIGRATION"] {
            item.insert(attr::ENTITY_TYPE.into(), s(other));
            assert!(!is_lease_item(&item), "{other}");
        }
    }

    #[test]
    fn bad_counter_is_an_error_not_a_panic() {
        let mut item = to_item(&Lease::new("s", &Checkpoint::Latest));
        item.insert(attr::LEASE_COUNTER.into(), AttributeValue::N("1.5".into()));
        assert!(parse_item(&item).is_err());
        assert!(parse_item(&Item::new()).is_err());
    }
}
