//! An operator's actions on one task: retry a finished one, run a waiting one now, delete a
//! finished one. Each is one fenced statement: it changes the row only in the states the action
//! applies to, so it cannot race a worker's claim or completion into a state the state machine
//! does not draw.

use std::time::Duration;

use common::limits::MAX_ATTEMPTS;
use common::TaskStatus;
use sqlx::{Connection, PgConnection, PgExecutor};

use super::counts::count_finished;
use super::ready::announce_ready;
use super::row::TASK_COLUMNS;
use super::status::StoredStatus;
use super::{millis, Error, TaskId, TaskRow};

/// The tasks a retry applies to; `$2` is the most attempts a task may have.
pub(super) const RETRYABLE: &str = "status in ('FAILED', 'CANCELED') and attempt_count < $2";

/// How a retry changes a task (see [`retry`]); `$3` is the lease in milliseconds. One clause for
/// `retry` and the bulk retry.
const RETRY_SET: &str = r#"
        set status = 'PENDING',
            rerun_not_before = case when status = 'CANCELED' and attempt_count > 0
                                    then completed_at + $3 * interval '1 millisecond' end,
            run_at = case when status = 'CANCELED' and attempt_count > 0
                          then greatest(now(), completed_at + $3 * interval '1 millisecond')
                          else now() end,
            scheduled_for = case when attempt_count = 0 then least(scheduled_for, now())
                                 else scheduled_for end,
            next_attempt_at = null, completed_at = null,
            waiting = coalesce(status = 'CANCELED' and attempt_count > 0
                               and completed_at + $3 * interval '1 millisecond' > now(), false),
            max_attempts = greatest(max_attempts, attempt_count + 1), updated_at = now()"#;

/// The CTEs of every retry, after a CTE `target` of the tasks to retry (`id`, and `was`, their
/// state) that are [`RETRYABLE`] and whose rows the transaction holds locked (so that `was` is
/// the state the retry changes): `retried` (every column of the retried tasks) makes them
/// PENDING as [`RETRY_SET`] says, `counted` takes them off the finished counts, and
/// `announced` (to be read by the statement) announces those ready now.
pub(super) fn retried_target() -> String {
    let counted = count_finished("(select queue, was as status, -1 as delta from retried) r");
    let announced = announce_ready("retried");
    format!(
        r#"
        retried as (
            update tasks t {RETRY_SET}
            from target where t.id = target.id
            returning t.*, target.was
        ),
        counted as ({counted}),
        announced as ({announced})"#
    )
}

/// Makes a FAILED or CANCELED task PENDING again, due now. If its attempts were used up,
/// `maxAttempts` is raised by one so that it gets one more; the attempts already made and the
/// last error stay. Refused in any other state ([`Error::Refused`]), and for a task that has
/// made the most attempts a task may have ([`Error::NoAttemptsLeft`]).
///
/// A task canceled after it had started is due no sooner than `lease` after its cancel: its
/// canceled attempt may still be running until its worker hears of the cancel or its lease, as
/// last renewed, runs out; a new claim before then would run the task twice at once. A task
/// that never started counts as first due now (`scheduledFor`).
pub async fn retry(conn: &mut PgConnection, id: TaskId, lease: Duration) -> Result<TaskRow, Error> {
    let mut tx = conn.begin().await?;
    let retried_target = retried_target();
    let retried: Option<TaskRow> = sqlx::query_as(&format!(
        r#"
        with target as (select id, status as was from tasks where id = $1 and {RETRYABLE}
                        for update),
        {retried_target}
        select {TASK_COLUMNS} from retried, (select count(*) from announced) a
        "#
    ))
    .bind(id.0)
    .bind(MAX_ATTEMPTS.end())
    .bind(millis(lease))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(task) = retried else {
        let (status, attempts) = state_of(&mut *tx, id).await?;
        return Err(match status {
            TaskStatus::Failed | TaskStatus::Canceled if attempts >= *MAX_ATTEMPTS.end() => {
                Error::NoAttemptsLeft(id)
            }
            // Another state, or it changed in between: the state it is in now is the answer.
            status => Error::Refused {
                id,
                action: "retry",
                status,
            },
        });
    };
    tx.commit().await?;
    Ok(task)
}

/// Makes a PENDING task due now: a delayed task, or a retry waiting for its backoff. A task
/// that has not started yet counts as first due now (`scheduledFor`). Not before the time
/// [`retry`] set for a task canceled while it ran. Refused in any other state
/// ([`Error::Refused`]).
pub async fn run_now(conn: &mut PgConnection, id: TaskId) -> Result<TaskRow, Error> {
    let mut tx = conn.begin().await?;
    let announced = announce_ready("due");
    let due: Option<TaskRow> = sqlx::query_as(&format!(
        r#"
        with due as (
            update tasks
            set run_at = greatest(least(run_at, now()), rerun_not_before), next_attempt_at = null,
                waiting = coalesce(rerun_not_before > now(), false),
                scheduled_for = case when attempt_count = 0 then least(scheduled_for, now())
                                     else scheduled_for end,
                updated_at = now()
            where id = $1 and status = 'PENDING'
            returning *
        ),
        announced as ({announced})
        select {TASK_COLUMNS} from due, (select count(*) from announced) a
        "#
    ))
    .bind(id.0)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(task) = due else {
        return Err(refused(&mut *tx, id, "run-now").await);
    };
    tx.commit().await?;
    Ok(task)
}

/// Deletes a SUCCEEDED, FAILED or CANCELED task. Refused for PENDING and RUNNING ones
/// ([`Error::Refused`]): they must be canceled first, so that no worker runs a task that no
/// longer exists.
pub async fn delete(db: impl PgExecutor<'_> + Copy, id: TaskId) -> Result<(), Error> {
    let counted = count_finished("(select queue, status, -1 as delta from deleted) d");
    let deleted: i64 = sqlx::query_scalar(&format!(
        r#"
        with deleted as (
            delete from tasks where id = $1 and status in ('SUCCEEDED', 'FAILED', 'CANCELED')
            returning queue, status
        ),
        counted as ({counted})
        select count(*) from deleted
        "#
    ))
    .bind(id.0)
    .fetch_one(db)
    .await?;
    if deleted == 1 {
        return Ok(());
    }
    Err(refused(db, id, "delete").await)
}

/// Why `action` did not apply to task `id`: the state it is in now ([`Error::Refused`]), or
/// that there is no such task.
async fn refused(db: impl PgExecutor<'_>, id: TaskId, action: &'static str) -> Error {
    match state_of(db, id).await {
        Ok((status, _)) => Error::Refused { id, action, status },
        Err(e) => e,
    }
}

/// The state and attempt count of task `id`, for saying why an action did not apply;
/// [`Error::NotFound`] if there is no such task.
async fn state_of(db: impl PgExecutor<'_>, id: TaskId) -> Result<(TaskStatus, i32), Error> {
    let state: Option<(StoredStatus, i32)> =
        sqlx::query_as("select status, attempt_count from tasks where id = $1")
            .bind(id.0)
            .fetch_optional(db)
            .await?;
    state
        .map(|(StoredStatus(status), attempts)| (status, attempts))
        .ok_or(Error::NotFound(id))
}
