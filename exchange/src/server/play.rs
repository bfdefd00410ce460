//! The tape player: emits the tape into the one global timeline, paced, once the first
//! connection has subscribed, and holds it while paused.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::tape::Tape;

/// Emits the tape into the global timeline, paced, once the first subscriber is there.
pub(super) async fn play(shared: Arc<Shared>, tape: Tape, stop: CancellationToken) {
    let mut started = shared.started.subscribe();
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = started.wait_for(|s| *s) => {}
    }
    let mut paused = shared.paused.subscribe();
    let mut cursor = tape.cursor();
    let mut sent: u64 = 0;
    let (mut t0, mut base) = (Instant::now(), 0u64);
    loop {
        if *paused.borrow_and_update() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = paused.wait_for(|p| !*p) => {}
            }
            // Pacing restarts after a pause rather than catching up in a burst.
            (t0, base) = (Instant::now(), sent);
        }
        let batch = match shared.config.rate {
            Some(rate) => {
                let due = base + (rate * t0.elapsed().as_secs_f64()) as u64;
                if due <= sent {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = paused.changed() => {}
                        _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                    }
                    continue;
                }
                (due - sent).min(1000)
            }
            None => 64,
        };
        for _ in 0..batch {
            let Some(item) = cursor.next_item() else {
                shared.finished.send_replace(true);
                return;
            };
            if let Ok(mut p) = shared.prices.lock() {
                p.insert(item.trade.symbol, item.trade.price);
            }
            let item = Arc::new(item);
            shared.history.record(&item);
            shared.klines.record(&item);
            let _ = shared.trades.send(item);
            sent += 1;
            shared.emitted.send_replace(sent);
        }
        if shared.config.rate.is_none() {
            tokio::task::yield_now().await;
            if stop.is_cancelled() {
                return;
            }
        }
    }
}
