//! Running one claimed task: the handler under its timeout and abort token, then recording the
//! outcome through the fenced queue transitions: a success through the [`Completer`], which
//! batches them, anything else here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apikit::trace::TraceContext;
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::completer::Completer;
use super::state::{UnwrittenOutcome, WorkerState};
use crate::handlers::{HandlerError, TaskContext};
use crate::queue::{self, ClaimedTask, Failure, Fence, TaskId};
use common::{AttemptOutcome, TaskStatus};

/// How an attempt ended, as far as the worker can tell.
#[derive(Debug)]
enum Outcome {
    Succeeded(Value),
    Ended(Ending),
}

/// An attempt that did not succeed.
#[derive(Debug)]
enum Ending {
    Failed {
        error: String,
        failure: Failure,
    },
    /// The task was canceled or its lease lost: the database already holds the truth.
    Aborted,
    /// The worker is shutting down past its grace period: hand the task back.
    Interrupted,
}

impl Ending {
    /// An attempt whose abort token fired: the worker's shutdown past its grace period hands
    /// it back; anything else (a cancel, a lapsed lease) left the truth in the database.
    fn aborted(state: &WorkerState) -> Self {
        if state.abort_all.is_cancelled() {
            Ending::Interrupted
        } else {
            Ending::Aborted
        }
    }

    fn failed(error: HandlerError) -> Self {
        let failure = match error {
            HandlerError::Permanent(_) => Failure::Permanent,
            HandlerError::Retryable(_) => Failure::Retryable,
        };
        Ending::Failed {
            error: error.to_string(),
            failure,
        }
    }
}

/// Attempts at recording an outcome that fails for a reason other than the database being
/// unreachable or busy (a bug, most likely): after these the task is left to its lease.
const RECORD_ATTEMPTS: u32 = 5;
/// Longest pause between attempts at recording an outcome.
const MAX_RECORD_PAUSE: Duration = Duration::from_secs(5);

/// One of the worker's concurrency slots, held by an execution: counted busy until it is
/// dropped, which also wakes the claim loop. Dropped however the execution ends (a panic too).
pub(super) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    state: Arc<WorkerState>,
}

impl Slot {
    pub(super) fn taken(permit: OwnedSemaphorePermit, state: &Arc<WorkerState>) -> Slot {
        state.metrics.slot_taken(true);
        Slot {
            permit: Some(permit),
            state: state.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Given back before the claim loop is woken, so that it finds the slot free.
        drop(self.permit.take());
        self.state.metrics.slot_taken(false);
        self.state.slot_freed.notify_one();
    }
}

/// A claimed attempt not yet started, listed in `running` from its claim: its lease is renewed,
/// and a cancel or a lapsed lease aborts it, also while it waits for a slot
/// ([`ClaimedAhead`](super::ahead::ClaimedAhead)).
pub(super) struct Attempt {
    task: ClaimedTask,
    /// When its claim's answer arrived.
    held_since: Instant,
    abort: CancellationToken,
}

impl Attempt {
    /// Lists `task`, claimed by a statement sent at `claimed_at`, as running.
    pub(super) fn hold(state: &WorkerState, task: ClaimedTask, claimed_at: Instant) -> Attempt {
        let abort = state.abort_all.child_token();
        state
            .running
            .insert(task.task_id(), task.fence(), abort.clone(), claimed_at);
        Attempt {
            task,
            held_since: Instant::now(),
            abort,
        }
    }

    /// When its claim's answer arrived.
    pub(super) fn held_since(&self) -> Instant {
        self.held_since
    }

