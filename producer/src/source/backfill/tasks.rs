//! The fetch tasks running, each with the gap it serves kept beside it: a task that
//! panicked or was cancelled still names its gap, so the symbol's held trades are
//! released instead of waiting forever.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinError, JoinSet};

use super::Fetch;
use crate::source::SourceTrade;

/// What a fetch task returns: the trades it got and, if incomplete, why.
pub(super) type Outcome = (Vec<SourceTrade>, Option<&'static str>);

pub(super) struct Running {
    set: JoinSet<Outcome>,
    fetches: HashMap<Id, Fetch>,
}

impl Running {
    pub(super) fn new() -> Self {
        Running {
            set: JoinSet::new(),
            fetches: HashMap::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.set.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub(super) fn spawn(
        &mut self,
        fetch: Fetch,
        task: impl Future<Output = Outcome> + Send + 'static,
    ) {
        let id = self.set.spawn(task).id();
        self.fetches.insert(id, fetch);
    }

    /// The next task to end, with its gap; `None` when none is running.
    pub(super) async fn join_next(&mut self) -> Option<(Fetch, Result<Outcome, JoinError>)> {
        loop {
            let (id, r) = match self.set.join_next_with_id().await? {
                Ok((id, out)) => (id, Ok(out)),
                Err(e) => (e.id(), Err(e)),
            };
            // Every spawned task has its entry; a missing one would be a bug here, and
            // skipping it beats a panic in the loop that serves every symbol.
            if let Some(f) = self.fetches.remove(&id) {
                return Some((f, r));
            }
        }
    }

    pub(super) fn abort_all(&mut self) {
        self.set.abort_all();
    }
}
