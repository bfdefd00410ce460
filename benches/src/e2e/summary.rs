//! The issue #24 view of an end-to-end run: marginal consumer CPU per trade (from two
//! passes of different sizes, see `marginal`) beside the whole-run figure, plain and
//! aggregated, the Python baseline of the same run, mean and spread over runs, the
//! idle cost per shard-hour, and the goals they are judged against.

use serde_json::{json, Value};

use super::goals::Check;
use super::idle::Idle;
use super::marginal::{Marginal, Spread};

pub const PLAIN_MARGINAL_GOAL_US: f64 = 1.0;
pub const AGG_MARGINAL_GOAL_US: f64 = 0.5;
pub const IDLE_GOAL_CPU_S_PER_SHARD_HOUR: f64 = 1.0;
pub const FIXED_FRACTION_GOAL: f64 = 0.10;

/// One run's figures: both kinds of records, and the baseline's µs per record (its
/// read+count loop) when it ran.
#[derive(Clone, Debug)]
pub struct RunFigures {
    pub plain: Marginal,
    pub agg: Marginal,
    pub baseline_us: Option<f64>,
}

fn spread(runs: &[RunFigures], f: impl Fn(&RunFigures) -> Option<f64>) -> Spread {
    Spread::of(&runs.iter().filter_map(f).collect::<Vec<_>>())
}

/// The table: rows of figures, a column per kind of record.
pub fn render(runs: &[RunFigures], idle: Option<&Idle>) -> String {
    let rows: Vec<(&str, Spread, Spread, usize)> = vec![
        (
            "marginal consumer CPU, µs per trade",
            spread(runs, |r| Some(r.plain.us_per_trade())),
            spread(runs, |r| Some(r.agg.us_per_trade())),
            3,
        ),
        (
            "whole run (large pass), µs per trade",
            spread(runs, |r| Some(r.plain.whole_run_us())),
            spread(runs, |r| Some(r.agg.whole_run_us())),
            3,
        ),
        (
            "fixed part (intercept), CPU s",
            spread(runs, |r| Some(r.plain.fixed_cpu())),
            spread(runs, |r| Some(r.agg.fixed_cpu())),
            3,
        ),
        (
            "fixed part / large pass CPU",
            spread(runs, |r| Some(r.plain.fixed_fraction_of_large())),
            spread(runs, |r| Some(r.agg.fixed_fraction_of_large())),
            3,
        ),
        (
            "baseline / ours (marginal)",
            spread(runs, |r| r.baseline_us.map(|b| b / r.plain.us_per_trade())),
            spread(runs, |r| r.baseline_us.map(|b| b / r.agg.us_per_trade())),
            0,
        ),
    ];
    let first = &runs[0];
    let mut s = format!(
        "\n== consumer CPU per trade: marginal = (CPU of the large pass - CPU of the small pass) / \
         (their trade difference), both passes on the same stack ==\n\
         passes: plain {} and {} trades, aggregated {} and {} trades\n",
        first.plain.small_trades,
        first.plain.large_trades,
        first.agg.small_trades,
        first.agg.large_trades
    );
    let w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0) + 2;
    s.push_str(&format!(
        "{:<w$}{:<44}{}\n",
        "", "plain", "aggregated (KPL)"
    ));
    for (name, p, a, d) in rows {
        let pad = w - name.chars().count();
        s.push_str(&format!(
            "{name}{:pad$}{:<44}{}\n",
            "",
            p.show(d),
            a.show(d)
        ));
    }
    let b = spread(runs, |r| r.baseline_us);
    if b.n > 0 {
        s.push_str(&format!(
            "Python baseline (seed, per-record INCR), same run, read+count loop: {} µs per record\n",
            b.show(2)
        ));
    }
    if let Some(i) = idle {
        s.push_str(&format!(
            "idle: {:.2} CPU s over {:.0} s on {} shards (1 consumer, no records; {:.0} GetRecords, \
             {:.0} DynamoDB requests) = {:.2} CPU s per shard-hour\n",
            i.cpu,
            i.seconds,
            i.shards,
            i.getrecords,
            i.dynamodb_requests,
            i.cpu_per_shard_hour()
        ));
    }
    s
}

