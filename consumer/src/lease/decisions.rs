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
mod tests {
    use super::*;
    use crate::lease::model::{Checkpoint, SHARD_END};

    const FAILOVER: Duration = Duration::from_secs(10);

    fn lease(id: &str, owner: Option<&str>, counter: u64) -> Lease {
        let mut l = Lease::new(id, &Checkpoint::TrimHorizon);
        l.owner = owner.map(str::to_string);
        l.counter = counter;
        l
    }

    fn shards(n: usize, owner_of: impl Fn(usize) -> Option<String>) -> Vec<Lease> {
        (0..n)
            .map(|i| {
                let mut l = lease(&format!("shardId-{i:012}"), None, 5);
                l.owner = owner_of(i);
                l
            })
            .collect()
    }

    fn plan(me: &str, leases: &[Lease], obs: &Observations, now: Instant) -> TakePlan {
        plan_take(&TakeInput {
            me,
            leases,
            observations: obs,
            now,
            failover: FAILOVER,
            max_leases_per_worker: None,
            listed_shards: None,
        })
    }

    fn observed(leases: &[Lease], at: Instant) -> Observations {
        let mut o = Observations::new();
        o.update(leases, at);
        o
    }

    fn loads_after(mut leases: Vec<Lease>, me: &str, p: &TakePlan) -> HashMap<String, usize> {
        for a in &p.actions {
            let l = leases
                .iter_mut()
                .find(|l| l.shard_id == a.shard_id)
                .unwrap();
            l.owner = Some(me.into());
        }
        let mut m = HashMap::new();
        for l in &leases {
            if let Some(o) = &l.owner {
                *m.entry(o.clone()).or_default() += 1;
            }
        }
        m
    }

    #[test]
    fn takes_free_leases_up_to_target() {
        let t0 = Instant::now();
        let leases = shards(8, |i| (i < 3).then(|| "a".to_string()));
        let obs = observed(&leases, t0);
        let p = plan("b", &leases, &obs, t0);
        // a + b live, 8 active → target 4; b takes 4 of the 5 free ones.
        assert_eq!((p.workers, p.target), (2, 4));
        assert_eq!(p.actions.len(), 4);
        assert!(p
            .actions
            .iter()
            .all(|a| a.kind == TakeKind::Take && a.previous_owner.is_none()));
    }

    #[test]
    fn expiry_uses_the_local_clock_of_first_sight() {
        let t0 = Instant::now();
        let leases = vec![lease("s1", Some("a"), 7)];
        let mut obs = observed(&leases, t0);
        assert!(!obs.is_expired(&leases[0], t0 + FAILOVER, FAILOVER));
        assert!(obs.is_expired(
            &leases[0],
            t0 + FAILOVER + Duration::from_millis(1),
            FAILOVER
        ));
        // The counter moved: a new clock starts.
        let renewed = vec![lease("s1", Some("a"), 8)];
        obs.update(&renewed, t0 + Duration::from_secs(9));
        assert!(!obs.is_expired(&renewed[0], t0 + Duration::from_secs(15), FAILOVER));
        // Unchanged counter seen again later does not restart the clock.
        obs.update(&renewed, t0 + Duration::from_secs(18));
        assert!(obs.is_expired(&renewed[0], t0 + Duration::from_secs(20), FAILOVER));
        // A lease seen for the first time is never expired yet.
        let fresh = Observations::new();
        assert!(!fresh.is_expired(&leases[0], t0 + FAILOVER * 100, FAILOVER));
    }

    #[test]
    fn expired_leases_are_taken_before_any_steal() {
        let t0 = Instant::now();
        // a holds 4 and is alive, dead holds 4 but stopped renewing.
        let mut leases = shards(8, |i| Some(if i < 4 { "a" } else { "dead" }.into()));
        let obs = observed(&leases, t0);
        let now = t0 + FAILOVER + Duration::from_secs(1);
        // a renewed its leases meanwhile.
        for l in leases.iter_mut().take(4) {
            l.counter += 3;
        }
        let mut obs2 = obs.clone();
        obs2.update(&leases, now);
        let p = plan("b", &leases, &obs2, now);
        assert_eq!((p.workers, p.target), (2, 4));
        assert_eq!(p.actions.len(), 4);
        assert!(p
            .actions
            .iter()
            .all(|a| a.kind == TakeKind::Take && a.previous_owner.as_deref() == Some("dead")));
    }

