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

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use metrics::counter;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tradeflow_shared::rest::{RestClient, RestError};
use tradeflow_shared::{decode_event, Event, Symbol};

use super::{SourceTrade, TradeRx, TradeTx};

pub const BACKFILLED: &str = "tradeflow_producer_backfilled_trades_total";
pub const BACKFILL_FAILURES: &str = "tradeflow_producer_backfill_failures_total";
pub const BACKFILL_REQUESTS: &str = "tradeflow_producer_backfill_requests_total";

const PATH: &str = "/api/v3/historicalTrades";
/// Binance's request weight of one historicalTrades call, and its page size limit.
const WEIGHT: u32 = 25;
const PAGE: u64 = 1000;

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

/// Ids `from..=to` of `symbol` to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub symbol: Symbol,
    pub from: u64,
    pub to: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Emit(SourceTrade),
    Fetch(Fetch),
    /// A backfill given up before its answer (held-trades limit): its fetch's answer
    /// will be ignored; the reason is for the failure counter.
    GaveUp(Fetch, &'static str),
}

#[derive(Debug)]
struct Pending {
    from: u64,
    to: u64,
    held: VecDeque<SourceTrade>,
    /// Order of creation, to give up the oldest first.
    seq: u64,
}

#[derive(Debug, Default)]
struct SymState {
    /// Highest id sent (or being backfilled before a held trade).
    last: u64,
    pending: Option<Pending>,
}

/// The pure part: per-symbol ordering around backfills.
#[derive(Debug)]
pub struct GapFiller {
    symbols: HashMap<Symbol, SymState>,
    held: usize,
    max_held: usize,
    max_gap: u64,
    next_seq: u64,
}

impl GapFiller {
    pub fn new(max_gap: u64, max_held: usize) -> Self {
        GapFiller {
            symbols: HashMap::new(),
            held: 0,
            max_held: max_held.max(1),
            max_gap,
            next_seq: 0,
        }
    }

    /// Trades held behind running backfills.
    pub fn held(&self) -> usize {
        self.held
    }

    /// One trade from the source.
    pub fn on_trade(&mut self, t: SourceTrade, out: &mut Vec<Step>) {
        if self.held >= self.max_held {
            self.give_up_oldest(out);
        }
        let sym = t.trade.symbol;
        let id = t.trade.trade_id;
        let st = self.symbols.entry(sym).or_default();
        if let Some(p) = st.pending.as_mut() {
            p.held.push_back(t);
            self.held += 1;
            return;
        }
        if st.last == 0 || id <= st.last + 1 || id - st.last - 1 > self.max_gap {
            // First sight, next in line, a duplicate (the pipeline drops it), or a gap
            // too large to fetch (the pipeline counts it).
            if id > st.last {
                st.last = id;
            }
            out.push(Step::Emit(t));
            return;
        }
        let fetch = Fetch {
            symbol: sym,
            from: st.last + 1,
            to: id - 1,
        };
        st.pending = Some(Pending {
            from: fetch.from,
            to: fetch.to,
            held: VecDeque::from([t]),
            seq: self.next_seq,
        });
        self.next_seq += 1;
        self.held += 1;
        st.last = id;
        out.push(Step::Fetch(fetch));
    }

    /// A fetch's answer (any trades, possibly fewer than asked, possibly none when it
    /// failed): the trades inside the gap go out in id order, then the held ones.
    pub fn on_fetched(&mut self, fetch: &Fetch, trades: Vec<SourceTrade>, out: &mut Vec<Step>) {
        let Some(st) = self.symbols.get_mut(&fetch.symbol) else {
            return;
        };
        match &st.pending {
            Some(p) if p.from == fetch.from && p.to == fetch.to => {}
            // Given up earlier; its trades are already out.
            _ => return,
        }
        let p = st.pending.take().expect("checked");
        let mut got: Vec<SourceTrade> = trades
            .into_iter()
            .filter(|t| {
                t.trade.symbol == fetch.symbol && (p.from..=p.to).contains(&t.trade.trade_id)
            })
            .collect();
        got.sort_by_key(|t| t.trade.trade_id);
        got.dedup_by_key(|t| t.trade.trade_id);
        out.extend(got.into_iter().map(Step::Emit));
        self.release(fetch.symbol, p, out);
    }

