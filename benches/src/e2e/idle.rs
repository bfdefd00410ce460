//! The consumer's fixed cost on its own: one consumer holding every lease of an idle
//! stream (no records), its CPU over a window after it has taken them all — lease
//! renewals, lease-table scans, empty GetRecords polls — scaled to CPU seconds per
//! shard-hour, so a fleet's idle cost can be read off.

use std::time::{Duration, Instant};

use tradeflow_shared::testkit;

use super::marginal::per_shard_hour;
use super::prom;
use super::run::{env, spawn_consumer, E2eError, Result};
use super::stack::{create_stream, Paths, Stack};

/// What an idle pass measured.
#[derive(Clone, Debug, Default)]
pub struct Idle {
    pub shards: u32,
    pub seconds: f64,
    pub cpu: f64,
    /// GetRecords calls and DynamoDB requests over the window (metrics deltas).
    pub getrecords: f64,
    pub dynamodb_requests: f64,
}

impl Idle {
    pub fn cpu_per_shard_hour(&self) -> f64 {
        per_shard_hour(self.cpu, self.shards, self.seconds)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "shards": self.shards,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu,
            "cpu_seconds_per_shard_hour": self.cpu_per_shard_hour(),
            "getrecords_calls": self.getrecords,
            "dynamodb_requests": self.dynamodb_requests,
        })
    }
}

fn scrape(addr: &str) -> Vec<prom::Sample> {
    testkit::scrape_metrics(addr)
        .map(|t| prom::parse(&t))
        .unwrap_or_default()
}

/// One consumer on a fresh `shards`-shard stream with nothing written: waits until it
/// holds every lease, then `settle` more, then measures its CPU over `window`.
///
/// `settle` is for what a shard-hour of idling does not pay: start-up (first scans,
/// iterators) and the ramp of the quiet-shard back-off, whose polls reach their cap
/// (`--idle-max-wait`, 5 s) after ~25 s of silence. The full bench settles 30 s: an
/// idle shard spends < 1 % of its hour in that ramp.
pub fn run_idle(
    stack: &Stack,
    paths: &Paths,
    shards: u32,
    window: Duration,
    settle: Duration,
) -> Result<Idle> {
    let stream = format!("e2e-idle-{shards}");
    create_stream(&stack.kinesis.endpoint(), &stream, shards)?;
    let url = stack.redis_url(5);
    let name = format!("{stream}-consumer");
    let mut c = spawn_consumer(paths, &stream, &name, &url, &env(stack, &url))?;
    let started = Instant::now();
    loop {
        if let Some(status) = c.poll() {
            return Err(E2eError::Process("consumer", format!("idle: {status}")));
        }
        let held = prom::sum(&scrape(&c.metrics), "tradeflow_consumer_leases_held", "");
        if held >= f64::from(shards) {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(E2eError::Timeout(format!(
                "idle: {held} of {shards} leases after 120 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let settled = Instant::now();
    while settled.elapsed() < settle {
        if let Some(status) = c.poll() {
            return Err(E2eError::Process("consumer", format!("idle: {status}")));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let m = |s: &[prom::Sample]| {
        (
            prom::sum(s, "tradeflow_consumer_getrecords_total", ""),
            prom::sum(s, "tradeflow_consumer_dynamodb_requests_total", ""),
        )
    };
    let before = m(&scrape(&c.metrics));
    c.tracker.sample();
    let cpu0 = c.tracker.cpu_seconds;
    let t0 = Instant::now();
    while t0.elapsed() < window {
        if let Some(status) = c.poll() {
            return Err(E2eError::Process("consumer", format!("idle: {status}")));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    c.tracker.sample();
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = c.tracker.cpu_seconds - cpu0;
    let after = m(&scrape(&c.metrics));
    c.stop();
    Ok(Idle {
        shards,
        seconds,
        cpu,
        getrecords: after.0 - before.0,
        dynamodb_requests: after.1 - before.1,
    })
}
