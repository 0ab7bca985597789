//! Finished tasks per queue and state, kept in `queue_counts` by the statements that change
//! them (see `migrations/dtp/0009_finished_counts.sql`), so that `GET /queues` does not read
//! every finished task.

use sqlx::{Connection, PgConnection};

/// The number of shards a count is spread over (one per connection, by backend pid).
const SHARDS: i32 = 32;

/// A CTE body that adds to `queue_counts` the changes `changed` (SQL naming a relation, e.g. a
/// CTE, with columns `queue`, `status`, `delta`: `+1` for a task that entered `status`, `-1` for
/// one that left it). Rows whose `status` is not a finished state are ignored, so a statement
/// may pass every row it changed. Rows are added in key order, so two statements never wait on
/// each other's rows in opposite orders.
pub(super) fn count_finished(changed: &str) -> String {
    format!(
        "insert into queue_counts as c (queue, status, shard, tasks) \
         select queue, status, (pg_backend_pid() % {SHARDS})::smallint, sum(delta) \
         from {changed} \
         where status in ('SUCCEEDED', 'FAILED', 'CANCELED') \
         group by queue, status \
         order by queue, status \
         on conflict (queue, status, shard) do update set tasks = c.tasks + excluded.tasks"
    )
}

/// Adds every shard's count into shard 0 and deletes the rows that count nothing, so that
/// `queue_counts` keeps about one row per queue and state however many connections wrote to it
/// and however many queues came and went. Rows are taken in key order, as writers take them.
/// Returns how many rows it wrote or deleted.
pub async fn fold_counts(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    // Two statements: a statement's CTEs cannot see each other's changes, so the rows the fold
    // brings to zero are found by the second. Each keeps every queue's sum as it was.
    let folded = sqlx::query(
        r#"
        with folded as (
            delete from queue_counts c
            using (select queue, status, shard from queue_counts where shard <> 0
                   order by queue, status, shard for update) f
            where (c.queue, c.status, c.shard) = (f.queue, f.status, f.shard)
            returning c.queue, c.status, c.tasks
        )
        insert into queue_counts as c (queue, status, shard, tasks)
        select queue, status, 0, sum(tasks) from folded
        group by queue, status
        order by queue, status
        on conflict (queue, status, shard) do update set tasks = c.tasks + excluded.tasks
        "#,
    )
    .execute(&mut *conn)
    .await?;
    let emptied = sqlx::query("delete from queue_counts where tasks = 0")
        .execute(&mut *conn)
        .await?;
    Ok(folded.rows_affected() + emptied.rows_affected())
}

/// Counts the finished tasks again from `tasks` and replaces `queue_counts` with the result.
/// For a table written by something other than DTP's statements (a bulk load by SQL, a restore,
/// a process of a version before the counts): it locks `queue_counts` against every statement
/// that changes a count for the duration of the count, which reads every finished task
/// (about 1 s per 5,000,000 on a small machine). A writer takes `queue_counts`' ROW EXCLUSIVE
/// lock when its statement starts and holds it until it commits; the EXCLUSIVE lock taken
/// here waits for every such writer, and every later one waits for it.
pub async fn recount(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let mut tx = conn.begin().await?;
    // Once granted, every change counted so far is committed, and every later one waits.
    sqlx::query("lock table queue_counts in exclusive mode")
        .execute(&mut *tx)
        .await?;
    sqlx::query("delete from queue_counts")
        .execute(&mut *tx)
        .await?;
    let counted = sqlx::query(
        "insert into queue_counts (queue, status, shard, tasks) \
         select queue, status, 0, count(*) from tasks \
         where status in ('SUCCEEDED', 'FAILED', 'CANCELED') group by queue, status",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(counted.rows_affected())
}
