//! The completer: successful outcomes are written in batches, one fenced `UPDATE … FROM unnest`
//! per batch, instead of one transaction per task.
//!
//! A batch is written [`LINGER`] after its first success (or when it is full), so under load many
//! successes share one commit and leave the database's commits to the claims. The executor waits
//! for its outcome to be written before it lets go of the task, but the task's slot is already
//! free, so claiming does not wait for the database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::AttemptOutcome;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::connection::DedicatedConnection;
use crate::queue::{self, Failure, Fence, TaskId};

/// Most successes written in one statement.
pub(super) const MAX_BATCH: usize = 1000;
/// How long a success may wait for others to share its commit. Commits, not rows, are what the
/// database runs out of under load; a task's slot is free meanwhile, so this delays only the
/// task's `completedAt`, never the next claim.
const LINGER: Duration = Duration::from_millis(2);
/// Attempts at writing a batch that fails for a reason other than the database being
/// unreachable or busy (a bug, most likely).
const WRITE_ATTEMPTS: u32 = 5;
/// Longest pause between attempts at writing a batch.
const MAX_WRITE_PAUSE: Duration = Duration::from_secs(5);

/// One success waiting to be written; `written` says what was written: the success, a
/// failure naming why its result could not be stored, or nothing (its fence did not hold).
struct Completion {
    id: TaskId,
    fence: Fence,
    result: Value,
    written: oneshot::Sender<Option<AttemptOutcome>>,
}

/// The sending side, held by executors.
#[derive(Clone)]
pub(super) struct Completer {
    tx: mpsc::UnboundedSender<Completion>,
}

impl Completer {
    /// Starts the batching loop; it ends when `stop` fires, after writing what it holds.
    /// `written` is notified after each batch: the tasks it ended no longer count against
    /// their queues' concurrency limits.
    pub(super) fn start(
        pool: &PgPool,
        stop: CancellationToken,
        written: Arc<Notify>,
    ) -> (Completer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = DedicatedConnection::for_pool(pool);
        let handle = tokio::spawn(run(conn, rx, stop, written));
        (Completer { tx }, handle)
    }

    /// Queues a success and waits until it is written: the outcome recorded for the attempt,
    /// `None` when the fence did not hold (canceled or rescued meanwhile) or the worker is
    /// stopping.
    pub(super) async fn complete(
        &self,
        id: TaskId,
        fence: Fence,
        result: Value,
    ) -> Option<AttemptOutcome> {
        let (written, answer) = oneshot::channel();
        let queued = self.tx.send(Completion {
            id,
            fence,
            result,
            written,
        });
        if queued.is_err() {
            return None;
        }
        answer.await.ok().flatten()
    }
}

async fn run(
    mut conn: DedicatedConnection,
    mut rx: mpsc::UnboundedReceiver<Completion>,
    stop: CancellationToken,
    written: Arc<Notify>,
) {
    loop {
        let first = tokio::select! {
            biased;
            received = rx.recv() => match received {
                Some(completion) => completion,
                None => break,
            },
            _ = stop.cancelled() => {
                // Executors are done by now; write what is left and end.
                let mut rest = Vec::new();
                while let Ok(completion) = rx.try_recv() {
                    rest.push(completion);
                }
                if !rest.is_empty() {
                    write(&mut conn, rest, &stop).await;
                }
                break;
            }
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < MAX_BATCH {
            tokio::select! {
                received = rx.recv() => match received {
                    Some(completion) => batch.push(completion),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        write(&mut conn, batch, &stop).await;
        written.notify_one();
    }
    conn.close().await;
}

async fn write(conn: &mut DedicatedConnection, batch: Vec<Completion>, stop: &CancellationToken) {
    // Results move into the statement's arguments; the acknowledgements wait beside them.
    let (done, waiting): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|c| {
            (
                (c.id, c.fence, c.result),
                (c.id, c.fence.attempt, c.written),
            )
        })
        .unzip();
    let written = write_until_stored(conn, &done, stop).await;
    for (id, _, ack) in waiting {
        let _ = ack.send(written.get(&id).copied());
    }
}

/// Writes `done`, retrying while the database is unreachable or busy (the executors keep their
/// leases renewed meanwhile) until it succeeds or the worker stops. A batch the database refuses
/// as data is split until the refused success stands alone; that one is recorded as a failed
/// attempt saying why, so one bad row never costs the others their success. Returns what was
/// recorded, by task.
async fn write_until_stored(
    conn: &mut DedicatedConnection,
    done: &[(TaskId, Fence, Value)],
    stop: &CancellationToken,
) -> HashMap<TaskId, AttemptOutcome> {
    let mut pending = vec![done];
    let mut written = HashMap::new();
    let mut patience = Patience::new();
    while let Some(part) = pending.pop() {
        match conn
            .run(async |db| queue::mark_succeeded_many(db, part).await)
            .await
        {
            Ok(ids) => written.extend(ids.into_iter().map(|id| (id, AttemptOutcome::Succeeded))),
            Err(e) if apikit::db::is_invalid_data(&e) && part.len() > 1 => {
                let (left, right) = part.split_at(part.len() / 2);
                pending.extend([left, right]);
            }
            Err(e) if apikit::db::is_invalid_data(&e) => {
                if record_unstorable(conn, &part[0], &e, stop).await {
                    written.insert(part[0].0, AttemptOutcome::Failed);
                }
            }
            Err(e) => {
                if !patience.failed(&e, stop) {
                    // Their leases will expire and the rescuer will retry them: at-least-once.
                    tracing::error!(error = %e, batch = part.len(), "successes not recorded; the tasks will be rescued when their leases expire");
                    continue;
                }
                tracing::warn!(error = %e, batch = part.len(), "writing successes failed; retrying");
                pending.push(part);
                patience.pause(stop).await;
            }
        }
    }
    written
}

/// Records the attempt of a success whose result the database refused as a permanent failure
/// naming the refusal, retrying like a batch (while the database is unreachable or busy, until
/// the worker stops). Whether the failure was recorded (its fence held).
async fn record_unstorable(
    conn: &mut DedicatedConnection,
    (id, fence, _): &(TaskId, Fence, Value),
    refusal: &sqlx::Error,
    stop: &CancellationToken,
) -> bool {
    let error = format!("the result could not be stored: {refusal}");
    let mut patience = Patience::new();
    loop {
        let recorded = conn
            .run(async |db| {
                queue::mark_failed_or_retry(
                    db,
                    *id,
                    *fence,
                    &error,
                    Duration::ZERO,
                    Failure::Permanent,
                )
                .await
            })
            .await;
        let e = match recorded {
            Ok(recorded) => {
                tracing::warn!(task_id = %id, attempt = fence.attempt, error, "result refused by the database: attempt failed");
                return recorded.is_some();
            }
            Err(e) => e,
        };
        if !patience.failed(&e, stop) {
            tracing::error!(task_id = %id, error = %e, "could not record a refused result; the task will be rescued");
            return false;
        }
        patience.pause(stop).await;
    }
}

/// How long the completer keeps at a write that fails: for as long as the database is
/// unreachable or busy, [`WRITE_ATTEMPTS`] times for any other failure, never past the worker's
/// stop; pausing from 100 ms, doubling, up to [`MAX_WRITE_PAUSE`].
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
        if !apikit::db::is_transient(e) {
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
