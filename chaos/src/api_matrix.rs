//! One operation, one fault kind (`--api-fault-only OP:KIND[:SECONDS]`): instead of the
//! rotating windows of `--api-faults`, every call of one AWS operation gets one fault
//! from about 20% of the tape for SECONDS (30 by default), then nothing. Run after run
//! over operations × kinds, it tells which fault of which call the binaries do not
//! survive, and how long they take to catch up once it ends. While the tape plays and
//! drains, the run samples what the exchange emitted, what Redis counted (a client of
//! its own: the verdict's reader is borrowed by the process faults) and the binaries'
//! watchdog gauges.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use tradeflow_exchange::Exchange;
use tradeflow_shared::testkit::api_faults::Fault;

use crate::api_chaos::ApiChaos;
use crate::procs::{metrics_addr_in, scrape};

const KINESIS_OPS: &[&str] = &[
    "PutRecords",
    "PutRecord",
    "ListShards",
    "GetShardIterator",
    "GetRecords",
    "DescribeStream",
    "DescribeStreamSummary",
    "SubscribeToShard",
];
const DYNAMO_OPS: &[&str] = &[
    "Scan",
    "UpdateItem",
    "GetItem",
    "PutItem",
    "DeleteItem",
    "Query",
    "CreateTable",
    "DescribeTable",
];
const SAMPLE: Duration = Duration::from_millis(500);

/// The one fault of the run: `op` as the proxy matches it (`Kinesis.PutRecords`).
#[derive(Debug, Clone, PartialEq)]
pub struct Single {
    pub op: String,
    pub fault: Fault,
    pub window: Duration,
}

impl Single {
    pub fn kinesis(&self) -> bool {
        self.op.starts_with("Kinesis.")
    }

    pub fn kind(&self) -> String {
        match self.fault {
            Fault::Delay(d) => format!("delay {}s", d.as_secs()),
            f => f.label().to_string(),
        }
    }
}

impl FromStr for Single {
    type Err = String;

    /// `OP:KIND[:SECONDS]`; OP `PutRecords` or `Kinesis.PutRecords`; KIND `500`,
    /// `throttle`, `reset_after`, `reset_before`, `expired_iterator`, `truncate`,
    /// `garbage`, `delay` (30 s) or `delay=12s`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let (op, kind) = match (parts.next(), parts.next()) {
            (Some(o), Some(k)) => (o, k),
            _ => return Err(format!("{s}: expected OP:KIND[:SECONDS]")),
        };
        let window = match parts.next() {
            Some(n) => Duration::from_secs(n.parse().map_err(|_| format!("{n}: not seconds"))?),
            None => Duration::from_secs(30),
        };
        if parts.next().is_some() {
            return Err(format!("{s}: expected OP:KIND[:SECONDS]"));
        }
        let op = if op.contains('.') {
            op.to_string()
        } else if KINESIS_OPS.contains(&op) {
            format!("Kinesis.{op}")
        } else if DYNAMO_OPS.contains(&op) {
            format!("DynamoDB.{op}")
        } else {
            return Err(format!(
                "{op}: unknown operation (one of {}, {}, or Service.Op)",
                KINESIS_OPS.join(", "),
                DYNAMO_OPS.join(", ")
            ));
        };
        let fault = match kind {
            "500" => Fault::ServerError,
            "throttle" => Fault::Throttle,
            "reset_after" => Fault::ResetAfter,
            "reset_before" => Fault::ResetBefore,
            "expired_iterator" => Fault::ExpiredIterator,
            "truncate" => Fault::Truncate,
            "garbage" => Fault::Garbage,
            "delay" => Fault::Delay(Duration::from_secs(30)),
            k => match k.strip_prefix("delay=") {
                Some(d) => Fault::Delay(humantime::parse_duration(d).map_err(|e| e.to_string())?),
                None => return Err(format!("{k}: unknown fault kind")),
            },
        };
        Ok(Single { op, fault, window })
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Seconds since the tape started.
    t: f64,
    emitted: u64,
    counted: u64,
    /// Σ of the binaries' `tradeflow_*_stalled` gauges (0 for binaries without them).
    stalled: f64,
}

