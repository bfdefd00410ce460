//! Follows a growing file of JSON lines, as the Kinesis Agent did on
//! `/tmp/transactions.json`: only complete lines are read; on rotation (the path now
//! names another inode) the old file is read to its end and the new one from 0; on
//! truncation (the file got shorter than what was read) reading restarts at 0. A line
//! over [`MAX_LINE_BYTES`] is counted, logged and skipped up to its newline (never held
//! whole in memory); one that is not UTF-8 is counted, logged and skipped.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt, SeekFrom};
use tokio_util::sync::CancellationToken;

pub use super::lines::MAX_LINE_BYTES;

use super::lines::LineSplitter;
use super::replay::{send_lines, SourceStats};
use super::TradeTx;

#[derive(Debug, Clone)]
pub struct TailConfig {
    pub path: PathBuf,
    pub from_start: bool,
    pub poll: Duration,
}

struct Open {
    file: tokio::fs::File,
    inode: u64,
    pos: u64,
}

async fn open(path: &PathBuf, at_end: bool) -> Option<Open> {
    let mut file = tokio::fs::File::open(path).await.ok()?;
    let meta = file.metadata().await.ok()?;
    let pos = if at_end { meta.len() } else { 0 };
    file.seek(SeekFrom::Start(pos)).await.ok()?;
    Some(Open {
        file,
        inode: meta.ino(),
        pos,
    })
}

/// Tails until `shutdown`.
pub async fn run(
    cfg: TailConfig,
    tx: TradeTx,
    shutdown: CancellationToken,
) -> std::io::Result<SourceStats> {
    let mut stats = SourceStats::default();
    let mut partial = LineSplitter::new(MAX_LINE_BYTES);
    let mut lines = Vec::new();
    let mut cur: Option<Open> = None;
    let mut first_open = true;
    let mut buf = vec![0u8; 64 * 1024];
    while !shutdown.is_cancelled() {
        if cur.is_none() {
            cur = open(&cfg.path, first_open && !cfg.from_start).await;
            if cur.is_some() {
                first_open = false;
                partial.clear();
            }
        }
        let Some(o) = cur.as_mut() else {
            // Not there yet (or between a rotation's rename and create).
            first_open = false;
            tokio::select! {
                _ = tokio::time::sleep(cfg.poll) => continue,
                _ = shutdown.cancelled() => break,
            }
        };
        let n = o.file.read(&mut buf).await?;
        if n > 0 {
            o.pos += n as u64;
            partial.push(&buf[..n], &mut lines);
            if !send_lines("tail", &mut lines, &mut stats, &tx).await {
                break;
            }
            continue;
        }
        // At the end of what is there: look for rotation or truncation.
        match tokio::fs::metadata(&cfg.path).await {
            Ok(meta) if meta.ino() != o.inode => {
                tracing::info!(path = %cfg.path.display(), "tailed file rotated; reading the new one from its start");
                cur = open(&cfg.path, false).await;
                partial.clear();
                continue;
            }
            Ok(meta) if meta.len() < o.pos => {
                tracing::info!(path = %cfg.path.display(), "tailed file truncated; reading from its start");
                o.file.seek(SeekFrom::Start(0)).await?;
                o.pos = 0;
                partial.clear();
                continue;
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.poll) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    Ok(stats)
}
