//! Creating tasks, with idempotency keys.

use chrono::{DateTime, Utc};
use common::limits::DEFAULT_QUEUE;
use serde_json::Value;
use sqlx::PgConnection;

use super::ready::announce_ready;
use super::row::TASK_COLUMNS;
use super::{Error, TaskRow};

/// A validated task to insert.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Handler name (already checked against the registry).
    pub task_type: String,
    /// Handler input.
    pub payload: Value,
    /// The queue (`common::limits::DEFAULT_QUEUE` when the request named none).
    pub queue: String,
    /// Higher runs first.
    pub priority: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Whether the request named `max_attempts` (else it is the process's default). A default
    /// is not part of what identifies a request: processes with different defaults must agree
    /// that a retry is the same request.
    pub max_attempts_requested: bool,
    /// Per-task execution timeout.
    pub timeout_ms: Option<i64>,
    /// Not before; now (database clock) when absent.
    pub run_at: Option<DateTime<Utc>>,
    /// Optional idempotency key.
    pub idempotency_key: Option<String>,
    /// The creating request's trace context (`traceparent`); not part of what identifies the
    /// request, so a retry under another trace is still the same request.
    pub traceparent: Option<String>,
}

impl NewTask {
    /// A task of `task_type` with `payload`, in the default queue, priority 0, due now, three
    /// attempts (not named by the request), no timeout or key: set the fields that differ.
    pub fn new(task_type: impl Into<String>, payload: Value) -> Self {
        NewTask {
            task_type: task_type.into(),
            payload,
            queue: DEFAULT_QUEUE.to_owned(),
            priority: 0,
            max_attempts: 3,
            max_attempts_requested: false,
            timeout_ms: None,
            run_at: None,
            idempotency_key: None,
            traceparent: None,
        }
    }

