//! The goals an end-to-end run is judged against (issue #8): consumer CPU per trade
//! against the Python baseline, throughput bound by the emulator, peak memory.

use super::figures::{mib, ratio, Baseline, Phase};

/// One line of the goals table.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub name: String,
    pub value: String,
    pub goal: String,
    /// None when this run cannot judge it (e.g. RSS at 64 shards from a 4-shard run).
    pub ok: Option<bool>,
}

pub const CPU_RATIO_GOAL: f64 = 50.0;
pub const CONSUMER_RSS_GOAL_KIB: u64 = 64 * 1024;
pub const PRODUCER_RSS_GOAL_KIB: u64 = 32 * 1024;

/// The baseline's CPU per trade over ours (`which` records).
fn cpu_ratio(which: &str, base: &Baseline, ours: &Phase) -> Check {
    let r = ratio(base.cpu_per_m(), ours.consumer_cpu_per_m());
    Check {
        name: format!("consumer CPU per trade, baseline / ours ({which})"),
        value: format!(
            "{:.1}x ({:.2} vs {:.2} s/M)",
            r,
            base.cpu_per_m(),
            ours.consumer_cpu_per_m()
        ),
        goal: format!(">= {CPU_RATIO_GOAL:.0}x"),
        ok: Some(r >= CPU_RATIO_GOAL),
    }
}

/// Judges the goals: `ours` is the consumer on the same plain records the baseline
/// read (the like-for-like comparison); `agg` the aggregated pass, if any.
pub fn checks(ours: &Phase, agg: Option<&Phase>, base: Option<&Baseline>) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(b) = base {
        out.push(cpu_ratio("plain records", b, ours));
        if let Some(a) = agg {
            out.push(cpu_ratio("aggregated", b, a));
        }
    }
    for p in agg.into_iter().chain(std::iter::once(ours)) {
        // Bound by the emulator: ours well under one core each while it works hard.
        let ours_max = p.producer_cores().max(p.consumer_cores());
        out.push(Check {
            name: format!("throughput bound by the emulator ({})", p.label),
            value: format!(
                "producer {:.2}, consumers {:.2}, ferrokinesis {:.2} cores",
                p.producer_cores(),
                p.consumer_cores(),
                p.emulator_cores()
            ),
            goal: "ours < 0.5 core and < emulator".into(),
            ok: Some(ours_max < 0.5 && ours_max < p.emulator_cores()),
        });
    }
    let big = agg.unwrap_or(ours);
    out.push(Check {
        name: format!(
            "consumer peak RSS at 64 shards (this run: {} shards)",
            big.shards
        ),
        value: format!("{:.1} MiB", mib(big.consumer_rss_kib)),
        goal: "<= 64 MiB".into(),
        ok: (big.shards >= 64).then_some(big.consumer_rss_kib <= CONSUMER_RSS_GOAL_KIB),
    });
    let rate = big.trades_per_sec();
    out.push(Check {
        name: format!("producer peak RSS ({rate:.0} trades/s here; goal at 10,000/s)"),
        value: format!("{:.1} MiB", mib(big.producer_rss_kib)),
        goal: "<= 32 MiB".into(),
        // Judged only near the goal's rate: a run as fast as possible holds far more in
        // flight (the producer bench offers exactly 10,000/s).
        ok: (rate <= 12_000.0).then_some(big.producer_rss_kib <= PRODUCER_RSS_GOAL_KIB),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::super::figures::sample_phase;
    use super::super::report::render_checks;
    use super::*;

    #[test]
    fn goals_pass_and_miss() {
        let p = sample_phase();
        let fast_enough = Baseline {
            records: 100_000,
            cpu_seconds: 30.0, // 300 s/M vs 5 s/M: 60x
            ..Baseline::default()
        };
        let c = checks(&p, None, Some(&fast_enough));
        assert_eq!(c[0].ok, Some(true), "{c:?}");
        assert!(c[0].value.starts_with("60.0x"));
        assert_eq!(c[1].ok, Some(true)); // 0.1 cores vs 1.5
        assert_eq!(c[2].ok, None); // 4 shards cannot judge the 64-shard goal
        assert_eq!(c[3].ok, Some(true));
        let slow = Baseline {
            records: 100_000,
            cpu_seconds: 10.0,
            ..Baseline::default()
        };
        assert_eq!(checks(&p, None, Some(&slow))[0].ok, Some(false));
        let mut big = sample_phase();
        big.shards = 64;
        big.consumer_rss_kib = 65 * 1024;
        big.label = "aggregated".into();
        let c = checks(&p, Some(&big), Some(&slow));
        assert_eq!(c.len(), 6);
        assert_eq!(c[4].ok, Some(false));
        let text = render_checks(&c);
        assert!(text.contains("MISS") && text.contains("pass"));
    }
}
