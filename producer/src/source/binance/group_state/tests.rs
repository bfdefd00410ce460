//! Every transition of the group's state machine, without sockets: trades are numbers,
//! time is an instant the test moves.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::source::binance::limits::reconnect_retry;

const SEC: Duration = Duration::from_secs(1);
const AGE: Duration = Duration::from_secs(1000);
const DEAD: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(5);
const DRAIN: Duration = Duration::from_secs(5);
const MAX_HELD: usize = 3;

/// A machine and a clock.
struct T {
    g: GroupState<u32>,
    t0: Instant,
    now: Instant,
    next_id: u64,
}

type A = Action<u32>;

impl T {
    fn new() -> Self {
        let timing = Timing {
            dead_timeout: DEAD,
            max_connection_age: AGE,
            switch_settle: SETTLE,
            drain_timeout: DRAIN,
            max_held: MAX_HELD,
        };
        let t0 = Instant::now();
        T {
            g: GroupState::new(0, timing, reconnect_retry(SEC, 8 * SEC), t0),
            t0,
            now: t0,
            next_id: 0,
        }
    }

    /// A group serving connection 1 (no SUBSCRIBE replies due), opened at `t0`.
    fn serving() -> Self {
        let mut t = T::new();
        assert_eq!(t.ev(Event::Tick), [A::Connect]);
        assert_eq!(t.connected(0), [A::Seat(Role::Current)]);
        assert_eq!(t.g.kind(), Kind::Serving);
        t
    }

    /// Serving (and hearing pings), then the 24 h cut is due: a replacement is being
    /// opened.
    fn rotating() -> Self {
        let mut t = T::serving();
        t.at(AGE);
        assert_eq!(t.cur(Msg::Other), []);
        assert_eq!(t.ev(Event::Tick), [A::Connect]);
        assert_eq!(t.g.kind(), Kind::Opening);
        t
    }

    /// The replacement (2) opened with `acks` SUBSCRIBE replies due.
    fn overlap(acks: usize) -> Self {
        let mut t = T::rotating();
        assert_eq!(t.connected(acks), [A::Seat(Role::Replacement)]);
        assert_eq!(t.g.kind(), Kind::Overlap);
        t
    }

    /// The replacement (holding 10) is receiving; the old connection closes.
    fn draining() -> Self {
        let mut t = T::overlap(0);
        assert_eq!(t.repl(Msg::Trade(10)), [A::StartDrain]);
        assert_eq!(t.ev(Event::DrainStarted), []);
        assert_eq!(t.g.kind(), Kind::Draining);
        t
    }

    fn at(&mut self, since_t0: Duration) {
        self.now = self.t0 + since_t0;
    }

    fn ev(&mut self, e: Event<u32>) -> Vec<A> {
        self.g.on(e, self.now).collect()
    }

    fn connected(&mut self, acks: usize) -> Vec<A> {
        self.next_id += 1;
        let link = Link::new(self.next_id, self.now, acks);
        self.ev(Event::Connected(link))
    }

    fn cur(&mut self, m: Msg<u32>) -> Vec<A> {
        self.ev(Event::Message(Role::Current, m))
    }

    fn repl(&mut self, m: Msg<u32>) -> Vec<A> {
        self.ev(Event::Message(Role::Replacement, m))
    }

    fn failed(&mut self) -> Vec<A> {
        self.ev(Event::ConnectFailed("refused".into()))
    }

    /// The deadline, from now.
    fn wait(&self) -> Duration {
        self.g.deadline().expect("a deadline") - self.now
    }
}

fn forwards(ids: &[u32]) -> Vec<A> {
    ids.iter().map(|i| A::Forward(*i)).collect()
}

#[test]
fn connects_at_once_and_backs_off_after_failures_until_a_trade() {
    let mut t = T::new();
    assert_eq!(t.g.kind(), Kind::Waiting);
    assert_eq!(t.g.deadline(), Some(t.now));
    assert_eq!(t.ev(Event::Tick), [A::Connect]);
    assert_eq!(t.g.kind(), Kind::Connecting);
    assert_eq!(t.g.deadline(), None, "the attempt itself is bounded");
    // Failures: equal-jitter delays under a doubling ceiling.
    for ceiling in [1, 2, 4] {
        assert_eq!(t.failed(), []);
        assert_eq!(t.g.kind(), Kind::Waiting);
        let w = t.wait();
        assert!(w >= ceiling * SEC / 2 && w <= ceiling * SEC, "{w:?}");
        t.now += w;
        assert_eq!(t.ev(Event::Tick), [A::Connect]);
    }
    assert_eq!(t.connected(0), [A::Seat(Role::Current)]);
    // A connection that never traded does not reset the backoff …
    assert_eq!(t.cur(Msg::Ended("eof")), [A::DropCurrent]);
    assert!(t.wait() >= 4 * SEC, "{:?}", t.wait());
    t.now += t.wait();
    assert_eq!(t.ev(Event::Tick), [A::Connect]);
    assert_eq!(t.connected(0), [A::Seat(Role::Current)]);
    // … one that traded does.
    assert_eq!(t.cur(Msg::Trade(1)), forwards(&[1]));
    assert_eq!(t.cur(Msg::Ended("closed")), [A::DropCurrent]);
    assert!(t.wait() <= SEC, "{:?}", t.wait());
}

