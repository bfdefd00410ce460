//! Single Kinesis operations failing while the producer is in a particular state,
//! injected by the test kit's operation-level fault proxy between the SDK and
//! ferrokinesis: every accepted trade still lands exactly once, in order, and the
//! producer resumes by itself when the fault ends.

use crate::support;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tradeflow_producer::batcher::Limits;
use tradeflow_producer::config::OverflowPolicy;
use tradeflow_producer::pipeline::{run_with, Report, Settings};
use tradeflow_producer::sink::{KinesisSink, RetryPolicy};
use tradeflow_shared::telemetry::Health;
use tradeflow_shared::testkit::{
    self, api_faults::Fault, api_faults::FaultProxy, api_faults::Rule,
};

fn settings(stall_timeout: Duration) -> Settings {
    Settings {
        limits: Limits {
            per_key_limit: 1,
            linger: Duration::from_millis(10),
            ..Limits::default()
        },
        max_in_flight: 4,
        buffer_records: 500,
        overflow: OverflowPolicy::Block,
        retry: RetryPolicy {
            base: Duration::from_millis(50),
            max: Duration::from_secs(1),
        },
        // A refresh falls inside every fault window.
        shard_refresh: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(10),
        stall_timeout,
    }
}

struct Run {
    _emulator: testkit::Service,
    direct: aws_sdk_kinesis::Client,
    proxy: FaultProxy,
    health: std::sync::Arc<Health>,
    feeder: tokio::task::JoinHandle<()>,
    pipeline: tokio::task::JoinHandle<Report>,
}

/// A 2-shard stream behind a fault proxy, `count` trades offered as fast as the
/// producer takes them (its buffer fills: the block policy stops reading).
async fn start(count: usize, stall_timeout: Duration) -> Run {
    start_paced(count, stall_timeout, None).await
}

/// As `start`; with `per_second`, the trades are offered at that rate instead (a live
/// feed: there is something to write all along).
async fn start_paced(count: usize, stall_timeout: Duration, per_second: Option<u32>) -> Run {
    let emulator = testkit::ferrokinesis_volatile(&[]);
    let direct = support::client(&emulator.endpoint()).await;
    support::create_stream(&direct, "trades", 2).await;
    let proxy = FaultProxy::start(&emulator.endpoint(), 7).await.unwrap();
    let sink = KinesisSink::new(&support::client(&proxy.endpoint()).await, "trades");
    let (tx, rx) = mpsc::channel(256);
    let feeder = support::feed::spawn(tx, count, per_second);
    let health = Health::new();
    let h = health.clone();
    let pipeline = tokio::spawn(async move {
        run_with(
            sink,
            rx,
            settings(stall_timeout),
            CancellationToken::new(),
            h,
        )
        .await
        .expect("pipeline")
    });
    // The first map is known and writes flow before the incident.
    for _ in 0..200 {
        if proxy
            .stats()
            .calls
            .get("Kinesis.PutRecords")
            .copied()
            .unwrap_or(0)
            >= 3
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Run {
        _emulator: emulator,
        direct,
        proxy,
        health,
        feeder,
        pipeline,
    }
}

/// After the faults are cleared: the producer must finish by itself within `limit`
/// (a liveness bound, generous against the 1 s longest backoff) with every trade
/// written exactly once and in order.
async fn finishes_exactly(run: Run, count: usize, limit: Duration) {
    let records = finishes(run, count, limit).await;
    let by = support::trades_by_symbol(&records);
    assert_eq!(support::assert_exactly_once_in_order(&by), count as u64);
}

/// Waits for the producer to finish within `limit`, checks its report and returns the
/// stream's records.
async fn finishes(run: Run, count: usize, limit: Duration) -> Vec<support::ReadRecord> {
    let cleared = tokio::time::Instant::now();
    let report = tokio::time::timeout(limit, run.pipeline)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the producer did not resume within {limit:?} after the faults ended (faults: {:?})",
                run.proxy.stats().faults
            )
        })
        .expect("pipeline task");
    eprintln!(
        "resumed and finished {:?} after the faults ended",
        cleared.elapsed()
    );
    run.feeder.await.unwrap();
    assert_eq!(report.accepted, count as u64);
    assert_eq!(report.written_trades, count as u64);
    assert_eq!(report.lost, 0);
    support::read_stream(&run.direct, "trades").await
}

/// Regression: a ListShards that failed during a periodic refresh left the producer
/// with no timer armed; with the buffer full nothing woke it again, and it held its
/// trades until SIGTERM (issue #19, seen with a 90 s ListShards outage while PutRecords
/// was throttled). With a refresh every second and the buffer full from the start, the
/// first refresh of the outage fails within a second or two, after which the old code
/// never woke again; 20 s of outage is a dozen refresh periods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_shards_outage_during_a_refresh_with_a_full_buffer_ends_by_itself() {
    const COUNT: usize = 4_000;
    let run = start(COUNT, Duration::from_secs(600)).await;
    run.proxy.set_rules(vec![
        Rule::always("ListShards", Fault::ServerError),
        Rule::sometimes("PutRecords", Fault::Throttle, 0.7),
    ]);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let stats = run.proxy.stats();
    assert!(
        stats.faults_for("ListShards") >= 2 && stats.faults_for("PutRecords") > 0,
        "the outage must have hit refreshes and writes: {:?}",
        stats.faults
    );
    run.proxy.clear();
    finishes_exactly(run, COUNT, Duration::from_secs(30)).await;
}

