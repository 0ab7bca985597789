//! Lease renewal: one statement renews every lease this worker holds. A task whose renewal
//! fails was canceled or rescued, so its handler is aborted: the renewal doubles as the fallback
//! for a missed cancel notification.

use std::collections::HashSet;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::queue;

pub(super) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(shared.config.heartbeat_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => renew(&shared).await,
            _ = stop.cancelled() => return,
        }
    }
}

async fn renew(shared: &Shared) {
    let held = shared.running.held();
    if held.is_empty() {
        return;
    }
    match queue::renew_leases(&shared.pool, &held, shared.config.lease).await {
        Ok(renewed) => {
            let renewed: HashSet<_> = renewed.into_iter().collect();
            for (id, fence) in held.into_iter().filter(|(id, _)| !renewed.contains(id)) {
                if shared.running.abort(id, Some(fence)) {
                    tracing::info!(task_id = %id, attempt = fence.attempt, "lease not renewed (canceled or rescued): aborting handler");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, held = held.len(), "lease renewal failed"),
    }
}
