//! Ports for the servers tests start. A port is taken from *below* the kernel's
//! ephemeral range and reserved across test processes by a lock on a file, held until
//! this process exits:
//! - a port from `bind(0)` can be handed to two servers starting at once (one in this
//!   process, one in the test process running beside it): the second fails to bind,
//!   and the first one's answer makes it look up — two tests then share one server;
//! - a client connecting to a port whose server is not listening yet (or restarting)
//!   can be given that same port as its own local port: the loopback TCP then connects
//!   to itself, the port looks listened on, and the server cannot bind it.
//!
//! Neither can happen to a port outside the ephemeral range that only one process holds.

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;

/// The lowest port handed out (below: well-known and registered services crowd).
const LOWEST: u16 = 15_000;

/// Lock files of the ports this process holds: their locks go with the process.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// A loopback port nobody listens on, held for this process until it exits.
pub fn reserve() -> u16 {
    let Some((lo, hi)) = range() else {
        warn_kernel_ports_once();
        return kernel_port();
    };
    let dir = lock_dir();
    let span = u32::from(hi - lo);
    let start = (RandomState::new().hash_one(std::process::id()) % u64::from(span)) as u32;
    for i in 0..span {
        let port = lo + ((start + i) % span) as u16;
        if let Some(lock) = try_hold(&dir, port) {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).push(lock);
            return port;
        }
    }
    panic!("no free loopback port in {lo}..{hi}")
}

/// The port's lock, if no other holder has it and nothing listens on the port.
fn try_hold(dir: &std::path::Path, port: u16) -> Option<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
        .ok()?;
    file.try_lock().ok()?;
    TcpListener::bind(("127.0.0.1", port)).ok()?;
    Some(file)
}

/// `[LOWEST, first ephemeral port)`, or None when the ephemeral range starts too low
/// to leave room (then the kernel picks, as before).
fn range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let first: u16 = text.split_whitespace().next()?.parse().ok()?;
    (first >= LOWEST + 1_000).then_some((LOWEST, first))
}

fn warn_kernel_ports_once() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        eprintln!(
            "testkit: the ephemeral port range starts below {}; server ports come from bind(0), which two starting servers can share",
            LOWEST + 1_000
        )
    });
}

fn kernel_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on loopback")
}

/// Shared by every test process on this machine: a fixed path, not `TMPDIR`'s, so runs
/// with different temporary folders (`scripts/test --fresh`) still see each other.
fn lock_dir() -> PathBuf {
    let dir = PathBuf::from("/tmp/tradeflow-test-ports");
    std::fs::create_dir_all(&dir).expect("create the port lock folder");
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_outside_the_ephemeral_range_and_locked() {
        let ports: Vec<u16> = (0..300).map(|_| reserve()).collect();
        let unique: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
        if let Some((lo, hi)) = range() {
            assert!(ports.iter().all(|p| (lo..hi).contains(p)), "{ports:?}");
        }
        // Another holder (here a second open of the lock file) cannot take one.
        assert!(try_hold(&lock_dir(), ports[0]).is_none());
    }

    #[test]
    fn a_port_something_listens_on_is_skipped() {
        let Some((lo, hi)) = range() else { return };
        let busy = (lo..hi)
            .find_map(|p| TcpListener::bind(("127.0.0.1", p)).ok())
            .expect("a free port");
        let port = busy.local_addr().unwrap().port();
        assert!(try_hold(&lock_dir(), port).is_none());
    }
}
