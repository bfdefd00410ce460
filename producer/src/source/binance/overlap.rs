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

use crate::metrics::WS_HELD_LIMIT;

/// Whether a replacement holding `held` trades may be read: not at the limit.
pub(super) fn may_hold_more(held: usize, max_held: usize) -> bool {
    held < max_held
}

/// A replacement that holds too much while the old connection is open is closed.
pub(super) fn abandoned(
    group: usize,
    conn: u64,
    held: usize,
    acks_pending: usize,
    retry_in: Duration,
) {
    counter!(WS_HELD_LIMIT, "action" => "replacement_abandoned").increment(1);
    tracing::warn!(
        group,
        conn,
        held,
        acks_pending,
        ?retry_in,
        "replacement connection holds too many trades before the switch; closed, the old one goes on"
    );
}

/// The replacement holds the limit while the old connection closes: it is not read
/// until the switch.
pub(super) fn paused(group: usize, conn: u64, held: usize) {
    counter!(WS_HELD_LIMIT, "action" => "replacement_paused").increment(1);
    tracing::warn!(
        group,
        conn,
        held,
        "replacement connection holds too many trades; not read until the old one has closed"
    );
}