#[test]
fn a_silent_connection_is_dead_and_any_message_keeps_it_alive() {
    let mut t = T::serving();
    assert_eq!(t.wait(), DEAD);
    t.at(DEAD - SEC);
    assert_eq!(t.ev(Event::Tick), [], "not yet");
    assert_eq!(t.cur(Msg::Other), []);
    assert_eq!(t.wait(), DEAD);
    t.at(2 * DEAD - SEC);
    assert_eq!(t.ev(Event::Tick), [A::DropCurrent]);
    assert_eq!(t.g.kind(), Kind::Waiting);
}

#[test]
fn rotation_overlaps_and_switches_after_the_old_connection_closed() {
    // The replacement owes two SUBSCRIBE replies: its trades are held.
    let mut t = T::overlap(2);
    assert_eq!(t.repl(Msg::Trade(10)), []);
    assert_eq!(t.repl(Msg::Ack), []);
    assert_eq!(
        t.cur(Msg::Trade(8)),
        forwards(&[8]),
        "the old one still delivers"
    );
    assert_eq!(t.repl(Msg::Ack), []);
    // Subscribed and receiving: the old connection is closed.
    assert_eq!(t.repl(Msg::Trade(11)), [A::StartDrain]);
    assert_eq!(t.g.kind(), Kind::Draining);
    assert_eq!(t.ev(Event::DrainStarted), []);
    assert_eq!(t.wait(), DRAIN);
    assert_eq!(
        t.cur(Msg::Trade(9)),
        forwards(&[9]),
        "in flight before the close"
    );
    assert_eq!(t.repl(Msg::Trade(12)), []);
    // Closed: the switch, then the held trades in order.
    let mut want = vec![A::Promote];
    want.extend(forwards(&[10, 11, 12]));
    assert_eq!(t.cur(Msg::Ended("closed")), want);
    assert_eq!(t.g.kind(), Kind::Serving);
    assert_eq!(t.cur(Msg::Trade(13)), forwards(&[13]));
    // The new connection's age counts from its own opening.
    assert_eq!(t.wait(), DEAD.min(AGE));
}

#[test]
fn a_subscribed_but_quiet_replacement_is_taken_as_receiving_after_the_settle_time() {
    let mut t = T::overlap(1);
    assert_eq!(t.wait(), DEAD, "no settle timer while a reply is due");
    assert_eq!(t.repl(Msg::Ack), []);
    assert_eq!(t.wait(), SETTLE);
    t.now += SETTLE;
    assert_eq!(t.ev(Event::Tick), [A::StartDrain]);
    assert_eq!(t.g.kind(), Kind::Draining);
}

#[test]
fn the_drain_deadline_counts_from_when_the_close_frame_went_out() {
    let mut t = T::overlap(0);
    assert_eq!(t.repl(Msg::Trade(10)), [A::StartDrain]);
    t.now += 3 * SEC; // sending the close frame took a while
    assert_eq!(t.ev(Event::DrainStarted), []);
    assert_eq!(t.wait(), DRAIN);
}

#[test]
fn an_old_connection_that_never_finishes_closing_is_dropped_at_the_deadline() {
    let mut t = T::draining();
    t.now += DEAD * 2;
    // No dead-connection verdict while it closes: only the drain deadline.
    let mut want = vec![A::Promote];
    want.extend(forwards(&[10]));
    assert_eq!(t.ev(Event::Tick), want);
    assert_eq!(t.g.kind(), Kind::Serving);
}

