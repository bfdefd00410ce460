//! The text tables of an end-to-end run: one phase's figures, one Redis beside a
//! cluster, the goals, the scaling runs. (The figures: `figures`; the goals: `goals`.)

pub use super::figures::{Baseline, Phase};
pub use super::goals::{
    checks, Check, CONSUMER_RSS_GOAL_KIB, CPU_RATIO_GOAL, PRODUCER_RSS_GOAL_KIB,
};

use super::figures::{mib, per_million};

/// The figures of one phase, one per line.
pub fn phase_lines(p: &Phase) -> Vec<(String, String)> {
    vec![
        ("trades".into(), format!("{}", p.trades)),
        (
            "shards / consumers".into(),
            format!("{} / {}", p.shards, p.consumers),
        ),
        (
            "end-to-end throughput".into(),
            format!("{:.0} trades/s ({:.1} s)", p.trades_per_sec(), p.seconds),
        ),
        (
            "producer CPU per million trades".into(),
            format!(
                "{:.2} s ({:.2} cores)",
                p.producer_cpu_per_m(),
                p.producer_cores()
            ),
        ),
        (
            "consumer CPU per million trades".into(),
            format!(
                "{:.2} s ({:.2} cores)",
                p.consumer_cpu_per_m(),
                p.consumer_cores()
            ),
        ),
        (
            "emulator CPU (ferrokinesis / dynalite / redis)".into(),
            format!(
                "{:.1} / {:.1} / {:.1} s ({:.2} cores ferrokinesis)",
                p.emulator_cpu,
                p.dynamodb_emulator_cpu,
                p.redis_cpu,
                p.emulator_cores()
            ),
        ),
        (
            "peak RSS producer / consumer".into(),
            format!(
                "{:.1} / {:.1} MiB",
                mib(p.producer_rss_kib),
                mib(p.consumer_rss_kib)
            ),
        ),
        (
            "Redis round trips per million trades".into(),
            format!(
                "{:.0} (consumer metric); {:.0} commands (INFO)",
                p.redis_round_trips_per_m(),
                p.redis_commands_per_m()
            ),
        ),
        (
            "GetRecords calls per shard per second".into(),
            format!("{:.2}", p.getrecords_per_shard_sec()),
        ),
        (
            "DynamoDB writes per shard per minute".into(),
            format!("{:.1}", p.dynamodb_writes_per_shard_min()),
        ),
        (
            "PUT payload units per million trades".into(),
            format!("{:.0}", p.payload_units_per_m()),
        ),
    ]
}

/// One Redis beside a Redis Cluster (3 primaries, a replica each), same trades.
pub fn render_cluster(one: &Phase, cluster: &Phase) -> String {
    // A figure of both phases, with `digits` decimals.
    let row = |name: &str, digits: usize, figure: &dyn Fn(&Phase) -> f64| {
        (
            name.to_string(),
            format!("{:.digits$}", figure(one)),
            format!("{:.digits$}", figure(cluster)),
        )
    };
    let rows = [
        row("end-to-end throughput, trades/s", 0, &Phase::trades_per_sec),
        row(
            "Redis round trips per million trades",
            0,
            &Phase::redis_round_trips_per_m,
        ),
        row(
            "Redis commands per million trades",
            0,
            &Phase::redis_commands_per_m,
        ),
        row(
            "consumer CPU s per million trades",
            2,
            &Phase::consumer_cpu_per_m,
        ),
        row("Redis CPU s per million (all nodes)", 2, &|p| {
            per_million(p.redis_cpu, p.trades as f64)
        }),
    ];
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let mut s = format!(
        "\n== one Redis vs a Redis Cluster (aggregated, {} trades) ==\n{:<w$}  {:>12}  {:>12}\n",
        cluster.trades, "", "one Redis", "cluster 3x2"
    );
    for (k, a, b) in rows {
        s.push_str(&format!("{k:<w$}  {a:>12}  {b:>12}\n"));
    }
    s
}

/// `(name, value)` rows as an aligned two-column block.
pub fn render_pairs(title: &str, rows: &[(String, String)]) -> String {
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let mut s = format!("\n== {title} ==\n");
    for (k, v) in rows {
        s.push_str(&format!("{k:<w$}  {v}\n"));
    }
    s
}

pub fn render_checks(checks: &[Check]) -> String {
    let w = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut s = "\n== goals ==\n".to_string();
    for c in checks {
        let ok = match c.ok {
            Some(true) => "pass",
            Some(false) => "MISS",
            None => "n/a",
        };
        s.push_str(&format!(
            "{:<w$}  {:<50}  {:<30} {ok}\n",
            c.name, c.value, c.goal
        ));
    }
    s
}

/// The scaling table: one row per (shards, consumers) run.
pub fn render_scaling(rows: &[Phase]) -> String {
    let mut s = String::from(
        "\n== scaling (aggregated) ==\n\
         shards consumers   trades/s  prod s/M  cons s/M  prod MiB  cons MiB  ferro cores  GetRecords/shard/s  DDB writes/shard/min\n",
    );
    for p in rows {
        s.push_str(&format!(
            "{:>6} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>9.1} {:>9.1} {:>12.2} {:>19.2} {:>21.1}\n",
            p.shards,
            p.consumers,
            p.trades_per_sec(),
            p.producer_cpu_per_m(),
            p.consumer_cpu_per_m(),
            mib(p.producer_rss_kib),
            mib(p.consumer_rss_kib),
            p.emulator_cores(),
            p.getrecords_per_shard_sec(),
            p.dynamodb_writes_per_shard_min()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::figures::sample_phase;
    use super::*;

    #[test]
    fn tables_render() {
        let p = sample_phase();
        let t = render_scaling(std::slice::from_ref(&p));
        assert_eq!(t.lines().count(), 4);
        assert!(t.contains("10000"));
        let s = render_pairs("x", &phase_lines(&p));
        assert!(s.contains("PUT payload units per million trades"));
    }
}