    #[test]
    fn steals_one_from_the_most_loaded() {
        let t0 = Instant::now();
        let leases = shards(8, |i| Some(if i < 5 { "a" } else { "c" }.into()));
        let obs = observed(&leases, t0);
        let p = plan("b", &leases, &obs, t0);
        // 3 workers, target ceil(8/3) = 3; b needs 3 → steal one, from a (5).
        assert_eq!(p.target, 3);
        assert_eq!(p.actions.len(), 1);
        assert_eq!(p.actions[0].kind, TakeKind::Steal);
        assert_eq!(p.actions[0].previous_owner.as_deref(), Some("a"));
    }

    #[test]
    fn no_churn_when_balanced_within_one() {
        let t0 = Instant::now();
        // 8 shards over 3 workers: 3,3,2 is balanced; the one with 2 must not steal.
        let leases = shards(8, |i| Some(["a", "b", "c"][i % 3].into()));
        let obs = observed(&leases, t0);
        for me in ["a", "b", "c"] {
            let p = plan(me, &leases, &obs, t0);
            assert!(p.actions.is_empty(), "{me} would churn: {p:?}");
        }
        // 5 shards over 2 workers, 3/2: the second needs 1 but the first has only the target.
        let leases = shards(5, |i| Some(if i < 3 { "a" } else { "b" }.into()));
        let obs = observed(&leases, t0);
        assert!(plan("b", &leases, &obs, t0).actions.is_empty());
    }

    #[test]
    fn joining_worker_converges_by_single_steals() {
        let t0 = Instant::now();
        // 8 shards, 3 workers 3/3/2; a 4th joins → target 2, must end 2/2/2/2.
        let mut leases = shards(8, |i| Some(["a", "b", "c"][i % 3].into()));
        for _round in 0..10 {
            let obs = observed(&leases, t0);
            let p = plan("d", &leases, &obs, t0);
            assert!(p.actions.len() <= 1);
            let Some(a) = p.actions.first() else { break };
            let l = leases
                .iter_mut()
                .find(|l| l.shard_id == a.shard_id)
                .unwrap();
            l.owner = Some("d".into());
            l.counter += 1;
        }
        let obs = observed(&leases, t0);
        let loads = loads_after(leases.clone(), "d", &plan("d", &leases, &obs, t0));
        let mut v: Vec<usize> = loads.values().copied().collect();
        v.sort();
        assert_eq!(v, vec![2, 2, 2, 2], "{loads:?}");
        // And nobody else wants to move anything.
        for me in ["a", "b", "c", "d"] {
            assert!(plan(me, &leases, &obs, t0).actions.is_empty());
        }
    }

    #[test]
    fn max_leases_per_worker_caps_the_target() {
        let t0 = Instant::now();
        let leases = shards(10, |_| None);
        let obs = observed(&leases, t0);
        let p = plan_take(&TakeInput {
            me: "a",
            leases: &leases,
            observations: &obs,
            now: t0,
            failover: FAILOVER,
            max_leases_per_worker: Some(3),
            listed_shards: None,
        });
        assert_eq!(p.actions.len(), 3);
    }

