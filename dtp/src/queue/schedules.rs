//! Schedules (`schedules`): their rows, and the tick that enqueues a due schedule's task.

use chrono::{DateTime, Utc};
use common::{CreateTask, Schedule};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Connection, PgConnection, PgExecutor};

use super::{enqueue, Error, NewTask};

const SCHEDULE_COLUMNS: &str =
    "name, cron, timezone, task, paused, next_run_at, last_run_at, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct ScheduleRow {
    name: String,
    cron: String,
    timezone: String,
    task: Json<CreateTask>,
    paused: bool,
    next_run_at: Option<DateTime<Utc>>,
    last_run_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ScheduleRow> for Schedule {
    fn from(row: ScheduleRow) -> Self {
        Schedule {
            name: row.name,
            cron: row.cron,
            timezone: row.timezone,
            task: row.task.0,
            paused: row.paused,
            next_run_at: row.next_run_at,
            last_run_at: row.last_run_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A schedule as it is stored: the checked request, and its next tick (`None` while paused).
#[derive(Debug, Clone)]
pub struct ScheduleFields<'a> {
    /// The name.
    pub name: &'a str,
    /// The pattern, valid.
    pub cron: &'a str,
    /// The zone, valid.
    pub timezone: &'a str,
    /// The task each tick creates, checked, `maxAttempts` resolved.
    pub task: &'a CreateTask,
    /// Paused.
    pub paused: bool,
    /// The next tick.
    pub next_run_at: Option<DateTime<Utc>>,
}

/// Binds a schedule's fields as `$1` to `$6`, in the order of [`ScheduleFields`].
trait BindFields<'q> {
    fn bind_fields(self, fields: &ScheduleFields<'q>) -> Self;
}

impl<'q> BindFields<'q>
    for sqlx::query::QueryAs<'q, sqlx::Postgres, ScheduleRow, sqlx::postgres::PgArguments>
{
    fn bind_fields(self, fields: &ScheduleFields<'q>) -> Self {
        self.bind(fields.name)
            .bind(fields.cron)
            .bind(fields.timezone)
            .bind(Json(fields.task))
            .bind(fields.paused)
            .bind(fields.next_run_at)
    }
}

/// Creates a schedule; [`Error::ScheduleExists`] if the name is taken.
pub async fn create_schedule(
    db: impl PgExecutor<'_>,
    fields: &ScheduleFields<'_>,
) -> Result<Schedule, Error> {
    let row: Option<ScheduleRow> = sqlx::query_as(&format!(
        r#"
        insert into schedules (name, cron, timezone, task, paused, next_run_at)
        values ($1, $2, $3, $4, $5, $6)
        on conflict (name) do nothing
        returning {SCHEDULE_COLUMNS}
        "#
    ))
    .bind_fields(fields)
    .fetch_optional(db)
    .await?;
    row.map(Schedule::from)
        .ok_or_else(|| Error::ScheduleExists(fields.name.to_owned()))
}

/// Every schedule, by name.
pub async fn schedules(db: impl PgExecutor<'_>) -> Result<Vec<Schedule>, Error> {
    let rows: Vec<ScheduleRow> = sqlx::query_as(&format!(
        "select {SCHEDULE_COLUMNS} from schedules order by name"
    ))
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Schedule::from).collect())
}

/// The schedule `name`, or [`Error::UnknownSchedule`].
pub async fn schedule(db: impl PgExecutor<'_>, name: &str) -> Result<Schedule, Error> {
    read_schedule(db, name, "").await
}

/// [`schedule`], its row locked until the caller's transaction ends: a change that reads,
/// merges and writes back is not interleaved with another (a tick waits for it too).
pub async fn lock_schedule(db: impl PgExecutor<'_>, name: &str) -> Result<Schedule, Error> {
    read_schedule(db, name, "for update").await
}

