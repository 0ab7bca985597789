//! The claim loop: claim as many due tasks as there are free slots, and as many more as the
//! slots finished during the last claim (held for the slots to take, see [`super::ahead`]);
//! wait for a notification, a freed slot or the poll interval when there is nothing to do.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use tokio_util::sync::CancellationToken;

use super::completer::Completer;
use super::connection::DedicatedConnection;
use super::executor;
use super::running::Attempt;
use super::state::WorkerState;
use crate::db::SessionDatabase;
use crate::queue;

/// Pause after a failed claim (database down), so the loop does not spin.
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// How long the loop waits for slots still held by tasks that are finishing before it claims
/// with some slots empty. Each claim is a commit, and claiming one task per freed slot would cap
/// throughput at the database's commit rate; a short task frees its slot within microseconds.
const GATHER_WINDOW: Duration = Duration::from_micros(250);
/// How old the loop's knowledge of whether any queue is paused or limited may be. The claim of
/// a process that believes no queue restricted obeys no queue setting, so this bounds how long
/// a new setting takes to hold everywhere when its notification is lost (a queue setting must
/// hold everywhere within a second).
const SETTINGS_AGE: Duration = Duration::from_millis(500);
/// How often the loop looks at every queue again from its start, for what no announcement
/// covers: a task skipped while another transaction held its row and then left ready (a claim
/// or bulk step undone), a task a process of the release before made ready before it was due.
/// The listener asks for a look itself when it may have missed notifications. Each look walks
/// the dead index entries at the front of every queue, so it is rare.
const LOOK_AGAIN: Duration = Duration::from_secs(30);
/// How often, at most, an idle loop (one whose poll interval ran out without a notification)
/// looks at every queue: tasks written by SQL, or put back by a crash that lost their claim,
/// are announced by nobody.
const IDLE_LOOK_AGAIN: Duration = Duration::from_secs(5);
/// How soon the loop looks again while a limited queue exists and the last claim did not fill
/// every slot: tokens accrue and other processes' tasks end without any notification.
const LIMITED_POLL: Duration = Duration::from_millis(100);