/// `--compare`: A and B side by side, and B ÷ A as the mean of each run's own ratio
/// (runs were interleaved, so a run's pair shares the machine's speed of the moment).
pub fn render_compare(
    a: &[RunFigures],
    b: &[RunFigures],
    idle_a: &[Idle],
    idle_b: &[Idle],
) -> String {
    type Pick<'f> = &'f dyn Fn(&RunFigures) -> Option<f64>;
    // One row: A's and B's figures, and B ÷ A over the runs where both have one.
    let compared = |name: &str, xs: Vec<Option<f64>>, ys: Vec<Option<f64>>, d: usize| {
        let all = |v: &[Option<f64>]| Spread::of(&v.iter().flatten().copied().collect::<Vec<_>>());
        let (x, y) = (all(&xs), all(&ys));
        let r: Vec<f64> = xs
            .into_iter()
            .zip(ys)
            .filter_map(|(x, y)| Some(y? / x?).filter(|r| r.is_finite()))
            .collect();
        (name.to_string(), x, y, Spread::of(&r), d)
    };
    let row = |name: &str, f: Pick<'_>, d: usize| {
        compared(
            name,
            a.iter().map(f).collect(),
            b.iter().map(f).collect(),
            d,
        )
    };
    let mut rows = vec![
        row(
            "marginal, plain (µs per trade)",
            &|r| Some(r.plain.us_per_trade()),
            3,
        ),
        row(
            "marginal, aggregated (µs per trade)",
            &|r| Some(r.agg.us_per_trade()),
            3,
        ),
        row(
            "whole run, plain (µs per trade)",
            &|r| Some(r.plain.whole_run_us()),
            3,
        ),
        row(
            "whole run, aggregated (µs per trade)",
            &|r| Some(r.agg.whole_run_us()),
            3,
        ),
        row("Python baseline (µs per record)", &|r| r.baseline_us, 1),
        row(
            "baseline / ours, plain",
            &|r| r.baseline_us.map(|x| x / r.plain.us_per_trade()),
            0,
        ),
        row(
            "baseline / ours, aggregated",
            &|r| r.baseline_us.map(|x| x / r.agg.us_per_trade()),
            0,
        ),
    ];
    if !idle_a.is_empty() && !idle_b.is_empty() {
        let per =
            |i: &[Idle], f: &dyn Fn(&Idle) -> f64| i.iter().map(|x| Some(f(x))).collect::<Vec<_>>();
        for (name, f, d) in [
            (
                "idle CPU s per shard-hour",
                &Idle::cpu_per_shard_hour as &dyn Fn(&Idle) -> f64,
                2,
            ),
            (
                "idle GetRecords a minute",
                &|i: &Idle| i.getrecords * 60.0 / i.seconds,
                0,
            ),
            (
                "idle DynamoDB calls a minute",
                &|i: &Idle| i.dynamodb_requests * 60.0 / i.seconds,
                0,
            ),
        ] {
            rows.push(compared(name, per(idle_a, f), per(idle_b, f), d));
        }
    }
    let w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0) + 2;
    let mut s = format!(
        "\n== A (--bin-dir) against B (--compare), {} interleaved runs each ==\n{:<w$}{:<40}  {:<40}  B / A\n",
        a.len().min(b.len()),
        "",
        "A",
        "B"
    );
    for (name, x, y, r, d) in rows {
        if x.n == 0 || y.n == 0 {
            continue; // not run (e.g. --no-baseline)
        }
        let pad = w - name.chars().count();
        s.push_str(&format!(
            "{name}{:pad$}{:<40}  {:<40}  {}\n",
            "",
            x.show(d),
            y.show(d),
            r.show(3)
        ));
    }
    s
}

/// The goals, judged on the mean over runs.
pub fn checks(runs: &[RunFigures], idle: Option<&Idle>) -> Vec<Check> {
    let goal = |name: &str, s: Spread, unit: &str, limit: f64| Check {
        name: name.to_string(),
        value: format!("{} {unit}", s.show(3)),
        goal: format!("<= {limit} {unit}"),
        ok: Some(s.mean <= limit),
    };
    let mut out = vec![
        goal(
            "marginal consumer CPU per plain trade",
            spread(runs, |r| Some(r.plain.us_per_trade())),
            "µs",
            PLAIN_MARGINAL_GOAL_US,
        ),
        goal(
            "marginal consumer CPU per aggregated trade",
            spread(runs, |r| Some(r.agg.us_per_trade())),
            "µs",
            AGG_MARGINAL_GOAL_US,
        ),
    ];
    let f = spread(runs, |r| Some(r.plain.fixed_fraction_of_large()));
    out.push(Check {
        name: "fixed part of the large plain pass".into(),
        value: format!("{:.1} %", f.mean * 100.0),
        goal: format!("< {:.0} %", FIXED_FRACTION_GOAL * 100.0),
        ok: Some(f.mean < FIXED_FRACTION_GOAL),
    });
    if let Some(i) = idle {
        out.push(Check {
            name: format!("idle consumer CPU per shard-hour ({} shards)", i.shards),
            value: format!("{:.2} s", i.cpu_per_shard_hour()),
            goal: format!("<= {IDLE_GOAL_CPU_S_PER_SHARD_HOUR} s"),
            ok: Some(i.cpu_per_shard_hour() <= IDLE_GOAL_CPU_S_PER_SHARD_HOUR),
        });
    }
    out
}

