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
            claim_token: self.claim_token,
        }
    }
}

/// What every write about one attempt is fenced on (besides `status = 'RUNNING'`): the attempt
/// number and the token its claim drew. The attempt number alone cannot tell a claim the
/// database lost in a crash (claims commit asynchronously) from the next claim of the same
/// attempt number; the token can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fence {
    /// The attempt's number (`attempt_count` once claimed).
    pub attempt: i32,
    /// The claim's token.
    pub claim_token: i64,
}

/// One claim: who claims, which types it can run, how many, for how long, and the token that
/// will fence the attempts it starts.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// Written on each claimed task (`workerId`).
    pub worker_id: &'a str,
    /// Only tasks of these types are claimed: a process never takes work it has no handler for.
    pub task_types: &'a [String],
    /// At most this many tasks.
    pub limit: i64,
    /// Lease of each claimed task (database clock).
    pub lease: Duration,
    /// Drawn by the claimer before it sends the claim, so that a claim whose answer was lost
    /// can still be found and released ([`release_lost_claim`]).
    pub token: i64,
}

impl<'a> Claim<'a> {
    /// A claim with a fresh random token.
    pub fn new(worker_id: &'a str, task_types: &'a [String], limit: i64, lease: Duration) -> Self {
        Claim {
            worker_id,
            task_types,
            limit,
            lease,
            token: rand::random(),
        }
    }
}

/// Claims up to `claim.limit` due PENDING tasks of `claim.task_types` in one statement: highest
/// priority first, then the longest due, skipping rows other workers hold locked, and marks
/// them RUNNING under a lease (database clock) held by `claim.worker_id` and fenced by
/// `claim.token`.
pub async fn claim_available(
    db: impl PgExecutor<'_>,
    claim: &Claim<'_>,
) -> Result<Vec<ClaimedTask>, sqlx::Error> {
    sqlx::query_as(
        r#"
        with next as (
            select id from tasks
            where status = 'PENDING' and run_at <= now()
              -- Not `type = any($5)`: on a table without statistics yet (a new database, a
              -- burst just enqueued) the planner takes that for one matching row and sorts the
              -- whole backlog instead of walking tasks_claimable; a function's result is
              -- estimated to match nearly every row, which keeps the index walk.
              and array_position($5::text[], type) is not null
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
        -- Not `from next where t.id = next.id`: without statistics (a new table) the planner
        -- makes that a hash join over a sequential scan of every task, so its generic plan is
        -- never cached and each claim is planned anew. The array keeps it a primary-key lookup.
        where t.id = any(array(select id from next))
        returning t.id, t.type, t.payload, t.attempt_count, t.claim_token, t.max_attempts,
                  t.timeout_ms
        "#,
    )
    .bind(claim.limit)
    .bind(claim.worker_id)
    .bind(millis(claim.lease))
    .bind(claim.token)
    .bind(claim.task_types)
    .fetch_all(db)
    .await
}

/// Extends the lease of each `(task, fence)` whose fence still holds and returns those renewed.
/// A held attempt missing from the answer was canceled or rescued: its worker must stop.
pub async fn renew_leases(
    db: impl PgExecutor<'_>,
    held: &[(TaskId, Fence)],
    lease: Duration,
) -> Result<Vec<(TaskId, Fence)>, sqlx::Error> {
    let ids: Vec<i64> = held.iter().map(|(id, _)| id.0).collect();
    let attempts: Vec<i32> = held.iter().map(|(_, f)| f.attempt).collect();
    let tokens: Vec<i64> = held.iter().map(|(_, f)| f.claim_token).collect();
    let renewed: Vec<(i64, i32, i64)> = sqlx::query_as(
        r#"
        update tasks t
        set lease_expires_at = now() + $4 * interval '1 millisecond'
        from unnest($1::bigint[], $2::integer[], $3::bigint[]) as held(id, attempt, token)
        where t.id = held.id and t.status = 'RUNNING' and t.attempt_count = held.attempt
          and t.claim_token = held.token
        returning t.id, t.attempt_count, t.claim_token
        "#,
    )
    .bind(&ids)
    .bind(&attempts)
    .bind(&tokens)
    .bind(millis(lease))
    .fetch_all(db)
    .await?;
    Ok(renewed
        .into_iter()
        .map(|(id, attempt, claim_token)| {
            (
                TaskId(id),
                Fence {
                    attempt,
                    claim_token,
                },
            )
        })
        .collect())
}
