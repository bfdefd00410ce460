//! The transitions of `GroupState`, one function per event (see the parent's doc).

use std::fmt::Display;
use std::time::Duration;

use metrics::counter;
use tradeflow_shared::retry::Next;

use super::{Action, GroupState, Link, Msg, Phase, Role, Successor};
use crate::metrics::{WS_CONNECT_FAILURES, WS_RECONNECTS, WS_ROTATIONS};
use crate::source::binance::overlap;

impl<T> GroupState<T> {
    pub(super) fn connected(&mut self, phase: Phase<T>, link: Link) -> Phase<T> {
        match phase {
            Phase::Connecting => {
                self.out.extend([Action::Seat(Role::Current)]);
                Phase::Serving {
                    cur: link,
                    retry_at: None,
                }
            }
            Phase::Opening { cur } => {
                self.out.extend([Action::Seat(Role::Replacement)]);
                Phase::Overlap {
                    cur,
                    repl: link,
                    held: Vec::new(),
                }
            }
            Phase::Draining {
                cur,
                until,
                next: Successor::Reopening { orphans },
            } => {
                // What the lost replacement received goes out first, held with its own.
                self.out.extend([Action::Seat(Role::Replacement)]);
                Phase::Draining {
                    cur,
                    until,
                    next: Successor::Open {
                        repl: link,
                        held: orphans,
                    },
                }
            }
            // Nothing was awaiting a connection: no seat, the executor drops it.
            p => p,
        }
    }

    pub(super) fn connect_failed(&mut self, phase: Phase<T>, error: &str) -> Phase<T> {
        let what = match &phase {
            Phase::Connecting => "websocket connect failed",
            Phase::Opening { .. }
            | Phase::Draining {
                next: Successor::Reopening { .. },
                ..
            } => "replacement connect failed",
            _ => return phase,
        };
        counter!(WS_CONNECT_FAILURES).increment(1);
        let delay = self.retry_in(&format_args!("{what}: {error}"));
        match phase {
            Phase::Opening { cur } => Phase::Serving {
                cur,
                retry_at: Some(self.now + delay),
            },
            // The old connection closes: reconnect once it has.
            Phase::Draining {
                cur,
                until,
                next: Successor::Reopening { orphans },
            } => Phase::Draining {
                cur,
                until,
                next: Successor::Orphaned { orphans },
            },
            _ => Phase::Waiting {
                until: self.now + delay,
            },
        }
    }

    /// A message other than its end on the current connection.
    pub(super) fn on_current(&mut self, mut phase: Phase<T>, msg: Msg<T>) -> Phase<T> {
        let cur = match &mut phase {
            Phase::Serving { cur, .. }
            | Phase::Opening { cur }
            | Phase::Overlap { cur, .. }
            | Phase::Draining { cur, .. } => cur,
            _ => return phase,
        };
        if let Some(t) = self.heard(cur, msg) {
            self.out.extend([Action::Forward(t)]);
        }
        phase
    }

    pub(super) fn current_ended(&mut self, phase: Phase<T>, reason: &'static str) -> Phase<T> {
        match phase {
            // The close handshake finished: everything it had is in.
            Phase::Draining { cur, next, .. } => self.old_closed(cur, next),
            Phase::Serving { ref cur, .. }
            | Phase::Opening { ref cur }
            | Phase::Overlap { ref cur, .. } => {
                counter!(WS_RECONNECTS, "reason" => reason).increment(1);
                tracing::warn!(group = self.group, conn = cur.id, reason, "connection lost");
                self.lost(phase)
            }
            p => p,
        }
    }

    /// A message other than its end on the replacement.
    pub(super) fn on_replacement(&mut self, mut phase: Phase<T>, msg: Msg<T>) -> Phase<T> {
        let (repl, held) = match &mut phase {
            Phase::Overlap { repl, held, .. }
            | Phase::Draining {
                next: Successor::Open { repl, held },
                ..
            } => (repl, held),
            _ => return phase,
        };
        let Some(t) = self.heard(repl, msg) else {
            return phase;
        };
        held.push(t);
        let phase = match phase {
            // The replacement is receiving: the old connection may close.
            Phase::Overlap { cur, repl, held } if repl.acks_pending == 0 => {
                self.start_drain(cur, repl, held)
            }
            p => p,
        };
        match phase {
            Phase::Overlap { cur, repl, held } if held.len() >= self.timing.max_held => {
                let delay = self.retry_in(&"replacement held too many trades before the switch");
                overlap::abandoned(self.group, repl.id, held.len(), repl.acks_pending, delay);
                self.out.extend([Action::CloseReplacement]);
                Phase::Serving {
                    cur,
                    retry_at: Some(self.now + delay),
                }
            }
            Phase::Draining {
                next: Successor::Open { ref repl, ref held },
                ..
            } if held.len() >= self.timing.max_held => {
                overlap::paused(self.group, repl.id, held.len());
                phase
            }
            p => p,
        }
    }

