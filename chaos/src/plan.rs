//! The fault schedule: pure, from a seed to a list of (time, fault). The same seed and
//! settings always give the same schedule, so a failing run can be replayed. Its own
//! tiny PRNG (splitmix64) keeps schedules stable whatever version of `rand` is in the
//! tree.

use std::fmt;
use std::time::Duration;

/// One fault the run injects. Targets that only exist at run time (which shard, which
/// pair to merge) are chosen by the runner from `pick`, so the plan stays pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 a consumer, start it again after `down`.
    KillConsumer { consumer: usize, down: Duration },
    /// SIGTERM a consumer (graceful: releases its leases), start it again after `down`.
    TermConsumer { consumer: usize, down: Duration },
    /// SIGSTOP a consumer for longer than the failover time, then SIGCONT.
    PauseConsumer { consumer: usize, paused: Duration },
    /// Split an open shard at the middle of its hash range.
    SplitShard { pick: u64 },
    /// Merge two adjacent open shards.
    MergeShards { pick: u64 },
    /// Stop redis-server (SIGTERM, AOF on disk) and start it again on the same port.
    RestartRedis,
    /// Stop dynalite and start it again on its on-disk path.
    RestartDynamo,
    /// Stop ferrokinesis and start it again on its `--state-dir`.
    RestartKinesis,
    /// Drop the producer's websocket connections (the exchange closes them).
    DropWebsocket,
    /// Cut the producer's connections to Kinesis for `down`, then let it reconnect.
    CutKinesis { down: Duration },
}

/// Short names of the kinds (for `--without`), in [`KINDS`] order.
pub const KIND_FLAGS: [&str; 10] = [
    "kill",
    "term",
    "pause",
    "split",
    "merge",
    "redis",
    "dynamodb",
    "kinesis",
    "websocket",
    "cut",
];

/// The kinds of fault, for the report's table.
pub const KINDS: [&str; 10] = [
    "kill-9 consumer",
    "sigterm consumer",
    "sigstop consumer",
    "split shard",
    "merge shards",
    "restart redis",
    "restart dynamodb",
    "restart kinesis",
    "drop websocket",
    "cut producer→kinesis",
];

impl Fault {
    /// Index into [`KINDS`].
    pub fn kind(&self) -> usize {
        match self {
            Fault::KillConsumer { .. } => 0,
            Fault::TermConsumer { .. } => 1,
            Fault::PauseConsumer { .. } => 2,
            Fault::SplitShard { .. } => 3,
            Fault::MergeShards { .. } => 4,
            Fault::RestartRedis => 5,
            Fault::RestartDynamo => 6,
            Fault::RestartKinesis => 7,
            Fault::DropWebsocket => 8,
            Fault::CutKinesis { .. } => 9,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        KINDS[self.kind()]
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::KillConsumer { consumer, down } => {
                write!(f, "kill -9 consumer c{consumer}, down {down:?}")
            }
            Fault::TermConsumer { consumer, down } => {
                write!(f, "SIGTERM consumer c{consumer}, down {down:?}")
            }
            Fault::PauseConsumer { consumer, paused } => {
                write!(f, "SIGSTOP consumer c{consumer} for {paused:?}")
            }
            Fault::CutKinesis { down } => write!(f, "cut producer→kinesis for {down:?}"),
            other => f.write_str(other.kind_name()),
        }
    }
}

/// What the schedule is built from.
#[derive(Debug, Clone)]
pub struct PlanConfig {
    pub seed: u64,
    /// Faults are spread over `[start, end)` of the run.
    pub start: Duration,
    pub end: Duration,
    pub consumers: usize,
    /// The consumers' failover time: a pause lasts longer than this.
    pub failover: Duration,
    /// Roughly one fault every this long (at least one of each kind in any case).
    pub every: Duration,
    /// Kinds (indexes into [`KINDS`]) never scheduled, to narrow a failure down.
    pub exclude: Vec<usize>,
}

/// One scheduled fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// From the start of the run.
    pub at: Duration,
    pub fault: Fault,
}

