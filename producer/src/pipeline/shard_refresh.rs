//! The stream's shard map: listed once before anything is accepted (`first_map`), then
//! kept current beside the pipeline's loop (`Refresher`): ListShards every
//! `shard_refresh`, at once when the loop reports its map stale, and again after a
//! backoff when a call fails. ListShards is a control-plane call that may hang up to the
//! SDK's attempt timeout; run inside the loop it stopped every write meanwhile. Here the
//! loop only receives the maps, and holds its deliveries back only to switch to a map
//! that changed or while it knows its own is stale.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tradeflow_shared::retry::{Next, Retry};
use tradeflow_shared::watchdog::Watch;

use crate::shard_map::ShardMap;
use crate::sink::{KinesisSink, SinkError};

/// The stream's first map, retried until it answers (the stream may be being
/// created); on `shutdown`, the last error.
pub async fn first_map(
    sink: &KinesisSink,
    retry: &mut Retry,
    shutdown: &CancellationToken,
) -> Result<ShardMap, SinkError> {
    loop {
        let e = match sink.list_shards().await {
            Ok(map) => {
                retry.succeeded(sink.stream());
                return Ok(map);
            }
            Err(e) => e,
        };
        let Next::RetryIn(wait) = retry.failed(sink.stream(), &e) else {
            unreachable!("retried forever");
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return Err(e),
        }
    }
}

/// A map just listed.
#[derive(Debug)]
pub struct Fresh {
    pub map: ShardMap,
    /// The newest stale report (`Refresher::stale`) made before this ListShards started:
    /// this map reflects every misrouting seen up to it.
    pub answers: u64,
}

/// The refresh task's handle; the task ends when this is dropped.
pub struct Refresher {
    asks: watch::Sender<u64>,
    maps: mpsc::Receiver<Fresh>,
    _task: AbortOnDropHandle<()>,
}

impl Refresher {
    /// Starts refreshing `every` from now on. `retry` is the one ListShards retry state
    /// (the first listing's too); `watch` is the map's watchdog part, busy while a stale
    /// map waits for a ListShards that keeps failing.
    pub fn spawn(sink: Arc<KinesisSink>, every: Duration, retry: Retry, watch: Watch) -> Self {
        let (asks, asks_rx) = watch::channel(0u64);
        let (maps_tx, maps) = mpsc::channel(1);
        let task = tokio::spawn(refresh(sink, every, retry, watch, asks_rx, maps_tx));
        Refresher {
            asks,
            maps,
            _task: AbortOnDropHandle::new(task),
        }
    }

    /// The map in hand is stale: list again now. A map whose `answers` is at least the
    /// number returned reflects it.
    pub fn stale(&self) -> u64 {
        let mut asked = 0;
        self.asks.send_modify(|n| {
            *n += 1;
            asked = *n;
        });
        asked
    }

    /// The next map listed; `None` only if the task ended (it does not, by design).
    pub async fn recv(&mut self) -> Option<Fresh> {
        self.maps.recv().await
    }
}

async fn refresh(
    sink: Arc<KinesisSink>,
    every: Duration,
    mut retry: Retry,
    watch: Watch,
    mut asks: watch::Receiver<u64>,
    maps: mpsc::Sender<Fresh>,
) {
    let mut next = Instant::now() + every;
    let mut answered = 0u64;
    loop {
        tokio::select! {
            _ = sleep_until(next) => {}
            changed = asks.changed() => if changed.is_err() {
                return;
            },
        }
        let asked = *asks.borrow_and_update();
        match sink.list_shards().await {
            Ok(map) => {
                retry.succeeded(sink.stream());
                watch.idle();
                answered = asked;
                if maps
                    .send(Fresh {
                        map,
                        answers: asked,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                next = Instant::now() + every;
            }
            Err(e) => {
                let Next::RetryIn(wait) = retry.failed(sink.stream(), &e) else {
                    unreachable!("retried forever");
                };
                // A stale report made during the failed call is served by the retry,
                // after the backoff like any other, not at once.
                let asked = *asks.borrow_and_update();
                if asked > answered {
                    // Deliveries wait for this map.
                    watch.busy();
                }
                next = Instant::now() + wait;
            }
        }
    }
}
