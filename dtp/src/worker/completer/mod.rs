//! The completer: the one writer of attempt outcomes. Executors hand it what an attempt came
//! to ([`Outcome`]); it writes them in batches, at most one fenced statement per kind of
//! outcome per batch, retries them under one policy ([`Patience`]), logs each in its attempt's
//! span and counts it in the metrics.
//!
//! A batch is written [`LINGER`] after its first outcome (or when it is full), so under load many
//! outcomes share one commit and leave the database's commits to the claims. The executor waits
//! for its outcome to be written before it lets go of the task, but the task's slot is already
//! free, so claiming does not wait for the database, up to [`MAX_UNWRITTEN`] outcomes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::AttemptOutcome;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

mod part;

use super::backoff::Backoff;
use super::connection::DedicatedConnection;
use crate::metrics::TaskSeries;
use crate::queue::{self, AttemptFailure, Failure, Fence, TaskId};
use part::{splits, Part};

/// Most outcomes of one kind written in one statement.
const MAX_BATCH: usize = 1000;
/// Outcomes waiting to be written beyond which the claim loop stops claiming: two full
/// batches. Under load the wait is what one batch gathers, a few hundred at most; more means
/// the writes are failing (the database, or the pooler in front of it, is unreachable while the
/// claim loop's direct connection is not), and every task finished but not recorded would run
/// again if this process died.
pub(super) const MAX_UNWRITTEN: usize = 2 * MAX_BATCH;
/// How long an outcome may wait for others to share its commit. Commits, not rows, are what the
/// database runs out of under load; a task's slot is free meanwhile, so this delays only the
/// task's `completedAt`, never the next claim.
const LINGER: Duration = Duration::from_millis(2);
/// Attempts at writing a batch that fails for a reason other than the database being
/// unreachable or busy (a bug, most likely).
const WRITE_ATTEMPTS: u32 = 5;
/// Longest pause between attempts at writing a batch.
const MAX_WRITE_PAUSE: Duration = Duration::from_secs(5);

/// What an attempt came to, as its executor saw it. An attempt aborted by a cancel or a lapsed
/// lease has no outcome to write: the database already holds the truth.
#[derive(Debug)]
pub(super) enum Outcome {
    Succeeded(Value),
    /// Retried after its backoff while attempts remain and the failure allows it, else FAILED.
    Failed {
        error: String,
        failure: Failure,
    },
    /// Interrupted by the worker's shutdown past its grace period: back to the queue, uncounted.
    HandedBack,
}

/// The attempt an outcome belongs to: its task and fence, the span its log lines go to and
/// the series its metrics count in.
pub(super) struct AttemptOf {
    pub(super) id: TaskId,
    pub(super) fence: Fence,
    pub(super) span: tracing::Span,
    pub(super) series: TaskSeries,
}

/// One outcome waiting to be written; `written` says what was recorded for the attempt, or
/// nothing (its fence did not hold, or it was given up).
struct Pending {
    attempt: AttemptOf,
    outcome: Outcome,
    written: oneshot::Sender<Option<AttemptOutcome>>,
    /// Counted in the backlog until answered.
    _counted: Counted,
}

/// The sending side, held by executors and read by the claim loop.
#[derive(Clone)]
pub(super) struct Completer {
    tx: mpsc::UnboundedSender<Pending>,
    backlog: Arc<Backlog>,
}

/// The outcomes handed over and not yet answered.
#[derive(Default)]
struct Backlog {
    unwritten: AtomicUsize,
    /// Their number fell below [`MAX_UNWRITTEN`].
    eased: Notify,
}

/// One outcome counted in the backlog from its hand-over until it is answered.
struct Counted(Arc<Backlog>);

impl Counted {
    fn new(backlog: &Arc<Backlog>) -> Self {
        backlog.unwritten.fetch_add(1, Ordering::Relaxed);
        Counted(backlog.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.0.unwritten.fetch_sub(1, Ordering::Relaxed) == MAX_UNWRITTEN {
            self.0.eased.notify_one();
        }
    }
}

impl Completer {
    /// Starts the writing loop; it ends when `stop` fires, after writing what it holds.
    /// `written` is notified after each batch: the tasks it ended no longer count against
    /// their queues' concurrency limits.
    pub(super) fn start(
        pool: &PgPool,
        backoff: Backoff,
        stop: CancellationToken,
        written: Arc<Notify>,
    ) -> (Completer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = DedicatedConnection::for_pool(pool);
        let writer = Writer {
            conn,
            backoff,
            stop,
        };
        let handle = tokio::spawn(writer.run(rx, written));
        let backlog = Arc::new(Backlog::default());
        (Completer { tx, backlog }, handle)
    }