    #[test]
    fn child_waits_for_parents_and_trimmed_parent_counts_as_done() {
        let t0 = Instant::now();
        let mut parent = lease("p", Some("a"), 3);
        let mut child = lease("c", None, 0);
        child.parents = vec!["p".into()];
        let mut orphan = lease("o", None, 0);
        orphan.parents = vec!["gone".into()];
        let mut waiting = lease("w", None, 0);
        waiting.parents = vec!["listed-no-row".into()];
        let listed: HashSet<String> = ["listed-no-row".to_string()].into();

        let leases = vec![
            parent.clone(),
            child.clone(),
            orphan.clone(),
            waiting.clone(),
        ];
        let by_key: HashMap<&str, &Lease> =
            leases.iter().map(|l| (l.shard_id.as_str(), l)).collect();
        assert!(!parents_done(&child, &by_key, Some(&listed)));
        assert!(parents_done(&orphan, &by_key, Some(&listed)));
        assert!(!parents_done(&waiting, &by_key, Some(&listed)));
        assert!(parents_done(&waiting, &by_key, None));

        let obs = observed(&leases, t0);
        let p = plan_take(&TakeInput {
            me: "b",
            leases: &leases,
            observations: &obs,
            now: t0,
            failover: FAILOVER,
            max_leases_per_worker: None,
            listed_shards: Some(&listed),
        });
        let ids: Vec<&str> = p.actions.iter().map(|a| a.shard_id.as_str()).collect();
        assert_eq!(ids, vec!["o"]);

        // Parent finished: the child becomes startable; finished leases are never taken.
        parent.checkpoint = Some(SHARD_END.into());
        let leases = vec![parent, child, orphan, waiting];
        let obs = observed(&leases, t0);
        let p = plan_take(&TakeInput {
            me: "b",
            leases: &leases,
            observations: &obs,
            now: t0,
            failover: FAILOVER,
            max_leases_per_worker: None,
            listed_shards: Some(&listed),
        });
        let mut ids: Vec<&str> = p.actions.iter().map(|a| a.shard_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, vec!["c", "o"]);
    }

    #[test]
    fn parent_whose_end_checkpoint_failed_is_retaken() {
        let t0 = Instant::now();
        // The parent's reader hit the end but SHARD_END was never written; its owner
        // stopped renewing. It must expire and be taken again; the child keeps waiting.
        let parent = lease("p", Some("a"), 9);
        let mut child = lease("c", None, 0);
        child.parents = vec!["p".into()];
        let leases = vec![parent, child];
        let obs = observed(&leases, t0);
        let p = plan("b", &leases, &obs, t0 + FAILOVER * 2);
        let ids: Vec<&str> = p.actions.iter().map(|a| a.shard_id.as_str()).collect();
        assert_eq!(ids, vec!["p"]);
    }

    #[test]
    fn thousand_shards_spread_over_workers() {
        let t0 = Instant::now();
        let mut leases = shards(1000, |_| None);
        let workers = ["w0", "w1", "w2", "w3", "w4", "w5", "w6"];
        // Workers take in turns until nobody wants anything. The first one grabs all
        // (it sees no one else), then the others steal one per pass each.
        let mut obs = Observations::new();
        let mut settled = false;
        for _pass in 0..400 {
            let mut changed = false;
            for w in workers {
                obs.update(&leases, t0);
                let p = plan(w, &leases, &obs, t0);
                for a in &p.actions {
                    let l = leases
                        .iter_mut()
                        .find(|l| l.shard_id == a.shard_id)
                        .unwrap();
                    assert_eq!(l.counter, a.expected_counter);
                    l.owner = Some(w.into());
                    l.counter += 1;
                    changed = true;
                }
            }
            if !changed {
                settled = true;
                break;
            }
        }
        assert!(settled);
        let loads = loads_after(leases.clone(), "none", &TakePlan::default());
        let total: usize = loads.values().sum();
        assert_eq!(total, 1000);
        for (w, n) in &loads {
            assert!((142..=143).contains(n), "{w} holds {n}");
        }
    }

    #[test]
    fn unproven_after_failover_since_last_write() {
        let t0 = Instant::now();
        assert!(!held_lease_unproven(
            t0,
            t0 + Duration::from_secs(9),
            FAILOVER
        ));
        assert!(held_lease_unproven(t0, t0 + FAILOVER, FAILOVER));
    }
}
