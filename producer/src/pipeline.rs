//! Wires a source to Kinesis: bounded channel → per-symbol dedupe and gap check →
//! per-shard batcher → at most one PutRecords delivery in flight per shard (several
//! shards in parallel, `max_in_flight` in all). On shutdown it stops the source, keeps
//! taking what the source already sent, flushes everything and, past the drain
//! deadline, reports whatever is still unwritten as lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::counter;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tradeflow_shared::retry::{Next, Policy, Retry};
use tradeflow_shared::telemetry::Health;
use tradeflow_shared::watchdog::Watchdog;

use crate::batcher::{Batcher, Limits, Pending, TradeRef};
use crate::config::{BackfillMode, Config, ConfigError, OverflowPolicy, SourceKind};
use crate::dedupe::{Dedupe, Verdict};
use crate::metrics as m;
use crate::shard_map::ShardMap;
use crate::sink::{deliver, Delivery, KinesisSink, RetryPolicy, SinkError};
use crate::source::{self, SourceTrade, TradeRx};
use shard_refresh::Refresher;

mod shard_refresh;

/// Capacity of the channel between the sources and the pipeline.
pub const CHANNEL_CAPACITY: usize = 4096;
/// Symbols the dedupe remembers (Binance lists a few thousand).
pub const MAX_SYMBOLS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    pub max_in_flight: usize,
    pub buffer_records: usize,
    pub overflow: OverflowPolicy,
    pub retry: RetryPolicy,
    pub shard_refresh: Duration,
    pub drain_timeout: Duration,
    /// Buffered trades with no write for this long: the watchdog says the producer is
    /// stalled (`/readyz`, `tradeflow_producer_stalled`).
    pub stall_timeout: Duration,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        Settings {
            limits: Limits {
                max_records: c.batch_records,
                max_bytes: c.batch_bytes,
                per_key_limit: c.per_key_limit(),
                aggregate: c.aggregate.then_some(c.aggregate_bytes),
                linger: c.linger,
            },
            max_in_flight: c.max_in_flight,
            buffer_records: c.buffer_records,
            overflow: c.overflow,
            retry: RetryPolicy {
                base: c.retry_base,
                max: c.retry_max,
            },
            shard_refresh: c.shard_refresh,
            drain_timeout: c.drain_timeout,
            stall_timeout: c.telemetry.stall_timeout,
        }
    }
}

/// What one run did. At the end `accepted == written_trades + lost`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub received: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub missing: u64,
    pub dropped: u64,
    pub written_trades: u64,
    pub written_records: u64,
    pub lost: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("source failed: {0}")]
    Source(String),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("internal: {0}")]
    Internal(String),
}

/// Runs the producer described by `config` until the source ends (finite sources) or
/// `shutdown`, then drains.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<Report, PipelineError> {
    run_with_health(config, shutdown, Health::new()).await
}

pub async fn run_with_health(
    config: Config,
    shutdown: CancellationToken,
    health: Arc<Health>,
) -> Result<Report, PipelineError> {
    config.validate()?;
    let sdk = tradeflow_shared::aws::sdk_config(&config.aws).await;
    let client = tradeflow_shared::aws::kinesis_client(&sdk, &config.aws);
    let sink = KinesisSink::new(&client, config.stream.clone());
    let (tx, rx) = mpsc::channel::<SourceTrade>(CHANNEL_CAPACITY);
    let source_stop = shutdown.child_token();
    let source = spawn_source(&config, tx, source_stop.clone())?;
    let report = run_with(sink, rx, Settings::from_config(&config), shutdown, health).await;
    source_stop.cancel();
    let source_result = source
        .await
        .map_err(|e| PipelineError::Source(format!("source task: {e}")))?;
    let report = report?;
    source_result.map_err(PipelineError::Source)?;
    Ok(report)
}

type SourceTask = tokio::task::JoinHandle<Result<(), String>>;

