//! Reading tasks: one by id, and pages newest first.

use chrono::{DateTime, Utc};
use common::limits::is_queue_name;
use common::TaskStatus;
use sqlx::{PgExecutor, PgPool, Postgres, QueryBuilder};

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
    /// Only tasks in this queue (served by `tasks_queue_id`).
    pub queue: Option<String>,
    /// Only tasks whose last error contains this text (case-sensitive). No index serves it:
    /// the page walks newest first until it is full.
    pub last_error_contains: Option<String>,
    /// Only tasks whose last error is exactly this (a failure group of the dashboard).
    pub last_error: Option<String>,
    /// Only tasks created at or after this time. Like the error filters, no index serves it:
    /// the page walks newest first until it is full (ids grow with creation time, so a range
    /// ending now is read first).
    pub created_after: Option<DateTime<Utc>>,
    /// Only tasks created before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// Only the task created with this idempotency key.
    pub idempotency_key: Option<String>,
    /// Only tasks older than this id (the cursor of the previous page).
    pub after: Option<TaskId>,
    /// At most this many.
    pub limit: i64,
    /// Which of the tasks' possibly large values the page reads.
    pub detail: Detail,
}

/// Which of a task's possibly large values a page reads: neither unless asked, since one
/// payload may be a megabyte and a page 500 tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Detail {
    /// The payload.
    pub payload: bool,
    /// The result.
    pub result: bool,
}

impl Detail {
    /// The columns of a task read for a page: [`TASK_COLUMNS`] with a constant in place of
    /// `payload` and `result`, and those asked for as JSON text (never parsed: a megabyte of
    /// `[0,0,…]` is tens of megabytes as a parsed value) in `payload_text` and `result_text`.
    fn columns(self) -> String {
        let columns = TASK_COLUMNS
            .replacen("payload", "'null'::jsonb as payload", 1)
            .replacen("result", "null::jsonb as result", 1);
        let text = |asked: bool, column: &str| match asked {
            true => format!("{column}::text as {column}_text"),
            false => format!("null::text as {column}_text"),
        };
        format!(
            "{columns}, {}, {}",
            text(self.payload, "payload"),
            text(self.result, "result")
        )
    }
}

/// The most bytes of payloads and results (as JSON text) a page holds: it ends sooner than
/// `limit` when the next task would take it past this, but always holds one task. Rows are read
/// a few at a time, so a request holds about this much however large its tasks.
pub const PAGE_DETAIL_BYTES: usize = 4 * 1024 * 1024;

/// A page of tasks, newest first, and the cursor of the next one.
#[derive(Debug, Clone)]
pub struct TaskListPage {
    /// The tasks (their `payload` and `result` are always null here), each with its payload and
    /// result as JSON text when [`ListFilter::detail`] asked for them.
    pub rows: Vec<ListedTask>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next_after: Option<TaskId>,
}

/// A task of a page.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ListedTask {
    /// The task, without its payload and result.
    #[sqlx(flatten)]
    pub row: TaskRow,
    /// Its payload as stored, JSON text, when asked for.
    pub payload_text: Option<String>,
    /// Its result as stored, JSON text (`None` when it has none or it was not asked for).
    pub result_text: Option<String>,
}

impl ListedTask {
    fn detail_bytes(&self) -> usize {
        let len = |text: &Option<String>| text.as_ref().map_or(0, String::len);
        len(&self.payload_text) + len(&self.result_text)
    }
}

/// The payload and result a row is assumed to hold until a larger one is read. Rows are read in
/// groups that fit what is left of the page's budget at this size (16 rows at first), so a
/// group of unread rows cannot take a request far past it unless they are larger still.
const ASSUMED_ROW_BYTES: usize = 256 * 1024;

impl ListFilter {
    /// The bulk filter matching the same tasks (every page of them); `all` when it has no
    /// condition.
    pub fn to_bulk(&self) -> common::BulkFilter {
        let mut bulk = common::BulkFilter {
            queue: self.queue.clone(),
            task_type: self.task_type.clone(),
            status: self.status,
            created_before: self.created_before,
            created_after: self.created_after,
            last_error_contains: self.last_error_contains.clone(),
            last_error: self.last_error.clone(),
            all: false,
        };
        bulk.all = bulk == common::BulkFilter::default();
        bulk
    }
}

/// The statement finding the ids of [`list`]'s page for `filter`, written with only the
/// conditions the filter sets: a condition such as `($1 is null or status = $1)` hides its
/// column from the planner in a cached generic plan, which then walks the whole table. Each
/// combination of filters is its own statement, each served by an index: `tasks_failed` /
/// `tasks_canceled` (few rows each, see migration 0004), `tasks_claimable` /
/// `tasks_running_lease` for open tasks, `tasks_idempotency_key`; an unfiltered page or
/// `SUCCEEDED` (most rows) walks the primary key, newest first, and stops after `limit`.
///
/// The ids are found first, by a query that reads nothing but the index's columns, and only
/// those rows are then read whole. Asked for whole rows at once, the planner priced the walk
/// down the primary key (the heap is in id order) below a queue's own index whatever the
/// queue's share (`cargo bench --bench big_table`).
fn ids_statement<'a>(prefix: &str, filter: &'a ListFilter) -> QueryBuilder<'a, Postgres> {
    let mut sql = QueryBuilder::new(format!("{prefix} select id from tasks where true"));
    push_matching(
        &mut sql,
        Matching {
            status: filter.status,
            task_type: filter.task_type.as_ref(),
            queue: filter.queue.as_ref(),
            last_error_contains: filter.last_error_contains.as_ref(),
            last_error: filter.last_error.as_ref(),
            created_after: filter.created_after,
            created_before: filter.created_before,
        },
    );
    if let Some(key) = &filter.idempotency_key {
        sql.push(" and idempotency_key = ").push_bind(key);
    }
    if let Some(after) = filter.after {
        sql.push(" and id < ").push_bind(after.0);
    }
    sql.push(" order by id desc limit ").push_bind(filter.limit);
    sql
}

