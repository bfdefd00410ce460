//! Replays a capture file: newline-delimited events exactly as Binance sent them (raw
//! trades or combined-stream envelopes). Lines that are not trades — not UTF-8, over
//! [`MAX_LINE_BYTES`], not JSON — are counted and logged, never fatal. Finite: returns
//! once every line was read.

use std::path::Path;

use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use tradeflow_shared::{decode_event, Event};

use super::lines::{Line, LineSplitter, MAX_LINE_BYTES};
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

/// Decodes one line as read from a file: one that is over-long or not UTF-8 is
/// counted (`bad_input_total{kind="line_too_long"|"utf8"}`), logged and skipped.
pub fn decode_file_line(
    source: &'static str,
    line: Line,
    line_no: u64,
    stats: &mut SourceStats,
) -> Option<SourceTrade> {
    let bytes = match line {
        Line::Bytes(b) => b,
        Line::TooLong { bytes } => {
            stats.lines += 1;
            stats.bad += 1;
            metrics::bad_input(source, "line_too_long");
            tracing::warn!(
                source,
                line = line_no,
                bytes,
                max = MAX_LINE_BYTES,
                "skipping an over-long line"
            );
            return None;
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => decode_line(source, &text, line_no, stats),
        Err(e) => {
            stats.lines += 1;
            stats.bad += 1;
            metrics::bad_input(source, "utf8");
            tracing::warn!(source, line = line_no, error = %e.utf8_error(), "skipping a line that is not UTF-8");
            None
        }
    }
}

/// Decodes `lines` (emptying it) and sends their trades, in order. False when the
/// receiver is gone: the file source stops.
pub async fn send_lines(
    source: &'static str,
    lines: &mut Vec<Line>,
    stats: &mut SourceStats,
    tx: &TradeTx,
) -> bool {
    for line in lines.drain(..) {
        let no = stats.lines + 1;
        if let Some(t) = decode_file_line(source, line, no, stats) {
            if tx.send(t).await.is_err() {
                return false;
            }
            stats.trades += 1;
        }
    }
    true
}

/// Sends every trade of `path`, in file order, then returns.
pub async fn run(
    path: &Path,
    tx: TradeTx,
    shutdown: CancellationToken,
) -> std::io::Result<SourceStats> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut stats = SourceStats::default();
    let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = Vec::new();
    loop {
        let n = tokio::select! {
            n = file.read(&mut buf) => n?,
            _ = shutdown.cancelled() => break,
        };
        if n == 0 {
            lines.extend(splitter.finish());
        } else {
            splitter.push(&buf[..n], &mut lines);
        }
        if !send_lines("replay", &mut lines, &mut stats, &tx).await {
            break;
        }
        if n == 0 {
            break;
        }
    }
    tracing::info!(path = %path.display(), lines = stats.lines, trades = stats.trades, bad = stats.bad, "replay finished");
    Ok(stats)
}