fn spawn_source(
    config: &Config,
    tx: source::TradeTx,
    stop: CancellationToken,
) -> Result<SourceTask, PipelineError> {
    Ok(match config.source {
        SourceKind::Replay => {
            let path = config.replay_file.clone().expect("validated");
            tokio::spawn(async move {
                source::replay::run(&path, tx, stop)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("replay {}: {e}", path.display()))
            })
        }
        SourceKind::Tail => {
            let cfg = source::tail::TailConfig {
                path: config.tail_file.clone(),
                from_start: config.tail_from_start,
                poll: config.tail_poll,
            };
            tokio::spawn(async move {
                source::tail::run(cfg, tx, stop)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("tail: {e}"))
            })
        }
        SourceKind::Synthetic => {
            let cfg = source::synthetic::SyntheticConfig {
                symbols: config.parsed_symbols()?,
                rate: config.synthetic_rate,
                count: config.synthetic_count,
                seed: config.synthetic_seed,
            };
            tokio::spawn(async move {
                source::synthetic::run(cfg, tx, stop).await;
                Ok(())
            })
        }
        SourceKind::Binance => {
            let selection = if config.all_symbols {
                source::symbols::Selection::AllTrading {
                    rest_url: config.rest_url(),
                }
            } else if let Some(p) = &config.symbols_file {
                source::symbols::Selection::File(p.clone())
            } else {
                source::symbols::Selection::List(config.symbols.clone())
            };
            // The other timings keep Binance-suited defaults.
            let mut cfg = source::binance::BinanceConfig {
                url: config.binance_url.clone(),
                symbols: Vec::new(),
                dead_timeout: config.ws_dead_timeout,
                max_connection_age: config.ws_max_age,
                ..Default::default()
            };
            let backfill = (config.backfill == BackfillMode::HistoricalTrades).then(|| {
                source::backfill::BackfillConfig {
                    base_url: config.rest_url(),
                    max_gap: config.backfill_max_gap,
                    deadline: config.backfill_deadline,
                    weight_per_minute: config.backfill_weight_per_minute,
                    ..Default::default()
                }
            });
            tokio::spawn(async move {
                cfg.symbols = source::symbols::resolve(&selection)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(backfill) = backfill else {
                    return source::binance::run(cfg, tx, stop)
                        .await
                        .map_err(|e| format!("binance: {e:#}"));
                };
                // websocket → gap filler → pipeline; the filler ends when the source
                // does, after releasing what it held.
                let (ws_tx, ws_rx) = mpsc::channel::<SourceTrade>(CHANNEL_CAPACITY);
                let filler = tokio::spawn(source::backfill::run(backfill, ws_rx, tx, stop.clone()));
                let ws = source::binance::run(cfg, ws_tx, stop).await;
                let filled = filler.await.map_err(|e| format!("backfill task: {e}"))?;
                ws.map_err(|e| format!("binance: {e:#}"))?;
                filled.map_err(|e| format!("backfill: {e}"))
            })
        }
    })
}

