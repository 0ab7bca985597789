//! A task's attempt history (`GET /tasks/{id}/attempts`).

use chrono::{DateTime, Utc};
use common::{Attempt, AttemptOutcome};
use sqlx::{Connection, PgConnection};

use super::{Error, TaskId};

#[derive(sqlx::FromRow)]
struct AttemptRow {
    attempt: i32,
    worker_id: Option<String>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    duration_ms: Option<i64>,
    outcome: Option<String>,
    error: Option<String>,
}

/// The attempts of task `id`, oldest first: each ended attempt from the history, then the
/// task's own row for an attempt that succeeded (never written to the history, see
/// [`super::complete::record_attempts`]) or the one running now (no end, no outcome).
pub async fn attempts(conn: &mut PgConnection, id: TaskId) -> Result<Vec<Attempt>, Error> {
    // One snapshot for both statements: a task deleted in between is 404, not an empty list.
    let mut tx = conn.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let exists: Option<i64> = sqlx::query_scalar("select id from tasks where id = $1")
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Err(Error::NotFound(id));
    }
    let rows: Vec<AttemptRow> = sqlx::query_as(
        r#"
        select attempt, worker_id, started_at, finished_at, duration_ms, outcome, error
        from (
            select a.seq, a.attempt, a.worker_id, a.started_at, a.finished_at, a.outcome,
                   a.error
            from task_attempts a where a.task_id = $1
            union all
            select null, t.attempt_count, t.worker_id, t.attempt_started_at,
                   case when t.status = 'SUCCEEDED' then t.completed_at end,
                   case when t.status = 'SUCCEEDED' then 'SUCCEEDED' end, null
            from tasks t where t.id = $1 and t.status in ('SUCCEEDED', 'RUNNING')
        ) all_attempts(seq, attempt, worker_id, started_at, finished_at, outcome, error),
        lateral (select (extract(epoch from finished_at - started_at) * 1000)::bigint
                     as duration_ms) d
        order by seq nulls last
        "#,
    )
    .bind(id.0)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.into_iter().map(into_attempt).collect()
}

fn into_attempt(row: AttemptRow) -> Result<Attempt, Error> {
    let outcome = match row.outcome.as_deref() {
        None => None,
        Some("SUCCEEDED") => Some(AttemptOutcome::Succeeded),
        Some("FAILED") => Some(AttemptOutcome::Failed),
        Some("RETRY") => Some(AttemptOutcome::Retry),
        Some("LOST") => Some(AttemptOutcome::Lost),
        Some("CANCELED") => Some(AttemptOutcome::Canceled),
        Some("TIMEOUT") => Some(AttemptOutcome::Timeout),
        Some("RELEASED") => Some(AttemptOutcome::Released),
        Some(other) => {
            return Err(Error::Database(sqlx::Error::Decode(
                format!("unknown attempt outcome {other:?}").into(),
            )))
        }
    };
    Ok(Attempt {
        attempt: row.attempt,
        worker_id: row.worker_id,
        started_at: row.started_at,
        finished_at: row.finished_at,
        duration_ms: row.duration_ms,
        outcome,
        error: row.error,
    })
}
