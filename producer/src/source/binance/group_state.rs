//! The life of one connection group as a pure state machine: which connections are
//! open, when one is replaced, what happens to the trades a replacement holds. The
//! executor (`group.rs`) owns the sockets and the one connect attempt in flight; this
//! owns every decision and the facts they rest on (when a connection opened and was last
//! heard from, its SUBSCRIBE replies still due, a `serverShutdown` notice, the held
//! trades). It never waits: `on` turns an event into actions, `deadline` says when it
//! next wants a `Tick`. States, events → next state [actions]:
//!
//! - `Waiting` (no connection, backoff) — tick → `Connecting` [Connect]
//! - `Connecting` — connected → `Serving` [Seat current]; failed → `Waiting`
//! - `Serving` — age or `serverShutdown`, not before a failed rotation's retry →
//!   `Opening` [Connect]; lost or dead → `Waiting` [DropCurrent]
//! - `Opening` — connected → `Overlap` [Seat replacement]; failed → `Serving`, retry
//!   after the backoff; current lost or dead → `Connecting` [DropCurrent] (the attempt
//!   becomes the primary)
//! - `Overlap` (the replacement holds its trades) — replacement receiving (a trade with
//!   every SUBSCRIBE confirmed, or confirmed and `switch_settle` passed) → `Draining`
//!   [StartDrain]; current lost or dead → `Serving` on the replacement [Promote, Forward
//!   held]; replacement lost → `Serving`, retry later [DropReplacement]; held limit →
//!   `Serving`, retry later [CloseReplacement] (`overlap.rs`)
//! - `Draining` (the old connection closes; no dead verdict, `drain_timeout` bounds it)
//!   — old closed or deadline → `Serving` on the replacement [Promote, Forward held];
//!   replacement lost → `DrainingReopening` [DropReplacement, Connect], its trades kept
//!   as orphans; held limit → the replacement is not read until the switch
//! - `DrainingReopening` — connected → `Draining` [Seat replacement], the orphans held
//!   first; failed → `DrainingOrphaned`; old closed → `Connecting` [DropCurrent, Forward
//!   orphans]
//! - `DrainingOrphaned` — old closed or deadline → `Waiting` [DropCurrent, Forward
//!   orphans]
//! - any — shutdown → `Stopped` [Stop]
//!
//! Ordering guarantee: per symbol the channel sees the old connection's trades, then the
//! held ones, then the new connection's. The held-trade bound is in `overlap.rs`.

use std::time::Duration;

use tokio::time::Instant;
use tradeflow_shared::retry::Retry;

use super::overlap;

/// The timings the machine decides by (from `BinanceConfig`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    pub dead_timeout: Duration,
    pub max_connection_age: Duration,
    pub switch_settle: Duration,
    pub drain_timeout: Duration,
    pub max_held: usize,
}

/// What the machine knows of one open connection.
#[derive(Debug, Clone)]
pub(super) struct Link {
    pub id: u64,
    opened: Instant,
    last_rx: Instant,
    /// SUBSCRIBE replies still expected.
    acks_pending: usize,
    got_trade: bool,
    /// When the server announced `serverShutdown`.
    notice: Option<Instant>,
}

impl Link {
    pub fn new(id: u64, opened: Instant, acks_pending: usize) -> Self {
        Link {
            id,
            opened,
            last_rx: opened,
            acks_pending,
            got_trade: false,
            notice: None,
        }
    }
}

/// One of the two seats a connection can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Current,
    Replacement,
}

/// What one message on a connection meant (`message.rs` reads them).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Msg<T> {
    Trade(T),
    /// A reply to a SUBSCRIBE.
    Ack,
    /// `serverShutdown`: the server will close this connection soon.
    ServerShutdown,
    /// Anything else (a ping, an ignored event, a bad message): the connection lives.
    Other,
    /// The connection ended (`eof`, `closed`, `error`, `oversized`).
    Ended(&'static str),
}

