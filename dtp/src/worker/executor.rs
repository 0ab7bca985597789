//! Running one claimed task: the handler under its timeout and abort token, then handing what
//! it came to ([`Outcome`]) to the [`Completer`], the one writer of outcomes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apikit::trace::TraceContext;
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::completer::{AttemptOf, Completer, Outcome};
use super::running::Attempt;
use super::state::WorkerState;
use crate::handlers::{HandlerError, TaskContext};
use crate::queue::{ClaimedTask, Failure, TaskId};

/// An attempt whose abort token fired has no outcome to write when a cancel or a lapsed lease
/// fired it (the database already holds the truth); the worker's shutdown past its grace period
/// hands it back.
fn aborted(state: &WorkerState) -> Option<Outcome> {
    state
        .abort_all
        .is_cancelled()
        .then_some(Outcome::HandedBack)
}

fn failed(error: HandlerError) -> Outcome {
    let failure = match error {
        HandlerError::Permanent(_) => Failure::Permanent,
        HandlerError::Retryable(_) => Failure::Retryable,
    };
    Outcome::Failed {
        error: error.to_string(),
        failure,
    }
}

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
        aborted(&state)
    } else {
        tracing::info!(task_id = %id, attempt, task_type = %task.task_type, from = "PENDING", to = "RUNNING", worker_id = %state.config.worker_id, "task claimed");
        // The wait until the claim, and then for a slot.
        let queue_wait = Duration::from_secs_f64(task.queue_wait_seconds.max(0.0));
        series.attempt_started(queue_wait + held_since.elapsed());
        let handler_started = Instant::now();
        let outcome = run_handler(&state, task, abort, trace).await;
        if matches!(
            outcome,
            Some(Outcome::Succeeded(_) | Outcome::Failed { .. })
        ) {
            series.handler_returned(handler_started.elapsed());
        }
        outcome
    };
    // The slot goes on to other work while the outcome is written.
    let renewed = match started {
        Started::ByClaimLoop(slot) => {
            hand_on(&state, &completer, slot);
            true
        }
        Started::Once => false,
    };
    match outcome {
        None => {
            tracing::info!(task_id = %id, attempt, "handler aborted: task canceled or its lease lost");
        }
        Some(outcome) => {
            let of = AttemptOf {
                id,
                fence,
                span: tracing::Span::current(),
                series,
            };
            if renewed {
                // The heartbeat renews the lease meanwhile, so an outcome that waits for the
                // database to come back is still ours to write when it does.
                completer.record(of, outcome).await;
            } else {
                // Nothing renews it: wait only while it is surely ours. The fence keeps the
                // write out if it lands after a rescue.
                let written = completer.record(of, outcome);
                tokio::select! {
                    biased;
                    _ = written => {}
                    _ = state.running.lapsed(id, fence) => {
                        tracing::warn!(task_id = %id, attempt, "outcome not written before the claim's lease lapsed: written later only if no rescue came first");
                    }
                }
            }
        }
    }
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
) -> Option<Outcome> {
    let task_id = task.task_id();
    let Some(handler) = state.registry.get(&task.task_type) else {
        return Some(failed(HandlerError::Permanent(format!(
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
            aborted(state)
        }
        _ = tokio::time::sleep(timeout) => {
            stop_handler(run, task_id).await;
            Some(Outcome::Failed { error: format!("timed out after {} ms", timeout.as_millis()), failure: Failure::TimedOut })
        }
        joined = &mut run => match joined {
            Ok(Ok(result)) => Some(Outcome::Succeeded(result)),
            Ok(Err(error)) => Some(failed(error)),
            Err(e) => Some(failed(HandlerError::Retryable(format!("handler panicked: {e}")))),
        },
    }
}
