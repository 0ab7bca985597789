//! Leases: one statement renews every lease this worker holds, and a watch stops the handlers
//! whose lease may have run out.
//!
//! A task whose renewal finds its fence broken was canceled or rescued, so its handler is
//! aborted: the renewal doubles as the fallback for a missed cancel notification.
//!
//! A worker that cannot renew at all (a network partition, a hung connection) must stop its
//! handlers before any other process may rescue their tasks, or two would run one task. Each
//! attempt is ours until `lease - margin` after the last renewal that succeeded was *sent*
//! (measured on this process's monotonic clock, so no clock on another host matters); the watch
//! aborts it then. One exception keeps healthy attempts alive across a database restart: when
//! the server itself says it is down (connection refused, starting up; behind a pooler, on the
//! direct connection and confirmed through the pooler, see [`confirm_server_down`]), no process
//! can rescue anything through it, and after it comes back rescuers wait one full lease
//! (`queue::lock_expired`, `rescuer`), so every attempt still ours stays ours for a lease from
//! then, up to [`OUTAGE_CARRIED_IN_LEASES`] leases after its last renewal. While the server is
//! down, renewal is retried every [`RETRY_WHILE_DOWN`], so that it happens as soon as the server
//! is back.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::connection::DedicatedConnection;
use super::state::WorkerState;
use crate::db::SessionDatabase;
use crate::queue::{self, TaskId};

/// How often renewal is retried while the server says it is down: when it is back, held leases
/// are renewed (and claims it lost in the crash found out) before other workers, reconnecting
/// after their own pauses, can claim those tasks again.
const RETRY_WHILE_DOWN: Duration = Duration::from_millis(100);
/// The longest outage (counted from the last renewal) across which a handler keeps running:
/// this many leases. A longer one, or a partition that only looks like an outage to this
/// process, ends with the handler stopped and its task rescued.
const OUTAGE_CARRIED_IN_LEASES: u32 = 4;

pub(super) async fn run(state: Arc<WorkerState>, stop: CancellationToken) {
    // Direct when the pool goes through a pooler: PgBouncer answers for a server it cannot
    // reach with errors of its own, so only a direct connection can tell a server that is down
    // (carry the handlers on) from one that is unreachable (stop them).
    let session = state.config.session_database.as_ref();
    let mut conn = DedicatedConnection::new(SessionDatabase::or_pool(session, &state.pool));
    // Behind a pooler, the way through it, to confirm an outage the direct connection reports.
    let mut pooled = session.map(|_| DedicatedConnection::for_pool(&state.pool));
    let interval = state.config.heartbeat_interval;
    let mut next = tokio::time::Instant::now() + interval;
    let mut server_down = false;
    report_presence(&state, &mut conn).await;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                let started = tokio::time::Instant::now();
                let renewal = renew(&state, &mut conn, pooled.as_mut()).await;
                if matches!(renewal, Renewal::Done) {
                    report_presence(&state, &mut conn).await;
                }
                // Said once per outage, not every RETRY_WHILE_DOWN.
                match (&renewal, server_down) {
                    (Renewal::ServerDown(e), false) => tracing::warn!(error = %e, held = state.running.len(), "lease renewal failed: the database is down; running handlers carry on"),
                    (Renewal::Done, true) => tracing::info!("database reachable again: leases renewed"),
                    (Renewal::Unconfirmed, _) => tracing::warn!("lease renewal: the direct connection is refused and the pooler did not answer in time; asking again"),
                    _ => {}
                }
                server_down = matches!(renewal, Renewal::ServerDown(_));
                next = match renewal {
                    Renewal::ServerDown(_) | Renewal::Unconfirmed => started + RETRY_WHILE_DOWN.min(interval),
                    Renewal::Done | Renewal::Failed => started + interval,
                };
            }
            _ = stop.cancelled() => break,
        }
    }
    conn.close().await;
    if let Some(pooled) = pooled {
        pooled.close().await;
    }
}

/// How long the pooler may take to confirm an outage the direct connection reports. A
/// PgBouncer that has not yet failed to log in to the server holds the statement until it
/// does; the round then asks again after [`RETRY_WHILE_DOWN`] instead of waiting.
const CONFIRM_PATIENCE: Duration = Duration::from_secs(1);

/// What the pooler says when the direct connection says the server is down.
enum Confirmation {
    /// The renewal went through the pooler: the server is up, its answer wins.
    Renewed(queue::Renewed),
    /// The pooler cannot reach a server either (its connection errors, or itself refused).
    Down,
    /// No answer in time.
    NoAnswer,
    /// Any other failure.
    Failed(sqlx::Error),
}

/// Behind a pooler, the direct connection's refusal says nothing of the server the pooler, and
/// through it every rescuer, reaches: a firewall may reject the direct port only, or after a
/// failover the pooler may lead to the new primary while the direct URL names the old one. So
/// the renewal is also tried through the pooler, whose answer wins; the server counts as down
/// only if the pooler cannot reach one either.
async fn confirm_server_down(
    pooled: &mut DedicatedConnection,
    held: &[(TaskId, queue::Fence)],
    lease: Duration,
    remaining: Duration,
) -> Confirmation {
    let asked = pooled
        .run_within(remaining.min(CONFIRM_PATIENCE), async |db| {
            queue::renew_leases(db, held, lease).await
        })
        .await;
    match asked {
        Ok(answer) => Confirmation::Renewed(answer),
        Err(sqlx::Error::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
            Confirmation::NoAnswer
        }
        Err(e) if apikit::db::is_unavailable(&e) => Confirmation::Down,
        Err(e) => Confirmation::Failed(e),
    }
}

