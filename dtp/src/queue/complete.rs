//! Transitions out of RUNNING: success, failure (retry or FAILED), release on shutdown, and the
//! release of a claim whose answer was lost.
//!
//! Each is fenced by `status = 'RUNNING'` and the attempt's [`Fence`]: when it matches no row the
//! attempt is no longer this worker's (canceled, or rescued and claimed again) and nothing changes.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::TaskStatus;
use serde_json::Value;
use sqlx::PgExecutor;

use super::counts::count_finished;
use super::ready::announce_ready;
use super::status::StoredStatus;
use super::storable::{storable_error, storable_json};
use super::{millis, Fence, TaskId};

/// Marks the attempt SUCCEEDED with its result. `false` when the fence did not match.
pub async fn mark_succeeded(
    db: impl PgExecutor<'_>,
    id: TaskId,
    fence: Fence,
    result: &Value,
) -> Result<bool, sqlx::Error> {
    let done = mark_succeeded_many(db, &[(id, fence, result.clone())]).await?;
    Ok(done.contains(&id))
}

/// Marks many attempts SUCCEEDED in one statement, each fenced on its attempt. Results are
/// stored without NUL characters (see [`super::storable`]). Returns the tasks whose fence held;
/// the others were canceled or rescued meanwhile.
pub async fn mark_succeeded_many(
    db: impl PgExecutor<'_>,
    done: &[(TaskId, Fence, Value)],
) -> Result<Vec<TaskId>, sqlx::Error> {
    // In id order, the order in which a bulk cancel or retry locks rows too: the plan walks the
    // arrays in a nested loop, so the batch and such a statement do not each hold a row the
    // other waits for (a deadlock PostgreSQL breaks only after a second).
    let mut done: Vec<&(TaskId, Fence, Value)> = done.iter().collect();
    done.sort_unstable_by_key(|(id, _, _)| *id);
    let ids: Vec<i64> = done.iter().map(|(id, _, _)| id.0).collect();
    let attempts: Vec<i32> = done.iter().map(|(_, fence, _)| fence.attempt).collect();
    let tokens: Vec<i64> = done.iter().map(|(_, fence, _)| fence.claim_token).collect();
    let storable: Vec<Cow<'_, Value>> = done
        .iter()
        .map(|(_, _, result)| storable_json(result))
        .collect();
    let results: Vec<&Value> = storable.iter().map(AsRef::as_ref).collect();
    let counted = count_finished("(select queue, status, 1 as delta from succeeded) s");
    let fenced = Fence::sql("t", "done.attempt", "done.token");
    let updated: Vec<(i64,)> = sqlx::query_as(&format!(
        r#"
        with succeeded as (
            update tasks t
            set status = 'SUCCEEDED', result = done.result, completed_at = now(),
                lease_expires_at = null, updated_at = now()
            from unnest($1::bigint[], $2::integer[], $3::bigint[], $4::jsonb[])
                 as done(id, attempt, token, result)
            where t.id = done.id and {fenced}
            returning t.id, t.queue, t.status
        ),
        counted as ({counted})
        select id from succeeded
        "#
    ))
    .bind(&ids)
    .bind(&attempts)
    .bind(&tokens)
    .bind(&results)
    .fetch_all(db)
    .await?;
    Ok(updated.into_iter().map(|(id,)| TaskId(id)).collect())
}

/// Where a failed attempt left its task.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FailedAttempt {
    /// PENDING (retry scheduled) or FAILED.
    pub status: StoredStatus,
    /// When the retry is due, if one was scheduled.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl FailedAttempt {
    /// The new state.
    pub fn status(&self) -> TaskStatus {
        self.status.0
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The handler failed and may succeed if tried again.
    Retryable,
    /// The handler said trying again cannot help: FAILED at once.
    Permanent,
    /// The handler ran past its timeout (retried while attempts remain; outcome `TIMEOUT`).
    TimedOut,
}

/// One failed attempt to record: which, its error, how long until a retry, and why it failed.
#[derive(Debug, Clone)]
pub struct AttemptFailure {
    pub id: TaskId,
    pub fence: Fence,
    pub error: String,
    pub retry_delay: Duration,
    pub failure: Failure,
}

/// Records a failed attempt: the task is retried after `retry_delay` while attempts remain and
/// the failure is not [`Failure::Permanent`], else it is FAILED. The error is stored as
/// [`super::storable`] makes it, on the task and in its attempt history. `None` when the fence
/// did not match.
pub async fn mark_failed_or_retry(
    db: impl PgExecutor<'_>,
    id: TaskId,
    fence: Fence,
    error: &str,
    retry_delay: Duration,
    failure: Failure,
) -> Result<Option<FailedAttempt>, sqlx::Error> {
    let failed = AttemptFailure {
        id,
        fence,
        error: error.to_owned(),
        retry_delay,
        failure,
    };
    let mut recorded = mark_failed_many(db, &[failed]).await?;
    Ok(recorded.pop().map(|(_, attempt)| attempt))
}

