//! Cancel: PENDING and RUNNING tasks become CANCELED at once; the database is the truth.

use common::TaskStatus;
use sqlx::{Connection, PgConnection};

use super::complete::record_attempts;
use super::counts::count_finished;
use super::row::TASK_COLUMNS;
use super::status::StoredStatus;
use super::{Error, TaskId, TaskRow, CHANNEL_TASK_CANCELED};

/// What [`cancel`] did.
#[derive(Debug)]
pub enum CancelOutcome {
    /// The task was PENDING or RUNNING and is now CANCELED.
    Canceled {
        /// The task as it is now.
        task: TaskRow,
        /// It was RUNNING: its worker was notified to abort the handler.
        was_running: bool,
    },
    /// It was already CANCELED: nothing changed (cancel is idempotent).
    AlreadyCanceled(TaskRow),
}

/// Cancels a task. SUCCEEDED and FAILED tasks refuse ([`Error::Refused`]).
///
/// The row lock taken first makes cancel and a worker's completion strictly ordered: whichever
/// commits first wins, and a completion that comes second finds its fence broken.
pub async fn cancel(conn: &mut PgConnection, id: TaskId) -> Result<CancelOutcome, Error> {
    let mut tx = conn.begin().await?;
    let status: Option<(StoredStatus,)> =
        sqlx::query_as("select status from tasks where id = $1 for update")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((StoredStatus(status),)) = status else {
        return Err(Error::NotFound(id));
    };
    match status {
        TaskStatus::Succeeded | TaskStatus::Failed => Err(Error::Refused {
            id,
            action: "cancel",
            status,
        }),
        TaskStatus::Canceled => {
            let task = super::get(&mut *tx, id).await?;
            tx.commit().await?;
            Ok(CancelOutcome::AlreadyCanceled(task))
        }
        TaskStatus::Pending | TaskStatus::Running => {
            let cancel_target = cancel_target();
            let task: TaskRow = sqlx::query_as(&format!(
                r#"
                with target as (select id, status as was from tasks where id = $1),
                {cancel_target}
                select {TASK_COLUMNS} from canceled, (select count(*) from notified) n
                "#
            ))
            .bind(id.0)
            .fetch_one(&mut *tx)
            .await?;
            let was_running = status == TaskStatus::Running;
            tx.commit().await?;
            Ok(CancelOutcome::Canceled { task, was_running })
        }
    }
}

/// The CTEs of every cancel, after a CTE `target` of the tasks to cancel (`id`, and `was`, their
/// state), whose rows the transaction holds locked and which are PENDING or RUNNING: `canceled`
/// (every column of the canceled tasks) makes them CANCELED; `recorded` adds the attempt each
/// RUNNING one was making to its history (outcome `CANCELED`); `counted` counts them; `notified` tells their workers
/// to abort the handlers, at commit. A `select` that follows must read `notified`, or it does
/// not run.
pub(super) fn cancel_target() -> String {
    let recorded = record_attempts(
        "(select id, attempt_count, worker_id, attempt_started_at, null::text as last_error \
          from canceled where was = 'RUNNING') c",
        "'CANCELED'",
    );
    let counted = count_finished("(select queue, status, 1 as delta from canceled) c");
    format!(
        r#"
        canceled as (
            update tasks t
            set status = 'CANCELED', completed_at = now(), next_attempt_at = null,
                lease_expires_at = null, updated_at = now()
            from target where t.id = target.id
            returning t.*, target.was
        ),
        recorded as ({recorded}),
        counted as ({counted}),
        notified as (
            select pg_notify('{CHANNEL_TASK_CANCELED}', id::text) from canceled
            where was = 'RUNNING'
        )"#
    )
}