#[test]
fn server_shutdown_rotates_at_once_and_only_once() {
    let mut t = T::serving();
    t.at(10 * SEC);
    assert_eq!(t.cur(Msg::ServerShutdown), []);
    assert_eq!(t.wait(), Duration::ZERO);
    assert_eq!(t.ev(Event::Tick), [A::Connect]);
    // During the rotation another notice changes nothing: one replacement at a time.
    assert_eq!(t.cur(Msg::ServerShutdown), []);
    assert_eq!(t.ev(Event::Tick), []);
    assert_eq!(t.g.kind(), Kind::Opening);
    assert_eq!(t.connected(1), [A::Seat(Role::Replacement)]);
    assert_eq!(t.cur(Msg::ServerShutdown), []);
    assert_eq!(t.g.kind(), Kind::Overlap);
}

#[test]
fn server_shutdown_on_the_replacement_rotates_it_right_after_the_switch() {
    let mut t = T::overlap(0);
    assert_eq!(t.repl(Msg::ServerShutdown), []);
    assert_eq!(t.repl(Msg::Trade(10)), [A::StartDrain]);
    let mut want = vec![A::Promote];
    want.extend(forwards(&[10]));
    assert_eq!(t.cur(Msg::Ended("closed")), want);
    assert_eq!(t.wait(), Duration::ZERO);
    assert_eq!(t.ev(Event::Tick), [A::Connect]);
    assert_eq!(t.g.kind(), Kind::Opening);
}

#[test]
fn a_replacement_that_cannot_be_opened_is_retried_after_the_backoff() {
    let mut t = T::rotating();
    assert_eq!(t.failed(), []);
    assert_eq!(t.g.kind(), Kind::Serving, "the old connection goes on");
    let w = t.wait();
    assert!(w >= SEC / 2 && w <= SEC, "{w:?}");
    t.now += w / 2;
    assert_eq!(t.ev(Event::Tick), [], "not before the retry");
    t.now += w;
    assert_eq!(t.ev(Event::Tick), [A::Connect]);
    assert_eq!(t.g.kind(), Kind::Opening);
}

#[test]
fn a_replacement_lost_before_the_switch_is_dropped_with_its_held_trades() {
    let mut t = T::overlap(1);
    assert_eq!(t.repl(Msg::Trade(10)), []);
    // Not forwarded: the old connection, still open, delivers them.
    assert_eq!(t.repl(Msg::Ended("eof")), [A::DropReplacement]);
    assert_eq!(t.g.kind(), Kind::Serving);
    let w = t.wait();
    assert!(
        w >= SEC / 2 && w <= SEC,
        "rotation retried after the backoff: {w:?}"
    );
    assert_eq!(t.cur(Msg::Trade(10)), forwards(&[10]));
}

#[test]
fn the_current_connection_lost_during_the_overlap_hands_over_to_the_replacement() {
    let mut t = T::overlap(2);
    assert_eq!(t.repl(Msg::Trade(10)), []);
    let mut want = vec![A::Promote];
    want.extend(forwards(&[10]));
    assert_eq!(t.cur(Msg::Ended("error")), want);
    assert_eq!(t.g.kind(), Kind::Serving);
    // Or dead rather than closed.
    let mut t = T::overlap(2);
    t.now += DEAD;
    assert_eq!(t.ev(Event::Tick), [A::Promote]);
}

#[test]
fn the_current_connection_lost_while_the_replacement_opens_waits_for_it() {
    let mut t = T::rotating();
    assert_eq!(t.cur(Msg::Ended("eof")), [A::DropCurrent]);
    assert_eq!(t.g.kind(), Kind::Connecting);
    assert_eq!(
        t.connected(0),
        [A::Seat(Role::Current)],
        "the attempt is now the primary"
    );
    assert_eq!(t.g.kind(), Kind::Serving);
    // The same attempt failing: reconnect after the backoff.
    let mut t = T::rotating();
    t.now += DEAD; // dead while opening
    assert_eq!(t.ev(Event::Tick), [A::DropCurrent]);
    assert_eq!(t.failed(), []);
    assert_eq!(t.g.kind(), Kind::Waiting);
}

#[test]
fn a_replacement_lost_while_the_old_one_closes_is_reopened_and_its_trades_go_first() {
    let mut t = T::draining();
    assert_eq!(t.repl(Msg::Trade(11)), []);
    assert_eq!(
        t.repl(Msg::Ended("eof")),
        [A::DropReplacement, A::Connect],
        "reconnect during the drain, at once"
    );
    assert_eq!(t.g.kind(), Kind::DrainingReopening);
    assert_eq!(t.cur(Msg::Trade(9)), forwards(&[9]));
    assert_eq!(t.connected(0), [A::Seat(Role::Replacement)]);
    assert_eq!(t.g.kind(), Kind::Draining);
    assert_eq!(
        t.repl(Msg::Trade(12)),
        [],
        "held with the orphans, after them"
    );
    let mut want = vec![A::Promote];
    want.extend(forwards(&[10, 11, 12]));
    assert_eq!(t.cur(Msg::Ended("closed")), want);
}