/// Reports this worker as alive, with its busy slots, for operators (`GET /workers`). A failure
/// only costs the report: the next round tries again.
async fn report_presence(state: &WorkerState, conn: &mut DedicatedConnection) {
    let config = &state.config;
    let concurrency = config.concurrency.max(1);
    let busy = concurrency.saturating_sub(state.slots.available_permits());
    let (concurrency, busy) = (
        i32::try_from(concurrency).unwrap_or(i32::MAX),
        i32::try_from(busy).unwrap_or(i32::MAX),
    );
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let reported = conn
        .run_within(config.heartbeat_interval, async |db| {
            queue::report_worker(
                db,
                &config.worker_id,
                &host,
                concurrency,
                busy,
                &state.task_types,
            )
            .await
        })
        .await;
    if let Err(e) = reported {
        tracing::debug!(error = %e, "worker presence not reported");
    }
}

/// How often, and after what pause, a round asks again about rows another transaction held.
const BUSY_RETRIES: usize = 3;
const BUSY_PAUSE: Duration = Duration::from_millis(20);

/// How a round of renewal went.
enum Renewal {
    /// Renewed (or nothing was held).
    Done,
    /// The server said it is down.
    ServerDown(sqlx::Error),
    /// The direct connection said the server is down, and the pooler did not answer in time
    /// to confirm it: ask again soon, carrying nothing on meanwhile.
    Unconfirmed,
    /// Any other failure.
    Failed,
}

/// Aborts, every few milliseconds, the attempts whose lease may no longer be ours. Runs apart
/// from the renewal, which may be waiting on a database that does not answer.
pub(super) async fn watch(state: Arc<WorkerState>, stop: CancellationToken) {
    let every = (state.config.lease_margin() / 4).max(Duration::from_millis(5));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                for (id, fence) in state.running.abort_lapsed(Instant::now()) {
                    tracing::warn!(task_id = %id, attempt = fence.attempt, "lease not renewed in time (database unreachable): aborting handler before another process may take the task");
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}

async fn renew(
    state: &WorkerState,
    direct: &mut DedicatedConnection,
    pooled: Option<&mut DedicatedConnection>,
) -> Renewal {
    let held = state.running.held();
    if held.is_empty() {
        return Renewal::Done;
    }
    let config = &state.config;
    let sent = Instant::now();
    // A connection broken by a restart fails its first statement; a second, on a new
    // connection, tells at once whether the server is down or back.
    let mut outcome = Err(sqlx::Error::PoolClosed);
    for _ in 0..2 {
        let remaining = config.heartbeat_interval.saturating_sub(sent.elapsed());
        outcome = direct
            .run_within(remaining, async |db| {
                queue::renew_leases(db, &held, config.lease).await
            })
            .await;
        match &outcome {
            Err(e) if apikit::db::is_unavailable(e) && !apikit::db::is_server_down(e) => continue,
            _ => break,
        }
    }
    // The connection that answered, for the busy rows' second asking.
    let mut conn = direct;
    if let (Err(e), Some(pooled)) = (&outcome, pooled) {
        if apikit::db::is_server_down(e) {
            let remaining = config.heartbeat_interval.saturating_sub(sent.elapsed());
            match confirm_server_down(pooled, &held, config.lease, remaining).await {
                Confirmation::Renewed(answer) => {
                    outcome = Ok(answer);
                    conn = pooled;
                }
                Confirmation::Down => {}
                Confirmation::NoAnswer => return Renewal::Unconfirmed,
                Confirmation::Failed(e) => outcome = Err(e),
            }
        }
    }
    if let Ok(answer) = &mut outcome {
        // Rows another transaction was writing (the completer, a cancel) are asked about again
        // shortly, within this round: a lease must not go a whole round unrenewed because of a
        // lock held for milliseconds.
        for _ in 0..BUSY_RETRIES {
            if answer.busy.is_empty() {
                break;
            }
            tokio::time::sleep(BUSY_PAUSE).await;
            let busy: HashSet<TaskId> = answer.busy.iter().copied().collect();
            let again: Vec<_> = held
                .iter()
                .filter(|(id, _)| busy.contains(id))
                .copied()
                .collect();
            let remaining = config.heartbeat_interval.saturating_sub(sent.elapsed());
            let asked = conn
                .run_within(remaining, async |db| {
                    queue::renew_leases(db, &again, config.lease).await
                })
                .await;
            let Ok(again) = asked else { break };
            answer.renewed.extend(again.renewed);
            answer.busy = again.busy;
        }
    }
    match outcome {
        Ok(queue::Renewed { renewed, busy }) => {
            state.running.renewed(&renewed, sent);
            let renewed: HashSet<_> = renewed.into_iter().collect();
            let busy: HashSet<_> = busy.into_iter().collect();
            let lost = held
                .into_iter()
                .filter(|held| !renewed.contains(held) && !busy.contains(&held.0));
            for (id, fence) in lost {
                if state.running.abort(id, Some(fence)) {
                    tracing::info!(task_id = %id, attempt = fence.attempt, "lease not renewed (canceled or rescued): aborting handler");
                }
            }
            Renewal::Done
        }
        Err(e) if apikit::db::is_server_down(&e) => {
            let most = config.lease * OUTAGE_CARRIED_IN_LEASES - config.lease_margin();
            state.running.extend_live(Instant::now(), sent, most);
            Renewal::ServerDown(e)
        }
        Err(e) => {
            tracing::warn!(error = %e, held = held.len(), "lease renewal failed");
            Renewal::Failed
        }
    }
}
