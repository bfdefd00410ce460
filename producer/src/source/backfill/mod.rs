//! Backfill of trade-id gaps over Binance REST (`GET /api/v3/historicalTrades`).
//!
//! Sits between the websocket source and the pipeline. When a symbol's next trade id
//! jumps (the connection was down, the exchange restarted), the missing ids are fetched
//! and sent first, then the held trade and whatever of that symbol arrived meanwhile —
//! so the stream sees the symbol's ids in order and without the hole. Other symbols
//! never wait for it. What cannot be fetched (deadline, Binance no longer has it, the
//! gap is too large) is left as a gap: the pipeline's gap check counts and logs it as
//! before, so `missing_trades_total` is what is really missing after backfill.
//!
//! [`GapFiller`] decides (pure, unit-tested); [`run`] does the I/O: a bounded number of
//! fetches at a time, a request-weight budget (historicalTrades weighs 25 of Binance's
//! 6,000 per minute and IP), retries honouring `Retry-After`, a deadline per gap.

mod fetch;
mod filler;
mod tasks;

use std::collections::VecDeque;
use std::time::Duration;

use metrics::counter;
use tokio::task::JoinError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tradeflow_shared::rest::{RestClient, RestError};

pub use fetch::parse_page;
pub use filler::{Fetch, GapFiller, Step};

use super::{TradeRx, TradeTx};
use fetch::{fetch_gap, Budget, WEIGHT};
use tasks::{Outcome, Running};
use tradeflow_shared::rest::weight::WeightBudget;

use crate::metrics::{BACKFILLED, BACKFILL_FAILURES, BACKFILL_REQUESTS};

