//! Marginal cost per trade from two passes of different sizes on the same stack: the
//! consumer's CPU is modelled as `fixed + per_trade × trades`, so the slope between the
//! two passes is the per-trade (marginal) cost and the intercept the fixed part (start-up,
//! lease renewals and table scans, idle polls) that a whole-run figure spreads over the
//! trades. Also the mean and spread of a figure over repeated runs. Pure.

use serde_json::{json, Value};

/// A small and a large pass of the same kind (plain or aggregated).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Marginal {
    pub small_trades: u64,
    pub small_cpu: f64,
    pub large_trades: u64,
    pub large_cpu: f64,
}

impl Marginal {
    /// CPU seconds per trade between the two passes (0 when the sizes are equal).
    pub fn per_trade(&self) -> f64 {
        let dn = self.large_trades as f64 - self.small_trades as f64;
        if dn > 0.0 {
            (self.large_cpu - self.small_cpu) / dn
        } else {
            0.0
        }
    }

    /// Microseconds of CPU per trade, marginal.
    pub fn us_per_trade(&self) -> f64 {
        self.per_trade() * 1e6
    }

    /// The fixed part: what the line through both passes gives at zero trades.
    pub fn fixed_cpu(&self) -> f64 {
        self.small_cpu - self.per_trade() * self.small_trades as f64
    }

    /// The fixed part's share of the large pass's CPU (the issue asks < 10 %).
    pub fn fixed_fraction_of_large(&self) -> f64 {
        if self.large_cpu > 0.0 {
            self.fixed_cpu() / self.large_cpu
        } else {
            0.0
        }
    }

    /// The large pass's whole-run figure, µs per trade (fixed part included).
    pub fn whole_run_us(&self) -> f64 {
        if self.large_trades > 0 {
            self.large_cpu / self.large_trades as f64 * 1e6
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "method": "two passes on the same stack: (cpu_large - cpu_small) / (trades_large - trades_small)",
            "small_trades": self.small_trades,
            "small_cpu_seconds": self.small_cpu,
            "large_trades": self.large_trades,
            "large_cpu_seconds": self.large_cpu,
            "marginal_us_per_trade": self.us_per_trade(),
            "whole_run_us_per_trade": self.whole_run_us(),
            "fixed_cpu_seconds": self.fixed_cpu(),
            "fixed_fraction_of_large": self.fixed_fraction_of_large(),
        })
    }
}

/// Mean, min and max of a figure over runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(xs: &[f64]) -> Spread {
        if xs.is_empty() {
            return Spread {
                mean: 0.0,
                min: 0.0,
                max: 0.0,
                n: 0,
            };
        }
        Spread {
            mean: xs.iter().sum::<f64>() / xs.len() as f64,
            min: xs.iter().copied().fold(f64::INFINITY, f64::min),
            max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            n: xs.len(),
        }
    }

    /// "mean (min–max, n runs)" with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        if self.n <= 1 {
            return format!("{:.digits$}", self.mean);
        }
        format!(
            "{:.digits$} (min {:.digits$}, max {:.digits$}, {} runs)",
            self.mean, self.min, self.max, self.n
        )
    }

    pub fn to_json(&self) -> Value {
        json!({ "mean": self.mean, "min": self.min, "max": self.max, "runs": self.n })
    }
}

/// CPU seconds per shard-hour from `cpu` seconds used over `seconds` on `shards` idle shards.
pub fn per_shard_hour(cpu: f64, shards: u32, seconds: f64) -> f64 {
    if shards == 0 || seconds <= 0.0 {
        return 0.0;
    }
    cpu / f64::from(shards) / seconds * 3600.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_and_intercept() {
        // 0.2 s fixed + 1 µs per trade.
        let m = Marginal {
            small_trades: 100_000,
            small_cpu: 0.3,
            large_trades: 500_000,
            large_cpu: 0.7,
        };
        assert!((m.us_per_trade() - 1.0).abs() < 1e-9);
        assert!((m.fixed_cpu() - 0.2).abs() < 1e-9);
        assert!((m.fixed_fraction_of_large() - 0.2 / 0.7).abs() < 1e-9);
        assert!((m.whole_run_us() - 1.4).abs() < 1e-9);
        let same = Marginal {
            large_trades: 100_000,
            ..m
        };
        assert_eq!(same.per_trade(), 0.0);
    }

    #[test]
    fn spread_and_idle_scale() {
        let s = Spread::of(&[1.0, 2.0, 3.0]);
        assert_eq!((s.mean, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(s.show(1), "2.0 (min 1.0, max 3.0, 3 runs)");
        assert_eq!(Spread::of(&[]).n, 0);
        // 0.1 s over 60 s on 4 shards: 1.5 s per shard-hour.
        assert!((per_shard_hour(0.1, 4, 60.0) - 1.5).abs() < 1e-9);
        assert_eq!(per_shard_hour(1.0, 0, 60.0), 0.0);
    }
}
