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
    /// This attempt's number.
    pub attempt_count: i32,
    /// Drawn at random by the claim; with the attempt number, the [`Fence`] of this attempt.
    pub claim_token: i64,
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

    /// What every write about this attempt is fenced on.
    pub fn fence(&self) -> Fence {
        Fence {
            attempt: self.attempt_count,
            claim_token: Some(self.claim_token),
        }
    }
}

/// What every write about one attempt is fenced on (besides `status = 'RUNNING'`): the attempt
/// number and the token its claim drew.
///
/// Built from an attempt number alone (`Fence::from(2)`), it matches any claim of that attempt:
/// enough for a program that drives the queue by hand, but it cannot tell a claim the database
/// lost in a crash from the next claim of the same attempt number. The worker always fences on
/// both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    /// The attempt's number (`attempt_count` once claimed).
    pub attempt: i32,
    /// The claim's token, when known.
    pub claim_token: Option<i64>,
}

impl From<i32> for Fence {
    fn from(attempt: i32) -> Self {
        Fence {
            attempt,
            claim_token: None,
        }
    }
}

/// Claims up to `limit` due PENDING tasks in one statement: highest priority first, then the
/// longest due, skipping rows other workers hold locked, and marks them RUNNING under a lease of
/// `lease` (database clock) held by `worker_id`. Each claim draws a fresh random token (see
/// [`Fence`]).
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
            claim_token = $4,
            lease_expires_at = now() + $3 * interval '1 millisecond',
            processing_started_at = coalesce(t.processing_started_at, now()),
            next_attempt_at = null,
            updated_at = now()
        from next
        where t.id = next.id
        returning t.id, t.type, t.payload, t.attempt_count, t.claim_token, t.max_attempts,
                  t.timeout_ms
        "#,
    )
    .bind(limit)
    .bind(worker_id)
    .bind(millis(lease))
    .bind(rand::random::<i64>())
    .fetch_all(db)
    .await
}

/// Extends the lease of each `(task, fence)` whose fence still holds and returns the ids renewed.
/// A held task missing from the answer was canceled or rescued: its worker must stop.
pub async fn renew_leases<F: Into<Fence> + Copy>(
    db: impl PgExecutor<'_>,
    held: &[(TaskId, F)],
    lease: Duration,
) -> Result<Vec<TaskId>, sqlx::Error> {
    let ids: Vec<i64> = held.iter().map(|(id, _)| id.0).collect();
    let fences: Vec<Fence> = held.iter().map(|(_, fence)| (*fence).into()).collect();
    let attempts: Vec<i32> = fences.iter().map(|f| f.attempt).collect();
    let tokens: Vec<Option<i64>> = fences.iter().map(|f| f.claim_token).collect();
    let renewed: Vec<(i64,)> = sqlx::query_as(
        r#"
        update tasks t
        set lease_expires_at = now() + $4 * interval '1 millisecond'
        from unnest($1::bigint[], $2::integer[], $3::bigint[]) as held(id, attempt, token)
        where t.id = held.id and t.status = 'RUNNING' and t.attempt_count = held.attempt
          and (held.token is null or t.claim_token = held.token)
        returning t.id
        "#,
    )
    .bind(&ids)
    .bind(&attempts)
    .bind(&tokens)
    .bind(millis(lease))
    .fetch_all(db)
    .await?;
    Ok(renewed.into_iter().map(|(id,)| TaskId(id)).collect())
}