async fn read_schedule(
    db: impl PgExecutor<'_>,
    name: &str,
    locking: &str,
) -> Result<Schedule, Error> {
    let row: Option<ScheduleRow> = sqlx::query_as(&format!(
        "select {SCHEDULE_COLUMNS} from schedules where name = $1 {locking}"
    ))
    .bind(name)
    .fetch_optional(db)
    .await?;
    row.map(Schedule::from)
        .ok_or_else(|| Error::UnknownSchedule(name.to_owned()))
}

/// Replaces the schedule's fields (a patch the caller merged and checked); its last tick stays,
/// and so does its next tick unless `recounted` (a new cadence, a pause or a resume): a tick
/// that moves it meanwhile is not undone.
pub async fn update_schedule(
    db: impl PgExecutor<'_>,
    fields: &ScheduleFields<'_>,
    recounted: bool,
) -> Result<Schedule, Error> {
    let row: Option<ScheduleRow> = sqlx::query_as(&format!(
        r#"
        update schedules
        set cron = $2, timezone = $3, task = $4, paused = $5,
            next_run_at = case when $7 then $6 else next_run_at end,
            updated_at = now()
        where name = $1
        returning {SCHEDULE_COLUMNS}
        "#
    ))
    .bind_fields(fields)
    .bind(recounted)
    .fetch_optional(db)
    .await?;
    row.map(Schedule::from)
        .ok_or_else(|| Error::UnknownSchedule(fields.name.to_owned()))
}

/// Deletes the schedule `name` (the tasks it made stay), or [`Error::UnknownSchedule`].
pub async fn delete_schedule(db: impl PgExecutor<'_>, name: &str) -> Result<(), Error> {
    let deleted = sqlx::query("delete from schedules where name = $1")
        .bind(name)
        .execute(db)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(Error::UnknownSchedule(name.to_owned()));
    }
    Ok(())
}

/// The database's time: the one clock every tick is counted on, whatever the hosts' clocks.
pub async fn database_now(db: impl PgExecutor<'_>) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar("select now()").fetch_one(db).await
}

/// A schedule whose next tick has come.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueSchedule {
    /// The name.
    pub name: String,
    /// The pattern.
    pub cron: String,
    /// The zone.
    pub timezone: String,
    /// The tick that has come (or the first of those missed).
    pub next_run_at: DateTime<Utc>,
    /// The database's time now: ticks are counted on one clock, whatever the hosts' clocks.
    pub now: DateTime<Utc>,
    /// The bytes of its task's create request, as JSON: what each of its ticks writes.
    pub template_bytes: i64,
}

