//! The connections serving one slice of the streams: one at a time, two while one
//! replaces the other. This is the I/O side only: it waits for whatever can happen
//! (a message on either connection, the connect attempt, the state machine's timer,
//! shutdown), hands it to `GroupState` and carries out the actions it returns.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::conn::{close_briefly, connect, start_drain, Conn};
use super::group_state::{Action, Event, GroupState, Role, Timing};
use super::limits::{reconnect_retry, AttemptWindow};
use super::{message, BinanceConfig, BinanceError};
use crate::source::{SourceTrade, TradeTx};

type Connecting = Pin<Box<dyn Future<Output = Result<Conn, BinanceError>> + Send>>;

pub(super) struct Group {
    pub(super) idx: usize,
    pub(super) streams: Vec<String>,
    pub(super) cfg: Arc<BinanceConfig>,
    pub(super) limiter: Arc<Mutex<AttemptWindow>>,
    pub(super) tx: TradeTx,
    pub(super) shutdown: CancellationToken,
    pub(super) next_conn: u64,
}

/// The sockets, in the seats the state machine gave them.
#[derive(Default)]
struct Seats {
    cur: Option<Conn>,
    repl: Option<Conn>,
    /// Just opened, not seated yet.
    arrived: Option<Conn>,
    connecting: Option<Connecting>,
}

impl Group {
    /// Runs until shutdown; an error only if the trade channel closes before it.
    pub(super) async fn run(mut self) -> Result<(), BinanceError> {
        let cfg = self.cfg.clone();
        let timing = Timing {
            dead_timeout: cfg.dead_timeout,
            max_connection_age: cfg.max_connection_age,
            switch_settle: cfg.switch_settle,
            drain_timeout: cfg.drain_timeout,
            max_held: cfg.max_held,
        };
        let retry = reconnect_retry(cfg.backoff_min, cfg.backoff_max);
        let mut state = GroupState::new(self.idx, timing, retry, Instant::now());
        let mut seats = Seats::default();
        let mut actions = VecDeque::new();
        let far = Instant::now() + Duration::from_secs(10 * 365 * 24 * 3600);
        loop {
            let deadline = state.deadline();
            let read_repl = state.may_read_replacement();
            let event = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => Event::Shutdown,
                _ = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => Event::Tick,
                r = async { seats.connecting.as_mut().expect("guarded").await }, if seats.connecting.is_some() => {
                    seats.connecting = None;
                    match r {
                        Ok(c) => {
                            let link = c.link();
                            seats.arrived = Some(c);
                            Event::Connected(link)
                        }
                        Err(e) => Event::ConnectFailed(e.to_string()),
                    }
                }
                msg = async { seats.cur.as_mut().expect("guarded").ws.next().await }, if seats.cur.is_some() => {
                    let id = seats.cur.as_ref().expect("guarded").id;
                    Event::Message(Role::Current, message::read(id, msg))
                }
                // Not read while its held trades are at the limit (`overlap.rs`).
                msg = async { seats.repl.as_mut().expect("guarded").ws.next().await }, if seats.repl.is_some() && read_repl => {
                    let id = seats.repl.as_ref().expect("guarded").id;
                    Event::Message(Role::Replacement, message::read(id, msg))
                }
            };
            let before = state.kind();
            actions.extend(state.on(event, Instant::now()));
            if state.kind() != before {
                tracing::debug!(group = self.idx, from = ?before, to = ?state.kind(), "connection group state");
            }
            while let Some(action) = actions.pop_front() {
                if !self
                    .execute(action, &mut seats, &mut state, &mut actions)
                    .await?
                {
                    return Ok(());
                }
            }
            // A connection nothing was waiting for (none is, by design) is not kept.
            seats.arrived = None;
        }
    }

    /// Carries out one action; `false` once the group is to end.
    async fn execute(
        &mut self,
        action: Action<SourceTrade>,
        seats: &mut Seats,
        state: &mut GroupState<SourceTrade>,
        more: &mut VecDeque<Action<SourceTrade>>,
    ) -> Result<bool, BinanceError> {
        match action {
            Action::Connect => seats.connecting = Some(self.connect_future()),
            Action::Seat(Role::Current) => seats.cur = seats.arrived.take(),
            Action::Seat(Role::Replacement) => seats.repl = seats.arrived.take(),
            Action::Forward(t) => self.forward(t).await?,
            Action::StartDrain => {
                if let Some(cur) = seats.cur.as_mut() {
                    start_drain(cur, self.cfg.drain_timeout).await;
                }
                more.extend(state.on(Event::DrainStarted, Instant::now()));
            }
            Action::DropCurrent => seats.cur = None,
            Action::CloseReplacement => {
                if let Some(r) = seats.repl.take() {
                    close_briefly(r).await;
                }
            }
            Action::DropReplacement => seats.repl = None,
            Action::Promote => seats.cur = seats.repl.take(),
            Action::Stop => {
                for conn in [seats.cur.take(), seats.repl.take()].into_iter().flatten() {
                    close_briefly(conn).await;
                }
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn connect_future(&mut self) -> Connecting {
        self.next_conn += 1;
        Box::pin(connect(
            self.cfg.clone(),
            self.limiter.clone(),
            self.streams.clone(),
            self.idx,
            self.next_conn,
        ))
    }

    async fn forward(&mut self, t: SourceTrade) -> Result<(), BinanceError> {
        if self.tx.send(t).await.is_err() {
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            return Err(BinanceError::ChannelClosed);
        }
        Ok(())
    }
}