    /// Stop waiting for every backfill (shutdown): release all held trades in order.
    pub fn give_up_all(&mut self, out: &mut Vec<Step>) {
        let syms: Vec<Symbol> = self
            .symbols
            .iter()
            .filter(|(_, s)| s.pending.is_some())
            .map(|(k, _)| *k)
            .collect();
        for sym in syms {
            self.give_up(sym, "shutdown", out);
        }
    }

    fn give_up_oldest(&mut self, out: &mut Vec<Step>) {
        let oldest = self
            .symbols
            .iter()
            .filter_map(|(k, s)| s.pending.as_ref().map(|p| (p.seq, *k)))
            .min();
        if let Some((_, sym)) = oldest {
            self.give_up(sym, "held_limit", out);
        }
    }

    fn give_up(&mut self, sym: Symbol, reason: &'static str, out: &mut Vec<Step>) {
        let Some(p) = self.symbols.get_mut(&sym).and_then(|s| s.pending.take()) else {
            return;
        };
        out.push(Step::GaveUp(
            Fetch {
                symbol: sym,
                from: p.from,
                to: p.to,
            },
            reason,
        ));
        self.release(sym, p, out);
    }

    /// The held trades go through the usual rules again (one of them may open the
    /// next gap, holding the rest behind it).
    fn release(&mut self, sym: Symbol, p: Pending, out: &mut Vec<Step>) {
        self.held -= p.held.len();
        if let Some(st) = self.symbols.get_mut(&sym) {
            // The gap is done with: filled, or left for the pipeline's gap check.
            st.last = p.to;
        }
        for t in p.held {
            self.on_trade(t, out);
        }
    }
}

/// Builds the websocket trade event Binance would have sent for one REST trade, and
/// decodes it like a live one (so the consumer cannot tell them apart).
pub fn parse_page(symbol: Symbol, body: &[u8]) -> Result<Vec<SourceTrade>, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RestTrade {
        id: u64,
        price: String,
        qty: String,
        time: u64,
        is_buyer_maker: bool,
        #[serde(default = "yes")]
        is_best_match: bool,
    }
    fn yes() -> bool {
        true
    }
    let list: Vec<RestTrade> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(list.len());
    for r in list {
        let json = serde_json::json!({
            "e": "trade", "E": r.time, "s": symbol.as_str(), "t": r.id,
            "p": r.price, "q": r.qty, "T": r.time, "m": r.is_buyer_maker, "M": r.is_best_match,
        })
        .to_string();
        match decode_event(&json) {
            Ok(Event::Trade { trade, .. }) => out.push(SourceTrade {
                trade,
                json: json.clone(),
            }),
            Ok(_) => return Err(format!("trade {} is not a trade event", r.id)),
            Err(e) => return Err(format!("trade {}: {e}", r.id)),
        }
    }
    Ok(out)
}

/// Spends request weight at no more than `per_minute`, in a bucket of one minute.
struct WeightBudget {
    per_minute: f64,
    tokens: f64,
    at: Instant,
}

impl WeightBudget {
    fn new(per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute.max(WEIGHT));
        WeightBudget {
            per_minute,
            tokens: per_minute,
            at: Instant::now(),
        }
    }

    /// How long to wait before `weight` may be spent (and spends it).
    fn take(&mut self, weight: u32) -> Duration {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_minute / 60.0;
        self.tokens = (self.tokens + refill).min(self.per_minute);
        self.at = now;
        self.tokens -= f64::from(weight);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens * 60.0 / self.per_minute)
        }
    }
}

type Budget = std::sync::Arc<tokio::sync::Mutex<WeightBudget>>;

