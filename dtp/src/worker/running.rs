//! The attempts this worker is running right now, each keyed by its task and [`Fence`], with
//! the token that aborts its handler and the instant until which its lease is surely still
//! ours.
//!
//! Keyed by fence, not by task alone: the same process can hold two attempts of one task (it
//! re-claimed a task whose claim the database lost), and each must be renewed, aborted and
//! removed on its own.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::queue::{ClaimedTask, Fence, TaskId};

struct Lease {
    abort: CancellationToken,
    /// When the last renewal that succeeded (or the claim) was sent.
    renewed_at: Instant,
    /// Measured on this process's monotonic clock: before it, no other process can have taken
    /// the task over (see `heartbeat`).
    ours_until: Instant,
}

/// Shared by the executor, the lease heartbeat and the cancel listener.
pub(crate) struct RunningTasks {
    /// How long after its claim or renewal was sent an attempt is surely ours
    /// (`WorkerConfig::lease_held`).
    held_for: Duration,
    attempts: Mutex<HashMap<(TaskId, Fence), Lease>>,
}

impl RunningTasks {
    pub(crate) fn new(held_for: Duration) -> Self {
        RunningTasks {
            held_for,
            attempts: Mutex::default(),
        }
    }

    /// Lists an attempt claimed by a statement sent at `claimed_at`. The lease was drawn by the
    /// database after that: counting from then errs on the safe side.
    pub(crate) fn insert(
        &self,
        id: TaskId,
        fence: Fence,
        abort: CancellationToken,
        claimed_at: Instant,
    ) {
        let attempt = Lease {
            abort,
            renewed_at: claimed_at,
            ours_until: claimed_at + self.held_for,
        };
        self.lock().insert((id, fence), attempt);
    }

    /// Lists `task`, claimed by a statement sent at `claimed_at`, as running, aborted by
    /// `abort`.
    pub(super) fn hold(
        &self,
        task: ClaimedTask,
        abort: CancellationToken,
        claimed_at: Instant,
    ) -> Attempt {
        self.insert(task.task_id(), task.fence(), abort.clone(), claimed_at);
        Attempt {
            task,
            held_since: Instant::now(),
            abort,
        }
    }

    pub(crate) fn remove(&self, id: TaskId, fence: Fence) {
        self.lock().remove(&(id, fence));
    }

    /// Every held `(task, fence)`, for lease renewal.
    pub(crate) fn held(&self) -> Vec<(TaskId, Fence)> {
        self.lock().keys().copied().collect()
    }

    /// The lease of each attempt in `renewed` was renewed by a statement sent at `sent`.
    pub(crate) fn renewed(&self, renewed: &[(TaskId, Fence)], sent: Instant) {
        let until = sent + self.held_for;
        let mut attempts = self.lock();
        for key in renewed {
            if let Some(attempt) = attempts.get_mut(key) {
                attempt.renewed_at = attempt.renewed_at.max(sent);
                attempt.ours_until = attempt.ours_until.max(until);
            }
        }
    }

    /// The server was seen down by a statement sent at `sent`: nobody can take a task over for
    /// a lease after that, so every lease not yet lapsed is ours as if renewed then, but never
    /// more than `most` after its last renewal: what looks like a server down to this process
    /// alone (a firewall that rejects) must not keep a handler running for ever. A lapsed one
    /// stays lapsed: it may have been taken over before the server went down.
    pub(crate) fn extend_live(&self, now: Instant, sent: Instant, most: Duration) {
        let until = sent + self.held_for;
        for attempt in self.lock().values_mut() {
            if attempt.ours_until > now {
                let cap = attempt.renewed_at + most;
                attempt.ours_until = attempt.ours_until.max(until.min(cap));
            }
        }
    }

    /// Resolves once the attempt's lease may no longer be ours (or it is no longer listed):
    /// from then on another process may run the task, so nothing may wait on its behalf.
    pub(crate) async fn lapsed(&self, id: TaskId, fence: Fence) {
        loop {
            let ours_until = self.lock().get(&(id, fence)).map(|a| a.ours_until);
            match ours_until {
                Some(until) if until > Instant::now() => {
                    tokio::time::sleep_until(until.into()).await;
                }
                _ => return,
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

    fn lock(&self) -> MutexGuard<'_, HashMap<(TaskId, Fence), Lease>> {
        // A panic while holding this lock cannot leave the map half-updated: every operation is
        // a single insert, remove, or update of one field.
        self.attempts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A claimed attempt not yet started, listed in `running` from its claim: its lease is renewed,
/// and a cancel or a lapsed lease aborts it, also while it waits for a slot
/// ([`ClaimedAhead`](super::ahead::ClaimedAhead)).
pub(super) struct Attempt {
    pub(super) task: ClaimedTask,
    /// When its claim's answer arrived.
    pub(super) held_since: Instant,
    pub(super) abort: CancellationToken,
}

impl Attempt {
    /// The task and the fence of this attempt.
    pub(super) fn key(&self) -> (TaskId, Fence) {
        (self.task.task_id(), self.task.fence())
    }
}
