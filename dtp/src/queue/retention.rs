//! Retention: deleting finished tasks (and, by cascade, their attempts) some time after they
//! finished.

use std::time::Duration;

use common::TaskStatus;
use sqlx::PgExecutor;

use super::counts::count_finished;
use super::millis;

/// Deletes up to `batch` tasks in `status` (a terminal one) that finished more than `older_than`
/// ago, oldest first; returns how many. Rows another transaction holds locked (a retry, a
/// delete) are skipped, so pruning never waits on them, and a batch holds its locks only for
/// the one statement.
pub async fn prune(
    db: impl PgExecutor<'_>,
    status: TaskStatus,
    older_than: Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    // The state is written as a literal, so that each state's statement walks its part of
    // tasks_finished.
    let status = status.as_str();
    let counted = count_finished("(select queue, status, -1 as delta from deleted) d");
    let deleted: i64 = sqlx::query_scalar(&format!(
        r#"
        with doomed as (
            select id from tasks
            where status = '{status}' and completed_at is not null
              and completed_at < now() - $1 * interval '1 millisecond'
            order by completed_at
            limit $2
            for update skip locked
        ),
        deleted as (
            delete from tasks t using doomed where t.id = doomed.id
            returning t.queue, t.status
        ),
        counted as ({counted})
        select count(*) from deleted
        "#
    ))
    .bind(millis(older_than))
    .bind(batch)
    .fetch_one(db)
    .await?;
    Ok(u64::try_from(deleted).unwrap_or(0))
}