/// The schedule: every kind at least once (in a seeded order), then random kinds, one
/// per slot of `every`, each at a random moment inside its slot (so faults never pile
/// up on one instant, yet the moments are not regular).
pub fn plan(cfg: &PlanConfig) -> Vec<Step> {
    let mut rng = Rng(cfg.seed ^ 0xc4a0_5eed);
    let span = cfg.end.saturating_sub(cfg.start);
    let by_rate = (span.as_millis() / cfg.every.as_millis().max(1)) as usize;
    let allowed: Vec<usize> = (0..KINDS.len())
        .filter(|k| !cfg.exclude.contains(k))
        .collect();
    if allowed.is_empty() {
        return Vec::new();
    }
    let n = by_rate.max(allowed.len());
    let mut kinds = allowed.clone();
    // Fisher–Yates: every kind once, in a seeded order.
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.below(i as u64 + 1) as usize);
    }
    while kinds.len() < n {
        kinds.push(allowed[rng.below(allowed.len() as u64) as usize]);
    }
    let slot = span.as_millis() as u64 / n as u64;
    let consumers = cfg.consumers.max(1) as u64;
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            // The first half of the slot, so a fault's own duration mostly ends in it.
            let at_ms = cfg.start.as_millis() as u64 + i as u64 * slot + rng.below(slot / 2 + 1);
            let consumer = rng.below(consumers) as usize;
            let secs = |rng: &mut Rng, lo: u64, hi: u64| {
                Duration::from_millis(lo + rng.below(hi.saturating_sub(lo) + 1))
            };
            let fault = match kind {
                0 => Fault::KillConsumer {
                    consumer,
                    down: secs(&mut rng, 200, 3_000),
                },
                1 => Fault::TermConsumer {
                    consumer,
                    down: secs(&mut rng, 200, 3_000),
                },
                2 => Fault::PauseConsumer {
                    consumer,
                    paused: cfg.failover + secs(&mut rng, 1_000, 3_000),
                },
                3 => Fault::SplitShard {
                    pick: rng.next_u64(),
                },
                4 => Fault::MergeShards {
                    pick: rng.next_u64(),
                },
                5 => Fault::RestartRedis,
                6 => Fault::RestartDynamo,
                7 => Fault::RestartKinesis,
                8 => Fault::DropWebsocket,
                _ => Fault::CutKinesis {
                    down: secs(&mut rng, 1_000, 4_000),
                },
            };
            Step {
                at: Duration::from_millis(at_ms),
                fault,
            }
        })
        .collect()
}

/// A seed for runs not given one: from the clock (printed, so it can be replayed).
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Rng(nanos ^ u64::from(std::process::id())).next_u64()
}

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(seed: u64, secs: u64) -> PlanConfig {
        PlanConfig {
            seed,
            start: Duration::from_secs(5),
            end: Duration::from_secs(5 + secs),
            consumers: 3,
            failover: Duration::from_secs(2),
            every: Duration::from_secs(5),
            exclude: Vec::new(),
        }
    }

    #[test]
    fn excluded_kinds_never_appear() {
        let mut c = cfg(3, 300);
        c.exclude = vec![7, 2];
        let p = plan(&c);
        assert!(p.iter().all(|s| s.fault.kind() != 7 && s.fault.kind() != 2));
        c.exclude = (0..KINDS.len()).collect();
        assert!(plan(&c).is_empty());
    }

    #[test]
    fn same_seed_same_plan_other_seed_other_plan() {
        assert_eq!(plan(&cfg(7, 120)), plan(&cfg(7, 120)));
        assert_ne!(plan(&cfg(7, 120)), plan(&cfg(8, 120)));
    }

    #[test]
    fn every_kind_at_least_once_even_when_short() {
        for seed in 0..50 {
            let p = plan(&cfg(seed, 10));
            let mut seen = [0usize; KINDS.len()];
            for s in &p {
                seen[s.fault.kind()] += 1;
            }
            assert!(seen.iter().all(|&n| n >= 1), "seed {seed}: {seen:?}");
        }
    }

    #[test]
    fn sorted_inside_the_window_with_valid_targets() {
        for seed in 0..50 {
            let c = cfg(seed, 300);
            let p = plan(&c);
            assert_eq!(p.len(), 60);
            assert!(p.windows(2).all(|w| w[0].at < w[1].at), "seed {seed}");
            for s in &p {
                assert!(s.at >= c.start && s.at < c.end, "{s:?}");
                match s.fault {
                    Fault::KillConsumer { consumer, .. } | Fault::TermConsumer { consumer, .. } => {
                        assert!(consumer < 3)
                    }
                    Fault::PauseConsumer { consumer, paused } => {
                        assert!(consumer < 3);
                        assert!(paused > c.failover, "a pause must outlast the failover");
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng(1);
        assert!((0..1000).all(|_| r.below(7) < 7));
        assert_eq!(r.below(0), 0);
    }
}
