//! The take/steal/expiry rules, on table snapshots.

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
    plan_limited(me, leases, obs, now, None, None)
}

/// `plan`, with a cap on leases per worker and a known shard list.
fn plan_limited(
    me: &str,
    leases: &[Lease],
    obs: &Observations,
    now: Instant,
    max_leases_per_worker: Option<usize>,
    listed_shards: Option<&HashSet<String>>,
) -> TakePlan {
    plan_take(&TakeInput {
        me,
        leases,
        observations: obs,
        now,
        failover: FAILOVER,
        max_leases_per_worker,
        listed_shards,
    })
}

/// The row of `shard`, to change it as a take would.
fn row<'a>(leases: &'a mut [Lease], shard: &str) -> &'a mut Lease {
    leases.iter_mut().find(|l| l.shard_id == shard).unwrap()
}

fn observed(leases: &[Lease], at: Instant) -> Observations {
    let mut o = Observations::new();
    o.update(leases, at);
    o
}

fn loads_after(mut leases: Vec<Lease>, me: &str, p: &TakePlan) -> HashMap<String, usize> {
    for a in &p.actions {
        row(&mut leases, &a.shard_id).owner = Some(me.into());
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
        let l = row(&mut leases, &a.shard_id);
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
    let p = plan_limited("a", &leases, &obs, t0, Some(3), None);
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
    let by_key: HashMap<&str, &Lease> = leases.iter().map(|l| (l.shard_id.as_str(), l)).collect();
    assert!(!parents_done(&child, &by_key, Some(&listed)));
    assert!(parents_done(&orphan, &by_key, Some(&listed)));
    assert!(!parents_done(&waiting, &by_key, Some(&listed)));
    assert!(parents_done(&waiting, &by_key, None));

    let obs = observed(&leases, t0);
    let p = plan_limited("b", &leases, &obs, t0, None, Some(&listed));
    let ids: Vec<&str> = p.actions.iter().map(|a| a.shard_id.as_str()).collect();
    assert_eq!(ids, vec!["o"]);

    // Parent finished: the child becomes startable; finished leases are never taken.
    parent.checkpoint = Some(SHARD_END.into());
    let leases = vec![parent, child, orphan, waiting];
    let obs = observed(&leases, t0);
    let p = plan_limited("b", &leases, &obs, t0, None, Some(&listed));
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
                let l = row(&mut leases, &a.shard_id);
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

/// `table_settled` as the taker asks it: suspect after failover/2.
fn settled(me: &str, leases: &[Lease], obs: &Observations, now: Instant) -> bool {
    let input = TakeInput {
        me,
        leases,
        observations: obs,
        now,
        failover: FAILOVER,
        max_leases_per_worker: None,
        listed_shards: None,
    };
    table_settled(&plan_take(&input), &input, FAILOVER / 2)
}

#[test]
fn settled_pace_only_while_nothing_moves_and_every_owner_renews() {
    let t0 = Instant::now();
    let pace = FAILOVER / 2;
    // Balanced between a and b, every counter moving between scans: settled.
    let mut leases = shards(4, |i| Some(if i < 2 { "a" } else { "b" }.into()));
    let mut obs = observed(&leases, t0);
    assert!(settled("a", &leases, &obs, t0));
    for l in &mut leases {
        l.counter += 1;
    }
    obs.update(&leases, t0 + pace);
    assert!(settled("a", &leases, &obs, t0 + pace));

    // b stops renewing: the next settled scan sees its counters stand still, and scans
    // come quickly until they expire and are taken.
    for l in leases.iter_mut().take(2) {
        l.counter += 1;
    }
    let t2 = t0 + pace * 2;
    obs.update(&leases, t2);
    assert!(!settled("a", &leases, &obs, t2), "b's leases stood still");
    let t3 = t0 + pace + FAILOVER + Duration::from_millis(1);
    for l in leases.iter_mut().take(2) {
        l.counter += 1;
    }
    obs.update(&leases, t3);
    assert!(
        !settled("a", &leases, &obs, t3),
        "b's expired leases are to be taken: that pass plans takes"
    );
    // Taken: a holds all four and renews them.
    for l in &mut leases {
        l.owner = Some("a".into());
        l.counter += 1;
    }
    obs.update(&leases, t3 + pace);
    assert!(settled("a", &leases, &obs, t3 + pace));

    // A free lease this worker wants, or a steal: not settled.
    let mut free = shards(2, |_| None);
    let obs = observed(&free, t0);
    assert!(!settled("a", &free, &obs, t0));
    free[0].owner = Some("a".into());
    free[1].owner = Some("a".into());
    let obs = observed(&free, t0);
    assert!(!settled("b", &free, &obs, t0), "b steals one of a's two");

    // Expired leases this worker may not take (capped at one) do not keep the pace
    // quick once judged; finished leases never count.
    let mut capped = shards(4, |i| Some(if i == 0 { "a" } else { "dead" }.into()));
    capped[3].checkpoint = Some(SHARD_END.into());
    let mut obs = observed(&capped, t0);
    let later = t0 + FAILOVER + Duration::from_secs(1);
    capped[0].counter += 3;
    obs.update(&capped, later);
    let input = TakeInput {
        me: "a",
        leases: &capped,
        observations: &obs,
        now: later,
        failover: FAILOVER,
        max_leases_per_worker: Some(1),
        listed_shards: None,
    };
    let plan = plan_take(&input);
    assert!(plan.actions.is_empty());
    assert!(table_settled(&plan, &input, pace));
    // Before they expired, they were suspects.
    let input = TakeInput {
        now: t0 + pace,
        ..input
    };
    assert!(!table_settled(&plan_take(&input), &input, pace));
}