/// Up to `limit` schedules whose next tick has come, earliest first.
pub async fn due_schedules(
    db: impl PgExecutor<'_>,
    limit: i64,
) -> Result<Vec<DueSchedule>, sqlx::Error> {
    sqlx::query_as(
        r#"
        select name, cron, timezone, next_run_at, now() as now,
               octet_length(task::text)::bigint as template_bytes
        from schedules
        where not paused and next_run_at <= now()
        order by next_run_at
        limit $1
        "#,
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Enqueues the task of `due`'s tick `tick` and moves the schedule from its next tick
/// `expected` on to `next`, in one transaction, unless the schedule changed since it was read
/// (paused, edited, deleted, or ticked by another leader): then nothing happens. The task's
/// idempotency key names the schedule and the tick, so the tick's task is one task even if
/// this ran twice.
pub async fn enqueue_tick(
    conn: &mut PgConnection,
    due: &DueSchedule,
    expected: DateTime<Utc>,
    tick: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
) -> Result<TickOutcome, sqlx::Error> {
    let mut tx = conn.begin().await?;
    // The template as it is when the tick moves, not as it was read.
    let moved: Option<(Json<Value>,)> = sqlx::query_as(
        r#"
        update schedules set last_run_at = $3, next_run_at = $4, updated_at = now()
        where name = $1 and next_run_at = $2 and not paused
        returning task
        "#,
    )
    .bind(&due.name)
    .bind(expected)
    .bind(tick)
    .bind(next)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((Json(template),)) = moved else {
        return Ok(TickOutcome::Changed);
    };
    let template: CreateTask = match serde_json::from_value(template) {
        Ok(template) => template,
        Err(e) => {
            // Moved on without a task: a tick that cannot be enqueued must not stop the rest.
            tx.commit().await?;
            return Ok(TickOutcome::Unreadable(e.to_string()));
        }
    };
    let task = tick_task(&due.name, &template, tick);
    let outcome = match enqueue(&mut tx, &task).await {
        Ok(super::Enqueued::Created(row)) => TickOutcome::Enqueued {
            task_id: row.id,
            queue: row.queue,
            task_type: row.task_type,
        },
        Ok(super::Enqueued::Existing(row)) => TickOutcome::AlreadyEnqueued(row.id),
        // The tick has its task already, from another template (changed since): keep it.
        Err(Error::IdempotencyConflict(_)) => TickOutcome::AlreadyEnqueued(0),
        Err(Error::Database(e)) => return Err(e),
        // Enqueue refuses nothing else; should it one day, the tick is not lost silently.
        Err(other) => {
            return Err(sqlx::Error::Protocol(format!(
                "enqueue refused the tick: {other}"
            )))
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// A due schedule's ticks to enqueue, and the tick it moves on to.
#[derive(Debug, Clone)]
pub struct ScheduleMove<'a> {
    /// The schedule as read; it moves only if its next tick is still `due.next_run_at`.
    pub due: &'a DueSchedule,
    /// The ticks to enqueue, oldest first (not empty).
    pub ticks: Vec<DateTime<Utc>>,
    /// Its tick after those; `None` when it has none.
    pub next: Option<DateTime<Utc>>,
}

/// Enqueues the ticks of many schedules and moves each on, in one transaction of two
/// statements, however many schedules: what [`enqueue_tick`] does for one tick, for all of
/// them. A schedule that changed since it was read is left alone (no outcome for it). Should a
/// tick's key already name a task made from another template, nothing is written and each
/// schedule is ticked on its own instead, as [`enqueue_tick`] does. Returns each tick's
/// outcome with its schedule's name.
pub async fn enqueue_ticks(
    conn: &mut PgConnection,
    moves: &[ScheduleMove<'_>],
) -> Result<Vec<(String, DateTime<Utc>, TickOutcome)>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let last = |m: &ScheduleMove<'_>| m.ticks.last().copied().unwrap_or(m.due.next_run_at);
    let moved: Vec<(String, Json<Value>)> = sqlx::query_as(
        r#"
        update schedules s set last_run_at = m.last_tick, next_run_at = m.next, updated_at = now()
        from unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[])
             as m(name, expected, last_tick, next)
        where s.name = m.name and s.next_run_at = m.expected and not s.paused
        returning s.name, s.task
        "#,
    )
    .bind(
        moves
            .iter()
            .map(|m| m.due.name.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(moves.iter().map(|m| m.due.next_run_at).collect::<Vec<_>>())
    .bind(moves.iter().map(last).collect::<Vec<_>>())
    .bind(moves.iter().map(|m| m.next).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let by_name: std::collections::HashMap<&str, &ScheduleMove<'_>> =
        moves.iter().map(|m| (m.due.name.as_str(), m)).collect();
    let mut outcomes = Vec::new();
    let mut tasks = Vec::new();
    let mut slots = Vec::new();
    for (name, Json(template)) in moved {
        let Some(change) = by_name.get(name.as_str()) else {
            continue;
        };
        let template: CreateTask = match serde_json::from_value(template) {
            Ok(template) => template,
            Err(e) => {
                for tick in &change.ticks {
                    outcomes.push((name.clone(), *tick, TickOutcome::Unreadable(e.to_string())));
                }
                continue;
            }
        };
        for tick in &change.ticks {
            tasks.push(tick_task(&name, &template, *tick));
            slots.push((name.clone(), *tick));
        }
    }
    let enqueued = match super::enqueue_many(&mut tx, &tasks).await {
        Ok(enqueued) => enqueued,
        Err(Error::Database(e)) => return Err(e),
        Err(_) => {
            drop(tx);
            return tick_one_by_one(conn, moves).await;
        }
    };
    for ((name, tick), answer) in slots.into_iter().zip(enqueued) {
        let outcome = match answer {
            super::Enqueued::Created(row) => TickOutcome::Enqueued {
                task_id: row.id,
                queue: row.queue,
                task_type: row.task_type,
            },
            super::Enqueued::Existing(row) => TickOutcome::AlreadyEnqueued(row.id),
        };
        outcomes.push((name, tick, outcome));
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// [`enqueue_ticks`] one tick at a time, through [`enqueue_tick`].
async fn tick_one_by_one(
    conn: &mut PgConnection,
    moves: &[ScheduleMove<'_>],
) -> Result<Vec<(String, DateTime<Utc>, TickOutcome)>, sqlx::Error> {
    let mut outcomes = Vec::new();
    for change in moves {
        let mut expected = change.due.next_run_at;
        for (i, tick) in change.ticks.iter().enumerate() {
            let next = change.ticks.get(i + 1).copied().or(change.next);
            let outcome = enqueue_tick(conn, change.due, expected, *tick, next).await?;
            let changed = outcome == TickOutcome::Changed;
            outcomes.push((change.due.name.clone(), *tick, outcome));
            match next {
                Some(next) if !changed => expected = next,
                _ => break,
            }
        }
    }
    Ok(outcomes)
}

/// The task of schedule `name`'s tick `tick`, made from its `template`.
fn tick_task(name: &str, template: &CreateTask, tick: DateTime<Utc>) -> NewTask {
    NewTask {
        queue: template
            .queue
            .clone()
            .unwrap_or_else(|| common::limits::DEFAULT_QUEUE.to_owned()),
        priority: template.priority.unwrap_or(0),
        max_attempts: template.max_attempts.unwrap_or(3),
        max_attempts_requested: true,
        timeout_ms: template.timeout_ms,
        idempotency_key: Some(tick_key(name, tick)),
        ..NewTask::new(template.task_type.clone(), template.payload.clone())
    }
}

/// What [`enqueue_tick`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickOutcome {
    /// The tick's task was created and the schedule moved on.
    Enqueued {
        /// The task's id.
        task_id: i64,
        /// Its queue.
        queue: String,
        /// Its type.
        task_type: String,
    },
    /// The tick already had its task (its id, 0 if made from another template); moved on.
    AlreadyEnqueued(i64),
    /// The stored template no longer reads as a create request; moved on without a task.
    Unreadable(String),
    /// The schedule changed since it was read (paused, edited, deleted, ticked): nothing done.
    Changed,
}

/// Records that the maintenance leader runs a round now; returns the database's time now and
/// when the previous round (of any leader) ran.
pub async fn record_round(
    db: impl PgExecutor<'_>,
) -> Result<(DateTime<Utc>, Option<DateTime<Utc>>), sqlx::Error> {
    sqlx::query_as(
        r#"
        with previous as (select round_at from maintenance_rounds)
        insert into maintenance_rounds (only_row, round_at) values (true, now())
        on conflict (only_row) do update set round_at = excluded.round_at
        returning round_at, (select round_at from previous)
        "#,
    )
    .fetch_one(db)
    .await
}

/// The idempotency key of a schedule's tick: `schedule:{name}:{tick, RFC 3339 UTC}`.
pub fn tick_key(name: &str, tick: DateTime<Utc>) -> String {
    format!(
        "schedule:{name}:{}",
        tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}
