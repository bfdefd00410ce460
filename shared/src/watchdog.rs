//! The stall watchdog: every part of a binary that has work in hand says so, and says
//! when it moves it on. A part with work pending that has made no progress for longer
//! than the limit is *stalled*: `/readyz` fails and names it, the gauge
//! `tradeflow_<binary>_stalled{part}` counts the stalled instances of each part (shards,
//! for the consumer's per-shard parts), and an error names it when it stalls (and every
//! `RELOG` while it stays stalled), an info line when it recovers.
//!
//! The watchdog only observes; it never restarts anything. Whatever retries has its own
//! policy (`retry`); this is how a person learns that a retry loop is not getting
//! anywhere.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A part still stalled is logged again this often.
const RELOG: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Entry {
    pending: bool,
    /// Last progress, or when work became pending after an idle spell.
    since: Instant,
    stalled_logged: Option<Instant>,
}

/// See the module doc. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Watchdog {
    gauge: &'static str,
    limit: Duration,
    parts: Mutex<BTreeMap<(&'static str, String), Entry>>,
    /// Every part name seen, so a part whose last instance went away reads 0.
    names: Mutex<std::collections::BTreeSet<&'static str>>,
}

/// A part's handle: one per instance (`key`: a shard id, or empty). Dropping it (the
/// task ended, even by a panic) removes the instance.
#[derive(Debug)]
pub struct Watch {
    dog: Arc<Watchdog>,
    part: &'static str,
    key: String,
}

impl Watchdog {
    /// `gauge` is the metric's full name, e.g. `tradeflow_consumer_stalled`.
    pub fn new(gauge: &'static str, limit: Duration) -> Arc<Self> {
        metrics::describe_gauge!(
            gauge,
            "Instances of each part (by part) with work pending and no progress for longer than the stall timeout."
        );
        Arc::new(Watchdog {
            gauge,
            limit,
            parts: Mutex::new(BTreeMap::new()),
            names: Mutex::new(Default::default()),
        })
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Registers an instance of `part` (idle until it says it is busy).
    pub fn watch(self: &Arc<Self>, part: &'static str, key: impl Into<String>) -> Watch {
        let key = key.into();
        self.names.lock().expect("watchdog names").insert(part);
        self.parts.lock().expect("watchdog parts").insert(
            (part, key.clone()),
            Entry {
                pending: false,
                since: Instant::now(),
                stalled_logged: None,
            },
        );
        Watch {
            dog: self.clone(),
            part,
            key,
        }
    }

    /// The stalled instances now, as `part` or `part key`.
    pub fn stalled(&self) -> Vec<String> {
        let now = Instant::now();
        let parts = self.parts.lock().expect("watchdog parts");
        parts
            .iter()
            .filter(|(_, e)| e.pending && now.duration_since(e.since) > self.limit)
            .map(|((p, k), _)| {
                if k.is_empty() {
                    p.to_string()
                } else {
                    format!("{p} {k}")
                }
            })
            .collect()
    }

    /// One look: updates the gauges and logs what stalled or recovered since the last.
    pub fn check(&self) {
        let now = Instant::now();
        let mut counts: BTreeMap<&'static str, u64> = self
            .names
            .lock()
            .expect("watchdog names")
            .iter()
            .map(|n| (*n, 0))
            .collect();
        let mut parts = self.parts.lock().expect("watchdog parts");
        for ((part, key), e) in parts.iter_mut() {
            let quiet = now.duration_since(e.since);
            if e.pending && quiet > self.limit {
                *counts.entry(part).or_default() += 1;
                if e.stalled_logged
                    .is_none_or(|t| now.duration_since(t) >= RELOG)
                {
                    tracing::error!(
                        part = *part,
                        key = key.as_str(),
                        no_progress_for_s = quiet.as_secs(),
                        limit_s = self.limit.as_secs(),
                        "stalled: work is pending and nothing has moved"
                    );
                    e.stalled_logged = Some(now);
                }
            } else if e.stalled_logged.take().is_some() {
                tracing::info!(part = *part, key = key.as_str(), "no longer stalled");
            }
        }
        drop(parts);
        for (part, n) in counts {
            metrics::gauge!(self.gauge, "part" => part).set(n as f64);
        }
    }

    /// Checks every `every` until `shutdown`.
    pub async fn run(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.check(),
                _ = shutdown.cancelled() => return,
            }
        }
    }

    fn update(&self, part: &'static str, key: &str, f: impl FnOnce(&mut Entry)) {
        let mut parts = self.parts.lock().expect("watchdog parts");
        if let Some(e) = parts.get_mut(&(part, key.to_string())) {
            f(e);
        }
    }
}

impl Watch {
    /// Work is in hand. The clock starts now if the part was idle; it keeps running if
    /// work was already pending.
    pub fn busy(&self) {
        self.dog.update(self.part, &self.key, |e| {
            if !e.pending {
                e.pending = true;
                e.since = Instant::now();
            }
        });
    }

    /// Work moved on (and more may be pending: the clock restarts).
    pub fn progress(&self) {
        self.dog
            .update(self.part, &self.key, |e| e.since = Instant::now());
    }

    /// Nothing is pending.
    pub fn idle(&self) {
        self.dog.update(self.part, &self.key, |e| {
            e.pending = false;
            e.since = Instant::now();
        });
    }

    /// `busy` when `pending`, else `idle`.
    pub fn set_pending(&self, pending: bool) {
        if pending {
            self.busy()
        } else {
            self.idle()
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(mut parts) = self.dog.parts.lock() {
            parts.remove(&(self.part, std::mem::take(&mut self.key)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn pending_work_without_progress_stalls_and_recovers() {
        let dog = Watchdog::new("tradeflow_test_stalled", 10 * S);
        let put = dog.watch("kinesis_put", "");
        let apply = dog.watch("apply", "shardId-1");
        // Idle parts never stall, however long.
        tokio::time::advance(60 * S).await;
        assert!(dog.stalled().is_empty());
        put.busy();
        apply.busy();
        tokio::time::advance(8 * S).await;
        apply.progress();
        // busy() again does not restart the clock.
        put.busy();
        tokio::time::advance(3 * S).await;
        assert_eq!(dog.stalled(), vec!["kinesis_put".to_string()]);
        dog.check();
        tokio::time::advance(8 * S).await;
        assert_eq!(
            dog.stalled(),
            vec!["apply shardId-1".to_string(), "kinesis_put".to_string()]
        );
        put.progress();
        apply.idle();
        assert!(dog.stalled().is_empty());
        dog.check();
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_watch_leaves_nothing_behind() {
        let dog = Watchdog::new("tradeflow_test_stalled", S);
        {
            let w = dog.watch("read", "shardId-9");
            w.busy();
            tokio::time::advance(2 * S).await;
            assert_eq!(dog.stalled().len(), 1);
        }
        assert!(dog.stalled().is_empty());
        // A panicking task drops its watch too.
        let d = dog.clone();
        let task = tokio::spawn(async move {
            let w = d.watch("read", "shardId-8");
            w.busy();
            panic!("boom");
        });
        assert!(task.await.is_err());
        tokio::time::advance(2 * S).await;
        assert!(dog.stalled().is_empty());
    }
}