/// Records many failed attempts in one statement, each as [`mark_failed_or_retry`] does, each
/// fenced on its attempt. Returns the tasks whose fence held, with where each was left.
pub async fn mark_failed_many(
    db: impl PgExecutor<'_>,
    failed: &[AttemptFailure],
) -> Result<Vec<(TaskId, FailedAttempt)>, sqlx::Error> {
    // In id order, as mark_succeeded_many locks rows.
    let mut failed: Vec<&AttemptFailure> = failed.iter().collect();
    failed.sort_unstable_by_key(|f| f.id);
    let ids: Vec<i64> = failed.iter().map(|f| f.id.0).collect();
    let attempts: Vec<i32> = failed.iter().map(|f| f.fence.attempt).collect();
    let tokens: Vec<i64> = failed.iter().map(|f| f.fence.claim_token).collect();
    let errors: Vec<String> = failed.iter().map(|f| storable_error(&f.error)).collect();
    let delays: Vec<i64> = failed.iter().map(|f| millis(f.retry_delay)).collect();
    let permanent: Vec<bool> = failed
        .iter()
        .map(|f| f.failure == Failure::Permanent)
        .collect();
    let timed_out: Vec<bool> = failed
        .iter()
        .map(|f| f.failure == Failure::TimedOut)
        .collect();
    let set = failed_attempt(
        "f.permanent or attempt_count >= max_attempts",
        "f.delay_ms",
        "f.error",
    );
    let recorded = record_attempts(
        "failed",
        "case when timed_out then 'TIMEOUT' when status = 'FAILED' then 'FAILED' else 'RETRY' end",
    );
    let counted = count_finished("(select queue, status, 1 as delta from failed) c");
    let announced = announce_ready("failed");
    let fenced = Fence::sql("t", "f.attempt", "f.token");
    let rows: Vec<(i64, StoredStatus, Option<DateTime<Utc>>)> = sqlx::query_as(&format!(
        r#"
        with failed as (
            update tasks t set {set}
            from unnest($1::bigint[], $2::integer[], $3::bigint[], $4::text[], $5::bigint[],
                        $6::boolean[], $7::boolean[])
                 as f(id, attempt, token, error, delay_ms, permanent, timed_out)
            where t.id = f.id and {fenced}
            returning t.id, t.attempt_count, t.worker_id, t.attempt_started_at, t.last_error,
                      t.status, t.next_attempt_at, t.queue, t.priority, t.run_at, t.waiting,
                      f.timed_out
        ),
        recorded as ({recorded}),
        counted as ({counted}),
        announced as ({announced})
        select id, status, next_attempt_at from failed, (select count(*) from announced) a
        "#
    ))
    .bind(&ids)
    .bind(&attempts)
    .bind(&tokens)
    .bind(&errors)
    .bind(&delays)
    .bind(&permanent)
    .bind(&timed_out)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, status, next_attempt_at)| {
            let attempt = FailedAttempt {
                status,
                next_attempt_at,
            };
            (TaskId(id), attempt)
        })
        .collect())
}

/// What a statement that ends attempts returns, for [`record_attempts`]: the task, the attempt
/// and its worker, when it started, and the error it ended with.
pub(super) const ENDED_ATTEMPT: &str =
    "id, attempt_count, worker_id, attempt_started_at, last_error";

/// An `insert` that adds to the attempt history one row per attempt the CTE `ended` (which
/// returns [`ENDED_ATTEMPT`]) ended, with `outcome` (SQL over those columns). Every attempt that
/// does not succeed is recorded by the statement that ends it, through this; one that succeeds
/// is the task row itself (see `migrations/dtp/0006_queue_settings_and_attempts.sql`).
pub(super) fn record_attempts(ended: &str, outcome: &str) -> String {
    format!(
        "insert into task_attempts \
             (task_id, attempt, worker_id, started_at, finished_at, outcome, error) \
         select id, attempt_count, worker_id, attempt_started_at, now(), {outcome}, last_error \
         from {ended}"
    )
}

/// The `set` clause that counts a RUNNING task's attempt as failed with `error`: FAILED when
/// `final_attempt` holds (SQL, e.g. attempts used up), else PENDING again after `delay_ms`. Every
/// failed attempt, reported or rescued, is recorded by this one clause.
pub(super) fn failed_attempt(final_attempt: &str, delay_ms: &str, error: &str) -> String {
    format!(
        "status = case when {final_attempt} then 'FAILED' else 'PENDING' end, \
         last_error = {error}, \
         run_at = case when {final_attempt} then run_at \
                       else now() + {delay_ms} * interval '1 millisecond' end, \
         next_attempt_at = case when {final_attempt} then null \
                                else now() + {delay_ms} * interval '1 millisecond' end, \
         completed_at = case when {final_attempt} then now() end, \
         waiting = not ({final_attempt}) and {delay_ms} > 0, \
         lease_expires_at = null, updated_at = now()"
    )
}