/// Fetches `f` page by page until it is complete, Binance has nothing more, or the
/// deadline. Returns what it got and, if incomplete, why.
async fn fetch_gap(
    client: &RestClient,
    budget: &Budget,
    f: &Fetch,
    deadline: Instant,
) -> (Vec<SourceTrade>, Option<&'static str>) {
    let mut got: Vec<SourceTrade> = Vec::new();
    let mut from = f.from;
    let mut attempt: u32 = 0;
    while from <= f.to {
        let wait = budget.lock().await.take(WEIGHT);
        if Instant::now() + wait >= deadline {
            return (got, Some("deadline"));
        }
        tokio::time::sleep(wait).await;
        let limit = (f.to - from + 1).min(PAGE);
        let path = format!(
            "{PATH}?symbol={}&fromId={from}&limit={limit}",
            f.symbol.as_str()
        );
        let reply = tokio::time::timeout_at(deadline, client.get(&path)).await;
        let retry_in = match reply {
            Err(_) => return (got, Some("deadline")),
            Ok(Err(e)) => {
                counter!(BACKFILL_REQUESTS, "outcome" => "error").increment(1);
                tracing::warn!(symbol = f.symbol.as_str(), error = %e, "backfill request failed; retrying");
                if matches!(e, RestError::InvalidUrl { .. }) {
                    return (got, Some("invalid_url"));
                }
                None
            }
            Ok(Ok(r)) if r.is_success() => {
                counter!(BACKFILL_REQUESTS, "outcome" => "ok").increment(1);
                attempt = 0;
                match parse_page(f.symbol, &r.body) {
                    Ok(page) => {
                        let last = page.iter().map(|t| t.trade.trade_id).max();
                        got.extend(page.into_iter().filter(|t| t.trade.trade_id >= from));
                        match last {
                            Some(l) if l >= from => from = l + 1,
                            // Nothing at or after `from`: Binance does not have it.
                            _ => return (got, Some("unavailable")),
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(symbol = f.symbol.as_str(), error = %e, "backfill reply is not a trade list");
                        return (got, Some("garbage"));
                    }
                }
            }
            Ok(Ok(r)) => {
                let outcome = match r.status {
                    429 | 418 => "rate_limited",
                    500..=599 => "server_error",
                    _ => "refused",
                };
                counter!(BACKFILL_REQUESTS, "outcome" => outcome).increment(1);
                tracing::warn!(symbol = f.symbol.as_str(), status = r.status, body = %r.body_excerpt(200), "backfill request refused");
                if outcome == "refused" {
                    return (got, Some("refused"));
                }
                r.retry_after
            }
        };
        attempt += 1;
        let backoff = Duration::from_millis(200u64 << attempt.min(6));
        let wait = retry_in.unwrap_or(backoff);
        if Instant::now() + wait >= deadline {
            return (got, Some("deadline"));
        }
        tokio::time::sleep(wait).await;
    }
    (got, None)
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
        cfg.weight_per_minute,
    )));
    let mut filler = GapFiller::new(cfg.max_gap, cfg.max_held);
    let mut running: JoinSet<(Fetch, Vec<SourceTrade>, Option<&'static str>)> = JoinSet::new();
    let mut waiting: VecDeque<(Fetch, Instant)> = VecDeque::new();
    let mut steps: Vec<Step> = Vec::new();
    loop {
        tokio::select! {
            t = rx.recv() => match t {
                Some(t) => filler.on_trade(t, &mut steps),
                None => break,
            },
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok((f, got, why)) = done {
                    let n = got.len() as u64;
                    counter!(BACKFILLED).increment(n);
                    let wanted = f.to - f.from + 1;
                    match why {
                        None => tracing::info!(symbol = f.symbol.as_str(), from = f.from, to = f.to, trades = n, "gap backfilled"),
                        Some(reason) => {
                            counter!(BACKFILL_FAILURES, "reason" => reason).increment(1);
                            tracing::warn!(symbol = f.symbol.as_str(), from = f.from, to = f.to, fetched = n, missing = wanted.saturating_sub(n), reason, "gap only partly backfilled");
                        }
                    }
                    filler.on_fetched(&f, got, &mut steps);
                }
            }
        }
        for step in steps.drain(..) {
            match step {
                Step::Emit(t) => {
                    if tx.send(t).await.is_err() {
                        return Ok(());
                    }
                }
                Step::Fetch(f) => waiting.push_back((f, Instant::now() + cfg.deadline)),
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
            running.spawn(async move {
                let (got, why) = fetch_gap(&client, &budget, &f, deadline).await;
                (f, got, why)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_shared::{Fixed8, Trade};

    fn t(sym: &str, id: u64) -> SourceTrade {
        let trade = Trade {
            symbol: Symbol::new(sym).unwrap(),
            trade_id: id,
            price: Fixed8::parse("1").unwrap(),
            qty: Fixed8::parse("1").unwrap(),
            trade_time_ms: id,
            event_time_ms: id,
            buyer_is_maker: false,
        };
        SourceTrade {
            json: trade.to_json(),
            trade,
        }
    }

    fn emitted(steps: &[Step]) -> Vec<(String, u64)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Emit(t) => Some((t.trade.symbol.as_str().to_string(), t.trade.trade_id)),
                _ => None,
            })
            .collect()
    }

    fn ids(steps: &[Step], sym: &str) -> Vec<u64> {
        emitted(steps)
            .into_iter()
            .filter(|(s, _)| s == sym)
            .map(|(_, i)| i)
            .collect()
    }

    #[test]
    fn a_gap_holds_its_symbol_only_and_is_filled_in_order() {
        let mut g = GapFiller::new(100, 1000);
        let mut out = Vec::new();
        for id in [1, 2] {
            g.on_trade(t("A", id), &mut out);
        }
        g.on_trade(t("B", 7), &mut out);
        g.on_trade(t("A", 6), &mut out); // 3..=5 missing
        g.on_trade(t("A", 7), &mut out);
        g.on_trade(t("B", 8), &mut out); // B is not held back
        assert_eq!(
            out.iter().filter(|s| matches!(s, Step::Fetch(_))).count(),
            1
        );
        let f = Fetch {
            symbol: Symbol::new("A").unwrap(),
            from: 3,
            to: 5,
        };
        assert!(out.contains(&Step::Fetch(f.clone())));
        assert_eq!(ids(&out, "A"), [1, 2]);
        assert_eq!(ids(&out, "B"), [7, 8]);
        assert_eq!(g.held(), 2);
        // The answer may hold extra and repeated trades; only 3..=5 are taken, once each.
        g.on_fetched(
            &f,
            vec![
                t("A", 5),
                t("A", 3),
                t("A", 4),
                t("A", 4),
                t("A", 6),
                t("A", 2),
            ],
            &mut out,
        );
        assert_eq!(ids(&out, "A"), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(g.held(), 0);
        g.on_trade(t("A", 8), &mut out);
        assert_eq!(ids(&out, "A"), [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn a_partial_answer_leaves_the_rest_of_the_gap_for_the_gap_check() {
        let mut g = GapFiller::new(100, 1000);
        let mut out = Vec::new();
        g.on_trade(t("A", 1), &mut out);
        g.on_trade(t("A", 10), &mut out);
        let f = Fetch {
            symbol: Symbol::new("A").unwrap(),
            from: 2,
            to: 9,
        };
        g.on_fetched(&f, vec![t("A", 2), t("A", 3)], &mut out);
        assert_eq!(ids(&out, "A"), [1, 2, 3, 10]);
        // A stale answer for the same range changes nothing.
        g.on_fetched(&f, vec![t("A", 4)], &mut out);
        assert_eq!(ids(&out, "A"), [1, 2, 3, 10]);
    }

    #[test]
    fn a_held_trade_can_open_the_next_gap() {
        let mut g = GapFiller::new(100, 1000);
        let mut out = Vec::new();
        g.on_trade(t("A", 1), &mut out);
        g.on_trade(t("A", 5), &mut out); // gap 2..=4
        g.on_trade(t("A", 9), &mut out); // held; after 5 it is gap 6..=8
        g.on_trade(t("A", 10), &mut out);
        let first = Fetch {
            symbol: Symbol::new("A").unwrap(),
            from: 2,
            to: 4,
        };
        g.on_fetched(&first, vec![t("A", 2), t("A", 3), t("A", 4)], &mut out);
        let second = Fetch {
            symbol: Symbol::new("A").unwrap(),
            from: 6,
            to: 8,
        };
        assert!(out.contains(&Step::Fetch(second.clone())));
        assert_eq!(ids(&out, "A"), [1, 2, 3, 4, 5]);
        assert_eq!(g.held(), 2);
        g.on_fetched(&second, vec![], &mut out); // failed: the gap stays
        assert_eq!(ids(&out, "A"), [1, 2, 3, 4, 5, 9, 10]);
        assert_eq!(g.held(), 0);
    }

    #[test]
    fn duplicates_and_huge_gaps_pass_straight_through() {
        let mut g = GapFiller::new(100, 1000);
        let mut out = Vec::new();
        g.on_trade(t("A", 10), &mut out);
        g.on_trade(t("A", 9), &mut out); // duplicate: the pipeline drops it
        g.on_trade(t("A", 500), &mut out); // 489 missing > 100: not fetched
        g.on_trade(t("A", 501), &mut out);
        assert_eq!(ids(&out, "A"), [10, 9, 500, 501]);
        assert!(!out.iter().any(|s| matches!(s, Step::Fetch(_))));
    }

    #[test]
    fn the_held_limit_gives_up_the_oldest_backfill() {
        let mut g = GapFiller::new(100, 3);
        let mut out = Vec::new();
        g.on_trade(t("A", 1), &mut out);
        g.on_trade(t("B", 1), &mut out);
        g.on_trade(t("A", 5), &mut out); // held 1
        g.on_trade(t("B", 5), &mut out); // held 2
        g.on_trade(t("A", 6), &mut out); // held 3
        g.on_trade(t("B", 6), &mut out); // limit: A (oldest) given up and released
        assert!(out
            .iter()
            .any(|s| matches!(s, Step::GaveUp(f, "held_limit") if f.symbol.as_str() == "A")));
        assert_eq!(ids(&out, "A"), [1, 5, 6]);
        assert_eq!(ids(&out, "B"), [1]);
        assert_eq!(g.held(), 2);
        // A's late answer is ignored.
        let fa = Fetch {
            symbol: Symbol::new("A").unwrap(),
            from: 2,
            to: 4,
        };
        g.on_fetched(&fa, vec![t("A", 2)], &mut out);
        assert_eq!(ids(&out, "A"), [1, 5, 6]);
        g.give_up_all(&mut out);
        assert_eq!(ids(&out, "B"), [1, 5, 6]);
        assert_eq!(g.held(), 0);
    }

    #[test]
    fn rest_pages_become_live_trade_events() {
        let body = br#"[{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012","time":1499865549590,"isBuyerMaker":true,"isBestMatch":true}]"#;
        let got = parse_page(Symbol::new("BNBBTC").unwrap(), body).unwrap();
        assert_eq!(got.len(), 1);
        let tr = &got[0].trade;
        assert_eq!(tr.trade_id, 28457);
        assert_eq!(tr.price, Fixed8::parse("4.000001").unwrap());
        assert_eq!(tr.qty, Fixed8::parse("12").unwrap());
        assert_eq!(tr.trade_time_ms, 1499865549590);
        assert!(tr.buyer_is_maker);
        assert!(got[0].json.contains(r#""s":"BNBBTC""#));
        assert!(parse_page(Symbol::new("A").unwrap(), b"{\"code\":-1121}").is_err());
        assert!(parse_page(
            Symbol::new("A").unwrap(),
            br#"[{"id":1,"price":"x","qty":"1","time":1,"isBuyerMaker":true}]"#
        )
        .is_err());
    }

    #[test]
    fn the_weight_budget_paces_requests() {
        let mut b = WeightBudget::new(100); // 4 requests of 25 per minute
        for _ in 0..4 {
            assert_eq!(b.take(25), Duration::ZERO);
        }
        let wait = b.take(25);
        assert!(
            wait > Duration::from_secs(14) && wait <= Duration::from_secs(15),
            "{wait:?}"
        );
    }
}
