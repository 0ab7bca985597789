//! LISTEN/NOTIFY: wakes the claim loop when tasks are created, and aborts handlers of tasks
//! canceled while running. Polling covers anything missed while the connection was down.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::state::WorkerState;
use crate::queue::{TaskId, CHANNEL_TASK_AVAILABLE, CHANNEL_TASK_CANCELED};

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
    let mut listener = PgListener::connect_with(&state.pool).await?;
    listener
        .listen_all([CHANNEL_TASK_AVAILABLE, CHANNEL_TASK_CANCELED])
        .await?;
    // Anything sent while we were not listening is found by one claim now.
    state.work_available.notify_one();
    loop {
        let received = tokio::select! {
            received = listener.try_recv() => received?,
            _ = stop.cancelled() => return Ok(()),
        };
        let Some(notification) = received else {
            // Connection lost; `try_recv` reconnects on the next call. Claim in case we missed work.
            state.work_available.notify_one();
            continue;
        };
        match notification.channel() {
            CHANNEL_TASK_AVAILABLE => state.work_available.notify_one(),
            CHANNEL_TASK_CANCELED => abort_canceled(state, notification.payload()),
            _ => {}
        }
    }
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