    pub(super) fn replacement_ended(&mut self, phase: Phase<T>, reason: &'static str) -> Phase<T> {
        let group = self.group;
        match phase {
            Phase::Overlap { cur, repl, held } => {
                // Its held trades are dropped with it: the old connection, still open,
                // delivers them.
                let delay = self.retry_in(&format_args!(
                    "replacement connection {} lost: {reason}",
                    repl.id
                ));
                drop(held);
                self.out.extend([Action::DropReplacement]);
                Phase::Serving {
                    cur,
                    retry_at: Some(self.now + delay),
                }
            }
            Phase::Draining {
                cur,
                until,
                next: Successor::Open { repl, held },
            } => {
                // The old one is already closing: keep what this one received for after
                // it, and open the next at once.
                counter!(WS_RECONNECTS, "reason" => reason).increment(1);
                tracing::warn!(
                    group,
                    conn = repl.id,
                    reason,
                    held = held.len(),
                    "replacement connection lost while the old one closes; opening another"
                );
                self.out.extend([Action::DropReplacement, Action::Connect]);
                Phase::Draining {
                    cur,
                    until,
                    next: Successor::Reopening { orphans: held },
                }
            }
            p => p,
        }
    }

    pub(super) fn tick(&mut self, phase: Phase<T>) -> Phase<T> {
        match phase {
            Phase::Waiting { until } if self.now >= until => {
                self.out.extend([Action::Connect]);
                Phase::Connecting
            }
            Phase::Serving { cur, retry_at } if self.now >= self.rotate_at(&cur, retry_at) => {
                let reason = if cur.notice.is_some() {
                    "server_shutdown"
                } else {
                    "max_age"
                };
                counter!(WS_ROTATIONS, "reason" => reason).increment(1);
                tracing::info!(
                    group = self.group,
                    conn = cur.id,
                    reason,
                    "opening the replacement connection"
                );
                self.out.extend([Action::Connect]);
                Phase::Opening { cur }
            }
            Phase::Serving { ref cur, .. }
            | Phase::Opening { ref cur }
            | Phase::Overlap { ref cur, .. }
                if self.now >= self.dead_at(cur) =>
            {
                counter!(WS_RECONNECTS, "reason" => "dead").increment(1);
                tracing::warn!(group = self.group, conn = cur.id, silent_for = ?self.timing.dead_timeout, "connection dead: no message and no ping");
                self.lost(phase)
            }
            Phase::Overlap { cur, repl, held }
                if self.settle_at(&repl).is_some_and(|s| self.now >= s) =>
            {
                // Subscribed and quiet for `switch_settle`: taken as receiving.
                self.start_drain(cur, repl, held)
            }
            Phase::Draining { cur, until, next } if self.now >= until => {
                tracing::warn!(
                    group = self.group,
                    conn = cur.id,
                    "old connection did not finish closing; dropped"
                );
                self.old_closed(cur, next)
            }
            p => p,
        }
    }

    /// The current connection is gone (not by a close of ours): go on with the
    /// replacement if there is one, or the one being opened, else reconnect.
    pub(super) fn lost(&mut self, phase: Phase<T>) -> Phase<T> {
        match phase {
            Phase::Overlap { cur, repl, held } => self.promote(cur, repl, held),
            Phase::Opening { .. } => {
                self.out.extend([Action::DropCurrent]);
                Phase::Connecting
            }
            Phase::Serving { .. } => {
                self.out.extend([Action::DropCurrent]);
                self.reconnect_later()
            }
            p => p,
        }
    }

    /// The old connection finished closing (or was given up on): switch to the
    /// replacement, or, if it was lost meanwhile, release what it had received and go
    /// on with the one being opened (or reconnect).
    pub(super) fn old_closed(&mut self, old: Link, next: Successor<T>) -> Phase<T> {
        match next {
            Successor::Open { repl, held } => self.promote(old, repl, held),
            Successor::Reopening { orphans } => {
                self.release(orphans);
                Phase::Connecting
            }
            Successor::Orphaned { orphans } => {
                self.release(orphans);
                self.reconnect_later()
            }
        }
    }

    /// Switches to the replacement: the old connection is dropped first, then the
    /// replacement's held trades are released in order.
    pub(super) fn promote(&mut self, old: Link, new: Link, held: Vec<T>) -> Phase<T> {
        tracing::info!(
            group = self.group,
            from = old.id,
            to = new.id,
            held = held.len(),
            "switched connection"
        );
        self.out.extend([Action::Promote]);
        self.out.extend(held.into_iter().map(Action::Forward));
        Phase::Serving {
            cur: new,
            retry_at: None,
        }
    }

    pub(super) fn start_drain(&mut self, cur: Link, repl: Link, held: Vec<T>) -> Phase<T> {
        self.out.extend([Action::StartDrain]);
        Phase::Draining {
            cur,
            until: self.now + self.timing.drain_timeout,
            next: Successor::Open { repl, held },
        }
    }

    pub(super) fn reconnect_later(&mut self) -> Phase<T> {
        let delay = self.retry_in(&"connection ended");
        Phase::Waiting {
            until: self.now + delay,
        }
    }

    /// The wait before the next connection attempt. The retry counts it and logs it at
    /// a bounded rate (the first failure of a run always, then one line per
    /// `retry::LOG_EVERY` saying how many it did not log).
    fn retry_in(&mut self, why: &dyn Display) -> Duration {
        let Next::RetryIn(wait) = self.retry.failed(&self.group.to_string(), why) else {
            unreachable!("reconnects are retried forever")
        };
        wait
    }

    /// The old connection is dropped, then what a lost replacement received goes out:
    /// the old one will not deliver it any more.
    fn release(&mut self, orphans: Vec<T>) {
        self.out.push(Action::DropCurrent);
        self.out.extend(orphans.into_iter().map(Action::Forward));
    }
}
