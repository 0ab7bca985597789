//! Queues: their settings (`queues`, read by every claim) and what each holds now.

use common::limits::is_queue_name;
use common::{Queue, QueueCounts, QueuePatch};
use sqlx::{Connection, PgConnection, PgExecutor};

use super::counts::FINISHED_COUNTS;
use super::CHANNEL_QUEUE_CHANGED;

#[derive(sqlx::FromRow)]
struct QueueRow {
    name: String,
    paused: bool,
    concurrency_limit: Option<i32>,
    rate_limit_per_second: Option<f64>,
    pending: i64,
    running: i64,
    succeeded: i64,
    failed: i64,
    canceled: i64,
    oldest_pending_age_ms: Option<i64>,
}

impl From<QueueRow> for Queue {
    fn from(row: QueueRow) -> Self {
        Queue {
            name: row.name,
            paused: row.paused,
            concurrency_limit: row.concurrency_limit,
            rate_limit_per_second: row.rate_limit_per_second,
            counts: QueueCounts {
                pending: row.pending,
                running: row.running,
                succeeded: row.succeeded,
                failed: row.failed,
                canceled: row.canceled,
            },
            oldest_pending_age_ms: row.oldest_pending_age_ms,
        }
    }
}

/// The queues and their tasks per state; `only` narrows them to one queue (a name checked by
/// `is_queue_name`, written as a literal so that a cached plan walks that queue's part of each
/// index). PENDING and RUNNING tasks are counted from their partial indexes, which hold only
/// them; finished ones are read from the counts the statements that change them keep
/// (`queue::counts`), so a table of millions of finished tasks costs nothing here.
fn queues_statement(only: Option<&str>) -> String {
    let (tasks_where, counts_where, names_where) = match only {
        Some(name) => (
            format!("and queue = '{name}'"),
            format!("where queue = '{name}'"),
            format!("where n.name = '{name}'"),
        ),
        None => Default::default(),
    };
    format!(
        r#"
        with pending as (
            select queue as name, count(*) as tasks,
                   min(run_at) filter (where run_at <= now()) as oldest_due
            from tasks where status = 'PENDING' {tasks_where}
            group by queue
        ),
        running as (
            select queue as name, count(*) as tasks
            from tasks where status = 'RUNNING' {tasks_where}
            group by queue
        ),
        finished as (
            select queue as name,
                   coalesce(sum(tasks) filter (where status = 'SUCCEEDED'), 0) as succeeded,
                   coalesce(sum(tasks) filter (where status = 'FAILED'), 0) as failed,
                   coalesce(sum(tasks) filter (where status = 'CANCELED'), 0) as canceled
            from {FINISHED_COUNTS} {counts_where}
            group by queue
            having sum(tasks) <> 0
        ),
        names as (
            select name from pending
            union select name from running
            union select name from finished
            union select name from queues
            union select 'default'
        )
        select n.name, coalesce(q.paused, false) as paused, q.concurrency_limit,
               q.rate_limit_per_second,
               coalesce(p.tasks, 0) as pending, coalesce(r.tasks, 0) as running,
               coalesce(f.succeeded, 0)::bigint as succeeded,
               coalesce(f.failed, 0)::bigint as failed,
               coalesce(f.canceled, 0)::bigint as canceled,
               (extract(epoch from now() - p.oldest_due) * 1000)::bigint
                   as oldest_pending_age_ms
        from names n
        left join pending p on p.name = n.name
        left join running r on r.name = n.name
        left join finished f on f.name = n.name
        left join queues q on q.name = n.name
        {names_where}
        order by n.name
        "#
    )
}

/// Every queue: the default one, each a task names, and each with settings; by name.
pub async fn queues(db: impl PgExecutor<'_>) -> Result<Vec<Queue>, sqlx::Error> {
    let rows: Vec<QueueRow> = sqlx::query_as(&queues_statement(None))
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Queue::from).collect())
}

/// The queue `name` if it exists: the default queue, one a task names, or one with settings.
pub async fn queue(db: impl PgExecutor<'_>, name: &str) -> Result<Option<Queue>, sqlx::Error> {
    if !is_queue_name(name) {
        return Ok(None);
    }
    let row: Option<QueueRow> = sqlx::query_as(&queues_statement(Some(name)))
        .fetch_optional(db)
        .await?;
    Ok(row.map(Queue::from))
}

/// Changes the settings `patch` gives (a queue without settings gets them) and tells every
/// claimer, at commit; returns the queue as it is then. The caller has validated the values
/// and the name.
pub async fn configure(
    conn: &mut PgConnection,
    name: &str,
    patch: &QueuePatch,
) -> Result<Queue, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query(&format!(
        r#"
        with configured as (
            insert into queues as q (name, paused, concurrency_limit, rate_limit_per_second)
            values ($1, coalesce($2, false), $3, $4)
            on conflict (name) do update set
                paused = coalesce($2, q.paused),
                concurrency_limit = case when $5 then $3 else q.concurrency_limit end,
                rate_limit_per_second = case when $6 then $4 else q.rate_limit_per_second end,
                updated_at = now()
            returning name
        )
        select pg_notify('{CHANNEL_QUEUE_CHANGED}', name) from configured
        "#
    ))
    .bind(name)
    .bind(patch.paused)
    .bind(patch.concurrency_limit.flatten())
    .bind(patch.rate_limit_per_second.flatten())
    .bind(patch.concurrency_limit.is_some())
    .bind(patch.rate_limit_per_second.is_some())
    .execute(&mut *tx)
    .await?;
    let configured = queue(&mut *tx, name)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    tx.commit().await?;
    Ok(configured)
}
