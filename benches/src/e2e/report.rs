//! The figures of one end-to-end run, what is derived from them (per million trades,
//! per shard and second, cores used), the goals they are judged against, and their
//! text tables and JSON. Pure: the runner fills [`Phase`] and [`Baseline`].

use serde_json::{json, Value};

/// Raw measurements of one producer → Kinesis → consumer(s) → Redis pass.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    /// "aggregated" (KPL) or "plain" (one trade per Kinesis record).
    pub label: String,
    pub shards: u32,
    pub consumers: u32,
    pub trades: u64,
    /// From the producer's start until Redis held exactly `trades`.
    pub seconds: f64,
    pub producer_cpu: f64,
    pub producer_rss_kib: u64,
    /// All consumer processes together, over the same window.
    pub consumer_cpu: f64,
    /// The largest peak RSS among the consumer processes.
    pub consumer_rss_kib: u64,
    /// How long the consumers ran (start → counts exact), for the per-second rates.
    pub consumer_seconds: f64,
    pub emulator_cpu: f64,
    pub dynamodb_emulator_cpu: f64,
    pub redis_cpu: f64,
    /// `tradeflow_consumer_redis_round_trips_total`, all consumers.
    pub redis_round_trips: f64,
    /// Redis `total_commands_processed` delta, the bench's own commands removed.
    pub redis_commands: f64,
    /// `tradeflow_consumer_getrecords_total`, all shards and consumers.
    pub getrecords_calls: f64,
    /// `tradeflow_consumer_dynamodb_requests_total` of put_item + update_item.
    pub dynamodb_writes: f64,
    /// `tradeflow_producer_put_payload_units_total` at the producer's last scrape ...
    pub payload_units: f64,
    /// ... and `tradeflow_producer_trades_written_total` in that same scrape.
    pub trades_written_at_scrape: f64,
    pub put_records_calls: f64,
}

/// The Python per-record consumer (the seed's way) over `records` records.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    pub records: u64,
    /// CPU while reading and counting (its own getrusage around the loop).
    pub cpu_seconds: f64,
    /// Its whole life from /proc, interpreter start and imports included.
    pub cpu_seconds_total: f64,
    pub rss_kib: u64,
    pub seconds: f64,
    pub redis_commands: f64,
    pub getrecords_calls: f64,
}

fn per_million(x: f64, trades: f64) -> f64 {
    if trades > 0.0 {
        x / trades * 1e6
    } else {
        0.0
    }
}

fn ratio(x: f64, over: f64) -> f64 {
    if over > 0.0 {
        x / over
    } else {
        0.0
    }
}

