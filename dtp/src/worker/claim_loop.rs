//! The claim loop: claim as many due tasks as there are free slots, in one statement, and wait
//! for a notification, a freed slot or the poll interval when there is nothing to do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::completer::Completer;
use super::connection::DedicatedConnection;
use super::executor;
use super::state::WorkerState;
use crate::queue;

/// Pause after a failed claim (database down), so the loop does not spin.
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// How long the loop waits for slots still held by tasks that are finishing before it claims
/// with some slots empty. Each claim is a commit, and claiming one task per freed slot would cap
/// throughput at the database's commit rate; a short task frees its slot within microseconds.
const GATHER_WINDOW: Duration = Duration::from_micros(250);

pub(super) async fn run(
    state: &Arc<WorkerState>,
    completer: &Completer,
    shutdown: &CancellationToken,
) {
    let mut conn = DedicatedConnection::new(claim_connection_options(&state.pool));
    // The token of a claim that failed: if it failed after its commit (the answer was lost),
    // its tasks are RUNNING under this worker's name and nobody runs them.
    let mut unanswered: Option<i64> = None;
    while !shutdown.is_cancelled() {
        if let Some(token) = unanswered {
            // At once, before the lease of what it may hold runs out; then the pause after a
            // failed claim.
            match release_lost_claim(state, &mut conn, token).await {
                Ok(()) => unanswered = None,
                Err(e) => {
                    tracing::warn!(error = %e, "releasing a claim whose answer was lost failed; retrying shortly")
                }
            }
            sleep_unless(ERROR_PAUSE, shutdown).await;
            continue;
        }
        if state.slots.available_permits() == 0 {
            tokio::select! {
                _ = state.slot_freed.notified() => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        }
        let free = gather_slots(state).await;
        let limit = i64::try_from(free).unwrap_or(i64::MAX);
        let config = &state.config;
        let claim = queue::Claim::new(&config.worker_id, &state.task_types, limit, config.lease);
        match claim_and_start(state, completer, &mut conn, &claim).await {
            // Every free slot got a task: there may be more, go again at once.
            Ok(claimed) if claimed == free => {}
            Ok(_) => wait_for_work(state, shutdown).await,
            Err(e) => {
                tracing::warn!(error = %e, "claim failed; retrying shortly");
                unanswered = Some(claim.token);
            }
        }
    }
    if let Some(token) = unanswered {
        if let Err(e) = release_lost_claim(state, &mut conn, token).await {
            tracing::warn!(error = %e, "a claim whose answer was lost could not be released at shutdown; its tasks will be rescued when their leases expire");
        }
    }
    conn.close().await;
}

/// The pool's options, but commits return without waiting for the WAL flush. A claim is on the
/// path of every pickup, and under load the claim cycle is the worker's pace: waiting for the
/// disk was a quarter of each claim. A claim lost in a database crash is safe: its task is
/// PENDING again and runs again, as after a lost worker, and the claim token in its fence keeps
/// the first run's late outcome out (see `migrations/dtp/0003_claim_token.sql`).
fn claim_connection_options(pool: &PgPool) -> PgConnectOptions {
    pool.connect_options()
        .as_ref()
        .clone()
        .options([("synchronous_commit", "off")])
}

async fn claim_and_start(
    state: &Arc<WorkerState>,
    completer: &Completer,
    conn: &mut DedicatedConnection,
    claim: &queue::Claim<'_>,
) -> Result<usize, sqlx::Error> {
    let sent = Instant::now();
    let claimed = conn
        .run(async |db| queue::claim_available(db, claim).await)
        .await?;
    let count = claimed.len();
    for task in claimed {
        let Ok(slot) = state.slots.clone().try_acquire_owned() else {
            // Cannot happen (we claimed at most the free slots and only this loop takes them),
            // but if it did, the task's lease would simply expire and it would be rescued.
            tracing::error!(task_id = task.id, "claimed a task without a free slot");
            continue;
        };
        state.executions.spawn(executor::execute(
            state.clone(),
            completer.clone(),
            task,
            sent,
            executor::Started::ByClaimLoop(slot),
        ));
    }
    Ok(count)
}

/// Puts back, uncounted, the tasks of a claim whose answer never arrived (see
/// `queue::release_lost_claim`). What this cannot cover (the process dies before it reconnects)
/// the rescuer does, counting the attempt as lost.
async fn release_lost_claim(
    state: &WorkerState,
    conn: &mut DedicatedConnection,
    token: i64,
) -> Result<(), sqlx::Error> {
    let worker_id = &state.config.worker_id;
    let released = conn
        .run(async |db| queue::release_lost_claim(db, worker_id, token).await)
        .await?;
    if released > 0 {
        tracing::warn!(
            released,
            "a claim's answer was lost; its tasks are handed back uncounted"
        );
    }
    Ok(())
}

/// Gives tasks that are finishing up to [`GATHER_WINDOW`] to hand their slots back, so that the
/// next claim takes a batch; returns the free slots. Costs nothing when all slots are free.
async fn gather_slots(state: &WorkerState) -> usize {
    let all = state.config.concurrency;
    let started = std::time::Instant::now();
    loop {
        let free = state.slots.available_permits();
        if free >= all || started.elapsed() >= GATHER_WINDOW {
            return free;
        }
        tokio::task::yield_now().await;
    }
}

async fn wait_for_work(state: &WorkerState, shutdown: &CancellationToken) {
    tokio::select! {
        _ = state.work_available.notified() => {}
        _ = tokio::time::sleep(state.config.poll_interval) => {}
        _ = shutdown.cancelled() => {}
    }
}

async fn sleep_unless(pause: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(pause) => {}
        _ = shutdown.cancelled() => {}
    }
}
