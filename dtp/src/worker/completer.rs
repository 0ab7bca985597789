//! The completer: successful outcomes are written in batches, one fenced `UPDATE … FROM unnest`
//! per batch, instead of one transaction per task.
//!
//! A batch is written [`LINGER`] after its first success (or when it is full), so under load many
//! successes share one commit and leave the database's commits to the claims. The executor waits
//! for its outcome to be written before it lets go of the task, but the task's slot is already
//! free, so claiming does not wait for the database.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::connection::DedicatedConnection;
use crate::queue::{self, Fence, TaskId};

/// Most successes written in one statement.
const MAX_BATCH: usize = 1000;
/// How long a success may wait for others to share its commit. Commits, not rows, are what the
/// database runs out of under load; a task's slot is free meanwhile, so this delays only the
/// task's `completedAt`, never the next claim.
const LINGER: Duration = Duration::from_millis(2);
/// Attempts at writing a batch while the database is briefly unavailable.
const WRITE_ATTEMPTS: u32 = 5;

/// One success waiting to be written; `written` says whether its fence held.
struct Completion {
    id: TaskId,
    fence: Fence,
    result: Value,
    written: oneshot::Sender<bool>,
}

/// The sending side, held by executors.
#[derive(Clone)]
pub(super) struct Completer {
    tx: mpsc::UnboundedSender<Completion>,
}

impl Completer {
    /// Starts the batching loop; it ends when `stop` fires, after writing what it holds.
    pub(super) fn start(
        pool: PgPool,
        stop: CancellationToken,
    ) -> (Completer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = DedicatedConnection::new(pool.connect_options().as_ref().clone());
        let handle = tokio::spawn(run(conn, rx, stop));
        (Completer { tx }, handle)
    }

    /// Queues a success and waits until it is written. `false` when the fence did not hold
    /// (canceled or rescued meanwhile) or the database stayed unreachable.
    pub(super) async fn complete(&self, id: TaskId, fence: Fence, result: Value) -> bool {
        let (written, answer) = oneshot::channel();
        let queued = self.tx.send(Completion {
            id,
            fence,
            result,
            written,
        });
        queued.is_ok() && answer.await.unwrap_or(false)
    }
}

async fn run(
    mut conn: DedicatedConnection,
    mut rx: mpsc::UnboundedReceiver<Completion>,
    stop: CancellationToken,
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
                    write(&mut conn, rest).await;
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
        write(&mut conn, batch).await;
    }
    conn.close().await;
}

async fn write(conn: &mut DedicatedConnection, batch: Vec<Completion>) {
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
    let mut pause = Duration::from_millis(100);
    for tries_left in (0..WRITE_ATTEMPTS).rev() {
        match conn
            .run(async |db| queue::mark_succeeded_many(db, &done).await)
            .await
        {
            Ok(written) => {
                let written: HashSet<TaskId> = written.into_iter().collect();
                for (id, attempt, ack) in waiting {
                    let held = written.contains(&id);
                    if held {
                        tracing::info!(task_id = %id, attempt, from = "RUNNING", to = "SUCCEEDED", "task succeeded");
                    } else {
                        tracing::info!(task_id = %id, attempt, "late outcome discarded: task was canceled or rescued");
                    }
                    let _ = ack.send(held);
                }
                return;
            }
            Err(e) if tries_left > 0 => {
                tracing::warn!(error = %e, batch = done.len(), "writing successes failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => {
                // Their leases will expire and the rescuer will retry them: at-least-once.
                tracing::error!(error = %e, batch = done.len(), "successes lost; the tasks will be rescued when their leases expire");
            }
        }
    }
    for (_, _, ack) in waiting {
        let _ = ack.send(false);
    }
}
