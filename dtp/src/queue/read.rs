//! Reading tasks: one by id, and pages newest first.

use common::TaskStatus;
use sqlx::PgExecutor;

use super::row::TASK_COLUMNS;
use super::{Error, TaskId, TaskRow};

/// The task with this id, or [`Error::NotFound`].
pub async fn get(db: impl PgExecutor<'_>, id: TaskId) -> Result<TaskRow, Error> {
    sqlx::query_as(&format!("select {TASK_COLUMNS} from tasks where id = $1"))
        .bind(id.0)
        .fetch_optional(db)
        .await?
        .ok_or(Error::NotFound(id))
}

/// Filters of `GET /tasks`; every field optional.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only tasks in this state.
    pub status: Option<TaskStatus>,
    /// Only tasks of this handler type.
    pub task_type: Option<String>,
    /// Only the task created with this idempotency key.
    pub idempotency_key: Option<String>,
    /// Only tasks older than this id (the cursor of the previous page).
    pub after: Option<TaskId>,
    /// At most this many.
    pub limit: i64,
}

/// A page of tasks, newest first.
pub async fn list(db: impl PgExecutor<'_>, filter: &ListFilter) -> Result<Vec<TaskRow>, Error> {
    let rows = sqlx::query_as(&format!(
        r#"
        select {TASK_COLUMNS} from tasks
        where ($1::text is null or status = $1)
          and ($2::text is null or type = $2)
          and ($3::bigint is null or id < $3)
          and ($5::text is null or idempotency_key = $5)
        order by id desc
        limit $4
        "#
    ))
    .bind(filter.status.map(TaskStatus::as_str))
    .bind(&filter.task_type)
    .bind(filter.after.map(|id| id.0))
    .bind(filter.limit)
    .bind(&filter.idempotency_key)
    .fetch_all(db)
    .await?;
    Ok(rows)
}
