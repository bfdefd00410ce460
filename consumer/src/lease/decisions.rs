//! The pure lease decisions: expiry by the local monotonic clock, which leases to take
//! or steal, and when a child shard may start. No I/O and no clock reads here: callers
//! pass a table snapshot and `now`, so the rules are unit-tested and benchmarked alone.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::model::Lease;

/// When this worker first saw each lease's current counter value. Expiry is judged
/// only from these local, monotonic observations — never from another host's clock.
#[derive(Debug, Default, Clone)]
pub struct Observations {
    seen: HashMap<String, Seen>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    counter: u64,
    since: Instant,
}

impl Observations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a fresh scan: a counter value not seen before starts its clock at `now`.
    /// Rows that disappeared are forgotten.
    pub fn update(&mut self, leases: &[Lease], now: Instant) {
        let mut next = HashMap::with_capacity(leases.len());
        for l in leases {
            let seen = match self.seen.get(&l.shard_id) {
                Some(s) if s.counter == l.counter => *s,
                _ => Seen {
                    counter: l.counter,
                    since: now,
                },
            };
            next.insert(l.shard_id.clone(), seen);
        }
        self.seen = next;
    }

    /// Whether the lease may be taken without stealing: it has no owner, or its counter
    /// has not moved for longer than `failover` on our clock (KCL `Lease.isExpired`).
    /// A lease never observed is not expired: we have no evidence yet.
    pub fn is_expired(&self, lease: &Lease, now: Instant, failover: Duration) -> bool {
        if lease.owner.is_none() {
            return true;
        }
        match self.seen.get(&lease.shard_id) {
            Some(s) if s.counter == lease.counter => {
                now.saturating_duration_since(s.since) > failover
            }
            _ => false,
        }
    }

    /// How long the lease's current counter has stood still on our clock (zero for a
    /// value not seen before).
    pub fn stood_still(&self, lease: &Lease, now: Instant) -> Duration {
        match self.seen.get(&lease.shard_id) {
            Some(s) if s.counter == lease.counter => now.saturating_duration_since(s.since),
            _ => Duration::ZERO,
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// A held lease can no longer be proven ours once `failover` has passed since the
/// last write of ours that succeeded (measured from when that write was sent, since
/// others start their clocks no earlier than that).
pub fn held_lease_unproven(last_write_sent: Instant, now: Instant, failover: Duration) -> bool {
    now.saturating_duration_since(last_write_sent) >= failover
}

/// Parent before child: a lease may start once every parent is checkpointed at
/// SHARD_END, or has no row and is not in the shard list (trimmed away). With no shard
/// list known yet, a parent without a row counts as trimmed.
pub fn parents_done(
    lease: &Lease,
    by_key: &HashMap<&str, &Lease>,
    listed_shards: Option<&HashSet<String>>,
) -> bool {
    lease.parents.iter().all(|p| match by_key.get(p.as_str()) {
        Some(parent) => parent.is_shard_end(),
        None => listed_shards.is_none_or(|s| !s.contains(p)),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeKind {
    /// Free or expired: no live owner to compete with.
    Take,
    /// Held by a live worker that has more than its share.
    Steal,
}

/// One lease to acquire, with the counter the conditional write must expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeAction {
    pub shard_id: String,
    pub expected_counter: u64,
    pub previous_owner: Option<String>,
    pub kind: TakeKind,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TakePlan {
    pub actions: Vec<TakeAction>,
    /// Leases that count for balancing (not finished; startable or held).
    pub active: usize,
    /// Live workers, this one included.
    pub workers: usize,
    /// Leases per worker this one aims for.
    pub target: usize,
    /// Leases this worker holds according to the snapshot.
    pub mine: usize,
}

pub struct TakeInput<'a> {
    pub me: &'a str,
    pub leases: &'a [Lease],
    pub observations: &'a Observations,
    pub now: Instant,
    pub failover: Duration,
    pub max_leases_per_worker: Option<usize>,
    pub listed_shards: Option<&'a HashSet<String>>,
}

/// Decides which leases to take (KCL 2.x `DynamoDBLeaseTaker` rules):
/// target = ceil(active / live workers), capped by `max_leases_per_worker`; take free
/// and expired leases first (up to the target); only when there are none, steal one
/// lease from the most loaded worker, and only if that does not just move the
/// imbalance (it must hold more than the target when we need just one more).
/// Finished (SHARD_END) leases, unreadable rows and children whose parents are not
/// done are never taken.
pub fn plan_take(input: &TakeInput<'_>) -> TakePlan {
    let me = input.me;
    let by_key: HashMap<&str, &Lease> = input
        .leases
        .iter()
        .map(|l| (l.shard_id.as_str(), l))
        .collect();

    let mut loads: HashMap<&str, usize> = HashMap::new();
    // (lease, startable, expired)
    let mut counted: Vec<(&Lease, bool, bool)> = Vec::with_capacity(input.leases.len());
    for l in input.leases {
        if l.is_shard_end() || l.checkpoint.is_none() {
            continue;
        }
        let startable = parents_done(l, &by_key, input.listed_shards);
        let expired = input.observations.is_expired(l, input.now, input.failover);
        let live_owner = l.owner.as_deref().filter(|_| !expired);
        if !startable && live_owner.is_none() {
            continue;
        }
        if let Some(o) = live_owner {
            *loads.entry(o).or_default() += 1;
        }
        counted.push((l, startable, expired));
    }

    let active = counted.len();
    let workers = loads.len() + usize::from(!loads.contains_key(me));
    let mut target = if active == 0 {
        0
    } else {
        active.div_ceil(workers)
    };
    if let Some(max) = input.max_leases_per_worker {
        target = target.min(max);
    }
    let mine = loads.get(me).copied().unwrap_or(0);
    let mut plan = TakePlan {
        actions: Vec::new(),
        active,
        workers,
        target,
        mine,
    };
    let need = target.saturating_sub(mine);
    if need == 0 {
        return plan;
    }

    let mut free: Vec<&Lease> = counted
        .iter()
        .filter(|(_, startable, expired)| *startable && *expired)
        .map(|(l, _, _)| *l)
        .collect();
    if !free.is_empty() {
        // Unowned first, then expired; the order within is spread per worker so that
        // workers scanning at once do not all race for the same rows.
        free.sort_by_key(|l| (l.owner.is_some(), spread(me, &l.shard_id)));
        plan.actions = free
            .into_iter()
            .take(need)
            .map(|l| TakeAction {
                shard_id: l.shard_id.clone(),
                expected_counter: l.counter,
                previous_owner: l.owner.clone(),
                kind: TakeKind::Take,
            })
            .collect();
        return plan;
    }

    // Steal at most one, from the most loaded other worker (ties: smallest id, so the
    // choice is deterministic).
    let Some((victim, victim_load)) = loads
        .iter()
        .filter(|(w, _)| **w != me)
        .map(|(w, n)| (*w, *n))
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
    else {
        return plan;
    };
    let threshold = if need > 1 { target } else { target + 1 };
    if victim_load < threshold {
        return plan;
    }
    let pick = counted
        .iter()
        .filter(|(l, startable, expired)| {
            *startable && !*expired && l.owner.as_deref() == Some(victim)
        })
        .map(|(l, _, _)| *l)
        .min_by_key(|l| spread(me, &l.shard_id));
    if let Some(l) = pick {
        plan.actions.push(TakeAction {
            shard_id: l.shard_id.clone(),
            expected_counter: l.counter,
            previous_owner: l.owner.clone(),
            kind: TakeKind::Steal,
        });
    }
    plan
}

/// Whether the next take pass may come at the settled pace (a Scan a second per worker
/// was most of an idle fleet's lease-table cost, issue #24). Not while this pass planned
/// a take or steal (steals go one a pass, and more may follow), nor while an owned
/// lease's counter has stood still for `suspect_after` without having expired yet: its
/// owner may have died, and its expiry is timed from the scan that first saw the value,
/// so scans come quickly until it is resolved. A live owner renews every failover/3, so
/// at a settled pace of failover/2 each scan sees its counter move.
pub fn table_settled(plan: &TakePlan, input: &TakeInput<'_>, suspect_after: Duration) -> bool {
    if !plan.actions.is_empty() {
        return false;
    }
    !input.leases.iter().any(|l| {
        l.owner.is_some()
            && !l.is_shard_end()
            && l.checkpoint.is_some()
            && !input.observations.is_expired(l, input.now, input.failover)
            && input.observations.stood_still(l, input.now) >= suspect_after
    })
}

/// FNV-1a over worker id and shard id: a cheap per-worker permutation of the shards.
fn spread(me: &str, shard: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in me.bytes().chain([0u8]).chain(shard.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests;