/// Regression (issue #21): the periodic shard-map refresh was awaited inside the
/// pipeline's loop, so while one ListShards hung (up to the 10 s attempt timeout, then
/// again on the retry) nothing was written. Writes must go on with the map in hand while
/// a refresh is slow: the longest pause between two PutRecords calls (none of them
/// faulted) stays far below the ListShards delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_list_shards_during_a_refresh_does_not_pause_writes() {
    // 250 trades/s for 20 s: a live feed all through the slow window.
    const COUNT: usize = 5_000;
    let run = start_paced(COUNT, Duration::from_secs(600), Some(250)).await;
    let puts = |run: &Run| {
        run.proxy
            .stats()
            .calls
            .get("Kinesis.PutRecords")
            .copied()
            .unwrap_or(0)
    };
    run.proxy.set_rules(vec![Rule::always(
        "ListShards",
        Fault::Delay(Duration::from_secs(20)),
    )]);
    let window = Duration::from_secs(14);
    let started = tokio::time::Instant::now();
    let (mut last, mut last_change) = (puts(&run), started);
    let mut longest = Duration::ZERO;
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = puts(&run);
        if n != last {
            longest = longest.max(last_change.elapsed());
            (last, last_change) = (n, tokio::time::Instant::now());
        }
    }
    longest = longest.max(last_change.elapsed());
    let stats = run.proxy.stats();
    assert!(
        stats.faults_for("ListShards") >= 1,
        "no refresh fell in the slow window: {:?}",
        stats.calls
    );
    eprintln!("longest pause between PutRecords calls while ListShards was slow: {longest:?}");
    assert!(
        longest < Duration::from_secs(4),
        "PutRecords paused {longest:?} while a ListShards was delayed 20 s (calls: {:?})",
        stats.calls
    );
    run.proxy.clear();
    finishes_exactly(run, COUNT, Duration::from_secs(30)).await;
}

/// A reshard while trades flow: the refresh beside the loop brings the new map, the
/// deliveries in flight finish before any goes by it, and each symbol's trades are in
/// order across the parent shard and its child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshard_while_writing_keeps_every_symbol_in_order() {
    // 250 trades/s for 10 s.
    const COUNT: usize = 2_500;
    let run = start_paced(COUNT, Duration::from_secs(600), Some(250)).await;
    // Split the shard BTCUSDT goes to.
    let key = tradeflow_producer::shard_map::hash_key("BTCUSDT");
    let listed = run
        .direct
        .list_shards()
        .stream_name("trades")
        .send()
        .await
        .expect("list shards");
    let (parent, lo, hi) = listed
        .shards()
        .iter()
        .filter_map(|s| {
            let r = s.hash_key_range()?;
            let (lo, hi): (u128, u128) = (
                r.starting_hash_key().parse().ok()?,
                r.ending_hash_key().parse().ok()?,
            );
            (lo..=hi)
                .contains(&key)
                .then(|| (s.shard_id().to_string(), lo, hi))
        })
        .next()
        .expect("a shard owns every key");
    run.direct
        .split_shard()
        .stream_name("trades")
        .shard_to_split(&parent)
        .new_starting_hash_key((lo + (hi - lo) / 2 + 1).to_string())
        .send()
        .await
        .expect("split shard");
    let records = finishes(run, COUNT, Duration::from_secs(30)).await;
    let trades = support::trades(&records);
    assert!(
        trades
            .iter()
            .any(|(sym, shard, _)| sym == "BTCUSDT" && shard != &parent),
        "BTCUSDT never written to a child of {parent}"
    );
    // Read shard by shard, parents first: per symbol, parent then child.
    let mut by: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for (sym, _, id) in trades {
        by.entry(sym).or_default().push(id);
    }
    assert_eq!(support::assert_exactly_once_in_order(&by), COUNT as u64);
}

/// The other ways a single Kinesis call fails without having taken effect, one after
/// the other on the same run: 500s, throttles, resets before forwarding, garbage
/// answers, slow answers (within the attempt timeout). Faults after the write took
/// effect (a reset after forwarding, a 200 cut short, an answer later than the
/// timeout) make the resend a second copy in the stream, which Kinesis cannot prevent
/// and the consumers drop by trade id: the chaos run with API faults checks those end
/// to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_records_faults_of_every_kind_lose_nothing() {
    const COUNT: usize = 3_000;
    let run = start(COUNT, Duration::from_secs(600)).await;
    for fault in [
        Fault::ServerError,
        Fault::Throttle,
        Fault::ResetBefore,
        Fault::Garbage,
        Fault::Delay(Duration::from_secs(4)),
    ] {
        run.proxy
            .set_rules(vec![Rule::sometimes("Kinesis.*", fault, 0.5)]);
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let stats = run.proxy.stats();
    assert!(stats.faults_for("PutRecords") > 5, "{:?}", stats.faults);
    run.proxy.clear();
    finishes_exactly(run, COUNT, Duration::from_secs(60)).await;
}

/// The watchdog: PutRecords refused for longer than the stall timeout makes the
/// producer not ready, naming the stuck part; it is ready again once writes resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_outage_longer_than_the_stall_timeout_is_reported_and_clears() {
    const COUNT: usize = 2_000;
    let run = start(COUNT, Duration::from_secs(3)).await;
    let stale = Duration::from_secs(3600);
    assert_eq!(run.health.readiness(stale), Ok(()));
    run.proxy
        .set_rules(vec![Rule::always("PutRecords", Fault::Throttle)]);
    let mut seen = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Err(why) = run.health.readiness(stale) {
            seen = Some(why);
            break;
        }
    }
    let why = seen.expect("never reported stalled while PutRecords was refused");
    assert!(why.contains("kinesis_put"), "{why}");
    run.proxy.clear();
    let mut ready_again = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if run.health.readiness(stale).is_ok() {
            ready_again = true;
            break;
        }
    }
    assert!(ready_again, "still not ready after writes resumed");
    finishes_exactly(run, COUNT, Duration::from_secs(30)).await;
}