    /// What identifies "the same request" for an idempotency key: every field the request gave,
    /// but the key.
    fn fingerprint(&self) -> Value {
        let mut fingerprint = serde_json::json!({
            "type": self.task_type,
            "payload": self.payload,
            "priority": self.priority,
            "maxAttempts": self.max_attempts_requested.then_some(self.max_attempts),
            "timeoutMs": self.timeout_ms,
            "runAt": self.run_at.map(|t| t.timestamp_micros()),
        });
        // Named only when not the default, so that keys stored before queues existed still
        // match a repeat of their request.
        if self.queue != DEFAULT_QUEUE {
            fingerprint["queue"] = Value::from(self.queue.as_str());
        }
        fingerprint
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
    let announced = announce_ready("inserted");
    let sql = format!(
        r#"
        with inserted as (
            insert into tasks (type, payload, queue, priority, max_attempts, timeout_ms,
                               scheduled_for, run_at, idempotency_key, idempotency_request,
                               traceparent, waiting)
            values ($1, $2, $9, $3, $4, $5, coalesce($6, now()), coalesce($6, now()), $7,
                    case when $7::text is null then null else $8::jsonb end, $10,
                    coalesce($6, now()) > now())
            on conflict (idempotency_key) where idempotency_key is not null do nothing
            returning *
        ),
        announced as ({announced})
        select {TASK_COLUMNS} from inserted, (select count(*) from announced) a
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
        .bind(&task.queue)
        .bind(&task.traceparent)
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

/// Inserts many tasks in one statement (call it inside a transaction: one commit, one NOTIFY)
/// and answers per input, in input order. Idempotency keys are honoured per item as in
/// [`enqueue`]; the first key used for a different request fails the whole call with
/// [`Error::IdempotencyConflict`], so the caller's transaction writes nothing.
pub async fn enqueue_many(
    conn: &mut PgConnection,
    tasks: &[NewTask],
) -> Result<Vec<Enqueued>, Error> {
    let columns = BatchColumns::of(tasks);
    // Ids are drawn first so each inserted row maps back to its input position; a conflicting
    // row leaves a gap in the sequence, which is harmless.
    let announced = announce_ready("inserted");
    let sql = format!(
        r#"
        with input as (
            select nextval(pg_get_serial_sequence('tasks', 'id')) as id, i.*
            from unnest($1::text[], $2::jsonb[], $3::integer[], $4::integer[], $5::bigint[],
                        $6::timestamptz[], $7::text[], $8::jsonb[], $9::text[], $10::text[])
                 with ordinality as i(type, payload, priority, max_attempts, timeout_ms,
                                      run_at, idempotency_key, fingerprint, queue, traceparent,
                                      position)
        ),
        inserted as (
            insert into tasks (id, type, payload, queue, priority, max_attempts, timeout_ms,
                               scheduled_for, run_at, idempotency_key, idempotency_request,
                               traceparent, waiting)
            overriding system value
            select id, type, payload, queue, priority, max_attempts, timeout_ms,
                   coalesce(run_at, now()), coalesce(run_at, now()), idempotency_key,
                   case when idempotency_key is null then null else fingerprint end,
                   traceparent, coalesce(run_at, now()) > now()
            from input order by position
            on conflict (idempotency_key) where idempotency_key is not null do nothing
            returning {TASK_COLUMNS}, waiting
        ),
        announced as ({announced})
        select inserted.*, input.position
        from input join inserted using (id), (select count(*) from announced) n
        "#
    );
    let rows = sqlx::query(&sql)
        .bind(&columns.types)
        .bind(&columns.payloads)
        .bind(&columns.priorities)
        .bind(&columns.max_attempts)
        .bind(&columns.timeouts)
        .bind(&columns.run_ats)
        .bind(&columns.keys)
        .bind(&columns.fingerprints)
        .bind(&columns.queues)
        .bind(&columns.traceparents)
        .fetch_all(&mut *conn)
        .await?;
    let mut answers: Vec<Option<Enqueued>> = (0..tasks.len()).map(|_| None).collect();
    for row in rows {
        use sqlx::{FromRow, Row};
        let position: i64 = row.try_get("position")?;
        let slot = usize::try_from(position - 1)
            .ok()
            .and_then(|i| answers.get_mut(i));
        if let Some(slot) = slot {
            *slot = Some(Enqueued::Created(TaskRow::from_row(&row)?));
        }
    }
    resolve_existing(conn, tasks, &mut answers).await?;
    answers
        .into_iter()
        .map(|answer| {
            answer.ok_or_else(|| {
                Error::Database(sqlx::Error::Protocol(
                    "batch insert left an item neither created nor found".into(),
                ))
            })
        })
        .collect()
}

/// Fills in the items that were not inserted because their idempotency key exists.
async fn resolve_existing(
    conn: &mut PgConnection,
    tasks: &[NewTask],
    answers: &mut [Option<Enqueued>],
) -> Result<(), Error> {
    let missing: Vec<usize> = (0..tasks.len()).filter(|&i| answers[i].is_none()).collect();
    for i in missing {
        let Some(key) = &tasks[i].idempotency_key else {
            continue;
        };
        let found = find_by_key(&mut *conn, key, &tasks[i]).await?;
        answers[i] = match found {
            Some((row, true)) => Some(Enqueued::Existing(row)),
            Some((_, false)) => return Err(Error::IdempotencyConflict(key.clone())),
            None => None,
        };
    }
    Ok(())
}

/// The batch as column arrays for `unnest`.
struct BatchColumns {
    types: Vec<String>,
    payloads: Vec<Value>,
    priorities: Vec<i32>,
    max_attempts: Vec<i32>,
    timeouts: Vec<Option<i64>>,
    run_ats: Vec<Option<DateTime<Utc>>>,
    keys: Vec<Option<String>>,
    fingerprints: Vec<Value>,
    queues: Vec<String>,
    traceparents: Vec<Option<String>>,
}

impl BatchColumns {
    fn of(tasks: &[NewTask]) -> Self {
        BatchColumns {
            types: tasks.iter().map(|t| t.task_type.clone()).collect(),
            payloads: tasks.iter().map(|t| t.payload.clone()).collect(),
            priorities: tasks.iter().map(|t| t.priority).collect(),
            max_attempts: tasks.iter().map(|t| t.max_attempts).collect(),
            timeouts: tasks.iter().map(|t| t.timeout_ms).collect(),
            run_ats: tasks.iter().map(|t| t.run_at).collect(),
            keys: tasks.iter().map(|t| t.idempotency_key.clone()).collect(),
            // Only keyed items need one; skipping the rest keeps large batches cheap.
            fingerprints: tasks
                .iter()
                .map(|t| match t.idempotency_key {
                    Some(_) => t.fingerprint(),
                    None => Value::Null,
                })
                .collect(),
            queues: tasks.iter().map(|t| t.queue.clone()).collect(),
            traceparents: tasks.iter().map(|t| t.traceparent.clone()).collect(),
        }
    }
}