    /// Hands over `outcome` at once (it is written whether or not the answer is awaited) and
    /// returns the answer: what was recorded for the attempt, `None` when the fence did not
    /// hold (canceled or rescued meanwhile), the write was given up, or the worker is stopping.
    pub(super) fn record(
        &self,
        attempt: AttemptOf,
        outcome: Outcome,
    ) -> impl std::future::Future<Output = Option<AttemptOutcome>> + use<> {
        let counted = Counted::new(&self.backlog);
        let (written, answer) = oneshot::channel();
        let queued = self.tx.send(Pending {
            attempt,
            outcome,
            written,
            _counted: counted,
        });
        async move {
            if queued.is_err() {
                return None;
            }
            answer.await.ok().flatten()
        }
    }

    /// Whether so many outcomes wait to be written that claiming should stop
    /// ([`MAX_UNWRITTEN`]).
    pub(super) fn too_many_unwritten(&self) -> bool {
        self.backlog.unwritten.load(Ordering::Relaxed) >= MAX_UNWRITTEN
    }

    /// Resolves when the outcomes waiting fall below [`MAX_UNWRITTEN`].
    pub(super) async fn eased(&self) {
        self.backlog.eased.notified().await;
    }
}

struct Writer {
    conn: DedicatedConnection,
    backoff: Backoff,
    stop: CancellationToken,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Pending>, written: Arc<Notify>) {
        loop {
            let first = tokio::select! {
                biased;
                received = rx.recv() => match received {
                    Some(pending) => pending,
                    None => break,
                },
                _ = self.stop.cancelled() => {
                    // Executors are done by now; write what is left and end.
                    let mut rest = Vec::new();
                    while let Ok(pending) = rx.try_recv() {
                        rest.push(pending);
                    }
                    if !rest.is_empty() {
                        self.write(rest).await;
                    }
                    break;
                }
            };
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + LINGER;
            while batch.len() < MAX_BATCH {
                tokio::select! {
                    received = rx.recv() => match received {
                        Some(pending) => batch.push(pending),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            self.write(batch).await;
            written.notify_one();
        }
        self.conn.close().await;
    }

    /// Writes `batch`, then answers, logs and counts each outcome.
    async fn write(&mut self, batch: Vec<Pending>) {
        let mut succeeded = Vec::new();
        let mut failed = Vec::new();
        let mut handed_back = Vec::new();
        let mut attempts = HashMap::with_capacity(batch.len());
        for Pending {
            attempt,
            outcome,
            written,
            _counted,
        } in batch
        {
            let (id, fence) = (attempt.id, attempt.fence);
            match outcome {
                Outcome::Succeeded(result) => succeeded.push((id, fence, result)),
                Outcome::Failed { error, failure } => {
                    let retry_delay = self.backoff.delay(fence.attempt);
                    failed.push(AttemptFailure {
                        id,
                        fence,
                        error,
                        retry_delay,
                        failure,
                    });
                }
                Outcome::HandedBack => handed_back.push((id, fence)),
            }
            attempts.insert((id, fence), (attempt, written, _counted));
        }
        let mut recorded = HashMap::new();
        let parts = [
            Part::Succeeded(succeeded),
            Part::Failed {
                failed,
                refusals: false,
            },
            Part::HandedBack(handed_back),
        ];
        self.write_parts(parts, &mut recorded).await;
        for ((id, fence), (attempt, written, _counted)) in attempts {
            let outcome = recorded.remove(&(id, fence));
            attempt.span.in_scope(|| log_recorded(id, fence, &outcome));
            if let Some(Recorded { outcome, .. }) = &outcome {
                attempt.series.attempt_ended(*outcome);
            }
            let _ = written.send(outcome.map(|r| r.outcome));
        }
    }

    /// Writes `parts` in order, each in statements of at most [`MAX_BATCH`] outcomes, under one
    /// [`Patience`]. A part the database refuses as data, or that runs out of time, is split
    /// until the outcome at fault stands alone, so one bad or locked row never costs the others
    /// their write; an outcome refused alone is written as the refusal instead.
    async fn write_parts(
        &mut self,
        parts: [Part; 3],
        recorded: &mut HashMap<(TaskId, Fence), Recorded>,
    ) {
        let mut patience = Patience::new();
        let mut pending: Vec<Part> = parts
            .into_iter()
            .flat_map(Part::chunks)
            .filter(|part| part.len() > 0)
            .rev()
            .collect();
        while let Some(part) = pending.pop() {
            match self.conn.run(async |db| part.write(db).await).await {
                Ok(rows) => recorded.extend(rows),
                Err(e) if splits(&e) && part.len() > 1 => {
                    let (first, second) = part.split();
                    pending.extend([second, first]);
                }
                Err(e) if apikit::db::is_invalid_data(&e) => match part.refused(&e) {
                    Some(instead) => pending.push(instead),
                    None => {
                        tracing::error!(error = %e, "the refusal of an outcome was refused too; the task will be rescued when its lease expires");
                    }
                },
                Err(e) => {
                    if self.try_again(&mut patience, &e, part.len()).await {
                        pending.push(part);
                    }
                }
            }
        }
    }

    /// After a failed write of `outcomes` outcomes: pauses and says to try again, or says to
    /// give up on them (the worker is stopping, or writes have failed too often for another
    /// reason than the database being unreachable); the rest of the batch is still tried.
    async fn try_again(&self, patience: &mut Patience, e: &sqlx::Error, outcomes: usize) -> bool {
        if !patience.failed(e, &self.stop) {
            // Their leases will expire and the rescuer will retry them: at-least-once.
            tracing::error!(error = %e, outcomes, "outcomes not recorded; the tasks will be rescued when their leases expire");
            return false;
        }
        tracing::warn!(error = %e, outcomes, "writing outcomes failed; retrying");
        patience.pause(&self.stop).await;
        true
    }
}

/// What was recorded for one attempt, with, for a failure, what was asked and where the task
/// was left.
pub(super) struct Recorded {
    pub(super) outcome: AttemptOutcome,
    pub(super) failure: Option<(AttemptFailure, queue::FailedAttempt)>,
}

impl Recorded {
    pub(super) fn new(outcome: AttemptOutcome) -> Self {
        Recorded {
            outcome,
            failure: None,
        }
    }
}

/// The log line of one outcome, in its attempt's span.
fn log_recorded(id: TaskId, fence: Fence, recorded: &Option<Recorded>) {
    let attempt = fence.attempt;
    match recorded {
        Some(Recorded {
            failure: Some((failed, left)),
            ..
        }) => {
            tracing::info!(task_id = %id, attempt, from = "RUNNING", to = %left.status(), next_attempt_at = ?left.next_attempt_at, error = %failed.error, "task attempt failed");
        }
        Some(Recorded {
            outcome: AttemptOutcome::Succeeded,
            ..
        }) => {
            tracing::info!(task_id = %id, attempt, from = "RUNNING", to = "SUCCEEDED", "task succeeded");
        }
        Some(Recorded {
            outcome: AttemptOutcome::Released,
            ..
        }) => {
            tracing::info!(task_id = %id, attempt, from = "RUNNING", to = "PENDING", "task handed back on shutdown");
        }
        Some(_) => {}
        None => {
            tracing::info!(task_id = %id, attempt, "outcome not recorded: task was canceled or rescued, or the worker is stopping");
        }
    }
}

/// The one policy for writing outcomes: keep at a write for as long as the database cannot be
/// reached (the heartbeat's watch decides meanwhile whether the attempts are still ours),
/// [`WRITE_ATTEMPTS`] times in a batch for any other failure (a statement or lock timeout, a
/// serialization failure, a bug: the tasks are then left to their leases and the rescuer),
/// never past the worker's stop; pausing from 100 ms, doubling, up to [`MAX_WRITE_PAUSE`].
struct Patience {
    pause: Duration,
    other_failures: u32,
}

impl Patience {
    fn new() -> Self {
        Patience {
            pause: Duration::from_millis(100),
            other_failures: 0,
        }
    }

    /// Counts the failure `e`; whether to try again.
    fn failed(&mut self, e: &sqlx::Error, stop: &CancellationToken) -> bool {
        if !apikit::db::is_unavailable(e) {
            self.other_failures += 1;
        }
        !stop.is_cancelled() && self.other_failures < WRITE_ATTEMPTS
    }

    /// Waits before the next try (cut short by the stop).
    async fn pause(&mut self, stop: &CancellationToken) {
        tokio::select! {
            _ = tokio::time::sleep(self.pause) => {}
            _ = stop.cancelled() => {}
        }
        self.pause = (self.pause * 2).min(MAX_WRITE_PAUSE);
    }
}