    /// The task and the fence of this attempt.
    pub(super) fn key(&self) -> (TaskId, Fence) {
        (self.task.task_id(), self.task.fence())
    }
}

/// Who started an execution, which decides how long its success may wait to be written.
pub(super) enum Started {
    /// The claim loop of `Worker::run`, in one of its concurrency slots. The slot passes to the
    /// next task claimed ahead, or is given back, as soon as the handler is done, before the
    /// outcome is written, so the slot runs the next task meanwhile. The heartbeat renews the lease until the outcome is written, also
    /// after an outage longer than the lease (nobody rescues before the server has been back a
    /// lease), so the success waits until written or the worker stops.
    ByClaimLoop(Slot),
    /// `Worker::run_once`: nothing renews the lease, so the success waits only while the claim's
    /// lease is surely ours; after that the task is the rescuer's.
    Once,
}

/// Runs `attempt` and records its outcome, in a span that continues the trace of the request
/// that created the task: its log lines carry the trace id, and the handler gets the span's
/// context to send on.
pub(super) async fn execute(
    state: Arc<WorkerState>,
    completer: Completer,
    attempt: Attempt,
    started: Started,
) {
    let span = tracing::info_span!("attempt", trace_id = tracing::field::Empty);
    let parent = attempt
        .task
        .traceparent
        .as_deref()
        .and_then(TraceContext::parse);
    let trace = apikit::continue_trace(&span, parent);
    if !span.is_disabled() {
        span.record("trace_id", trace.trace_id_hex());
    }
    run_attempt(state, completer, attempt, started, trace)
        .instrument(span)
        .await;
}

async fn run_attempt(
    state: Arc<WorkerState>,
    completer: Completer,
    Attempt {
        task,
        abort,
        held_since,
    }: Attempt,
    started: Started,
    trace: TraceContext,
) {
    let id = task.task_id();
    let fence = task.fence();
    let attempt = fence.attempt;
    let series = state.metrics.task_series(&task.queue, &task.task_type);
    let outcome = if abort.is_cancelled() {
        // Canceled, its lease lost, or the worker stopped past its grace period, while it
        // waited for a slot: it never starts.
        tracing::info!(task_id = %id, attempt, "task aborted before it started: not run");
        Outcome::Ended(Ending::aborted(&state))
    } else {
        tracing::info!(task_id = %id, attempt, task_type = %task.task_type, from = "PENDING", to = "RUNNING", worker_id = %state.config.worker_id, "task claimed");
        // The wait until the claim, and then for a slot.
        let queue_wait = Duration::from_secs_f64(task.queue_wait_seconds.max(0.0));
        series.attempt_started(queue_wait + held_since.elapsed());
        let handler_started = Instant::now();
        let outcome = run_handler(&state, task, abort, trace).await;
        if matches!(
            outcome,
            Outcome::Succeeded(_) | Outcome::Ended(Ending::Failed { .. })
        ) {
            series.handler_returned(handler_started.elapsed());
        }
        outcome
    };
    // Counted until the outcome is written: the slot goes on to other work meanwhile.
    let unwritten = match started {
        Started::ByClaimLoop(slot) => {
            let unwritten = UnwrittenOutcome::count(&state);
            hand_on(&state, &completer, slot);
            Some(unwritten)
        }
        Started::Once => None,
    };
    // Started by the claim loop: the heartbeat renews its lease.
    let renewed = unwritten.is_some();
    let written = match outcome {
        Outcome::Succeeded(result) if renewed => {
            let written = completer.complete(id, fence, result).await;
            log_success(id, attempt, written);
            written
        }
        Outcome::Succeeded(result) => {
            // The fence keeps the write out if it lands after a rescue.
            tokio::select! {
                written = completer.complete(id, fence, result) => {
                    log_success(id, attempt, written);
                    written
                }
                _ = state.running.lapsed(id, fence) => {
                    // Queued, it may still be written; not counted here then (metrics may
                    // undercount, never overcount).
                    tracing::warn!(task_id = %id, attempt, "success not recorded before the claim's lease lapsed; the task will be rescued");
                    None
                }
            }
        }
        Outcome::Ended(ending) => record_until_written(&state, id, fence, ending).await,
    };
    if let Some(outcome) = written {
        series.attempt_ended(outcome);
    }
    // The lease is renewed until here, so an outcome that waits for the database to come back
    // is still ours to write when it does.
    state.running.remove(id, fence);
}

/// Gives the slot of a task whose handler is done to the next task claimed ahead, or back.
fn hand_on(state: &Arc<WorkerState>, completer: &Completer, slot: Slot) {
    match state.ahead.next_for_slot() {
        Some(next) => {
            state.executions.spawn(execute(
                state.clone(),
                completer.clone(),
                next,
                Started::ByClaimLoop(slot),
            ));
        }
        None => drop(slot),
    }
}

/// The log line of a success handed to the completer, in the attempt's span.
fn log_success(id: TaskId, attempt: i32, written: Option<AttemptOutcome>) {
    match written {
        Some(AttemptOutcome::Succeeded) => {
            tracing::info!(task_id = %id, attempt, from = "RUNNING", to = "SUCCEEDED", "task succeeded");
        }
        // The completer logged why the result could not be stored.
        Some(_) => {}
        None => {
            tracing::info!(task_id = %id, attempt, "success not recorded: task was canceled or rescued, or the worker is stopping");
        }
    }
}

/// How long an aborted handler may take to stop at its next await point before the worker
/// moves on without it.
const STOP_PATIENCE: Duration = Duration::from_secs(5);

/// Aborts a handler's task and waits (a bounded time) until it has stopped, so that its slot is
/// freed and its outcome recorded only once it no longer runs: its task may be claimed again
/// right after.
async fn stop_handler(run: JoinHandle<Result<Value, HandlerError>>, id: TaskId) {
    run.abort();
    if tokio::time::timeout(STOP_PATIENCE, run).await.is_err() {
        tracing::error!(task_id = %id, patience = ?STOP_PATIENCE, "handler did not stop when aborted (it blocks without awaiting); its task may run again while it goes on");
    }
}

async fn run_handler(
    state: &WorkerState,
    task: ClaimedTask,
    abort: tokio_util::sync::CancellationToken,
    trace: TraceContext,
) -> Outcome {
    let task_id = task.task_id();
    let Some(handler) = state.registry.get(&task.task_type) else {
        return Outcome::Ended(Ending::failed(HandlerError::Permanent(format!(
            "no handler registered for type {:?}",
            task.task_type
        ))));
    };
    let timeout = task
        .timeout_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map(Duration::from_millis)
        .or_else(|| handler.timeout())
        .unwrap_or(state.config.default_timeout);
    let ctx = TaskContext {
        id: task.task_id(),
        attempt: task.attempt_count,
        max_attempts: task.max_attempts,
        payload: task.payload,
        cancel: abort.clone(),
        trace,
    };
    // The handler runs in its own tokio task so that a panic fails the attempt instead of the
    // worker, and so that aborting it is immediate whatever the handler does.
    let span = tracing::Span::current();
    let mut run = tokio::spawn(async move { handler.run(ctx).await }.instrument(span));
    tokio::select! {
        biased;
        _ = abort.cancelled() => {
            stop_handler(run, task_id).await;
            Outcome::Ended(Ending::aborted(state))
        }
        _ = tokio::time::sleep(timeout) => {
            stop_handler(run, task_id).await;
            Outcome::Ended(Ending::Failed { error: format!("timed out after {} ms", timeout.as_millis()), failure: Failure::TimedOut })
        }
        joined = &mut run => match joined {
            Ok(Ok(result)) => Outcome::Succeeded(result),
            Ok(Err(error)) => Outcome::Ended(Ending::failed(error)),
            Err(e) => Outcome::Ended(Ending::failed(HandlerError::Retryable(format!("handler panicked: {e}")))),
        },
    }
}

/// Records `ending`, for as long as the database is unreachable or busy and the attempt's
/// lease is still ours: it is renewed meanwhile (or, while the server is down, cannot be taken
/// over), so a failure met during an outage is counted when the database returns. Returns the
/// attempt's outcome when this wrote it (not when the fence kept it out, nor for an abort,
/// whose outcome the cancel or the rescue wrote).
async fn record_until_written(
    state: &WorkerState,
    id: TaskId,
    fence: Fence,
    mut ending: Ending,
) -> Option<AttemptOutcome> {
    let attempt = fence.attempt;
    let mut pause = Duration::from_millis(100);
    let mut other_failures = 0;
    loop {
        let e = match record(state, id, fence, &ending).await {
            Ok(written) => return written,
            Err(e) => e,
        };
        if !state.running.is_ours(id, fence, Instant::now()) {
            // Its lease may have lapsed: the rescuer decides now, and a late write would be
            // fenced out anyway.
            tracing::warn!(task_id = %id, attempt, error = %e, "outcome not recorded before the lease lapsed; the task will be rescued");
            return None;
        }
        if !apikit::db::is_transient(&e) {
            other_failures += 1;
            if apikit::db::is_invalid_data(&e) {
                // The outcome cannot be stored as it is; record the refusal instead.
                tracing::warn!(task_id = %id, attempt, error = %e, "outcome refused by the database; recording the refusal");
                ending = Ending::failed(HandlerError::Permanent(format!(
                    "the attempt's outcome could not be stored: {e}"
                )));
            }
            if other_failures >= RECORD_ATTEMPTS {
                // The lease will expire and the rescuer will retry the task: at-least-once.
                tracing::error!(task_id = %id, attempt, error = %e, "outcome lost; the task will be rescued when its lease expires");
                return None;
            }
        }
        tracing::warn!(task_id = %id, attempt, error = %e, "recording outcome failed; retrying");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RECORD_PAUSE);
    }
}