pub(super) async fn run(
    state: &Arc<WorkerState>,
    completer: &Completer,
    shutdown: &CancellationToken,
) {
    let mut conn = DedicatedConnection::new(claim_connection_options(state));
    // The token of a claim that failed: if it failed after its commit (the answer was lost),
    // its tasks are RUNNING under this worker's name and nobody runs them.
    let mut unanswered: Option<i64> = None;
    let mut queues = Frontier::default();
    let mut polled = false;
    let mut promoted_at: Option<Instant> = None;
    // How many the last claim wanted held ahead: below half of that, the loop claims again.
    let mut ahead_wanted = 0;
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
        if state
            .ahead
            .oldest_due()
            .is_some_and(|due| due <= Instant::now())
            && !release_held(state, &mut conn, false).await
        {
            sleep_unless(ERROR_PAUSE, shutdown).await;
            continue;
        }
        start_held(state, completer);
        if completer.too_many_unwritten() {
            // Outcomes are not being recorded: claiming more would only pile up finished tasks
            // in memory. Held tasks still go back on time.
            tokio::select! {
                _ = completer.eased() => {}
                _ = held_too_long(state) => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        }
        let low_water = ahead_wanted / 2;
        if state.slots.available_permits() == 0
            && (ahead_wanted == 0 || state.ahead.len() > low_water)
        {
            let drained = async {
                if ahead_wanted == 0 {
                    std::future::pending().await
                } else {
                    state.ahead.drained_to(low_water).await
                }
            };
            tokio::select! {
                _ = state.slot_freed.notified() => {}
                _ = drained => {}
                _ = held_too_long(state) => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        }
        let slots = state.config.concurrency.max(1);
        ahead_wanted = state.ahead.wanted(slots);
        let free = if ahead_wanted == 0 {
            gather_slots(state).await
        } else {
            state.slots.available_permits()
        };
        let room = free + ahead_wanted.saturating_sub(state.ahead.len());
        if room == 0 {
            continue;
        }
        let limit = i64::try_from(room).unwrap_or(i64::MAX);
        let config = &state.config;
        let mut claim =
            queue::Claim::new(&config.worker_id, &state.task_types, limit, config.lease);
        // At least one: with every slot busy and tasks held, a rate-limited queue would get
        // nothing at all. That one task waits for a slot like any held task.
        claim.start_now = i64::try_from(free.max(1)).unwrap_or(i64::MAX);
        if promoted_at.is_none_or(|at| at.elapsed() >= config.poll_interval) {
            // More may be due: promote again on the next turn, between claims.
            let more = promote_due(&mut conn).await;
            promoted_at = (!more).then(Instant::now);
        }
        match queues.refresh(state, &mut conn, polled).await {
            Ok(()) => {
                claim.restricted_queues = queues.restricted;
                claim.queues = Some(queues.next_turn());
            }
            // The claim finds the queues itself and reads every setting (if the database is
            // down it fails too, and pauses the loop).
            Err(e) => tracing::warn!(error = %e, "reading the queues failed"),
        }
        polled = false;
        match claim_and_start(state, completer, &mut conn, &claim).await {
            // The claim took something: there may be more (in this queue, or in a queue that
            // got less than its share), go again at once.
            Ok((claimed, after)) if claimed > 0 || after.turns_left => {
                queues.queues = after.frontier
            }
            Ok((_, after)) => {
                queues.queues = after.frontier;
                polled = wait_for_work(
                    state,
                    after.limited_queues,
                    &mut queues,
                    &mut conn,
                    shutdown,
                )
                .await
            }
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
    hand_back_held_at_shutdown(state, &mut conn).await;
    conn.close().await;
}

/// The pool's options, but commits return without waiting for the WAL flush, and statements
/// always run their cached generic plan.
///
/// A claim is on the path of every pickup, and under load the claim cycle is the worker's pace:
/// waiting for the disk was a quarter of each claim. A claim lost in a database crash is safe:
/// its task is PENDING again and runs again, as after a lost worker, and the claim token in its
/// fence keeps the first run's late outcome out (see `migrations/dtp/0003_claim_token.sql`).
///
/// The claim statement's generic plan is the right one whatever its parameters (it walks
/// tasks_ready one queue at a time), but the planner's estimate of it is poor, so left to
/// itself it planned the statement anew for every claim: 1.2 ms of planning, which halved the
/// standard workload's throughput.
///
/// Behind a transaction-mode pooler these session settings would not reach the server, so the
/// claim connection is the direct one then ([`SessionDatabase`]).
fn claim_connection_options(state: &WorkerState) -> PgConnectOptions {
    let session = state.config.session_database.as_ref();
    SessionDatabase::or_pool(session, &state.pool).options([
        ("synchronous_commit", "off"),
        ("plan_cache_mode", "force_generic_plan"),
    ])
}

/// Claims, and starts or holds what the claim took; how many it took, and the rest of the
/// claim's answer (its tasks taken out).
async fn claim_and_start(
    state: &Arc<WorkerState>,
    completer: &Completer,
    conn: &mut DedicatedConnection,
    claim: &queue::Claim<'_>,
) -> Result<(usize, queue::Claimed), sqlx::Error> {
    let sent = Instant::now();
    let mut claimed = conn
        .run(async |db| queue::claim_available(db, claim).await)
        .await?;
    let count = claimed.tasks.len();
    state.metrics.claimed(sent.elapsed(), count);
    // Tasks of limited queues first: a rate-limited queue gave no more than the free slots
    // (at least one), and its tasks are to start now.
    let mut tasks = std::mem::take(&mut claimed.tasks);
    if !claimed.held_to_limits.is_empty() {
        tasks.sort_by_key(|task| !claimed.held_to_limits.contains(&task.queue));
    }
    for task in tasks {
        let attempt = state
            .running
            .hold(task, state.abort_all.child_token(), sent);
        // Slots may have been freed since the claim was sent; the rest wait for one.
        match state.slots.clone().try_acquire_owned() {
            Ok(slot) => start(state, completer, attempt, slot),
            Err(_) => state.ahead.hold(attempt),
        }
    }
    Ok((count, claimed))
}

/// Makes ready the waiting tasks that are due, a batch at a time while batches come back full,
/// at most ten batches; `true` when more may be due (the loop claims, then promotes again). A
/// failure is logged and left to the next poll interval: claims do not depend on it.
async fn promote_due(conn: &mut DedicatedConnection) -> bool {
    for _ in 0..10 {
        match conn.run(async |db| queue::promote_due(db).await).await {
            Ok(promoted) if promoted >= queue::PROMOTION_BATCH => {}
            Ok(_) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "promoting due tasks failed; trying again next round");
                return false;
            }
        }
    }
    true
}

fn start(
    state: &Arc<WorkerState>,
    completer: &Completer,
    attempt: Attempt,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    state.executions.spawn(executor::execute(
        state.clone(),
        completer.clone(),
        attempt,
        executor::Started::ByClaimLoop(executor::Slot::taken(slot, state)),
    ));
}

/// Starts held tasks in the slots that are free. Slots whose tasks finish pass themselves to
/// the held tasks; a slot is free while tasks are held only when its execution ended otherwise
/// (a panic).
fn start_held(state: &Arc<WorkerState>, completer: &Completer) {
    while let Ok(slot) = state.slots.clone().try_acquire_owned() {
        match state.ahead.next() {
            Some(attempt) => start(state, completer, attempt, slot),
            None => break,
        }
    }
}

/// Hands back, uncounted, the tasks held [`MAX_HOLD`](super::ahead::MAX_HOLD) or longer (all of them with `all`).
/// When the database refuses or cannot be reached they are held again, their leases renewed,
/// and `false` says to try again after a pause: given up, they would be rescued as lost
/// attempts once their leases ran out.
async fn release_held(state: &WorkerState, conn: &mut DedicatedConnection, all: bool) -> bool {
    let held = state.ahead.take_held(all);
    if held.is_empty() {
        return true;
    }
    let keys: Vec<_> = held.iter().map(Attempt::key).collect();
    match conn
        .run(async |db| queue::release_unstarted(db, &keys).await)
        .await
    {
        Ok(released) => {
            tracing::info!(released, "tasks claimed ahead handed back unstarted");
            forget(state, &held);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, held = keys.len(), "tasks claimed ahead could not be handed back; retrying shortly");
            state.ahead.put_back(held);
            false
        }
    }
}

