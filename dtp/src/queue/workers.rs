//! The workers seen lately (`workers`): each worker reports itself every heartbeat, and says
//! when it stops; operators list those seen within a while.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use super::millis;

/// A worker as last reported.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WorkerRow {
    /// Its id (`DTP_WORKER_ID`).
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// When it first reported.
    pub started_at: DateTime<Utc>,
    /// When it last reported.
    pub last_seen_at: DateTime<Utc>,
    /// When it stopped, if it said so.
    pub stopped_at: Option<DateTime<Utc>>,
    /// Its concurrency slots.
    pub concurrency: i32,
    /// Slots running a handler when it last reported.
    pub busy: i32,
    /// The task types it runs.
    pub types: Vec<String>,
}

impl WorkerRow {
    /// The wire form.
    pub fn into_view(self) -> common::WorkerView {
        common::WorkerView {
            id: self.id,
            host: self.host,
            started_at: self.started_at,
            last_seen_at: self.last_seen_at,
            stopped_at: self.stopped_at,
            concurrency: self.concurrency,
            busy: self.busy,
            types: self.types,
        }
    }
}

/// Records that worker `id` is alive now with `busy` of its `concurrency` slots running.
pub async fn report_worker(
    db: impl PgExecutor<'_>,
    id: &str,
    host: &str,
    concurrency: i32,
    busy: i32,
    types: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into workers (id, host, started_at, last_seen_at, concurrency, busy, types) \
         values ($1, $2, now(), now(), $3, $4, $5) \
         on conflict (id) do update set host = excluded.host, last_seen_at = now(), \
             concurrency = excluded.concurrency, busy = excluded.busy, types = excluded.types, \
             stopped_at = null",
    )
    .bind(id)
    .bind(host)
    .bind(concurrency)
    .bind(busy)
    .bind(types)
    .execute(db)
    .await?;
    Ok(())
}

/// Records that worker `id` stopped.
pub async fn worker_stopped(db: impl PgExecutor<'_>, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update workers set stopped_at = now(), last_seen_at = now(), busy = 0 where id = $1",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// The workers seen within `seen_within`, by id.
pub async fn workers(
    db: impl PgExecutor<'_>,
    seen_within: Duration,
) -> Result<Vec<WorkerRow>, sqlx::Error> {
    sqlx::query_as(
        "select id, host, started_at, last_seen_at, stopped_at, concurrency, busy, types \
         from workers where last_seen_at > now() - $1 * interval '1 millisecond' order by id",
    )
    .bind(millis(seen_within))
    .fetch_all(db)
    .await
}

/// Deletes the workers not seen for `older_than`; how many.
pub async fn prune_workers(
    db: impl PgExecutor<'_>,
    older_than: Duration,
) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(
        "delete from workers where last_seen_at < now() - $1 * interval '1 millisecond'",
    )
    .bind(millis(older_than))
    .execute(db)
    .await?;
    Ok(deleted.rows_affected())
}