#[test]
fn orphaned_trades_go_out_when_the_old_connection_closes_before_the_next_one_opens() {
    let mut t = T::draining();
    assert_eq!(t.repl(Msg::Ended("eof")), [A::DropReplacement, A::Connect]);
    let mut want = vec![A::DropCurrent];
    want.extend(forwards(&[10]));
    assert_eq!(t.cur(Msg::Ended("closed")), want);
    assert_eq!(
        t.g.kind(),
        Kind::Connecting,
        "the attempt goes on as the primary"
    );
    assert_eq!(t.connected(0), [A::Seat(Role::Current)]);
    assert_eq!(t.cur(Msg::Trade(11)), forwards(&[11]));
}

#[test]
fn orphaned_trades_go_out_and_the_group_reconnects_if_the_reopening_failed() {
    let mut t = T::draining();
    assert_eq!(t.repl(Msg::Ended("eof")), [A::DropReplacement, A::Connect]);
    assert_eq!(t.failed(), []);
    assert_eq!(t.g.kind(), Kind::DrainingOrphaned);
    assert!(!t.g.may_read_replacement());
    t.now += DRAIN; // the old one never finishes closing
    let mut want = vec![A::DropCurrent];
    want.extend(forwards(&[10]));
    assert_eq!(t.ev(Event::Tick), want);
    assert_eq!(t.g.kind(), Kind::Waiting);
    t.now += t.wait();
    assert_eq!(t.ev(Event::Tick), [A::Connect]);
}

#[test]
fn a_replacement_at_the_held_limit_is_abandoned_while_the_old_one_is_open() {
    let mut t = T::overlap(1); // its reply never comes
    assert!(t.g.may_read_replacement());
    assert_eq!(t.repl(Msg::Trade(10)), []);
    assert_eq!(t.repl(Msg::Trade(11)), []);
    assert_eq!(t.repl(Msg::Trade(12)), [A::CloseReplacement]);
    assert_eq!(t.g.kind(), Kind::Serving);
    assert!(!t.g.may_read_replacement());
    let w = t.wait();
    assert!(w >= SEC / 2 && w <= SEC, "retried after the backoff: {w:?}");
    assert_eq!(t.cur(Msg::Trade(10)), forwards(&[10]));
}

#[test]
fn a_replacement_at_the_held_limit_is_paused_while_the_old_one_closes() {
    let mut t = T::draining();
    assert_eq!(t.repl(Msg::Trade(11)), []);
    assert!(t.g.may_read_replacement());
    assert_eq!(t.repl(Msg::Trade(12)), []);
    assert!(!t.g.may_read_replacement(), "not read at the limit");
    assert_eq!(t.g.kind(), Kind::Draining, "nothing is dropped");
    let mut want = vec![A::Promote];
    want.extend(forwards(&[10, 11, 12]));
    assert_eq!(t.cur(Msg::Ended("closed")), want);
}

#[test]
fn the_trade_that_reaches_the_limit_as_the_drain_starts_pauses_rather_than_abandons() {
    let mut t = T::overlap(1);
    assert_eq!(t.repl(Msg::Trade(10)), []);
    assert_eq!(t.repl(Msg::Trade(11)), []);
    assert_eq!(t.repl(Msg::Ack), []);
    assert_eq!(t.repl(Msg::Trade(12)), [A::StartDrain]);
    assert_eq!(t.g.kind(), Kind::Draining);
    assert!(!t.g.may_read_replacement());
}

#[test]
fn shutdown_stops_every_state_once() {
    for mut t in [T::new(), T::serving(), T::overlap(1), T::draining()] {
        assert_eq!(t.ev(Event::Shutdown), [A::Stop]);
        assert_eq!(t.g.kind(), Kind::Stopped);
        assert_eq!(t.g.deadline(), None);
        assert_eq!(t.ev(Event::Shutdown), []);
        assert_eq!(t.cur(Msg::Trade(1)), [], "nothing after the stop");
    }
}

#[test]
fn a_connection_nobody_waits_for_gets_no_seat() {
    let mut t = T::serving();
    assert_eq!(t.connected(0), []);
    assert_eq!(t.failed(), []);
    assert_eq!(t.g.kind(), Kind::Serving);
}
