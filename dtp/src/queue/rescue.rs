//! Rescuing tasks whose lease expired: their worker died, hung, or lost the network.

use std::time::Duration;

use sqlx::PgConnection;

use common::TaskStatus;

use super::complete::{failed_attempt, record_attempts, ENDED_ATTEMPT};
use super::counts::count_finished;
use super::ready::announce_ready;
use super::status::StoredStatus;
use super::{millis, Fence, TaskId};

/// A RUNNING task whose lease ran out, locked by the rescuer's transaction.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExpiredLease {
    /// Task id.
    pub id: i64,
    /// The lost attempt.
    pub attempt_count: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// The worker that lost it.
    pub worker_id: Option<String>,
    /// Its queue.
    pub queue: String,
    /// Its type.
    #[sqlx(rename = "type")]
    pub task_type: String,
}

impl ExpiredLease {
    /// The task id.
    pub fn task_id(&self) -> TaskId {
        TaskId(self.id)
    }
}

/// Locks up to `limit` RUNNING tasks whose lease expired (database clock), skipping those
/// another rescuer holds. Call inside a transaction, then [`fail_expired`] in the same one.
///
/// Nothing is found until the server has been up for one `lease`: while it was down no worker
/// could renew, so a lease that ran out during an outage says nothing about its worker, which
/// gets a full lease after the restart to renew it.
pub async fn lock_expired(
    conn: &mut PgConnection,
    limit: i64,
    lease: Duration,
) -> Result<Vec<ExpiredLease>, sqlx::Error> {
    sqlx::query_as(
        r#"
        select id, attempt_count, max_attempts, worker_id, queue, type from tasks
        where status = 'RUNNING' and lease_expires_at < now()
          and pg_postmaster_start_time() < now() - $2 * interval '1 millisecond'
        order by lease_expires_at
        limit $1
        for update skip locked
        "#,
    )
    .bind(limit)
    .bind(millis(lease))
    .fetch_all(conn)
    .await
}

/// Counts each lost attempt as failed with "worker lost" (outcome `LOST` in its history):
/// retried after its delay, or FAILED when attempts are used up; wakes the workers (at commit) when any is due again. Returns
/// `(id, new status)` per task changed.
pub async fn fail_expired(
    conn: &mut PgConnection,
    lost: &[(ExpiredLease, Duration)],
) -> Result<Vec<(TaskId, TaskStatus)>, sqlx::Error> {
    let ids: Vec<i64> = lost.iter().map(|(t, _)| t.id).collect();
    let attempts: Vec<i32> = lost.iter().map(|(t, _)| t.attempt_count).collect();
    let delays: Vec<i64> = lost.iter().map(|(_, d)| millis(*d)).collect();
    let set = failed_attempt(
        "t.attempt_count >= t.max_attempts",
        "lost.delay_ms",
        "'worker lost'",
    );
    let recorded = record_attempts("rescued", "'LOST'");
    let counted = count_finished("(select queue, status, 1 as delta from rescued) r");
    let announced = announce_ready("rescued");
    // Found through the primary key, not by walking tasks_running_lease (see `Fence::sql`).
    let running = Fence::running("t");
    let rows: Vec<(i64, StoredStatus)> = sqlx::query_as(&format!(
        r#"
        with rescued as (
        update tasks t set {set}
        from unnest($1::bigint[], $2::integer[], $3::bigint[]) as lost(task_id, attempt, delay_ms)
        where t.id = lost.task_id and {running}
          and t.attempt_count = lost.attempt and t.lease_expires_at < now()
        returning {ENDED_ATTEMPT}, t.status, t.run_at, t.queue, t.priority, t.waiting
        ),
        recorded as ({recorded}),
        counted as ({counted}),
        announced as ({announced})
        select id, status from rescued, (select count(*) from announced) a
        "#
    ))
    .bind(&ids)
    .bind(&attempts)
    .bind(&delays)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, StoredStatus(status))| (TaskId(id), status))
        .collect())
}