async fn record(
    state: &WorkerState,
    id: TaskId,
    fence: Fence,
    ending: &Ending,
) -> Result<Option<AttemptOutcome>, sqlx::Error> {
    let pool = &state.pool;
    let attempt = fence.attempt;
    let written = match ending {
        Ending::Failed { error, failure } => {
            let delay = state.config.backoff.delay(attempt);
            match queue::mark_failed_or_retry(pool, id, fence, error, delay, *failure).await? {
                Some(failed) => {
                    tracing::info!(task_id = %id, attempt, from = "RUNNING", to = %failed.status(), next_attempt_at = ?failed.next_attempt_at, error = %error, "task attempt failed");
                    Some(match (failure, failed.status()) {
                        (Failure::TimedOut, _) => AttemptOutcome::Timeout,
                        (_, TaskStatus::Pending) => AttemptOutcome::Retry,
                        _ => AttemptOutcome::Failed,
                    })
                }
                None => {
                    tracing::info!(task_id = %id, attempt, "late outcome discarded: task was canceled or rescued");
                    None
                }
            }
        }
        Ending::Aborted => {
            tracing::info!(task_id = %id, attempt, "handler aborted: task canceled or its lease lost");
            None
        }
        Ending::Interrupted => {
            let released = queue::release(pool, id, fence).await?;
            if released {
                tracing::info!(task_id = %id, attempt, from = "RUNNING", to = "PENDING", "task handed back on shutdown");
            }
            released.then_some(AttemptOutcome::Released)
        }
    };
    Ok(written)
}
