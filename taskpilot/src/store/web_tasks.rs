//! `web_tasks`: create (with idempotency keys), read, page, bind.

use chrono::{DateTime, Utc};
use common::{WebTask, WebTaskStatus};
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};

use super::Error;

/// Every column reads return.
const COLUMNS: &str =
    "id, type, payload, status, scheduler_task_id, bind_key, created_at, updated_at";

/// One web task as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebTaskRow {
    /// Web task id.
    pub id: i64,
    /// Task type.
    #[sqlx(rename = "type")]
    pub task_type: String,
    /// Payload.
    pub payload: Value,
    /// PENDING or SUBMITTED.
    pub status: StoredWebStatus,
    /// The bound DTP task.
    pub scheduler_task_id: Option<i64>,
    /// The idempotency key its DTP task is created with: random, unique to this web task.
    pub bind_key: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl WebTaskRow {
    /// The wire form.
    pub fn into_web_task(self) -> WebTask {
        let StoredWebStatus(status) = self.status;
        WebTask {
            id: self.id,
            task_type: self.task_type,
            payload: self.payload,
            status,
            scheduler_task_id: self.scheduler_task_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A web task's `status` column, decoded strictly (see `apikit::db::decode_known`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredWebStatus(pub WebTaskStatus);

impl sqlx::Type<sqlx::Postgres> for StoredWebStatus {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for StoredWebStatus {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let known = [WebTaskStatus::Pending, WebTaskStatus::Submitted];
        apikit::db::decode_known(value, &known, WebTaskStatus::as_str).map(StoredWebStatus)
    }
}

/// A validated web task to insert.
#[derive(Debug, Clone)]
pub struct NewWebTask {
    /// Task type.
    pub task_type: String,
    /// Payload, as the client sent it.
    pub payload: Box<RawValue>,
    /// The client's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
}

impl NewWebTask {
    fn fingerprint(&self) -> Value {
        serde_json::json!({ "type": self.task_type, "payload": self.payload })
    }
}

/// The outcome of [`create`].
#[derive(Debug)]
pub enum Created {
    /// A new web task.
    New(WebTaskRow),
    /// The same request with the same key was made before: its web task.
    Replayed(WebTaskRow),
}

/// Inserts a web task. With an idempotency key, a repeat of the same request returns the first
/// web task and another request is [`Error::IdempotencyMismatch`]; concurrent repeats insert
/// one row.
pub async fn create(conn: &mut PgConnection, task: &NewWebTask) -> Result<Created, Error> {
    for _ in 0..2 {
        let inserted: Option<WebTaskRow> = sqlx::query_as(&format!(
            r#"
            insert into web_tasks (type, payload, idempotency_key, idempotency_request)
            values ($1, $2::jsonb, $3, case when $3::text is null then null else $4::jsonb end)
            on conflict (idempotency_key) do nothing
            returning {COLUMNS}
            "#
        ))
        .bind(&task.task_type)
        .bind(task.payload.get())
        .bind(&task.idempotency_key)
        .bind(task.fingerprint())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = inserted {
            return Ok(Created::New(row));
        }
        let Some(key) = &task.idempotency_key else {
            continue;
        };
        let existing: Option<(i64, bool)> = sqlx::query_as(
            "select id, idempotency_request = $2 from web_tasks where idempotency_key = $1",
        )
        .bind(key)
        .bind(task.fingerprint())
        .fetch_optional(&mut *conn)
        .await?;
        match existing {
            Some((id, true)) => return Ok(Created::Replayed(get(&mut *conn, id).await?)),
            Some((_, false)) => return Err(Error::IdempotencyMismatch(key.clone())),
            // The conflicting row vanished in between: insert again.
            None => continue,
        }
    }
    Err(Error::Database(sqlx::Error::Protocol(
        "idempotent insert found neither a new nor an existing row".into(),
    )))
}

/// The web task with this id, or [`Error::NotFound`].
pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<WebTaskRow, Error> {
    sqlx::query_as(&format!("select {COLUMNS} from web_tasks where id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(Error::NotFound(id))
}

/// A page of web tasks, newest first, older than `after` when given.
pub async fn list(
    db: impl PgExecutor<'_>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<WebTaskRow>, Error> {
    let rows = sqlx::query_as(&format!(
        "select {COLUMNS} from web_tasks where ($1::bigint is null or id < $1) \
         order by id desc limit $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows)
}

/// Binds an unbound web task to `scheduler_task_id` and marks it SUBMITTED. A web task that is
/// already bound is left as it is; either way the stored row is returned, so racing binds all
/// answer with the one binding that won.
pub async fn bind(
    conn: &mut PgConnection,
    id: i64,
    scheduler_task_id: i64,
) -> Result<WebTaskRow, Error> {
    let bound: Option<WebTaskRow> = sqlx::query_as(&format!(
        r#"
        update web_tasks
        set scheduler_task_id = $2, status = 'SUBMITTED', updated_at = now()
        where id = $1 and scheduler_task_id is null
        returning {COLUMNS}
        "#
    ))
    .bind(id)
    .bind(scheduler_task_id)
    .fetch_optional(&mut *conn)
    .await?;
    match bound {
        Some(row) => Ok(row),
        // Bound by a racing call (or gone): a new statement sees the winner's commit.
        None => get(&mut *conn, id).await,
    }
}

/// How many bytes `payload` takes as JSON once stored (PostgreSQL writes `jsonb` its own way:
/// a space after each `:` and `,`, numbers as it reads them), which is what bind sends.
pub async fn stored_size(db: impl PgExecutor<'_>, payload: &RawValue) -> Result<i64, Error> {
    let size = sqlx::query_scalar("select octet_length($1::jsonb::text)::bigint")
        .bind(payload.get())
        .fetch_one(db)
        .await?;
    Ok(size)
}

/// The payload of web task `id` as stored, byte for byte: what bind sends to DTP.
pub async fn stored_payload(db: impl PgExecutor<'_>, id: i64) -> Result<Box<RawValue>, Error> {
    let text: Option<String> =
        sqlx::query_scalar("select payload::text from web_tasks where id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?;
    let text = text.ok_or(Error::NotFound(id))?;
    RawValue::from_string(text).map_err(|e| Error::Database(sqlx::Error::Decode(e.into())))
}

/// Whether `payload` (a DTP task's) equals web task `id`'s as JSON values, compared by
/// PostgreSQL: numbers by value, whatever their text (`1e15`, `1000000000000000.0`).
pub async fn same_payload(
    db: impl PgExecutor<'_>,
    id: i64,
    payload: &Value,
) -> Result<bool, Error> {
    let same = sqlx::query_scalar("select payload = $2::jsonb from web_tasks where id = $1")
        .bind(id)
        .bind(payload)
        .fetch_optional(db)
        .await?;
    same.ok_or(Error::NotFound(id))
}
