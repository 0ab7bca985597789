//! The tasks this worker is running right now, each with the token that aborts its handler.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

use crate::queue::TaskId;

/// Task id → (attempt, abort token), shared by the executor, the lease heartbeat and the
/// cancel listener.
#[derive(Debug, Default)]
pub(crate) struct RunningTasks {
    tasks: Mutex<HashMap<TaskId, (i32, CancellationToken)>>,
}

impl RunningTasks {
    pub(crate) fn insert(&self, id: TaskId, attempt: i32, abort: CancellationToken) {
        self.lock().insert(id, (attempt, abort));
    }

    pub(crate) fn remove(&self, id: TaskId) {
        self.lock().remove(&id);
    }

    /// Every held `(task, attempt)`, for lease renewal.
    pub(crate) fn held(&self) -> Vec<(TaskId, i32)> {
        self.lock()
            .iter()
            .map(|(id, (attempt, _))| (*id, *attempt))
            .collect()
    }

    /// Aborts the handler of `id` if it still runs `attempt` (any attempt when `None`).
    /// Returns whether a handler was signalled.
    pub(crate) fn abort(&self, id: TaskId, attempt: Option<i32>) -> bool {
        match self.lock().get(&id) {
            Some((held, token)) if attempt.is_none_or(|a| a == *held) => {
                token.cancel();
                true
            }
            _ => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, (i32, CancellationToken)>> {
        // A panic while holding this lock cannot leave the map half-updated: every operation is
        // a single insert/remove/read.
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