/// At shutdown: no slot takes a held task any more, and they are handed back, retried for
/// up to the shutdown grace period while the database cannot be reached. Past it, they are
/// left to the rescuer (their leases are no longer renewed once the worker has stopped).
async fn hand_back_held_at_shutdown(state: &WorkerState, conn: &mut DedicatedConnection) {
    state.ahead.close();
    let deadline = Instant::now() + state.config.shutdown_grace;
    while !release_held(state, conn, true).await {
        if Instant::now() >= deadline {
            let left = state.ahead.take_held(true);
            tracing::error!(
                held = left.len(),
                "tasks claimed ahead not handed back before the grace period ended; they will be rescued when their leases expire"
            );
            forget(state, &left);
            return;
        }
        tokio::time::sleep(ERROR_PAUSE).await;
    }
}

/// Stops renewing the leases of `attempts`, which are no longer this worker's to run.
fn forget(state: &WorkerState, attempts: &[Attempt]) {
    for attempt in attempts {
        let (id, fence) = attempt.key();
        state.running.remove(id, fence);
    }
}

/// Resolves when the oldest held task has been held [`MAX_HOLD`](super::ahead::MAX_HOLD);
/// never while none is.
async fn held_too_long(state: &WorkerState) {
    match state.ahead.oldest_due() {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// The queues the loop claims from, each with its cursor ([`queue::QueueCursor`]), and whether
/// any queue is paused or limited. The queues are those the last claim left
/// ([`queue::Claimed::frontier`]), with those announced since; every [`LOOK_AGAIN`], and when
/// a notification asks, all the queues with ready tasks from their start.
#[derive(Default)]
struct Frontier {
    queues: Vec<queue::QueueCursor>,
    restricted: bool,
    settings_read_at: Option<Instant>,
    looked_at: Option<Instant>,
}

impl Frontier {
    async fn refresh(
        &mut self,
        state: &WorkerState,
        conn: &mut DedicatedConnection,
        polled: bool,
    ) -> Result<(), sqlx::Error> {
        let look = state.look_at_every_queue.swap(false, Ordering::AcqRel);
        let mut read = Ok(());
        let settings_fresh = self
            .settings_read_at
            .is_some_and(|at| at.elapsed() < SETTINGS_AGE);
        if look || polled || !settings_fresh {
            let read_at = Instant::now();
            match conn
                .run(async |db| queue::restricted_queues(db).await)
                .await
            {
                Ok(restricted) => {
                    self.restricted = restricted;
                    self.settings_read_at = Some(read_at);
                }
                Err(e) => read = Err(e),
            }
        }
        let looked_within = |age| self.looked_at.is_some_and(|at| at.elapsed() < age);
        let look =
            look || !looked_within(LOOK_AGAIN) || (polled && !looked_within(IDLE_LOOK_AGAIN));
        if read.is_ok() && look {
            let looked_at = Instant::now();
            match conn
                .run(async |db| queue::every_ready_queue(db).await)
                .await
            {
                Ok(queues) => {
                    self.queues = queues;
                    self.looked_at = Some(looked_at);
                }
                Err(e) => read = Err(e),
            }
        }
        if read.is_err() {
            state.look_at_every_queue.store(true, Ordering::Release);
        }
        let announced = std::mem::take(
            &mut *state
                .announced
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if announced.is_empty() {
            return read;
        }
        let mut known: HashMap<String, usize> = self
            .queues
            .iter()
            .enumerate()
            .map(|(at, q)| (q.queue.clone(), at))
            .collect();
        for ((queue, _), first) in announced {
            match known.get(&queue) {
                Some(&at) => self.queues[at].announced(first),
                None => {
                    known.insert(queue.clone(), self.queues.len());
                    self.queues.push(queue::QueueCursor {
                        queue,
                        from: first,
                        resume: None,
                    });
                }
            }
        }
        read
    }

    /// The queues to claim from, turned by one since the last claim: a claim takes its
    /// queues' first tasks in this order, so when it has fewer slots than queues with work,
    /// each queue's turn comes.
    fn next_turn(&mut self) -> &[queue::QueueCursor] {
        if !self.queues.is_empty() {
            self.queues.rotate_left(1);
        }
        &self.queues
    }
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

/// Waits for a notification, the poll interval (shorter while a limited queue exists), the
/// completer writing outcomes (while a limited queue exists: the tasks it ended held places
/// under the limits), a held task due to go back, or the shutdown; `true` when the poll
/// interval ran out. Meanwhile it reads the queue settings again whenever they get too old
/// ([`SETTINGS_AGE`]), so that the claim a notification wakes it for does not wait for that
/// read: it was one more round trip before every fiftieth pickup of tasks 10 ms apart.
async fn wait_for_work(
    state: &WorkerState,
    limited_queues: bool,
    queues: &mut Frontier,
    conn: &mut DedicatedConnection,
    shutdown: &CancellationToken,
) -> bool {
    let poll = if limited_queues {
        state.config.poll_interval.min(LIMITED_POLL)
    } else {
        state.config.poll_interval
    };
    let polled_at = tokio::time::Instant::now() + poll;
    // Once a read fails, the next claim reads them (the database is likely down).
    let mut keep_settings_fresh = true;
    loop {
        let room_in_limits = async {
            if limited_queues {
                state.outcomes_written.notified().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let settings_aged = async {
            match queues.settings_read_at {
                Some(read_at) if keep_settings_fresh => {
                    tokio::time::sleep_until((read_at + SETTINGS_AGE).into()).await;
                }
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = state.work_available.notified() => return false,
            _ = room_in_limits => return false,
            // Held tasks still wait behind slow ones: hand them back.
            _ = held_too_long(state) => return false,
            _ = tokio::time::sleep_until(polled_at) => return true,
            _ = shutdown.cancelled() => return false,
            _ = settings_aged => {}
        }
        if let Err(e) = queues.refresh(state, conn, false).await {
            tracing::warn!(error = %e, "reading the queues failed");
            keep_settings_fresh = false;
        }
    }
}

async fn sleep_unless(pause: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(pause) => {}
        _ = shutdown.cancelled() => {}
    }
}