/// Samples of one run around its single fault.
pub struct Monitor {
    pub single: Single,
    t0: Instant,
    redis_url: String,
    symbols: Vec<String>,
    producer_metrics: String,
    consumer_logs: Vec<PathBuf>,
    consumer_metrics: Vec<Option<String>>,
    start: Option<f64>,
    end: Option<f64>,
    samples: Vec<Sample>,
}

impl Monitor {
    pub fn new(
        single: Single,
        t0: Instant,
        redis_url: String,
        symbols: Vec<String>,
        producer_metrics: String,
        consumer_logs: Vec<PathBuf>,
    ) -> Monitor {
        let n = consumer_logs.len();
        Monitor {
            single,
            t0,
            redis_url,
            symbols,
            producer_metrics,
            consumer_logs,
            consumer_metrics: vec![None; n],
            start: None,
            end: None,
            samples: Vec::new(),
        }
    }

    /// Faults the operation from 20% of `play` for the window, sampling until the tape
    /// is emitted in full and the window is over.
    pub async fn play(
        &mut self,
        api: &ApiChaos,
        play: Duration,
        exchange: &Exchange,
        total: u64,
        progress: impl Fn(&str),
    ) {
        let from = self.t0 + play / 5;
        let until = from + self.single.window;
        loop {
            let now = Instant::now();
            if self.start.is_none() && now >= from {
                api.fault_only(&self.single.op, self.single.fault);
                self.start = Some(self.t0.elapsed().as_secs_f64());
                progress(&format!(
                    "t+{:>6.1}s api fault only: {} {} on every call for {:?}",
                    self.t0.elapsed().as_secs_f64(),
                    self.single.op,
                    self.single.kind(),
                    self.single.window
                ));
            }
            if self.start.is_some() && self.end.is_none() && now >= until {
                api.clear();
                self.end = Some(self.t0.elapsed().as_secs_f64());
                progress(&format!(
                    "t+{:>6.1}s api fault cleared",
                    self.t0.elapsed().as_secs_f64()
                ));
            }
            let emitted = exchange.emitted_count();
            self.sample(emitted).await;
            if self.end.is_some() && emitted >= total {
                return;
            }
            tokio::time::sleep(SAMPLE).await;
        }
    }

    /// One sample: Redis's count read here, the gauges scraped.
    pub async fn sample(&mut self, emitted: u64) {
        let counted = self.counted().await;
        let mut stalled = scrape(&self.producer_metrics, "tradeflow_producer_stalled")
            .await
            .unwrap_or(0.0);
        for (i, log) in self.consumer_logs.iter().enumerate() {
            if self.consumer_metrics[i].is_none() {
                self.consumer_metrics[i] = metrics_addr_in_log(log);
            }
            if let Some(a) = &self.consumer_metrics[i] {
                stalled += scrape(a, "tradeflow_consumer_stalled").await.unwrap_or(0.0);
            }
        }
        self.samples.push(Sample {
            t: self.t0.elapsed().as_secs_f64(),
            emitted,
            counted,
            stalled,
        });
    }