impl Phase {
    pub fn trades_per_sec(&self) -> f64 {
        ratio(self.trades as f64, self.seconds)
    }
    pub fn producer_cpu_per_m(&self) -> f64 {
        per_million(self.producer_cpu, self.trades as f64)
    }
    pub fn consumer_cpu_per_m(&self) -> f64 {
        per_million(self.consumer_cpu, self.trades as f64)
    }
    /// Cores busy on average: CPU seconds over wall seconds.
    pub fn producer_cores(&self) -> f64 {
        ratio(self.producer_cpu, self.seconds)
    }
    /// Over the consumers' own run (they may start after the producer finished).
    pub fn consumer_cores(&self) -> f64 {
        ratio(self.consumer_cpu, self.consumer_seconds)
    }
    pub fn emulator_cores(&self) -> f64 {
        ratio(self.emulator_cpu, self.seconds)
    }
    pub fn redis_round_trips_per_m(&self) -> f64 {
        per_million(self.redis_round_trips, self.trades as f64)
    }
    pub fn redis_commands_per_m(&self) -> f64 {
        per_million(self.redis_commands, self.trades as f64)
    }
    pub fn getrecords_per_shard_sec(&self) -> f64 {
        ratio(
            self.getrecords_calls,
            f64::from(self.shards) * self.consumer_seconds,
        )
    }
    pub fn dynamodb_writes_per_shard_min(&self) -> f64 {
        ratio(
            self.dynamodb_writes,
            f64::from(self.shards) * self.consumer_seconds / 60.0,
        )
    }
    /// A ratio from one scrape, so a scrape that missed the last PutRecords still
    /// gives the right figure.
    pub fn payload_units_per_m(&self) -> f64 {
        per_million(self.payload_units, self.trades_written_at_scrape)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "label": self.label,
            "shards": self.shards,
            "consumers": self.consumers,
            "trades": self.trades,
            "seconds": self.seconds,
            "trades_per_sec": self.trades_per_sec(),
            "producer_cpu_seconds": self.producer_cpu,
            "producer_cpu_seconds_per_million": self.producer_cpu_per_m(),
            "producer_peak_rss_kib": self.producer_rss_kib,
            "producer_cores": self.producer_cores(),
            "consumer_cpu_seconds": self.consumer_cpu,
            "consumer_cpu_seconds_per_million": self.consumer_cpu_per_m(),
            "consumer_peak_rss_kib": self.consumer_rss_kib,
            "consumer_cores": self.consumer_cores(),
            "emulator_cpu_seconds": self.emulator_cpu,
            "emulator_cores": self.emulator_cores(),
            "dynamodb_emulator_cpu_seconds": self.dynamodb_emulator_cpu,
            "redis_cpu_seconds": self.redis_cpu,
            "redis_round_trips_per_million": self.redis_round_trips_per_m(),
            "redis_commands_per_million": self.redis_commands_per_m(),
            "getrecords_per_shard_per_sec": self.getrecords_per_shard_sec(),
            "dynamodb_writes_per_shard_per_min": self.dynamodb_writes_per_shard_min(),
            "put_payload_units_per_million": self.payload_units_per_m(),
            "put_records_calls": self.put_records_calls,
        })
    }
}

