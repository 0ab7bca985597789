//! LISTEN/NOTIFY: wakes the claim loop when tasks are created or a queue's settings change, and
//! aborts handlers of tasks canceled while running. Polling covers anything missed while the
//! connection was down.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use super::state::WorkerState;
use crate::queue::{
    Announcement, ClaimKey, TaskId, CHANNEL_QUEUE_CHANGED, CHANNEL_TASKS_READY,
    CHANNEL_TASK_AVAILABLE, CHANNEL_TASK_CANCELED,
};

/// Pause before reconnecting after the listener failed.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

pub(super) async fn run(state: Arc<WorkerState>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        if let Err(e) = listen(&state, &stop).await {
            tracing::warn!(error = %e, "notification listener failed; polling until it reconnects");
            tokio::select! {
                _ = tokio::time::sleep(RECONNECT_PAUSE) => {}
                _ = stop.cancelled() => {}
            }
        }
    }
}

async fn listen(state: &WorkerState, stop: &CancellationToken) -> Result<(), sqlx::Error> {
    let mut listener = match &state.config.session_database {
        // A pool of one that connects when the listener asks, and again when it reconnects.
        Some(session) => {
            let direct = PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(session.options().clone());
            PgListener::connect_with(&direct).await?
        }
        None => PgListener::connect_with(&state.pool).await?,
    };
    listener
        .listen_all([
            CHANNEL_TASKS_READY,
            CHANNEL_TASK_AVAILABLE,
            CHANNEL_TASK_CANCELED,
            CHANNEL_QUEUE_CHANGED,
        ])
        .await?;
    // Anything sent while we were not listening is found by one claim now.
    state.look_at_every_queue.store(true, Ordering::Release);
    state.work_available.notify_one();
    loop {
        let received = tokio::select! {
            received = listener.try_recv() => received?,
            _ = stop.cancelled() => return Ok(()),
        };
        let Some(notification) = received else {
            // Connection lost; `try_recv` reconnects on the next call. Look in case we missed work.
            announce(state, "");
            continue;
        };
        match notification.channel() {
            CHANNEL_TASKS_READY | CHANNEL_TASK_AVAILABLE => announce(state, notification.payload()),
            CHANNEL_TASK_CANCELED => abort_canceled(state, notification.payload()),
            // A resumed queue's tasks are due now.
            CHANNEL_QUEUE_CHANGED => announce(state, ""),
            _ => {}
        }
    }
}

/// Tells the claim loop what a notification on the available channel announced (see
/// [`Announcement::parse`]).
fn announce(state: &WorkerState, payload: &str) {
    match Announcement::parse(payload) {
        Announcement::Look => state.look_at_every_queue.store(true, Ordering::Release),
        Announcement::Ready { queue, first } => {
            let from = first.unwrap_or(ClaimKey::START);
            let mut announced = state
                .announced
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            announced
                .entry((queue, from.neg_priority))
                .and_modify(|known| *known = (*known).min(from))
                .or_insert(from);
        }
    }
    state.work_available.notify_one();
}

fn abort_canceled(state: &WorkerState, payload: &str) {
    let Ok(id) = payload.parse().map(TaskId) else {
        tracing::warn!(payload, "malformed cancel notification");
        return;
    };
    if state.running.abort(id, None) {
        tracing::info!(task_id = %id, "task canceled while running: aborting handler");
    }
}