/// How a RUNNING task is handed back uncounted: PENDING, its attempt number (and, for a first
/// attempt, its start) as before the claim, due when it was. A task whose handler ran (an
/// interrupted attempt, a lost claim's answer) is also made due now: `{HAND_BACK}, run_at = now()`.
const HAND_BACK: &str = "status = 'PENDING', waiting = false, attempt_count = attempt_count - 1, \
     processing_started_at = case when attempt_count = 1 then null else processing_started_at end, \
     lease_expires_at = null, updated_at = now()";

/// Gives an interrupted attempt back to the queue at once, without counting it (the worker is
/// shutting down; the task did nothing wrong), records it as `RELEASED`, and wakes the other
/// workers. `false` when the fence did not match.
pub async fn release(
    db: impl PgExecutor<'_>,
    id: TaskId,
    fence: Fence,
) -> Result<bool, sqlx::Error> {
    Ok(!release_many(db, &[(id, fence)]).await?.is_empty())
}

/// Gives many interrupted attempts back in one statement, each as [`release`] does, each fenced
/// on its attempt. Returns the tasks whose fence held.
pub async fn release_many(
    db: impl PgExecutor<'_>,
    interrupted: &[(TaskId, Fence)],
) -> Result<Vec<TaskId>, sqlx::Error> {
    let mut interrupted = interrupted.to_vec();
    // In id order, as mark_succeeded_many locks rows.
    interrupted.sort_unstable_by_key(|(id, _)| *id);
    let (ids, attempts, tokens) = Fence::columns(&interrupted);
    // The hand-back took the attempt number back: the released attempt is the one after it.
    let recorded = record_attempts(
        "(select id, attempt_count + 1 as attempt_count, worker_id, attempt_started_at, \
         null::text as last_error from released) r",
        "'RELEASED'",
    );
    let fenced = Fence::sql("t", "held.attempt", "held.token");
    let announced = announce_ready("released");
    let released: Vec<(i64,)> = sqlx::query_as(&format!(
        r#"
        with released as (
            update tasks t set {HAND_BACK}, run_at = now()
            from unnest($1::bigint[], $2::integer[], $3::bigint[]) as held(id, attempt, token)
            where t.id = held.id and {fenced}
            returning t.id, t.attempt_count, t.worker_id, t.attempt_started_at, t.last_error,
                      t.queue, t.priority, t.run_at, t.status, t.waiting
        ),
        recorded as ({recorded}),
        announced as ({announced})
        select id from released, (select count(*) from announced) a
        "#
    ))
    .bind(&ids)
    .bind(&attempts)
    .bind(&tokens)
    .fetch_all(db)
    .await?;
    Ok(released.into_iter().map(|(id,)| TaskId(id)).collect())
}

/// Hands back, uncounted, attempts claimed ahead that never started (the worker is stopping,
/// or they waited too long for a slot), each fenced on its attempt, in their place in their
/// queue (`run_at` unchanged: they were due). Returns how many went back.
pub async fn release_unstarted(
    db: impl PgExecutor<'_>,
    unstarted: &[(TaskId, Fence)],
) -> Result<u64, sqlx::Error> {
    let mut unstarted = unstarted.to_vec();
    // In id order, as the completer and bulk statements lock rows (see mark_succeeded_many).
    unstarted.sort_unstable_by_key(|(id, _)| *id);
    let (ids, attempts, tokens) = Fence::columns(&unstarted);
    let fenced = Fence::sql("t", "held.attempt", "held.token");
    let announced = announce_ready("released");
    let released = sqlx::query(&format!(
        r#"
        with released as (
            update tasks t set {HAND_BACK}
            from unnest($1::bigint[], $2::integer[], $3::bigint[]) as held(id, attempt, token)
            where t.id = held.id and {fenced}
            returning t.id, t.queue, t.priority, t.run_at, t.status, t.waiting
        ),
        announced as ({announced})
        select id from released, (select count(*) from announced) a
        "#
    ))
    .bind(&ids)
    .bind(&attempts)
    .bind(&tokens)
    .execute(db)
    .await?;
    Ok(released.rows_affected())
}

/// Hands back, uncounted, every task still held by the claim of `worker_id` with `token`: the
/// claimer lost the claim's answer (the connection broke after the commit) and never started
/// them. Returns how many.
pub async fn release_lost_claim(
    db: impl PgExecutor<'_>,
    worker_id: &str,
    token: i64,
) -> Result<u64, sqlx::Error> {
    // The RUNNING rows are few and all in tasks_running_lease; the token picks among them.
    let announced = announce_ready("released");
    let released = sqlx::query(&format!(
        r#"
        with released as (
            update tasks set {HAND_BACK}, run_at = now()
            where status = 'RUNNING' and claim_token = $2 and worker_id = $1
            returning id, queue, priority, run_at, status, waiting
        ),
        announced as ({announced})
        select id from released, (select count(*) from announced) a
        "#
    ))
    .bind(worker_id)
    .bind(token)
    .execute(db)
    .await?;
    Ok(released.rows_affected())
}