impl Baseline {
    pub fn cpu_per_m(&self) -> f64 {
        per_million(self.cpu_seconds, self.records as f64)
    }
    pub fn cpu_total_per_m(&self) -> f64 {
        per_million(self.cpu_seconds_total, self.records as f64)
    }
    pub fn records_per_sec(&self) -> f64 {
        ratio(self.records as f64, self.seconds)
    }
    pub fn redis_commands_per_m(&self) -> f64 {
        per_million(self.redis_commands, self.records as f64)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "records": self.records,
            "seconds": self.seconds,
            "records_per_sec": self.records_per_sec(),
            "cpu_seconds_loop": self.cpu_seconds,
            "cpu_seconds_per_million_loop": self.cpu_per_m(),
            "cpu_seconds_total": self.cpu_seconds_total,
            "cpu_seconds_per_million_total": self.cpu_total_per_m(),
            "peak_rss_kib": self.rss_kib,
            "redis_commands_per_million": self.redis_commands_per_m(),
            "getrecords_calls": self.getrecords_calls,
        })
    }
}

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

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Judges the goals: `ours` is the consumer on the same plain records the baseline
/// read (the like-for-like comparison); `agg` the aggregated pass, if any.
pub fn checks(ours: &Phase, agg: Option<&Phase>, base: Option<&Baseline>) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(b) = base {
        let r = ratio(b.cpu_per_m(), ours.consumer_cpu_per_m());
        out.push(Check {
            name: "consumer CPU per trade, baseline / ours (plain records)".into(),
            value: format!(
                "{:.1}x ({:.2} vs {:.2} s/M)",
                r,
                b.cpu_per_m(),
                ours.consumer_cpu_per_m()
            ),
            goal: format!(">= {CPU_RATIO_GOAL:.0}x"),
            ok: Some(r >= CPU_RATIO_GOAL),
        });
        if let Some(a) = agg {
            let r = ratio(b.cpu_per_m(), a.consumer_cpu_per_m());
            out.push(Check {
                name: "consumer CPU per trade, baseline / ours (aggregated)".into(),
                value: format!(
                    "{:.1}x ({:.2} vs {:.2} s/M)",
                    r,
                    b.cpu_per_m(),
                    a.consumer_cpu_per_m()
                ),
                goal: format!(">= {CPU_RATIO_GOAL:.0}x"),
                ok: Some(r >= CPU_RATIO_GOAL),
            });
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
    let rows: Vec<(String, String, String)> = vec![
        (
            "end-to-end throughput, trades/s".into(),
            format!("{:.0}", one.trades_per_sec()),
            format!("{:.0}", cluster.trades_per_sec()),
        ),
        (
            "Redis round trips per million trades".into(),
            format!("{:.0}", one.redis_round_trips_per_m()),
            format!("{:.0}", cluster.redis_round_trips_per_m()),
        ),
        (
            "Redis commands per million trades".into(),
            format!("{:.0}", one.redis_commands_per_m()),
            format!("{:.0}", cluster.redis_commands_per_m()),
        ),
        (
            "consumer CPU s per million trades".into(),
            format!("{:.2}", one.consumer_cpu_per_m()),
            format!("{:.2}", cluster.consumer_cpu_per_m()),
        ),
        (
            "Redis CPU s per million (all nodes)".into(),
            format!("{:.2}", per_million(one.redis_cpu, one.trades as f64)),
            format!(
                "{:.2}",
                per_million(cluster.redis_cpu, cluster.trades as f64)
            ),
        ),
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
    use super::*;

    fn phase() -> Phase {
        Phase {
            label: "plain".into(),
            shards: 4,
            consumers: 1,
            trades: 200_000,
            seconds: 20.0,
            producer_cpu: 2.0,
            producer_rss_kib: 20 * 1024,
            consumer_cpu: 1.0,
            consumer_rss_kib: 30 * 1024,
            consumer_seconds: 25.0,
            emulator_cpu: 30.0,
            redis_round_trips: 400.0,
            getrecords_calls: 200.0,
            dynamodb_writes: 100.0,
            payload_units: 1_000.0,
            trades_written_at_scrape: 100_000.0,
            ..Phase::default()
        }
    }

    #[test]
    fn derived_figures() {
        let p = phase();
        assert_eq!(p.trades_per_sec(), 10_000.0);
        assert_eq!(p.producer_cpu_per_m(), 10.0);
        assert_eq!(p.consumer_cpu_per_m(), 5.0);
        assert_eq!(p.consumer_cores(), 0.04);
        assert_eq!(p.emulator_cores(), 1.5);
        assert_eq!(p.redis_round_trips_per_m(), 2_000.0);
        assert_eq!(p.getrecords_per_shard_sec(), 2.0);
        assert_eq!(p.dynamodb_writes_per_shard_min(), 60.0);
        // From the scrape's own ratio, not the full trade count.
        assert_eq!(p.payload_units_per_m(), 10_000.0);
        assert_eq!(Phase::default().trades_per_sec(), 0.0);
        assert_eq!(p.to_json()["consumer_cpu_seconds_per_million"], 5.0);
    }

    #[test]
    fn goals_pass_and_miss() {
        let p = phase();
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
        let mut big = phase();
        big.shards = 64;
        big.consumer_rss_kib = 65 * 1024;
        big.label = "aggregated".into();
        let c = checks(&p, Some(&big), Some(&slow));
        assert_eq!(c.len(), 6);
        assert_eq!(c[4].ok, Some(false));
        let text = render_checks(&c);
        assert!(text.contains("MISS") && text.contains("pass"));
    }

    #[test]
    fn tables_render() {
        let p = phase();
        let t = render_scaling(std::slice::from_ref(&p));
        assert_eq!(t.lines().count(), 4);
        assert!(t.contains("10000"));
        let s = render_pairs("x", &phase_lines(&p));
        assert!(s.contains("PUT payload units per million trades"));
    }
}