/// The pipeline proper, from an already filled channel to Kinesis. Returns when the
/// channel is closed and everything is written, or after the drain deadline.
pub async fn run_with(
    sink: KinesisSink,
    mut rx: TradeRx,
    settings: Settings,
    shutdown: CancellationToken,
    health: Arc<Health>,
) -> Result<Report, PipelineError> {
    let mut st = State {
        report: Report::default(),
        dedupe: Dedupe::new(MAX_SYMBOLS),
        settings,
        trades_in: counter!(m::TRADES_IN),
        trades_accepted: counter!(m::TRADES_ACCEPTED),
    };
    let dog = Watchdog::new("tradeflow_producer_stalled", st.settings.stall_timeout);
    health.watch_with(dog.clone());
    let dog_stop = CancellationToken::new();
    let _dog_stop_guard = dog_stop.clone().drop_guard();
    tokio::spawn(dog.clone().run(Duration::from_secs(1), dog_stop));
    let watch_put = dog.watch("kinesis_put", "");
    let watch_map = dog.watch("shard_map", "");
    // Listing shards is a control-plane call (100/s per stream, shared with every
    // consumer): its retries back off like every other, never once per trade.
    let list_policy = Policy::forever(st.settings.retry.base, st.settings.retry.max);
    let mut list_retry = Retry::new("producer.list_shards", list_policy);
    // The stream must be known before anything is accepted; wait for it (it may be
    // being created) unless asked to stop.
    watch_map.busy();
    let map = {
        loop {
            match sink.list_shards().await {
                Ok(map) => break map,
                Err(e) => {
                    let Next::RetryIn(wait) = list_retry.failed(sink.stream(), &e) else {
                        unreachable!("retried forever");
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => {
                            rx.close();
                            while rx.try_recv().is_ok() {
                                st.report.received += 1;
                                st.report.lost += 1;
                            }
                            m::lost(st.report.lost);
                            return Err(e.into());
                        }
                    }
                }
            }
        }
    };
    list_retry.succeeded(sink.stream());
    watch_map.idle();
    tracing::info!(
        stream = sink.stream(),
        shards = map.len(),
        "writing to stream"
    );
    health.set_ready(true);
    health.progress();
    let mut batcher = Batcher::new(st.settings.limits, map);
    let mut busy = vec![false; batcher.shards()];
    let mut in_flight: JoinSet<Delivery> = JoinSet::new();
    let mut in_flight_trades = 0usize;
    let abort = CancellationToken::new();
    let mut rx_open = true;
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let sink = Arc::new(sink);
    // The map is refreshed beside this loop: writing goes on with the map in hand while
    // ListShards is slow or failing. Deliveries are held back only while a changed map
    // waits for the ones in flight (`next_map`), or while a delivery's sign that the map
    // is stale (`stale`: the refresh that answers it) waits for a fresh map.
    let mut refresher = Refresher::spawn(
        sink.clone(),
        st.settings.shard_refresh,
        list_retry,
        watch_map,
    );
    let mut next_map: Option<ShardMap> = None;
    let mut stale: Option<u64> = None;
    let mut incoming = Vec::with_capacity(READ_CHUNK);

    loop {
        let now = Instant::now();
        let flush = !rx_open || drain_deadline.is_some();
        if next_map.is_some() && in_flight.is_empty() && !abort.is_cancelled() {
            // Reshard barrier: nothing in flight, so no symbol can have records on two
            // shards at once.
            let map = next_map.take().expect("checked");
            tracing::info!(
                shards = map.len(),
                "shard map changed; rerouting queued trades"
            );
            batcher.reroute(map);
            busy = vec![false; batcher.shards()];
        }
        let hold = next_map.is_some() || stale.is_some();
        if !hold && !abort.is_cancelled() {
            for (shard, is_busy) in busy.iter_mut().enumerate() {
                if in_flight.len() >= st.settings.max_in_flight {
                    break;
                }
                if *is_busy || !batcher.ready(shard, now, flush) {
                    continue;
                }
                let Some(batch) = batcher.take_batch(shard) else {
                    continue;
                };
                *is_busy = true;
                in_flight_trades += batch.trades();
                let (sink, abort, retry) = (sink.clone(), abort.clone(), st.settings.retry);
                in_flight.spawn(async move { deliver(&sink, batch, retry, &abort).await });
            }
        }
        let buffered = batcher.pending() + in_flight_trades;
        m::buffer(buffered);
        watch_put.set_pending(buffered > 0);
        if !rx_open && batcher.pending() == 0 && in_flight.is_empty() {
            break;
        }
        let can_read = rx_open
            && (buffered < st.settings.buffer_records
                || st.settings.overflow == OverflowPolicy::DropNewest);
        let linger_at = if hold {
            None
        } else {
            batcher
                .next_deadline((0..busy.len()).filter(|s| !busy[*s]))
                .map(tokio::time::Instant::from_std)
        };
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            biased;
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                let d = match done {
                    Ok(d) => d,
                    Err(e) => {
                        // Deliveries do not panic by design; if one did, its shard would
                        // stall and its trades' fate is unknown: stop loudly.
                        tracing::error!(error = %e, "delivery task failed");
                        return Err(PipelineError::Internal(format!("delivery task failed: {e}")));
                    }
                };
                if let Some(b) = busy.get_mut(d.shard) {
                    *b = false;
                }
                let lost_here: u64 = d.unwritten.iter().map(|e| e.trades.len() as u64).sum();
                in_flight_trades -= (d.written_trades + lost_here) as usize;
                st.report.written_trades += d.written_trades;
                st.report.written_records += d.written_records;
                if lost_here > 0 {
                    st.lose("drain deadline reached with the call unanswered or failing", lost_here, d.unwritten.iter().flat_map(|e| e.trades.iter()));
                }
                if d.stale_map && stale.is_none() {
                    stale = Some(refresher.stale());
                }
                if d.written_trades > 0 {
                    watch_put.progress();
                }
                health.progress();
            }
            _ = shutdown.cancelled(), if drain_deadline.is_none() => {
                tracing::info!(timeout = ?st.settings.drain_timeout, buffered, "draining: flushing everything accepted");
                drain_deadline = Some(tokio::time::Instant::now() + st.settings.drain_timeout);
            }
            _ = tokio::time::sleep_until(drain_deadline.unwrap_or(far)), if drain_deadline.is_some() && !abort.is_cancelled() => {
                tracing::error!("drain deadline reached; giving up on what is not written");
                abort.cancel();
                rx.close();
                rx_open = false;
                while let Ok(t) = rx.try_recv() {
                    st.report.received += 1;
                    if st.dedupe.check(t.trade.symbol, t.trade.trade_id).is_new() {
                        st.report.accepted += 1;
                        st.lose("never queued", 1, std::iter::once(&to_ref(&t)));
                    }
                }
                let rest = batcher.drain_all();
                let refs: Vec<TradeRef> = rest.iter().map(|p| p.trade).collect();
                st.lose("still queued", refs.len() as u64, refs.iter());
            }
            fresh = refresher.recv() => {
                let Some(fresh) = fresh else {
                    return Err(PipelineError::Internal("the shard map refresh task ended".into()));
                };
                if stale.is_some_and(|asked| fresh.answers >= asked) {
                    stale = None;
                }
                // The newest map wins; it waits for the deliveries in flight only if it
                // differs from the one in use.
                next_map = (&fresh.map != batcher.map()).then_some(fresh.map);
            }
            // Trades are taken in chunks: the loop around them (readiness of every
            // shard, timers) then runs once per chunk, not once per trade. A chunk never
            // takes the buffer past its limit (the block policy's memory bound).
            n = rx.recv_many(&mut incoming, read_limit(buffered, &st.settings)), if can_read => {
                if n == 0 {
                    rx_open = false;
                }
                let at = Instant::now();
                for t in incoming.drain(..) {
                    let buffered = batcher.pending() + in_flight_trades;
                    st.take(t, &mut batcher, buffered, at);
                }
            },
            _ = tokio::time::sleep_until(linger_at.unwrap_or(far)), if linger_at.is_some() => {}
        }
    }
    m::buffer(0);
    let r = st.report;
    tracing::info!(
        received = r.received,
        accepted = r.accepted,
        duplicates = r.duplicates,
        gaps = r.gaps,
        missing = r.missing,
        dropped = r.dropped,
        written = r.written_trades,
        records = r.written_records,
        lost = r.lost,
        "producer drained"
    );
    Ok(r)
}

