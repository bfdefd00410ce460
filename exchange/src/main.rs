//! `tradeflow-exchange serve …` runs the local exchange; `tradeflow-exchange generate …`
//! writes a deterministic capture file.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use tradeflow_exchange::gen::parse_symbols;
use tradeflow_exchange::{Exchange, ExchangeConfig, GenConfig, Generator, Tape};
use tradeflow_shared::SEED_SYMBOLS;

#[derive(Parser)]
#[command(about = "A local Binance trade-stream exchange for tests and local runs")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    #[command(flatten)]
    telemetry: tradeflow_shared::telemetry::TelemetryArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve websocket streams, REST and /control on ADDR; prints `listening on ADDR`.
    Serve(ServeArgs),
    /// Write a deterministic capture file (newline-delimited trade events).
    Generate(GenerateArgs),
}

#[derive(Args)]
struct GenOpts {
    /// Comma-separated symbols (default: the 14 seed symbols).
    #[arg(long, value_delimiter = ',')]
    symbols: Vec<String>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Replay this capture file.
    #[arg(long, conflicts_with = "generate")]
    capture: Option<PathBuf>,
    /// Replay the capture forever (ids and times shifted on each pass).
    #[arg(long = "loop", requires = "capture")]
    looping: bool,
    /// Generate trades instead of replaying a capture.
    #[arg(long)]
    generate: bool,
    #[command(flatten)]
    gen: GenOpts,
    /// Trades to generate (0: endless).
    #[arg(long, default_value_t = 0)]
    count: usize,
    /// Trades per second over all symbols (0: as fast as possible).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    #[arg(long, default_value_t = 20_000)]
    ping_interval_ms: u64,
    #[arg(long, default_value_t = 60_000)]
    pong_timeout_ms: u64,
    #[arg(long, default_value_t = 24 * 3600 * 1000)]
    max_age_ms: u64,
    #[arg(long, default_value_t = 5_000)]
    shutdown_grace_ms: u64,
}

#[derive(Args)]
struct GenerateArgs {
    #[arg(long, default_value = "exchange/data/capture.jsonl")]
    out: PathBuf,
    #[arg(long, default_value_t = 5_000)]
    count: usize,
    #[command(flatten)]
    gen: GenOpts,
    /// Time of the first trade (ms since the epoch).
    #[arg(long, default_value_t = 1_717_000_000_000)]
    start_ms: u64,
}

fn gen_config(opts: &GenOpts, start_ms: u64) -> anyhow::Result<GenConfig> {
    let names: Vec<&str> = if opts.symbols.is_empty() {
        SEED_SYMBOLS.to_vec()
    } else {
        opts.symbols.iter().map(String::as_str).collect()
    };
    Ok(GenConfig {
        symbols: parse_symbols(names).context("bad --symbols")?,
        seed: opts.seed,
        start_ms,
        old_format_every: 50,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs go to stderr so stdout's first line stays the bound address.
    tradeflow_shared::telemetry::init_tracing(&cli.telemetry);
    match cli.cmd {
        Cmd::Generate(a) => {
            let items = Generator::new(gen_config(&a.gen, a.start_ms)?).take(a.count);
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&a.out).with_context(|| format!("{}", a.out.display()))?,
            );
            for it in &items {
                writeln!(out, "{}", it.json)?;
            }
            out.flush()?;
            eprintln!("wrote {} trades to {}", items.len(), a.out.display());
            Ok(())
        }
        Cmd::Serve(a) => serve(a).await,
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let tape = match (&a.capture, a.generate) {
        (Some(path), false) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let items = Arc::new(Tape::parse_capture(&text)?);
            if a.looping {
                Tape::Looping(items)
            } else {
                Tape::Finite(items)
            }
        }
        (None, true) => {
            let mut g = Generator::new(gen_config(&a.gen, tradeflow_shared::telemetry::now_ms())?);
            if a.count == 0 {
                Tape::Endless(g)
            } else {
                Tape::Finite(Arc::new(g.take(a.count)))
            }
        }
        _ => bail!("give either --capture FILE or --generate"),
    };
    let config = ExchangeConfig {
        ping_interval: Duration::from_millis(a.ping_interval_ms),
        pong_timeout: Duration::from_millis(a.pong_timeout_ms),
        max_connection_age: Duration::from_millis(a.max_age_ms),
        shutdown_grace: Duration::from_millis(a.shutdown_grace_ms),
        rate: (a.rate > 0.0).then_some(a.rate),
        ..ExchangeConfig::default()
    };
    let exchange = Exchange::start(config, tape);
    let listener = tokio::net::TcpListener::bind(a.addr).await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let shutdown = tradeflow_shared::shutdown::on_signals();
    exchange.serve(listener, shutdown).await?;
    Ok(())
}
