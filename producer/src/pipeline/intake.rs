//! What happens to each trade the source sends: dedupe, gap check, the overflow policy,
//! then the batcher; and how trades given up are counted and logged.

use std::time::Instant;

use metrics::counter;

use super::{Report, Settings, MAX_SYMBOLS};
use crate::batcher::{Batcher, Pending, TradeRef};
use crate::config::OverflowPolicy;
use crate::dedupe::{Dedupe, Verdict};
use crate::metrics as m;
use crate::source::SourceTrade;

pub(super) fn to_ref(t: &SourceTrade) -> TradeRef {
    TradeRef {
        symbol: t.trade.symbol,
        trade_id: t.trade.trade_id,
        trade_time_ms: t.trade.trade_time_ms,
    }
}

/// Most trades taken from the source per turn of the loop.
pub(super) const READ_CHUNK: usize = 1024;

/// How many trades the next read may take: with the block policy, never more than the
/// buffer has room for; with drop-newest, `take` judges each trade.
pub(super) fn read_limit(buffered: usize, settings: &Settings) -> usize {
    match settings.overflow {
        OverflowPolicy::Block => settings
            .buffer_records
            .saturating_sub(buffered)
            .clamp(1, READ_CHUNK),
        OverflowPolicy::DropNewest => READ_CHUNK,
    }
}

pub(super) struct State {
    pub(super) report: Report,
    pub(super) dedupe: Dedupe,
    pub(super) settings: Settings,
    // Per-trade counters, looked up in the registry once rather than per trade.
    trades_in: metrics::Counter,
    trades_accepted: metrics::Counter,
}

impl State {
    pub(super) fn new(settings: Settings) -> Self {
        State {
            report: Report::default(),
            dedupe: Dedupe::new(MAX_SYMBOLS),
            settings,
            trades_in: counter!(m::TRADES_IN),
            trades_accepted: counter!(m::TRADES_ACCEPTED),
        }
    }

    /// One trade from the source: dedupe, gap check, overflow policy, queue.
    pub(super) fn take(
        &mut self,
        t: SourceTrade,
        batcher: &mut Batcher,
        buffered: usize,
        now: Instant,
    ) {
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

    pub(super) fn lose<'a>(
        &mut self,
        why: &str,
        n: u64,
        trades: impl Iterator<Item = &'a TradeRef>,
    ) {
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
