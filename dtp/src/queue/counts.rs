//! Finished tasks per queue and state, so that `GET /queues` does not read every finished task:
//! the statements that change them append their changes to `queue_count_changes`, and
//! maintenance folds those into `queue_counts` once a second (see
//! `migrations/dtp/0009_finished_counts.sql` and `0027_queue_count_changes.sql`). Readers add
//! the two ([`FINISHED_COUNTS`]).

use sqlx::{Connection, PgConnection};

/// The finished counts as a relation (`queue`, `status`, `tasks`, several rows per queue and
/// state): the folded ones and the changes not folded yet.
pub(super) const FINISHED_COUNTS: &str = "(select queue, status, tasks from queue_counts \
     union all select queue, status, tasks from queue_count_changes) finished_counts";

/// A CTE body that appends to `queue_count_changes` the changes `changed` (SQL naming a
/// relation, e.g. a CTE, with columns `queue`, `status`, `delta`: `+1` for a task that entered
/// `status`, `-1` for one that left it). Rows whose `status` is not a finished state are
/// ignored, so a statement may pass every row it changed. It only inserts: no two writers wait
/// on each other, and no row gathers versions.
pub(super) fn count_finished(changed: &str) -> String {
    format!(
        "insert into queue_count_changes (queue, status, tasks) \
         select queue, status, sum(delta) from {changed} \
         where status in ('SUCCEEDED', 'FAILED', 'CANCELED') \
         group by queue, status"
    )
}

/// Adds the appended changes, and the shards a process of an earlier release wrote, into one
/// row per queue and state (shard 0), and deletes the rows that count nothing, so that
/// `queue_counts` keeps about one row per queue and state. Rows are taken in key order, as
/// writers of the earlier release take them. Returns how many rows it wrote or deleted.
pub async fn fold_counts(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    // Two statements: a statement's CTEs cannot see each other's changes, so the rows the fold
    // brings to zero are found by the second. Each keeps every queue's sum as it was. A change
    // committed after the first began is not deleted by it, and is folded next time.
    let folded = sqlx::query(
        r#"
        with shards as (
            delete from queue_counts c
            using (select queue, status, shard from queue_counts where shard <> 0
                   order by queue, status, shard for update) f
            where (c.queue, c.status, c.shard) = (f.queue, f.status, f.shard)
            returning c.queue, c.status, c.tasks
        ),
        changes as (
            delete from queue_count_changes returning queue, status, tasks
        )
        insert into queue_counts as c (queue, status, shard, tasks)
        select queue, status, 0, sum(tasks)
        from (select * from shards union all select * from changes) moved
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

/// Counts the finished tasks again from `tasks` and replaces the counts with the result.
/// For a table written by something other than DTP's statements (a bulk load by SQL, a restore,
/// a process of a version before the counts): it locks the counts against every statement
/// that changes a count for the duration of the count, which reads every finished task
/// (about 1 s per 5,000,000 on a small machine). A writer takes the ROW EXCLUSIVE lock of the
/// table it writes when its statement starts and holds it until it commits; the EXCLUSIVE
/// locks taken here wait for every such writer, and every later one waits for them.
pub async fn recount(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let mut tx = conn.begin().await?;
    // Once granted, every change counted so far is committed, and every later one waits.
    sqlx::query("lock table queue_counts, queue_count_changes in exclusive mode")
        .execute(&mut *tx)
        .await?;
    sqlx::query("delete from queue_counts")
        .execute(&mut *tx)
        .await?;
    sqlx::query("delete from queue_count_changes")
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
