//! Claiming due tasks and renewing the leases of running ones.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgExecutor;

use super::{millis, TaskId};

/// A task just claimed: what its worker needs to run it and to fence its outcome.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedTask {
    /// Task id.
    pub id: i64,
    /// Handler name.
    #[sqlx(rename = "type")]
    pub task_type: String,
    /// Handler input.
    pub payload: Value,
    /// This attempt's number: the fencing token for every write about it.
    pub attempt_count: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Per-task execution timeout.
    pub timeout_ms: Option<i64>,
}

impl ClaimedTask {
    /// The task id.
    pub fn task_id(&self) -> TaskId {
        TaskId(self.id)
    }
}

/// Claims up to `limit` due PENDING tasks in one statement: highest priority first, then the
/// longest due, skipping rows other workers hold locked, and marks them RUNNING under a lease of
/// `lease` (database clock) held by `worker_id`.
pub async fn claim_available(
    db: impl PgExecutor<'_>,
    worker_id: &str,
    limit: i64,
    lease: Duration,
) -> Result<Vec<ClaimedTask>, sqlx::Error> {
    sqlx::query_as(
        r#"
        with next as (
            select id from tasks
            where status = 'PENDING' and run_at <= now()
            order by priority desc, run_at, id
            limit $1
            for update skip locked
        )
        update tasks t
        set status = 'RUNNING',
            attempt_count = t.attempt_count + 1,
            worker_id = $2,
            lease_expires_at = now() + $3 * interval '1 millisecond',
            processing_started_at = coalesce(t.processing_started_at, now()),
            next_attempt_at = null,
            updated_at = now()
        from next
        where t.id = next.id
        returning t.id, t.type, t.payload, t.attempt_count, t.max_attempts, t.timeout_ms
        "#,
    )
    .bind(limit)
    .bind(worker_id)
    .bind(millis(lease))
    .fetch_all(db)
    .await
}

/// Extends the lease of each `(task, attempt)` still RUNNING at that attempt and returns the ids
/// renewed. A held task missing from the answer was canceled or rescued: its worker must stop.
pub async fn renew_leases(
    db: impl PgExecutor<'_>,
    held: &[(TaskId, i32)],
    lease: Duration,
) -> Result<Vec<TaskId>, sqlx::Error> {
    let ids: Vec<i64> = held.iter().map(|(id, _)| id.0).collect();
    let attempts: Vec<i32> = held.iter().map(|(_, attempt)| *attempt).collect();
    let renewed: Vec<(i64,)> = sqlx::query_as(
        r#"
        update tasks t
        set lease_expires_at = now() + $3 * interval '1 millisecond'
        from unnest($1::bigint[], $2::integer[]) as held(id, attempt)
        where t.id = held.id and t.status = 'RUNNING' and t.attempt_count = held.attempt
        returning t.id
        "#,
    )
    .bind(&ids)
    .bind(&attempts)
    .bind(millis(lease))
    .fetch_all(db)
    .await?;
    Ok(renewed.into_iter().map(|(id,)| TaskId(id)).collect())
}
