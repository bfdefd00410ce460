//! Replays a capture file: newline-delimited events exactly as Binance sent them (raw
//! trades or combined-stream envelopes). Lines that are not trades are counted and
//! logged, never fatal. Finite: returns once every line was read.

use std::path::Path;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use tradeflow_shared::{decode_event, Event};

use super::{SourceTrade, TradeTx};
use crate::metrics;

/// What a source did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SourceStats {
    pub lines: u64,
    pub trades: u64,
    pub bad: u64,
    pub other: u64,
}

/// Decodes one line; counts and logs what is not a trade.
pub fn decode_line(
    source: &'static str,
    line: &str,
    line_no: u64,
    stats: &mut SourceStats,
) -> Option<SourceTrade> {
    let line = line.trim_end_matches(['\r', '\n']);
    stats.lines += 1;
    if line.trim().is_empty() {
        return None;
    }
    match decode_event(line) {
        Ok(Event::Trade { trade, json }) => Some(SourceTrade {
            trade,
            json: json.to_string(),
        }),
        Ok(_) => {
            stats.other += 1;
            None
        }
        Err(e) => {
            stats.bad += 1;
            metrics::bad_input(source, e.kind());
            tracing::warn!(source, line = line_no, error = %e, "skipping a line that is not a trade");
            None
        }
    }
}

/// Sends every trade of `path`, in file order, then returns.
pub async fn run(
    path: &Path,
    tx: TradeTx,
    shutdown: CancellationToken,
) -> std::io::Result<SourceStats> {
    let file = tokio::fs::File::open(path).await?;
    let mut lines = BufReader::new(file).lines();
    let mut stats = SourceStats::default();
    loop {
        let line = tokio::select! {
            l = lines.next_line() => l?,
            _ = shutdown.cancelled() => break,
        };
        let Some(line) = line else { break };
        let n = stats.lines + 1;
        if let Some(t) = decode_line("replay", &line, n, &mut stats) {
            if tx.send(t).await.is_err() {
                break;
            }
            stats.trades += 1;
        }
    }
    tracing::info!(path = %path.display(), lines = stats.lines, trades = stats.trades, bad = stats.bad, "replay finished");
    Ok(stats)
}
