//! Queues: their settings (`queues`, read by every claim) and what each holds now.

use common::limits::is_queue_name;
use common::{Queue, QueueCounts, QueuePatch};
use sqlx::{Connection, PgConnection, PgExecutor};

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

/// The queues and their tasks per state, with `where` (e.g. `where queue = $1`) narrowing the
/// tasks counted. Counting reads every task counted: on a big table this is the cost of
/// `GET /queues` (one pass for all queues, not one per queue).
fn queues_statement(tasks_where: &str, names_where: &str) -> String {
    format!(
        r#"
        with counts as (
            select queue as name,
                   count(*) filter (where status = 'PENDING') as pending,
                   count(*) filter (where status = 'RUNNING') as running,
                   count(*) filter (where status = 'SUCCEEDED') as succeeded,
                   count(*) filter (where status = 'FAILED') as failed,
                   count(*) filter (where status = 'CANCELED') as canceled,
                   min(run_at) filter (where status = 'PENDING' and run_at <= now())
                       as oldest_due
            from tasks {tasks_where}
            group by queue
        ),
        names as (
            select name from counts
            union select name from queues
            union select 'default'
        )
        select n.name, coalesce(q.paused, false) as paused, q.concurrency_limit,
               q.rate_limit_per_second,
               coalesce(c.pending, 0) as pending, coalesce(c.running, 0) as running,
               coalesce(c.succeeded, 0) as succeeded, coalesce(c.failed, 0) as failed,
               coalesce(c.canceled, 0) as canceled,
               (extract(epoch from now() - c.oldest_due) * 1000)::bigint
                   as oldest_pending_age_ms
        from names n
        left join counts c on c.name = n.name
        left join queues q on q.name = n.name
        {names_where}
        order by n.name
        "#
    )
}

/// Every queue: the default one, each a task names, and each with settings; by name.
pub async fn queues(db: impl PgExecutor<'_>) -> Result<Vec<Queue>, sqlx::Error> {
    let rows: Vec<QueueRow> = sqlx::query_as(&queues_statement("", ""))
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Queue::from).collect())
}

/// The queue `name` if it exists: the default queue, one a task names, or one with settings.
pub async fn queue(db: impl PgExecutor<'_>, name: &str) -> Result<Option<Queue>, sqlx::Error> {
    if !is_queue_name(name) {
        return Ok(None);
    }
    // Written as a literal (a queue name has only `[A-Za-z0-9_.:-]`), so that a cached plan can
    // count a named queue's tasks through the partial index tasks_queue_id.
    let row: Option<QueueRow> = sqlx::query_as(&queues_statement(
        &format!("where queue = '{name}'"),
        &format!("where n.name = '{name}'"),
    ))
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