pub fn to_json(runs: &[RunFigures], idle: Option<&Idle>) -> Value {
    let s = |f: &dyn Fn(&RunFigures) -> Option<f64>| spread(runs, f).to_json();
    json!({
        "runs": runs.iter().map(|r| json!({
            "plain": r.plain.to_json(),
            "aggregated": r.agg.to_json(),
            "baseline_us_per_record": r.baseline_us,
        })).collect::<Vec<_>>(),
        "plain_marginal_us": s(&|r| Some(r.plain.us_per_trade())),
        "aggregated_marginal_us": s(&|r| Some(r.agg.us_per_trade())),
        "plain_whole_run_us": s(&|r| Some(r.plain.whole_run_us())),
        "aggregated_whole_run_us": s(&|r| Some(r.agg.whole_run_us())),
        "baseline_us": s(&|r| r.baseline_us),
        "idle": idle.map(Idle::to_json),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(plain_large_cpu: f64) -> RunFigures {
        RunFigures {
            plain: Marginal {
                small_trades: 100_000,
                small_cpu: 0.15,
                large_trades: 500_000,
                large_cpu: plain_large_cpu,
            },
            agg: Marginal {
                small_trades: 200_000,
                small_cpu: 0.12,
                large_trades: 1_000_000,
                large_cpu: 0.44,
            },
            baseline_us: Some(170.0),
        }
    }

    #[test]
    fn compare_puts_each_runs_ratio_beside_both() {
        let a = [run(0.55), run(0.95)];
        let b = [run(0.35), run(0.55)];
        let idle = |cpu| Idle {
            shards: 1,
            seconds: 3600.0,
            cpu,
            getrecords: 720.0,
            dynamodb_requests: 300.0,
        };
        let t = render_compare(&a, &b, &[idle(0.2), idle(0.3)], &[idle(0.1), idle(0.3)]);
        // plain marginal: A 1.000 and 2.000 µs, B 0.500 and 1.000: both runs halve it.
        let line = t
            .lines()
            .find(|l| l.starts_with("marginal, plain"))
            .unwrap();
        assert!(line.contains("1.500 (min 1.000, max 2.000, 2 runs)"), "{t}");
        assert!(
            line.ends_with("0.500 (min 0.500, max 0.500, 2 runs)"),
            "{t}"
        );
        let idle_line = t.lines().find(|l| l.starts_with("idle CPU")).unwrap();
        assert!(
            idle_line.contains("0.25 (min 0.20, max 0.30, 2 runs)"),
            "{t}"
        );
        assert!(
            idle_line.ends_with("0.750 (min 0.500, max 1.000, 2 runs)"),
            "{t}"
        );
        let polls = t
            .lines()
            .find(|l| l.starts_with("idle GetRecords"))
            .unwrap();
        assert!(polls.contains("12 (min 12, max 12, 2 runs)"), "{t}");
    }

    #[test]
    fn table_and_goals() {
        let runs = [run(0.55), run(0.59)];
        let idle = Idle {
            shards: 4,
            seconds: 60.0,
            cpu: 0.1,
            ..Idle::default()
        };
        let t = render(&runs, Some(&idle));
        assert!(t.contains("1.050 (min 1.000, max 1.100, 2 runs)"), "{t}");
        assert!(t.contains("1.50 CPU s per shard-hour"), "{t}");
        let c = checks(&runs, Some(&idle));
        assert_eq!(c[0].ok, Some(false)); // 1.05 µs > 1.0
        assert_eq!(c[1].ok, Some(true)); // 0.4 µs
        assert_eq!(c[2].ok, Some(true)); // 0.05 / 0.55 and 0.04 / 0.59: 7.9 % on average
        assert_eq!(c[3].ok, Some(false)); // 1.5 s per shard-hour
        assert!(
            to_json(&runs, None)["plain_marginal_us"]["mean"]
                .as_f64()
                .unwrap()
                > 1.0
        );
    }
}
