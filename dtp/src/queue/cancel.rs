//! Cancel: PENDING and RUNNING tasks become CANCELED at once; the database is the truth.

use common::TaskStatus;
use sqlx::{Connection, PgConnection};

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
            let task: TaskRow = sqlx::query_as(&format!(
                r#"
                update tasks
                set status = 'CANCELED', completed_at = now(), next_attempt_at = null,
                    lease_expires_at = null, updated_at = now()
                where id = $1
                returning {TASK_COLUMNS}
                "#
            ))
            .bind(id.0)
            .fetch_one(&mut *tx)
            .await?;
            let was_running = status == TaskStatus::Running;
            if was_running {
                sqlx::query("select pg_notify($1, $2)")
                    .bind(CHANNEL_TASK_CANCELED)
                    .bind(id.0.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(CancelOutcome::Canceled { task, was_running })
        }
    }
}