/// The conditions a page of tasks and a bulk action share.
pub(super) struct Matching<'a> {
    pub(super) status: Option<TaskStatus>,
    pub(super) task_type: Option<&'a String>,
    pub(super) queue: Option<&'a String>,
    pub(super) last_error_contains: Option<&'a String>,
    pub(super) last_error: Option<&'a String>,
    pub(super) created_after: Option<DateTime<Utc>>,
    pub(super) created_before: Option<DateTime<Utc>>,
}

/// Appends ` and …` for each condition `matching` sets.
pub(super) fn push_matching<'a>(sql: &mut QueryBuilder<'a, Postgres>, matching: Matching<'a>) {
    if let Some(status) = matching.status {
        // A literal, not a parameter: a generic plan cannot match `status = $1` to the
        // predicate of a partial index. The value is one of five constants.
        sql.push(format_args!(" and status = '{}'", status.as_str()));
    }
    if let Some(task_type) = matching.task_type {
        sql.push(" and type = ").push_bind(task_type);
    }
    if let Some(queue) = matching.queue {
        // A literal too, for the partial index `tasks_queue_id`. Only a queue name (letters,
        // digits, `_.:-`) is written into the statement; no task is in anything else.
        if is_queue_name(queue) {
            sql.push(format_args!(" and queue = '{queue}'"));
        } else {
            sql.push(" and false");
        }
    }
    if let Some(text) = matching.last_error_contains {
        sql.push(" and strpos(last_error, ")
            .push_bind(text)
            .push(") > 0");
    }
    if let Some(text) = matching.last_error {
        sql.push(" and last_error = ").push_bind(text);
    }
    if let Some(after) = matching.created_after {
        sql.push(" and created_at >= ").push_bind(after);
    }
    if let Some(before) = matching.created_before {
        sql.push(" and created_at < ").push_bind(before);
    }
}

/// A page of tasks, newest first. With payloads or results it holds at most
/// [`PAGE_DETAIL_BYTES`] of them: rows are read a few at a time, as many as fit in what is left
/// at the size of the largest row seen so far (at least [`ASSUMED_ROW_BYTES`]).
pub async fn list(db: &PgPool, filter: &ListFilter) -> Result<TaskListPage, Error> {
    let ids: Vec<i64> = ids_statement("", filter)
        .build_query_scalar()
        .fetch_all(db)
        .await?;
    let full = i64::try_from(ids.len()).unwrap_or(i64::MAX) == filter.limit;
    let read = format!(
        "select {} from tasks where id = any($1) order by id desc",
        filter.detail.columns()
    );
    let mut rows: Vec<ListedTask> = Vec::with_capacity(ids.len());
    let (mut left, mut largest, mut rest) = (PAGE_DETAIL_BYTES, ASSUMED_ROW_BYTES, ids.as_slice());
    while !rest.is_empty() {
        let take = if filter.detail == Detail::default() {
            rest.len()
        } else {
            (left / largest).clamp(1, 100).min(rest.len())
        };
        let (chunk, later) = rest.split_at(take);
        let read: Vec<ListedTask> = sqlx::query_as(&read).bind(chunk).fetch_all(db).await?;
        for task in read {
            let bytes = task.detail_bytes();
            if bytes > left && !rows.is_empty() {
                let next_after = rows.last().map(|t| TaskId(t.row.id));
                return Ok(TaskListPage { rows, next_after });
            }
            left = left.saturating_sub(bytes);
            largest = largest.max(bytes);
            rows.push(task);
        }
        rest = later;
    }
    // The ids read, not the rows: a task deleted meanwhile does not end the pages early.
    let next_after = if full {
        ids.last().map(|id| TaskId(*id))
    } else {
        None
    };
    Ok(TaskListPage { rows, next_after })
}

/// The plan PostgreSQL chooses for [`list`] with `filter`, one line per row of `EXPLAIN`: for
/// tests and operators checking that a filter is served by an index.
pub async fn explain_list(
    db: impl PgExecutor<'_>,
    filter: &ListFilter,
) -> Result<Vec<String>, Error> {
    let rows: Vec<(String,)> = ids_statement("explain", filter)
        .build_query_as()
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(|(line,)| line).collect())
}

/// FAILED tasks with the same last error in the same queue: what the dashboard's failures page
/// lists, most tasks first.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FailureGroup {
    /// The error they share (`None`: failed without one recorded).
    pub error: Option<String>,
    /// Their queue.
    pub queue: String,
    /// How many tasks.
    pub tasks: i64,
    /// When the latest of them failed.
    pub last_failed_at: Option<DateTime<Utc>>,
}

/// The `limit` largest [`FailureGroup`]s (in `queue` only, when given). FAILED tasks are few
/// (they are pruned like the rest, see `DTP_KEEP_FAILED`) and `tasks_failed` finds them.
pub async fn failure_groups(
    db: impl PgExecutor<'_>,
    queue: Option<&str>,
    limit: i64,
) -> Result<Vec<FailureGroup>, Error> {
    let groups = sqlx::query_as(
        "select last_error as error, queue, count(*) as tasks, max(completed_at) as last_failed_at \
         from tasks where status = 'FAILED' and ($1::text is null or queue = $1) \
         group by last_error, queue order by tasks desc, last_failed_at desc nulls last limit $2",
    )
    .bind(queue)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(groups)
}