#[derive(Debug, Clone)]
pub struct BackfillConfig {
    /// REST base URL, e.g. `https://data-api.binance.vision`.
    pub base_url: String,
    /// Larger gaps are not fetched (a long outage is a job for a replay, not for a
    /// live feed that would stall behind it).
    pub max_gap: u64,
    /// A gap not filled within this is given up (what was fetched is kept).
    pub deadline: Duration,
    /// Request weight per minute this process may spend.
    pub weight_per_minute: u32,
    /// Gaps fetched at the same time.
    pub concurrency: usize,
    /// Trades held behind running backfills, over all symbols; past it the oldest
    /// backfill is given up and its trades released.
    pub max_held: usize,
    /// One HTTP request's timeout.
    pub request_timeout: Duration,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        BackfillConfig {
            base_url: "https://data-api.binance.vision".into(),
            max_gap: 10_000,
            deadline: Duration::from_secs(30),
            weight_per_minute: 3_000,
            concurrency: 4,
            max_held: 200_000,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Copies `rx` to `tx`, filling gaps over REST. Returns when `rx` is closed (the
/// source ended) or `tx` is closed; held trades are released before it returns.
pub async fn run(
    cfg: BackfillConfig,
    mut rx: TradeRx,
    tx: TradeTx,
    shutdown: CancellationToken,
) -> Result<(), RestError> {
    let client = RestClient::new(
        &cfg.base_url,
        cfg.request_timeout,
        16 * 1024 * 1024,
        "tradeflow-producer",
    )?;
    let budget: Budget = std::sync::Arc::new(tokio::sync::Mutex::new(WeightBudget::new(
        // The bucket holds one call at least.
        cfg.weight_per_minute.max(WEIGHT),
    )));
    let mut filler = GapFiller::new(cfg.max_gap, cfg.max_held);
    let mut running = Running::new();
    let mut waiting: VecDeque<(Fetch, Instant)> = VecDeque::new();
    let mut steps: Vec<Step> = Vec::new();
    loop {
        tokio::select! {
            t = rx.recv() => match t {
                Some(t) => filler.on_trade(t, &mut steps),
                None => break,
            },
            Some((f, done)) = running.join_next(), if !running.is_empty() => {
                settle(&mut filler, &f, done, &mut steps);
            }
        }
        for step in steps.drain(..) {
            match step {
                Step::Emit(t) => {
                    if tx.send(t).await.is_err() {
                        return Ok(());
                    }
                }
                Step::Fetch(f) => waiting.push_back((f, deadline_in(cfg.deadline))),
                Step::GaveUp(f, reason) => {
                    counter!(BACKFILL_FAILURES, "reason" => reason).increment(1);
                    tracing::warn!(
                        symbol = f.symbol.as_str(),
                        from = f.from,
                        to = f.to,
                        reason,
                        "backfill given up; the gap stays"
                    );
                    waiting.retain(|(w, _)| w != &f);
                }
            }
        }
        while running.len() < cfg.concurrency.max(1) {
            let Some((f, deadline)) = waiting.pop_front() else {
                break;
            };
            let (client, budget) = (client.clone(), budget.clone());
            let task_fetch = f.clone();
            running.spawn(f, async move {
                fetch_gap(&client, &budget, &task_fetch, deadline).await
            });
        }
    }
    // The source ended (shutdown): what is held goes out now, gaps and all.
    running.abort_all();
    if !shutdown.is_cancelled() {
        tracing::warn!("trade source ended; releasing trades held for backfill");
    }
    filler.give_up_all(&mut steps);
    for step in steps.drain(..) {
        if let Step::Emit(t) = step {
            if tx.send(t).await.is_err() {
                break;
            }
        }
    }
    Ok(())
}

/// `now + d`, or far ahead if that does not fit (a configured deadline is not checked
/// for size, and `Instant + huge` panics).
fn deadline_in(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(10 * 365 * 24 * 3600))
}

/// A fetch task ended: its trades go out and its symbol's held trades are released,
/// whatever the task did. A task that panicked or was cancelled is a failed backfill
/// like any other (`reason="task_failed"`): the gap stays, counted by the gap check.
fn settle(
    filler: &mut GapFiller,
    f: &Fetch,
    done: Result<Outcome, JoinError>,
    steps: &mut Vec<Step>,
) {
    let (got, why) = done.unwrap_or_else(|e| {
        tracing::error!(symbol = f.symbol.as_str(), from = f.from, to = f.to, error = %e, "backfill task failed");
        (Vec::new(), Some("task_failed"))
    });
    let n = got.len() as u64;
    counter!(BACKFILLED).increment(n);
    let wanted = f.to - f.from + 1;
    match why {
        None => tracing::info!(
            symbol = f.symbol.as_str(),
            from = f.from,
            to = f.to,
            trades = n,
            "gap backfilled"
        ),
        Some(reason) => {
            counter!(BACKFILL_FAILURES, "reason" => reason).increment(1);
            tracing::warn!(
                symbol = f.symbol.as_str(),
                from = f.from,
                to = f.to,
                fetched = n,
                missing = wanted.saturating_sub(n),
                reason,
                "gap only partly backfilled"
            );
        }
    }
    filler.on_fetched(f, got, steps);
}

#[cfg(test)]
mod tests {
    use super::filler::tests::{ids, t};
    use super::*;

    #[tokio::test]
    async fn a_fetch_task_that_panics_releases_its_symbol() {
        let mut filler = GapFiller::new(100, 1000);
        let mut steps = Vec::new();
        filler.on_trade(t("A", 1), &mut steps);
        filler.on_trade(t("A", 5), &mut steps); // gap 2..=4: 5 is held
        filler.on_trade(t("A", 6), &mut steps);
        let Some(Step::Fetch(f)) = steps.iter().find(|s| matches!(s, Step::Fetch(_))).cloned()
        else {
            panic!("no fetch: {steps:?}")
        };
        assert_eq!(ids(&steps, "A"), [1]);
        let mut running = Running::new();
        running.spawn(f.clone(), async { panic!("a fetch task panics") });
        let (got_f, done) = running.join_next().await.expect("one task");
        assert_eq!(got_f, f);
        assert!(done.as_ref().is_err_and(|e| e.is_panic()));
        settle(&mut filler, &got_f, done, &mut steps);
        assert_eq!(ids(&steps, "A"), [1, 5, 6]);
        assert_eq!(filler.held(), 0);
        filler.on_trade(t("A", 7), &mut steps);
        assert_eq!(ids(&steps, "A"), [1, 5, 6, 7]);
        assert!(running.is_empty());
    }

    #[test]
    fn a_huge_deadline_does_not_overflow() {
        assert!(deadline_in(Duration::MAX) > Instant::now());
    }
}