#[derive(Debug)]
pub(super) enum Event<T> {
    /// The connect attempt in flight succeeded.
    Connected(Link),
    /// The connect attempt in flight failed.
    ConnectFailed(String),
    Message(Role, Msg<T>),
    /// `deadline()` was reached.
    Tick,
    /// The current connection's close frame went out (after `Action::StartDrain`).
    DrainStarted,
    Shutdown,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Action<T> {
    /// Start a connect attempt; `Connected` or `ConnectFailed` follows.
    Connect,
    /// The connection just opened takes this seat.
    Seat(Role),
    /// Into the trade channel, in this order.
    Forward(T),
    /// Send the current connection's close frame; then report `DrainStarted`.
    StartDrain,
    /// The current connection is gone: drop it.
    DropCurrent,
    /// The replacement is given up while it is still open: close it.
    CloseReplacement,
    /// The replacement ended: drop it.
    DropReplacement,
    /// Drop the current connection; the replacement takes its seat.
    Promote,
    /// Close what is open and end.
    Stop,
}

/// The state's name, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Connecting,
    Waiting,
    Serving,
    Opening,
    Overlap,
    /// The old connection closes; the replacement is open.
    Draining,
    /// The old connection closes; the replacement was lost and another is being opened.
    DrainingReopening,
    /// The old connection closes; the replacement was lost and could not be reopened.
    DrainingOrphaned,
    Stopped,
}

enum Phase<T> {
    /// No connection; the attempt is in flight.
    Connecting,
    /// No connection; the next attempt after the backoff.
    Waiting {
        until: Instant,
    },
    /// One connection; the next rotation attempt not before `retry_at`.
    Serving {
        cur: Link,
        retry_at: Option<Instant>,
    },
    /// The replacement is being opened.
    Opening {
        cur: Link,
    },
    /// Both open; the replacement holds its trades until it is receiving.
    Overlap {
        cur: Link,
        repl: Link,
        held: Vec<T>,
    },
    /// The old connection is closing, given up at `until`.
    Draining {
        cur: Link,
        until: Instant,
        next: Successor<T>,
    },
    Stopped,
}

/// What takes over once the closing connection is gone.
enum Successor<T> {
    Open {
        repl: Link,
        held: Vec<T>,
    },
    /// The replacement was lost; its trades wait for the old connection to close, the
    /// next one is being opened.
    Reopening {
        orphans: Vec<T>,
    },
    /// As `Reopening`, but opening failed: reconnect after the old one has closed.
    Orphaned {
        orphans: Vec<T>,
    },
}

/// See the module doc.
pub(super) struct GroupState<T> {
    group: usize,
    timing: Timing,
    /// Reconnect backoff (`limits::reconnect_retry`).
    retry: Retry,
    phase: Phase<T>,
    /// The current event's time.
    now: Instant,
    /// The current event's actions.
    out: Vec<Action<T>>,
}

impl<T> GroupState<T> {
    /// A group with no connection yet; the first attempt is due at `now`.
    pub fn new(group: usize, timing: Timing, retry: Retry, now: Instant) -> Self {
        GroupState {
            group,
            timing,
            retry,
            phase: Phase::Waiting { until: now },
            now,
            out: Vec::new(),
        }
    }

    pub fn kind(&self) -> Kind {
        match &self.phase {
            Phase::Connecting => Kind::Connecting,
            Phase::Waiting { .. } => Kind::Waiting,
            Phase::Serving { .. } => Kind::Serving,
            Phase::Opening { .. } => Kind::Opening,
            Phase::Overlap { .. } => Kind::Overlap,
            Phase::Draining { next, .. } => match next {
                Successor::Open { .. } => Kind::Draining,
                Successor::Reopening { .. } => Kind::DrainingReopening,
                Successor::Orphaned { .. } => Kind::DrainingOrphaned,
            },
            Phase::Stopped => Kind::Stopped,
        }
    }

