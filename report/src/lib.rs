//! `tradeflow-report`: the totals for people and scripts. Reads Redis only, through the
//! shared snapshot read (`tradeflow_shared::snapshot`: the symbols index, never `KEYS`): top N symbols by trades or by USD value, totals, the
//! USD value of each symbol's traded quantity (direct `<BASE>USDT` pair, else through
//! BTC, ETH or BNB — see [`value`]) from the last prices in Redis or, with
//! `--prices binance`, Binance's REST prices of the moment (see [`prices`]); the output
//! says which prices and when. Output as a table, JSON or CSV; `--watch` redraws every
//! 2 s with a share-of-trades bar.
//! `reset` zeroes counts and volumes but keeps the dedupe state, so exactly-once holds
//! across it: trades already counted are not counted again, new ones are.
//! `candles` prints a symbol's exact klines (see [`candles`]).
//! `serve` is the same numbers as a live web page and JSON (see [`web`]).
//! `slack` posts them to Slack with charts (see [`slack`], [`chart`]).
//!
//! Modules, each leaning only on those above it: [`value`] (USD valuation of a
//! quantity), [`prices`] (which prices: Redis's or Binance's), [`format`] (ranking and
//! rendering), [`reset`], [`when`] (times on the command line), [`candles`], [`web`], [`chart`] (PNG charts), [`slack`]; [`error`] is the
//! report's own error type.

pub mod candles;
pub mod chart;
pub mod error;
pub mod format;
pub mod prices;
pub mod reconcile;
pub mod reset;
pub mod slack;
pub mod value;
pub mod web;
pub mod when;

use std::io::{BufRead, Write};
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tradeflow_shared::redis_args::RedisArgs;

pub use error::ReportError;
pub use format::{build, build_priced, render, Format, Report, Row, SortBy};
pub use prices::{PriceArgs, PriceFeed, PriceSet, PriceSource};
pub use reset::{reset, ResetOutcome};
pub use tradeflow_shared::snapshot::{Reader, SymbolTotals};

#[derive(Debug, Parser)]
#[command(
    name = "tradeflow-report",
    about = "Exact per-symbol trade totals from Redis"
)]
pub struct Args {
    /// Where Redis is (`--redis-url`, `--redis-ca-file`): the consumer's flags, declared
    /// once in `tradeflow_shared::redis_args`.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Prefix of tradeflow's keys (all but the legacy `symbol:<SYM>` counts).
    #[arg(long, env = "TRADEFLOW_KEY_PREFIX", default_value = tradeflow_shared::redis_keys::DEFAULT_PREFIX)]
    pub key_prefix: String,
    /// How many symbols to list.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    #[arg(long, value_enum, default_value_t = SortBy::Trades)]
    pub sort: SortBy,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Redraw every 2 s (with a bar for each symbol's share of trades).
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub prices: PriceArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Zero all counts and volumes and delete the candles (dedupe state kept: nothing is
    /// ever counted twice).
    Reset {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// A symbol's exact candles (klines) from Redis: a table, Binance kline arrays
    /// (JSON) or CSV.
    Candles(candles::CandleArgs),
    /// Serve a live web page of the totals (and `/api/snapshot` JSON).
    Serve(web::ServeArgs),
    /// Post the report (and its charts, with a bot token) to Slack.
    Slack(Box<slack::SlackArgs>),
    /// Check every settled minute in Redis against the exchange's own 1m klines; exit 0
    /// all match, 1 a difference, 2 could not check.
    Reconcile(reconcile::ReconcileArgs),
}

/// Runs the report until done (or, with `--watch`, until `shutdown`); the process's exit
/// status when it ends without an error (only `reconcile` has others than 0).
pub async fn run(args: Args, shutdown: CancellationToken) -> Result<u8, ReportError> {
    if let Some(Command::Reconcile(r)) = &args.command {
        // Reports its own failures (exit status 2, "could not check").
        return Ok(reconcile::run(r, &args.redis, &args.key_prefix, &args.prices).await?);
    }
    if let Some(Command::Serve(serve)) = args.command {
        // Connects lazily: the page must come up (with a notice) while Redis is down.
        return web::serve(
            &args.redis.url,
            args.redis.ca_file.as_deref(),
            &args.key_prefix,
            &args.prices,
            serve,
            shutdown,
        )
        .await
        .map(|()| 0);
    }
    if let Some(Command::Slack(s)) = &args.command {
        return slack::run(&args, s).await.map(|()| 0);
    }
    if let Some(Command::Candles(c)) = &args.command {
        let reader = Reader::connect_with_ca(
            &args.redis.url,
            args.redis.ca_file.as_deref(),
            &args.key_prefix,
        )
        .await?;
        let text = candles::run(&reader, c, tradeflow_shared::telemetry::now_ms()).await?;
        std::io::stdout().lock().write_all(text.as_bytes())?;
        return Ok(0);
    }
    let feed = PriceFeed::new(&args.prices, args.prices.prices_refresh)?;
    let reader = Reader::connect_with_ca(
        &args.redis.url,
        args.redis.ca_file.as_deref(),
        &args.key_prefix,
    )
    .await?;
    if let Some(Command::Reset { yes }) = args.command {
        if !yes && !confirm()? {
            println!("reset cancelled");
            return Ok(0);
        }
        let done = reset(&reader).await?;
        println!(
            "reset counts and volumes of {} symbols and deleted {} candle buckets (dedupe state kept)",
            done.symbols, done.buckets
        );
        return Ok(0);
    }
    loop {
        let snapshot = reader.snapshot().await?;
        let prices = feed.prices(&snapshot).await?;
        let report = build_priced(&snapshot, &prices, args.sort, args.top);
        let text = render(&report, args.format, args.watch);
        if args.format == Format::Csv {
            // CSV stays one header and rows; the notes go beside it.
            eprint!(
                "{}\n{}",
                format::price_note(&report),
                format::unreadable_note(&report)
            );
        }
        let mut out = std::io::stdout().lock();
        if args.watch {
            // Clear the screen and go home before each frame.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        out.write_all(text.as_bytes())?;
        out.flush()?;
        drop(out);
        if !args.watch {
            return Ok(0);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(0),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

fn confirm() -> std::io::Result<bool> {
    eprint!("Zero all trade counts and volumes in Redis? Type `yes` to confirm: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}
