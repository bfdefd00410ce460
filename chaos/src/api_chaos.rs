//! API faults for the chaos run (`--api-faults`): the test kit's operation-level fault
//! proxy in front of the Kinesis emulator (for the producer and the consumers) and in
//! front of dynalite (the consumers' lease table). While the tape plays, windows of
//! faults follow each other: in each, every Kinesis and DynamoDB operation is faulted
//! on a share of its calls with one kind of fault — errors in AWS's own shape,
//! throttling, resets before and after the call took effect, answers cut short,
//! garbage, and delays past the SDK's attempt timeouts (up to 30 s) — then a quiet
//! spell. The kinds rotate from a seed; the report lists the faults by operation.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use tradeflow_shared::testkit::api_faults::{Fault, FaultProxy, Rule, Stats};

/// Operations every run must have faulted at least once (the ones both binaries call
/// all the time; the rarer ones — CreateTable, PutItem, DeleteItem, DescribeTable —
/// are faulted whenever they are called inside a window).
pub const CORE_OPS: &[&str] = &[
    "PutRecords",
    "ListShards",
    "GetShardIterator",
    "GetRecords",
    "Scan",
    "UpdateItem",
];

/// Share of an operation's calls faulted inside a window.
const SHARE: f64 = 0.25;
const WINDOW: Duration = Duration::from_secs(2);
const QUIET: Duration = Duration::from_secs(2);

pub struct ApiChaos {
    pub kinesis: FaultProxy,
    pub dynamo: FaultProxy,
    seed: u64,
}

impl ApiChaos {
    pub async fn start(
        kinesis_upstream: &str,
        dynamo_upstream: &str,
        seed: u64,
    ) -> std::io::Result<Self> {
        Ok(ApiChaos {
            kinesis: FaultProxy::start(kinesis_upstream, seed).await?,
            dynamo: FaultProxy::start(dynamo_upstream, seed ^ 0x9e37_79b9).await?,
            seed,
        })
    }

    /// Plays fault windows for `length`, then leaves every call alone.
    pub async fn play(&self, length: Duration, progress: impl Fn(&str)) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed ^ 0xa11);
        let end = tokio::time::Instant::now() + length;
        let mut window = 0u64;
        while tokio::time::Instant::now() + WINDOW <= end {
            let kinesis = kind(&mut rng, window);
            let dynamo = kind(&mut rng, window + 3);
            self.kinesis
                .set_rules(vec![Rule::sometimes("Kinesis.*", kinesis, SHARE)]);
            self.dynamo
                .set_rules(vec![Rule::sometimes("DynamoDB.*", dynamo, SHARE)]);
            progress(&format!(
                "api faults: Kinesis {}, DynamoDB {} on {:.0}% of calls for {:?}",
                describe(kinesis),
                describe(dynamo),
                SHARE * 100.0,
                WINDOW
            ));
            tokio::time::sleep(WINDOW).await;
            self.clear();
            tokio::time::sleep(QUIET).await;
            window += 1;
        }
        self.clear();
    }

    /// Every call of `op` (`Kinesis.ListShards`, `DynamoDB.Scan`) gets `fault`, on the
    /// proxy of its service (`--api-fault-only`).
    pub fn fault_only(&self, op: &str, fault: Fault) {
        let proxy = match op.starts_with("Kinesis.") {
            true => &self.kinesis,
            false => &self.dynamo,
        };
        proxy.set_rules(vec![Rule::always(op, fault)]);
    }

    pub fn clear(&self) {
        self.kinesis.clear();
        self.dynamo.clear();
    }

    /// Both proxies' calls and faults.
    pub fn stats(&self) -> Stats {
        let mut s = self.kinesis.stats();
        s.merge(&self.dynamo.stats());
        s
    }
}

/// Window `n`'s kind: every kind in turn, the delay drawn (past the attempt timeouts:
/// Kinesis 10 s, DynamoDB 3 s; now and then the 30 s of a stuck connection).
fn kind(rng: &mut impl Rng, n: u64) -> Fault {
    match n % 8 {
        0 => Fault::Throttle,
        1 => Fault::ServerError,
        2 => Fault::ResetAfter,
        3 => Fault::ResetBefore,
        4 => Fault::Delay(Duration::from_secs(if rng.random_bool(0.25) {
            30
        } else {
            rng.random_range(2..=12)
        })),
        5 => Fault::Truncate,
        6 => Fault::Garbage,
        _ => Fault::ExpiredIterator,
    }
}

fn describe(f: Fault) -> String {
    match f {
        Fault::Delay(d) => format!("delay {}s", d.as_secs()),
        other => other.label().to_string(),
    }
}

/// The report's table: per operation, calls seen and faults by kind.
pub fn table(stats: &Stats) -> String {
    let mut out = String::from("  api faults by operation (calls, faults by kind):\n");
    for (op, calls) in &stats.calls {
        let kinds: Vec<String> = stats
            .faults
            .iter()
            .filter(|((o, _), _)| o == op)
            .map(|((_, k), n)| format!("{k} {n}"))
            .collect();
        out.push_str(&format!(
            "    {op:<34} {calls:>8}  {}\n",
            if kinds.is_empty() {
                "-".to_string()
            } else {
                kinds.join(", ")
            }
        ));
    }
    out.push_str(&format!(
        "    {:<34} {:>8}",
        "api faults injected in all",
        stats.total_faults()
    ));
    out
}
