//! The tasks this worker is running right now, each with the token that aborts its handler.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

use crate::queue::{Fence, TaskId};

/// Task id → (the attempt's fence, abort token), shared by the executor, the lease heartbeat and the
/// cancel listener.
#[derive(Debug, Default)]
pub(crate) struct RunningTasks {
    tasks: Mutex<HashMap<TaskId, (Fence, CancellationToken)>>,
}

impl RunningTasks {
    pub(crate) fn insert(&self, id: TaskId, fence: Fence, abort: CancellationToken) {
        self.lock().insert(id, (fence, abort));
    }

    pub(crate) fn remove(&self, id: TaskId) {
        self.lock().remove(&id);
    }

    /// Every held `(task, fence)`, for lease renewal.
    pub(crate) fn held(&self) -> Vec<(TaskId, Fence)> {
        self.lock()
            .iter()
            .map(|(id, (fence, _))| (*id, *fence))
            .collect()
    }

    /// Aborts the handler of `id` if it still runs the attempt of `fence` (any attempt when
    /// `None`). Returns whether a handler was signalled.
    pub(crate) fn abort(&self, id: TaskId, fence: Option<Fence>) -> bool {
        match self.lock().get(&id) {
            Some((held, token)) if fence.is_none_or(|f| f == *held) => {
                token.cancel();
                true
            }
            _ => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, (Fence, CancellationToken)>> {
        // A panic while holding this lock cannot leave the map half-updated: every operation is
        // a single insert/remove/read.
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
