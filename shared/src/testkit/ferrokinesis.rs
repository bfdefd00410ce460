//! ferrokinesis's own recovery: where its write-ahead log is, cutting a torn last entry
//! before a restart, and waiting for its health endpoint to say UP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::http::http_get;
use super::Service;

/// Where a durable ferrokinesis keeps its write-ahead log.
pub fn ferrokinesis_wal(service: &Service) -> PathBuf {
    service.state_dir().join("state").join("wal.log")
}

/// Waits until ferrokinesis's `/_health` says UP (it replays its log before that), or
/// returns what it said last (e.g. a log it could not decode) after `limit`.
pub fn wait_ferrokinesis_up(service: &Service, limit: Duration) -> Result<(), String> {
    let mut last = String::new();
    let up = super::wait::poll_blocking(limit, Duration::from_millis(200), || {
        match http_get(service.port, "/_health") {
            Ok((200, _)) => return Some(()),
            Ok((status, body)) => last = format!("HTTP {status}: {}", body.trim()),
            Err(e) => last = e.to_string(),
        }
        None
    });
    up.ok_or(last)
}

/// ferrokinesis 0.7 keeps its durable state in a write-ahead log (`FKWALv2\n`, then
/// entries of a little-endian u64 length and that many bytes). A kill -9 in the middle
/// of an append leaves a torn last entry; its next start ignores it but appends new
/// entries *after* the torn bytes, and the start after that cannot decode the log: the
/// store stays DOWN and every call fails (reproduced with boto3 alone: kill, restart,
/// write, kill, restart). Before restarting a killed ferrokinesis, this cuts the log back
/// to its last whole entry — what a durable log does on recovery; the torn entry was
/// never acknowledged (the append ends with an fsync before the answer). Returns the
/// bytes cut (0 when the log ended on an entry).
pub fn cut_torn_wal(wal: &Path) -> std::io::Result<u64> {
    let mut f = match std::fs::OpenOptions::new().read(true).write(true).open(wal) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let total = f.metadata()?.len();
    let whole = wal_whole_prefix(&mut f, total)?;
    if whole < total {
        f.set_len(whole)?;
        f.sync_all()?;
    }
    Ok(total - whole)
}

/// Length of the log's prefix made of the header and whole entries.
fn wal_whole_prefix<R: std::io::Read + std::io::Seek>(
    r: &mut R,
    total: u64,
) -> std::io::Result<u64> {
    use std::io::SeekFrom;
    const MAGIC: u64 = 8;
    if total < MAGIC {
        return Ok(0);
    }
    let mut at = MAGIC;
    loop {
        if at + 8 > total {
            return Ok(at);
        }
        r.seek(SeekFrom::Start(at))?;
        let mut len = [0u8; 8];
        r.read_exact(&mut len)?;
        let end = (at + 8).saturating_add(u64::from_le_bytes(len));
        if end > total {
            return Ok(at);
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Vec<u8> {
        let mut e = (n as u64).to_le_bytes().to_vec();
        e.extend(std::iter::repeat_n(b'x', n));
        e
    }

    #[test]
    fn torn_wal_tails_are_found() {
        let mut log = b"FKWALv2\n".to_vec();
        let whole = |log: &Vec<u8>| {
            wal_whole_prefix(&mut std::io::Cursor::new(log), log.len() as u64).unwrap()
        };
        assert_eq!(whole(&log), 8);
        log.extend(entry(5));
        log.extend(entry(0));
        let clean = log.len() as u64;
        assert_eq!(whole(&log), clean);
        // A torn length prefix, then a whole prefix with a torn body.
        log.extend(&entry(10)[..3]);
        assert_eq!(whole(&log), clean);
        log.truncate(clean as usize);
        log.extend(&entry(10)[..12]);
        assert_eq!(whole(&log), clean);
        // A length that runs past the end of the file (garbage after a torn entry).
        log.truncate(clean as usize);
        log.extend(u64::MAX.to_le_bytes());
        assert_eq!(whole(&log), clean);
        assert_eq!(whole(&b"FKW".to_vec()), 0);
    }

    #[test]
    fn cut_torn_wal_truncates_to_the_last_whole_entry() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal.log");
        assert_eq!(cut_torn_wal(&wal).unwrap(), 0, "no log yet");
        let mut log = b"FKWALv2\n".to_vec();
        log.extend(entry(4));
        let clean = log.len();
        log.extend(&entry(9)[..11]);
        std::fs::write(&wal, &log).unwrap();
        assert_eq!(cut_torn_wal(&wal).unwrap(), 11);
        assert_eq!(std::fs::read(&wal).unwrap(), log[..clean]);
        assert_eq!(cut_torn_wal(&wal).unwrap(), 0);
    }
}
