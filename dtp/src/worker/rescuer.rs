//! The rescuer: every process looks for RUNNING tasks whose lease expired (their worker died,
//! hung, or lost the network) and counts the lost attempt as failed with "worker lost".

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::queue;

/// Tasks rescued per transaction; a larger backlog takes several rounds.
const RESCUE_BATCH: i64 = 100;

pub(super) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(shared.config.rescue_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if let Err(e) = rescue_expired(&shared).await {
                    tracing::warn!(error = %e, "rescue failed; will try again");
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}

/// Rescues every expired lease, a batch per transaction; returns how many tasks were rescued.
pub(super) async fn rescue_expired(shared: &Shared) -> Result<usize, sqlx::Error> {
    let mut total = 0;
    loop {
        let rescued = rescue_batch(shared).await?;
        total += rescued;
        if rescued < usize::try_from(RESCUE_BATCH).unwrap_or(usize::MAX) {
            if total > 0 {
                // Retries that are due at once should not wait for the next poll.
                shared.work_available.notify_one();
            }
            return Ok(total);
        }
    }
}

async fn rescue_batch(shared: &Shared) -> Result<usize, sqlx::Error> {
    let mut tx = shared.pool.begin().await?;
    let expired = queue::lock_expired(&mut tx, RESCUE_BATCH).await?;
    if expired.is_empty() {
        return Ok(0);
    }
    let lost: Vec<_> = expired
        .into_iter()
        .map(|task| {
            let delay = shared.config.backoff.delay(task.attempt_count);
            (task, delay)
        })
        .collect();
    let changed = queue::fail_expired(&mut tx, &lost).await?;
    tx.commit().await?;
    for (id, status) in &changed {
        let lost_by = lost
            .iter()
            .find(|(t, _)| t.task_id() == *id)
            .and_then(|(t, _)| t.worker_id.as_deref())
            .unwrap_or("?");
        tracing::warn!(task_id = %id, from = "RUNNING", to = %status, lost_by, "lease expired: worker lost");
    }
    Ok(changed.len())
}
