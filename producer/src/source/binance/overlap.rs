//! The bound on trades a replacement connection holds back during a rotation.
//!
//! A replacement's trades are held until the old connection has closed, so they go
//! out after everything the old one delivers. Waiting for SUBSCRIBE replies that never
//! come (or a slow close) would hold them without limit, so past `max_held`:
//! - while the old connection is still open (not yet closing), the replacement is
//!   closed and its held trades dropped: the old one, subscribed to the same streams,
//!   still delivers every one of them, so nothing is lost. The rotation is tried again
//!   after the usual backoff (`ws_held_limit_total{action="replacement_abandoned"}`).
//! - once the old connection is closing, it delivers nothing new, so the held trades
//!   cannot be dropped: the replacement is no longer read (the socket and the server
//!   hold the rest) until the old one has closed, which `drain_timeout` bounds
//!   (`ws_held_limit_total{action="replacement_paused"}`).

use std::time::Duration;

use metrics::counter;
use tokio::time::{timeout, Instant};

use super::conn::Conn;
use super::Group;
use crate::metrics::WS_HELD_LIMIT;

/// Whether the replacement (if any) may be read: not while its held trades are at the
/// limit.
pub(super) fn may_read(repl: Option<&Conn>, max_held: usize) -> bool {
    repl.is_some_and(|r| r.held.len() < max_held)
}

impl Group {
    /// Closes a replacement that holds too much while the old connection is open;
    /// returns when to try the rotation again.
    pub(super) async fn abandon_replacement(&mut self, mut r: Conn) -> Instant {
        counter!(WS_HELD_LIMIT, "action" => "replacement_abandoned").increment(1);
        let delay = self.backoff.next_delay(&mut rand::rng());
        tracing::warn!(
            group = self.idx,
            conn = r.id,
            held = r.held.len(),
            acks_pending = r.acks_pending,
            retry_in = ?delay,
            "replacement connection holds too many trades before the switch; closed, the old one goes on"
        );
        r.held = Vec::new();
        let _ = timeout(Duration::from_millis(500), r.ws.close(None)).await;
        Instant::now() + delay
    }

    /// The replacement holds the limit while the old connection closes: it is not read
    /// until the switch.
    pub(super) fn pause_replacement(&mut self, r: &Conn) {
        counter!(WS_HELD_LIMIT, "action" => "replacement_paused").increment(1);
        tracing::warn!(
            group = self.idx,
            conn = r.id,
            held = r.held.len(),
            "replacement connection holds too many trades; not read until the old one has closed"
        );
    }
}