    /// When the machine next wants a `Tick`.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Connecting | Phase::Stopped => None,
            Phase::Waiting { until } | Phase::Draining { until, .. } => Some(*until),
            Phase::Serving { cur, retry_at } => {
                Some(self.rotate_at(cur, *retry_at).min(self.dead_at(cur)))
            }
            Phase::Opening { cur } => Some(self.dead_at(cur)),
            Phase::Overlap { cur, repl, .. } => {
                let dead = self.dead_at(cur);
                Some(self.settle_at(repl).map_or(dead, |s| s.min(dead)))
            }
        }
    }

    /// Whether the replacement may be read: not while it holds the limit of trades
    /// (`overlap.rs`).
    pub fn may_read_replacement(&self) -> bool {
        let held = match &self.phase {
            Phase::Overlap { held, .. } => held,
            Phase::Draining {
                next: Successor::Open { held, .. },
                ..
            } => held,
            _ => return false,
        };
        overlap::may_hold_more(held.len(), self.timing.max_held)
    }

    /// One event at `now`; returns the actions, to be executed in order.
    pub fn on(&mut self, event: Event<T>, now: Instant) -> std::vec::Drain<'_, Action<T>> {
        self.now = now;
        let phase = std::mem::replace(&mut self.phase, Phase::Stopped);
        self.phase = match event {
            Event::Shutdown => {
                if !matches!(phase, Phase::Stopped) {
                    self.out.push(Action::Stop);
                }
                Phase::Stopped
            }
            Event::Connected(link) => self.connected(phase, link),
            Event::ConnectFailed(error) => self.connect_failed(phase, &error),
            Event::Message(Role::Current, Msg::Ended(reason)) => self.current_ended(phase, reason),
            Event::Message(Role::Replacement, Msg::Ended(reason)) => {
                self.replacement_ended(phase, reason)
            }
            Event::Message(Role::Current, msg) => self.on_current(phase, msg),
            Event::Message(Role::Replacement, msg) => self.on_replacement(phase, msg),
            Event::Tick => self.tick(phase),
            Event::DrainStarted => match phase {
                // The close may have taken a while to send: the deadline counts from now.
                Phase::Draining { cur, next, .. } => Phase::Draining {
                    cur,
                    until: now + self.timing.drain_timeout,
                    next,
                },
                p => p,
            },
        };
        self.out.drain(..)
    }

    /// A message on `link` other than its end; returns the trade if it was one.
    fn heard(&mut self, link: &mut Link, msg: Msg<T>) -> Option<T> {
        link.last_rx = self.now;
        match msg {
            Msg::Trade(t) => {
                if !link.got_trade {
                    // The connection proved healthy.
                    link.got_trade = true;
                    self.retry.succeeded(&self.group.to_string());
                }
                Some(t)
            }
            Msg::Ack => {
                link.acks_pending = link.acks_pending.saturating_sub(1);
                None
            }
            Msg::ServerShutdown => {
                link.notice.get_or_insert(self.now);
                None
            }
            // An end never comes here (`on` routes it to `*_ended`).
            Msg::Other | Msg::Ended(_) => None,
        }
    }

    /// Age or a `serverShutdown` notice, but not before a failed rotation's retry.
    fn rotate_at(&self, cur: &Link, retry_at: Option<Instant>) -> Instant {
        let aged = cur.opened + self.timing.max_connection_age;
        let due = cur.notice.map_or(aged, |n| n.min(aged));
        retry_at.map_or(due, |r| due.max(r))
    }

    fn dead_at(&self, cur: &Link) -> Instant {
        cur.last_rx + self.timing.dead_timeout
    }

    /// A replacement with every SUBSCRIBE confirmed is taken as receiving this long
    /// after it opened, even without a trade (quiet symbols).
    fn settle_at(&self, repl: &Link) -> Option<Instant> {
        (repl.acks_pending == 0).then(|| repl.opened + self.timing.switch_settle)
    }
}

mod transitions;

#[cfg(test)]
mod tests;
