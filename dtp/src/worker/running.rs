//! The attempts this worker is running right now, each keyed by its task and [`Fence`], with
//! the token that aborts its handler and the instant until which its lease is surely still
//! ours.
//!
//! Keyed by fence, not by task alone: the same process can hold two attempts of one task (it
//! re-claimed a task whose claim the database lost), and each must be renewed, aborted and
//! removed on its own.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::queue::{Fence, TaskId};

struct Attempt {
    abort: CancellationToken,
    /// Measured on this process's monotonic clock: before it, no other process can have taken
    /// the task over (see `heartbeat`).
    ours_until: Instant,
}

/// Shared by the executor, the lease heartbeat and the cancel listener.
#[derive(Default)]
pub(crate) struct RunningTasks {
    attempts: Mutex<HashMap<(TaskId, Fence), Attempt>>,
}

impl RunningTasks {
    pub(crate) fn insert(
        &self,
        id: TaskId,
        fence: Fence,
        abort: CancellationToken,
        ours_until: Instant,
    ) {
        self.lock()
            .insert((id, fence), Attempt { abort, ours_until });
    }

    pub(crate) fn remove(&self, id: TaskId, fence: Fence) {
        self.lock().remove(&(id, fence));
    }

    /// Every held `(task, fence)`, for lease renewal.
    pub(crate) fn held(&self) -> Vec<(TaskId, Fence)> {
        self.lock().keys().copied().collect()
    }

    /// The lease of each attempt in `renewed` is ours until at least `until`.
    pub(crate) fn renewed(&self, renewed: &[(TaskId, Fence)], until: Instant) {
        let mut attempts = self.lock();
        for key in renewed {
            if let Some(attempt) = attempts.get_mut(key) {
                attempt.ours_until = attempt.ours_until.max(until);
            }
        }
    }

    /// Every lease not yet lapsed is ours until at least `until` (the server was seen down, so
    /// nobody can take a task over before then). A lapsed one stays lapsed: it may have been
    /// taken over before the server went down.
    pub(crate) fn extend_live(&self, now: Instant, until: Instant) {
        for attempt in self.lock().values_mut() {
            if attempt.ours_until > now {
                attempt.ours_until = attempt.ours_until.max(until);
            }
        }
    }

    /// Aborts every attempt whose lease may no longer be ours at `now`; returns them. They stay
    /// listed until their executor removes them.
    pub(crate) fn abort_lapsed(&self, now: Instant) -> Vec<(TaskId, Fence)> {
        self.lock()
            .iter()
            .filter(|(_, attempt)| attempt.ours_until <= now && !attempt.abort.is_cancelled())
            .map(|(key, attempt)| {
                attempt.abort.cancel();
                *key
            })
            .collect()
    }

    /// Aborts the handler of the attempt `fence` of `id`, or of every attempt of `id` when
    /// `None`. Returns whether a handler was signalled.
    pub(crate) fn abort(&self, id: TaskId, fence: Option<Fence>) -> bool {
        let attempts = self.lock();
        let mut signalled = false;
        for ((task, held), attempt) in attempts.iter() {
            if *task == id && fence.is_none_or(|f| f == *held) {
                attempt.abort.cancel();
                signalled = true;
            }
        }
        signalled
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(TaskId, Fence), Attempt>> {
        // A panic while holding this lock cannot leave the map half-updated: every operation is
        // a single insert, remove, or update of one field.
        self.attempts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