fn to_ref(t: &SourceTrade) -> TradeRef {
    TradeRef {
        symbol: t.trade.symbol,
        trade_id: t.trade.trade_id,
        trade_time_ms: t.trade.trade_time_ms,
    }
}

/// Most trades taken from the source per turn of the loop.
const READ_CHUNK: usize = 1024;

/// How many trades the next read may take: with the block policy, never more than the
/// buffer has room for; with drop-newest, `take` judges each trade.
fn read_limit(buffered: usize, settings: &Settings) -> usize {
    match settings.overflow {
        OverflowPolicy::Block => settings
            .buffer_records
            .saturating_sub(buffered)
            .clamp(1, READ_CHUNK),
        OverflowPolicy::DropNewest => READ_CHUNK,
    }
}

struct State {
    report: Report,
    dedupe: Dedupe,
    settings: Settings,
    // Per-trade counters, looked up in the registry once rather than per trade.
    trades_in: metrics::Counter,
    trades_accepted: metrics::Counter,
}

impl State {
    /// One trade from the source: dedupe, gap check, overflow policy, queue.
    fn take(&mut self, t: SourceTrade, batcher: &mut Batcher, buffered: usize, now: Instant) {
        self.report.received += 1;
        self.trades_in.increment(1);
        let (sym, id) = (t.trade.symbol, t.trade.trade_id);
        match self.dedupe.check(sym, id) {
            Verdict::Duplicate { last } => {
                self.report.duplicates += 1;
                counter!(m::DUPLICATES).increment(1);
                tracing::debug!(symbol = %sym.as_str(), id, last, "duplicate trade dropped");
                return;
            }
            Verdict::Gap { missing, after } => {
                self.report.gaps += 1;
                self.report.missing += missing;
                counter!(m::GAPS).increment(1);
                counter!(m::MISSING).increment(missing);
                tracing::warn!(symbol = %sym.as_str(), after, next = id, missing, "gap in trade ids");
            }
            Verdict::New => {}
        }
        if buffered >= self.settings.buffer_records {
            // Only reachable with the drop-newest policy (block stops reading instead).
            self.report.dropped += 1;
            m::dropped("buffer_full", 1);
            tracing::warn!(symbol = %sym.as_str(), id, "buffer full: trade dropped");
            return;
        }
        let p = Pending {
            trade: to_ref(&t),
            data: t.json.into_bytes(),
        };
        match batcher.push(p, now) {
            Ok(_) => {
                self.report.accepted += 1;
                self.trades_accepted.increment(1);
            }
            Err(e) => {
                self.report.dropped += 1;
                m::dropped("too_large", 1);
                tracing::error!(symbol = %sym.as_str(), id, error = %e, "trade kept aside: too large for Kinesis");
            }
        }
    }

    fn lose<'a>(&mut self, why: &str, n: u64, trades: impl Iterator<Item = &'a TradeRef>) {
        if n == 0 {
            return;
        }
        self.report.lost += n;
        m::lost(n);
        // One line per symbol: the range of ids given up.
        let mut by_symbol: std::collections::BTreeMap<&str, (u64, u64, u64)> = Default::default();
        for t in trades {
            let e = by_symbol
                .entry(t.symbol.as_str())
                .or_insert((u64::MAX, 0, 0));
            e.0 = e.0.min(t.trade_id);
            e.1 = e.1.max(t.trade_id);
            e.2 += 1;
        }
        for (sym, (lo, hi, count)) in by_symbol {
            tracing::error!(
                symbol = sym,
                first_id = lo,
                last_id = hi,
                count,
                reason = why,
                "trades lost"
            );
        }
    }
}