    /// Σ `symbol:SYM` (one Redis; `--redis-cluster` is refused with this mode). A
    /// failed read counts as the last value, not as zero.
    async fn counted(&self) -> u64 {
        let last = self.samples.last().map_or(0, |s| s.counted);
        let read = async {
            let mut c = redis::Client::open(self.redis_url.as_str())
                .ok()?
                .get_multiplexed_async_connection()
                .await
                .ok()?;
            let keys: Vec<String> = self.symbols.iter().map(|s| format!("symbol:{s}")).collect();
            let v: Vec<Option<u64>> = redis::cmd("MGET")
                .arg(keys)
                .query_async(&mut c)
                .await
                .ok()?;
            Some(v.into_iter().flatten().sum())
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .ok()
            .flatten()
            .unwrap_or(last)
    }

    /// What the samples say, given when Redis was found exact (`None`: never).
    pub fn outcome(&self, exact_at: Option<f64>) -> Outcome {
        let end = self.end.unwrap_or(f64::NAN);
        // Everything the exchange had emitted when the fault ended is counted.
        let backlog = self
            .samples
            .iter()
            .take_while(|s| s.t <= end)
            .last()
            .map_or(0, |s| s.emitted);
        let caught_up = self
            .samples
            .iter()
            .find(|s| s.t >= end && s.counted >= backlog)
            .map(|s| s.t - end);
        // Longest spell with trades pending and Redis not moving.
        let mut longest = 0.0f64;
        let mut since: Option<f64> = None;
        let mut prev = 0;
        for s in &self.samples {
            if s.counted == prev && s.counted < s.emitted {
                let from = *since.get_or_insert(s.t);
                longest = longest.max(s.t - from);
            } else {
                since = None;
            }
            prev = s.counted;
        }
        let max_lag = self
            .samples
            .iter()
            .map(|s| s.emitted.saturating_sub(s.counted))
            .max()
            .unwrap_or(0);
        Outcome {
            op: self.single.op.clone(),
            kind: self.single.kind(),
            start: self.start.unwrap_or(f64::NAN),
            end,
            caught_up,
            exact_after: exact_at.map(|t| t - end),
            longest_still: longest,
            max_lag,
            stalled_max: self.samples.iter().map(|s| s.stalled).fold(0.0, f64::max),
        }
    }
}

/// The latest `serving /metrics` address in a JSON log (as `procs::metrics_addr`).
fn metrics_addr_in_log(log: &Path) -> Option<String> {
    std::fs::read_to_string(log)
        .ok()?
        .lines()
        .rev()
        .find_map(metrics_addr_in)
}

/// The report's lines for the single fault.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub op: String,
    pub kind: String,
    /// Seconds since the tape started.
    pub start: f64,
    pub end: f64,
    /// Seconds after the fault ended until Redis counted all the exchange had emitted
    /// by then (the backlog of the fault drained).
    pub caught_up: Option<f64>,
    /// Seconds after the fault ended until Redis equalled the whole tape (bounded below
    /// by the tape's end).
    pub exact_after: Option<f64>,
    /// Longest time Redis did not move while trades were pending.
    pub longest_still: f64,
    pub max_lag: u64,
    /// Most instances the binaries' watchdogs reported stalled at once.
    pub stalled_max: f64,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |x: Option<f64>| x.map_or("never".to_string(), |s| format!("{s:.1} s"));
        writeln!(
            f,
            "  api fault only: {} {} from t+{:.1}s to t+{:.1}s",
            self.op, self.kind, self.start, self.end
        )?;
        writeln!(
            f,
            "    {:<52} {:>10}",
            "after it ended, backlog counted in Redis",
            opt(self.caught_up)
        )?;
        writeln!(
            f,
            "    {:<52} {:>10}",
            "after it ended, Redis exact",
            opt(self.exact_after)
        )?;
        writeln!(
            f,
            "    {:<52} {:>8.1} s",
            "longest time Redis still with trades pending", self.longest_still
        )?;
        writeln!(
            f,
            "    {:<52} {:>10}",
            "largest lag (emitted - counted)", self.max_lag
        )?;
        write!(
            f,
            "    {:<52} {:>10}",
            "watchdogs: most parts stalled at once", self.stalled_max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_op_kind_and_window() {
        let s: Single = "PutRecords:throttle".parse().unwrap();
        assert_eq!(s.op, "Kinesis.PutRecords");
        assert_eq!(s.fault, Fault::Throttle);
        assert_eq!(s.window, Duration::from_secs(30));
        let s: Single = "UpdateItem:delay=12s:45".parse().unwrap();
        assert_eq!(s.op, "DynamoDB.UpdateItem");
        assert_eq!(s.fault, Fault::Delay(Duration::from_secs(12)));
        assert_eq!(s.window, Duration::from_secs(45));
        let s: Single = "Scan:delay".parse().unwrap();
        assert_eq!(s.fault, Fault::Delay(Duration::from_secs(30)));
        assert!("Nope:500".parse::<Single>().is_err());
        assert!("Scan:boom".parse::<Single>().is_err());
        assert!("Scan".parse::<Single>().is_err());
    }
}
