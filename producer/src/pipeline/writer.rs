//! The pipeline's loop: reads trades in chunks, keeps one PutRecords delivery in flight
//! per shard, follows the shard map the refresh task delivers, and drains on shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tradeflow_shared::retry::{Policy, Retry};
use tradeflow_shared::telemetry::Health;
use tradeflow_shared::watchdog::Watchdog;

use super::intake::{read_limit, to_ref, State, READ_CHUNK};
use super::shard_refresh::{first_map, Refresher};
use super::{PipelineError, Report, Settings};
use crate::batcher::{Batcher, TradeRef};
use crate::config::OverflowPolicy;
use crate::metrics as m;
use crate::shard_map::ShardMap;
use crate::sink::{deliver, Delivery, KinesisSink};
use crate::source::TradeRx;

/// The pipeline proper, from an already filled channel to Kinesis. Returns when the
/// channel is closed and everything is written, or after the drain deadline.
pub async fn run_with(
    sink: KinesisSink,
    mut rx: TradeRx,
    settings: Settings,
    shutdown: CancellationToken,
    health: Arc<Health>,
) -> Result<Report, PipelineError> {
    let mut st = State::new(settings);
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
    let map = match first_map(&sink, &mut list_retry, &shutdown).await {
        Ok(map) => map,
        Err(e) => {
            rx.close();
            while rx.try_recv().is_ok() {
                st.report.received += 1;
                st.report.lost += 1;
            }
            m::lost(st.report.lost);
            return Err(e.into());
        }
    };
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
