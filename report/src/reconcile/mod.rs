//! `tradeflow-report reconcile`: every settled minute tradeflow stored in Redis, checked
//! field by field against the exchange's own 1m klines (`GET /api/v3/klines`) — an
//! end-to-end audit of "did we receive every trade" against an independent source.
//!
//! Modules: [`window`] (which minutes are settled), [`client`] (the exchange's klines:
//! paced, retried), [`compare`] (pure, the rules), [`verdict`] (the run and its exit
//! status), [`render`] (table, JSON, CSV), [`metrics`] (the Prometheus text file).

pub mod client;
pub mod compare;
pub mod metrics;
pub mod render;
pub mod verdict;
pub mod window;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use tradeflow_shared::kline::Interval;
use tradeflow_shared::snapshot::{CandleError, Reader, MAX_CANDLES};
use tradeflow_shared::Symbol;

use crate::format::Format;
use crate::prices::PriceArgs;
use crate::when::When;
use client::{Exchange, FetchError};
use verdict::{Run, SymbolRun, EXIT_UNCHECKED};
use window::Window;

pub use verdict::{EXIT_DIFFER, EXIT_MATCH};

/// `reconcile`'s flags. The exchange is `--binance-rest-url` (and `--binance-timeout`
/// per request), the report's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    /// Start: a duration back from now (2h), RFC 3339 (2024-05-29T17:00:00Z) or Unix
    /// milliseconds. The minute holding it is the first checked.
    #[arg(long, default_value = "2h")]
    pub since: When,
    /// End (exclusive; same forms): only minutes that closed before it. Default: now.
    #[arg(long)]
    pub until: Option<When>,
    /// Symbols to check (comma-separated); default every symbol in Redis's index.
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// How long after a minute closes it is settled (the pipeline's lag): a minute is
    /// checked once its close time is before now minus this.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also write the result as a Prometheus text file here (node_exporter's textfile
    /// collector: a temporary file, then a rename).
    #[arg(long, env = "TRADEFLOW_RECONCILE_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Request weight per minute this run may spend on the exchange (klines weigh 2;
    /// Binance allows 6,000 per minute and IP, the producer's backfill takes 3,000).
    #[arg(long, default_value_t = 1000)]
    pub binance_weight_per_minute: u32,
    /// How long one klines call is retried (5xx, unreachable, 429/418 after their
    /// Retry-After) before the run gives up on the exchange.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub retry_for: Duration,
}

/// Runs a reconcile, prints it, writes the metrics file; returns the exit status.
pub async fn run(
    args: &ReconcileArgs,
    redis: &tradeflow_shared::redis_args::RedisArgs,
    key_prefix: &str,
    prices: &PriceArgs,
) -> std::io::Result<u8> {
    let now = tradeflow_shared::telemetry::now_ms();
    let mut run = Run {
        settle_s: args.settle.as_secs(),
        exchange: prices.binance_rest_url.clone(),
        ..Run::default()
    };
    if let Err(e) = check(args, redis, key_prefix, prices, now, &mut run).await {
        run.error = Some(e);
    }
    let (out, err) = render::render(&run, args.format);
    std::io::stdout().lock().write_all(out.as_bytes())?;
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(err.as_bytes())?;
    if args.format != Format::Table {
        // A table shows its problems; JSON and CSV get them on stderr too.
        for p in run.problems() {
            writeln!(stderr, "reconcile: not checked: {p}")?;
        }
    }
    let mut status = run.exit_status();
    if let Some(path) = &args.metrics_file {
        if let Err(e) = metrics::write(path, &run, now) {
            writeln!(
                stderr,
                "reconcile: cannot write the metrics file {}: {e}",
                path.display()
            )?;
            status = status.max(EXIT_UNCHECKED);
        }
    }
    Ok(status)
}

/// Fills `run`; an `Err` is what stopped it (flags, Redis, the exchange).
async fn check(
    args: &ReconcileArgs,
    redis: &tradeflow_shared::redis_args::RedisArgs,
    key_prefix: &str,
    prices: &PriceArgs,
    now: u64,
    run: &mut Run,
) -> Result<(), String> {
    run.since_ms = args.since.resolve(now);
    run.until_ms = args.until.map_or(now, |u| u.resolve(now));
    let symbols = args
        .symbols
        .iter()
        .map(|s| Symbol::new(&s.to_uppercase()).map_err(|e| format!("--symbols {s:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let exchange = Exchange::new(
        &prices.binance_rest_url,
        prices.binance_timeout,
        args.binance_weight_per_minute,
        args.retry_for,
    )
    .map_err(|e| e.to_string())?;
    let window = Window::settled(run.since_ms, run.until_ms, args.settle, now)?;
    run.window = Some(window);
    let reader = Reader::connect_with_ca(&redis.url, redis.ca_file.as_deref(), key_prefix)
        .await
        .map_err(|e| e.to_string())?;
    let symbols = if symbols.is_empty() {
        reader.symbols().await.map_err(|e| e.to_string())?
    } else {
        symbols
    };
    let mut down: Option<FetchError> = None;
    for sym in symbols {
        let mut s = SymbolRun {
            symbol: sym.as_str().to_string(),
            ..SymbolRun::default()
        };
        if let Some(e) = &down {
            s.error = Some(format!("not asked: the exchange failed before ({e})"));
            run.symbols.push(s);
            continue;
        }
        for page in window.pages(MAX_CANDLES) {
            match check_page(&exchange, &reader, &sym, page).await {
                Ok(outcome) => s.outcome.extend(outcome),
                Err(Failed::Redis(e)) => {
                    run.symbols.push(s);
                    return Err(e);
                }
                Err(Failed::Symbol(e)) => {
                    s.error = Some(e);
                    break;
                }
                Err(Failed::Exchange(e)) => {
                    s.error = Some(e.to_string());
                    down = Some(e);
                    break;
                }
            }
        }
        run.symbols.push(s);
    }
    Ok(())
}

enum Failed {
    /// Redis cannot be read: nothing more can be checked.
    Redis(String),
    /// This symbol's answer (a refusal, malformed arrays, a foreign bucket).
    Symbol(String),
    /// The exchange as a whole: the other symbols are not asked.
    Exchange(FetchError),
}

async fn check_page(
    exchange: &Exchange,
    reader: &Reader,
    sym: &Symbol,
    page: Window,
) -> Result<compare::Outcome, Failed> {
    let theirs = exchange.klines(sym, page).await.map_err(|e| {
        if e.is_exchange_down() {
            Failed::Exchange(e)
        } else {
            Failed::Symbol(e.to_string())
        }
    })?;
    let ours = reader
        .candles(sym, Interval::M1, page.first_ms, page.last_ms)
        .await
        .map_err(|e| match e {
            CandleError::Foreign { .. } => Failed::Symbol(e.to_string()),
            other => Failed::Redis(other.to_string()),
        })?;
    Ok(compare::compare(page, &ours, &theirs))
}
