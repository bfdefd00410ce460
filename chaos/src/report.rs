//! What a chaos run did and found, and its text table (printed at the end of a run).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tradeflow_shared::testkit::api_faults::Stats;

use crate::gaps::Gap;
use crate::plan::KINDS;
use crate::verify::Verdict;

/// What the stream holds after the run, read back from every shard.
#[derive(Debug, Clone, Copy)]
pub struct InStream {
    /// Distinct trades found.
    pub distinct: u64,
    /// Trades of the tape not in the stream at all (the producer's losses).
    pub missing: u64,
    /// Records stored in a closed shard after its ending sequence number.
    pub past_end: u64,
}

/// What the run did and found.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub emitted: u64,
    /// The producer's `tradeflow_producer_trades_written_total` (duplicates it wrote
    /// again after a lost answer count twice here).
    pub written: u64,
    pub verdict: Verdict,
    /// The stream read back after the run (`None`: it could not be read).
    pub stream: Option<InStream>,
    /// Summed over the consumers' current processes: (metric, value) of the counters
    /// that explain a difference (late trades dropped, poison records, duplicates).
    pub consumer_counters: Vec<(&'static str, u64)>,
    /// Per fault kind: injected (and skipped, e.g. a split the emulator refused).
    pub faults: [(u64, u64); KINDS.len()],
    pub longest_gap: Option<Gap>,
    /// The producer's own counts of gaps in trade ids and of trades it saw twice.
    pub producer_missing: u64,
    pub producer_duplicates: u64,
    pub exchange_lagged_closes: u64,
    /// Bytes of torn emulator log entries cut before restarts (testkit::cut_torn_wal).
    pub torn_wal_bytes: u64,
    /// Redis faults by what they were (restart; failover or slot migration on a cluster).
    pub redis_faults: BTreeMap<&'static str, u64>,
    /// Counted into a Redis Cluster.
    pub redis_cluster: bool,
    /// With `api_faults`: calls and faults by operation.
    pub api_faults: Option<Stats>,
    /// With `api_fault_only`: when the fault was, and how the run came back from it.
    pub api_matrix: Option<crate::api_matrix::Outcome>,
    /// Faults of the Kinesis emulator itself (came back DOWN, stream unreadable): when
    /// not empty, trades missing from Redis are not the product's doing.
    pub emulator_faults: Vec<String>,
    pub elapsed: Duration,
    pub drain: Duration,
    pub log_dir: Option<PathBuf>,
}

/// One `name  value` line of the table.
fn row(f: &mut fmt::Formatter<'_>, name: &str, value: impl fmt::Display) -> fmt::Result {
    writeln!(f, "  {name:<42} {value:>12}")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.verdict;
        let cluster = if self.redis_cluster {
            ", Redis Cluster (3 primaries, 1 replica each)"
        } else {
            ""
        };
        writeln!(f, "chaos run, seed {}{cluster}", self.seed)?;
        let stream = |x: fn(&InStream) -> u64| {
            self.stream
                .as_ref()
                .map_or("n/a".into(), |s| x(s).to_string())
        };
        row(f, "trades emitted (ground truth: the tape)", self.emitted)?;
        row(f, "trades written by the producer", self.written)?;
        row(
            f,
            "distinct trades found in the stream",
            stream(|s| s.distinct),
        )?;
        row(
            f,
            "  of the tape, missing from the stream",
            stream(|s| s.missing),
        )?;
        row(
            f,
            "  records past a closed shard's end",
            stream(|s| s.past_end),
        )?;
        row(f, "trades counted in Redis", v.counted)?;
        row(f, "lost", v.lost)?;
        row(f, "double-counted", v.doubled)?;
        row(
            f,
            "symbols with inexact count/base/quote",
            v.mismatches.len(),
        )?;
        row(f, "producer: ids missing (gaps)", self.producer_missing)?;
        row(f, "producer: duplicates dropped", self.producer_duplicates)?;
        row(f, "exchange: too-slow closes", self.exchange_lagged_closes)?;
        for (metric, n) in &self.consumer_counters {
            writeln!(f, "  {metric:<56} {n:>8}")?;
        }
        if self.torn_wal_bytes > 0 {
            row(
                f,
                "emulator: torn log bytes cut at restarts",
                self.torn_wal_bytes,
            )?;
        }
        for (what, n) in &self.redis_faults {
            row(f, &format!("redis: {what}"), n)?;
        }
        if let Some(stats) = &self.api_faults {
            writeln!(f, "{}", crate::api_chaos::table(stats))?;
        }
        if let Some(o) = &self.api_matrix {
            writeln!(f, "{o}")?;
        }
        for e in &self.emulator_faults {
            writeln!(f, "  EMULATOR FAULT {e}")?;
        }
        writeln!(f, "  faults injected (skipped):")?;
        for (name, (done, skipped)) in KINDS.iter().zip(self.faults) {
            writeln!(f, "    {name:<40} {done:>8} ({skipped})")?;
        }
        match &self.longest_gap {
            Some(g) => writeln!(
                f,
                "  {:<42} {:>9} ms ({})",
                "longest time a shard had no reader", g.ms, g.shard
            )?,
            None => writeln!(f, "  longest time a shard had no reader: n/a")?,
        }
        writeln!(
            f,
            "  wall time {:.1} s (drain after the tape ended {:.1} s)",
            self.elapsed.as_secs_f64(),
            self.drain.as_secs_f64()
        )?;
        for m in v.mismatches.iter().take(10) {
            writeln!(f, "  MISMATCH {m:?}")?;
        }
        if let Some(d) = &self.log_dir {
            writeln!(f, "  logs kept in {}", d.display())?;
        }
        let result = if v.exact() { "EXACT" } else { "FAILED" };
        write!(f, "  result: {result}")
    }
}
