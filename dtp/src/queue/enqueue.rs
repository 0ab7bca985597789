//! Creating tasks, with idempotency keys.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

use super::row::TASK_COLUMNS;
use super::{Error, TaskRow, CHANNEL_TASK_AVAILABLE};

/// A validated task to insert.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Handler name (already checked against the registry).
    pub task_type: String,
    /// Handler input.
    pub payload: Value,
    /// Higher runs first.
    pub priority: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Per-task execution timeout.
    pub timeout_ms: Option<i64>,
    /// Not before; now (database clock) when absent.
    pub run_at: Option<DateTime<Utc>>,
    /// Optional idempotency key.
    pub idempotency_key: Option<String>,
}

impl NewTask {
    /// What identifies "the same request" for an idempotency key: every field but the key.
    fn fingerprint(&self) -> Value {
        serde_json::json!({
            "type": self.task_type,
            "payload": self.payload,
            "priority": self.priority,
            "maxAttempts": self.max_attempts,
            "timeoutMs": self.timeout_ms,
            "runAt": self.run_at.map(|t| t.timestamp_micros()),
        })
    }
}

/// The outcome of [`enqueue`].
#[derive(Debug)]
pub enum Enqueued {
    /// A new task was inserted.
    Created(TaskRow),
    /// The idempotency key was already used by the same request: this is that task.
    Existing(TaskRow),
}

/// Inserts a task and, when it is due now, wakes the workers (NOTIFY is sent at commit).
///
/// With an idempotency key, a repeat of the same request returns the existing task and a
/// different request is [`Error::IdempotencyConflict`]; concurrent repeats insert one row, since
/// `on conflict do nothing` waits for the first inserter to commit.
pub async fn enqueue(conn: &mut PgConnection, task: &NewTask) -> Result<Enqueued, Error> {
    // One attempt normally; a second only if the conflicting row vanished in between.
    for _ in 0..2 {
        if let Some(row) = insert(&mut *conn, task).await? {
            return Ok(Enqueued::Created(row));
        }
        let Some(key) = &task.idempotency_key else {
            continue;
        };
        if let Some((row, same)) = find_by_key(&mut *conn, key, task).await? {
            return if same {
                Ok(Enqueued::Existing(row))
            } else {
                Err(Error::IdempotencyConflict(key.clone()))
            };
        }
    }
    Err(Error::Database(sqlx::Error::Protocol(
        "idempotent insert found neither a new nor an existing row".into(),
    )))
}

async fn insert(conn: &mut PgConnection, task: &NewTask) -> Result<Option<TaskRow>, Error> {
    // NOTIFY is transactional: workers hear of the task only once it is committed.
    let sql = format!(
        r#"
        with inserted as (
            insert into tasks (type, payload, priority, max_attempts, timeout_ms,
                               scheduled_for, run_at, idempotency_key, idempotency_request)
            values ($1, $2, $3, $4, $5, coalesce($6, now()), coalesce($6, now()), $7,
                    case when $7::text is null then null else $8::jsonb end)
            on conflict (idempotency_key) do nothing
            returning *
        )
        select {TASK_COLUMNS} from inserted
        left join lateral (
            select pg_notify('{CHANNEL_TASK_AVAILABLE}', '') where inserted.run_at <= now()
        ) notified on true
        "#
    );
    let row = sqlx::query_as::<_, TaskRow>(&sql)
        .bind(&task.task_type)
        .bind(&task.payload)
        .bind(task.priority)
        .bind(task.max_attempts)
        .bind(task.timeout_ms)
        .bind(task.run_at)
        .bind(&task.idempotency_key)
        .bind(task.fingerprint())
        .fetch_optional(conn)
        .await?;
    Ok(row)
}

async fn find_by_key(
    conn: &mut PgConnection,
    key: &str,
    task: &NewTask,
) -> Result<Option<(TaskRow, bool)>, Error> {
    let sql = format!(
        "select {TASK_COLUMNS}, idempotency_request = $2 as same_request \
         from tasks where idempotency_key = $1"
    );
    let row = sqlx::query(&sql)
        .bind(key)
        .bind(task.fingerprint())
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    use sqlx::{FromRow, Row};
    let same: bool = row.try_get("same_request")?;
    Ok(Some((TaskRow::from_row(&row)?, same)))
}
