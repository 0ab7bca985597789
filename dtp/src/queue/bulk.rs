//! An operator's action on every task a filter matches (`POST /tasks/bulk`): cancel, retry or
//! delete, each changing only the rows it applies to, in steps of bounded size.

use std::time::Duration;

use chrono::{DateTime, Utc};

use common::limits::MAX_ATTEMPTS;
use common::{BulkAction, BulkFilter, BulkOutcome};
use sqlx::{Connection, PgConnection, PgExecutor, Postgres, QueryBuilder};

use super::cancel::cancel_target;
use super::counts::count_finished;
use super::operate::{retried_target, RETRYABLE};
use super::read::{push_matching, Matching};
use super::{millis, Error};

/// What a bulk action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkDone {
    /// Tasks matched and changed.
    pub outcome: BulkOutcome,
    /// Attempts a cancel stopped (tasks that were RUNNING), as `(queue, type, count)`.
    pub stopped: Vec<(String, String, i64)>,
}

/// What an operator confirmed of a bulk action: it applied to `tasks` tasks at `at` (the
/// database's time when they were counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed {
    /// Tasks it applied to then.
    pub tasks: u64,
    /// When they were counted.
    pub at: DateTime<Utc>,
}

/// Tasks a bulk action reads, and then locks and changes, per step: no step holds more row
/// locks than this, nor for longer than one short statement.
const STEP: i64 = 1000;

/// Applies `action` to the tasks `filter` matches; `lease` as for [`super::retry`]. The caller
/// has checked that the filter names at least one condition or says `all`.
///
/// It goes in steps of [`STEP`] tasks, oldest first: the matching ids are read without a lock
/// (the walk a filter without an index makes holds nothing), then the action locks those rows
/// in id order (the order every change of a task takes them), re-checks their state, and
/// changes them in one statement that commits. A running handler's lease is therefore never
/// held up by the walk, and an action cut short leaves the steps it finished done: run again,
/// it takes up the rest.
///
/// It takes only tasks that existed when it began (a walk that kept finding new tasks would not
/// end). With `confirmed`, only tasks that qualified when the operator counted them: created by
/// then and, once finished, finished by then (a task created or finished since is not taken
/// along, so the set only shrinks), checked again under each step's lock; and it never changes
/// more tasks than were confirmed: if it would apply to more from the start (a task retried
/// since its count and open again), nothing is changed, and if more turn up while it goes, it
/// stops at the confirmed number; either way [`Error::MatchesGrew`] says so.
pub async fn bulk(
    conn: &mut PgConnection,
    action: BulkAction,
    filter: &BulkFilter,
    lease: Duration,
    confirmed: Option<Confirmed>,
) -> Result<BulkDone, Error> {
    let pin = confirmed.map(|c| c.at);
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    if let Some(confirmed) = confirmed {
        let applicable = matching(
            &format!("select count(*) from tasks where {}", applies_to(action)),
            filter,
            pin,
        )
        .build_query_scalar()
        .fetch_one(&mut *conn)
        .await?;
        if count(applicable) > confirmed.tasks {
            return Err(Error::MatchesGrew {
                applicable: count(applicable),
                confirmed: confirmed.tasks,
                changed: 0,
            });
        }
    }
    let mut done = BulkDone {
        outcome: BulkOutcome::default(),
        stopped: Vec::new(),
    };
    let newest: i64 = sqlx::query_scalar("select coalesce(max(id), 0) from tasks")
        .fetch_one(&mut *conn)
        .await?;
    let mut after = 0_i64;
    loop {
        let mut sql = matching(
            &format!("select id, {} from tasks where true", applies_to(action)),
            filter,
            pin,
        );
        sql.push(" and id > ")
            .push_bind(after)
            .push(" and id <= ")
            .push_bind(newest)
            .push(" order by id limit ")
            .push_bind(STEP);
        let read: Vec<(i64, bool)> = sql.build_query_as().fetch_all(&mut *conn).await?;
        let Some(&(last, _)) = read.last() else { break };
        after = last;
        done.outcome.matched += count(i64::try_from(read.len()).unwrap_or(i64::MAX));
        let mut targets: Vec<i64> = read.iter().filter(|(_, a)| *a).map(|(id, _)| *id).collect();
        // Never past the confirmed number: the rest, if any, are what grew.
        let mut grew = None;
        if let Some(c) = confirmed {
            let left = c.tasks.saturating_sub(done.outcome.changed);
            let left = usize::try_from(left).unwrap_or(usize::MAX);
            if targets.len() > left {
                targets.truncate(left);
                grew = Some(c);
            }
        }
        if !targets.is_empty() {
            let step = Step {
                action,
                filter,
                ids: &targets,
                lease,
                pin,
            };
            let changed = apply_step(conn, &step, &mut done.stopped).await?;
            done.outcome.changed += count(changed);
        }
        if let Some(confirmed) = grew {
            return Err(Error::MatchesGrew {
                applicable: confirmed.tasks + 1,
                confirmed: confirmed.tasks,
                changed: done.outcome.changed,
            });
        }
        if i64::try_from(read.len()).unwrap_or(i64::MAX) < STEP {
            break;
        }
    }
    Ok(done)
}

/// The states `action` applies to, as a condition.
fn applies_to(action: BulkAction) -> &'static str {
    match action {
        BulkAction::Cancel => "status in ('PENDING', 'RUNNING')",
        BulkAction::Retry => "status in ('FAILED', 'CANCELED')",
        BulkAction::Delete => "status in ('SUCCEEDED', 'FAILED', 'CANCELED')",
    }
}

/// How long a step waits for a lock while holding the rows it has locked (a running task's
/// row among them, whose lease renewal skips it meanwhile), the pause before it tries again,
/// and how many tries it makes before the action gives up, answered "busy".
const STEP_LOCK_WAIT: &str = "200ms";
const STEP_PAUSE: Duration = Duration::from_millis(500);
/// Longest a step's statement holds its locks, waits included; past it, the step is undone and
/// tried again like a step that waited too long for one lock.
const STEP_TIME_LIMIT: &str = "2s";
const STEP_TRIES: u32 = 10;

/// One step of a bulk action: `action` on the tasks `ids` (ascending) that still qualify.
struct Step<'a> {
    action: BulkAction,
    filter: &'a BulkFilter,
    ids: &'a [i64],
    lease: Duration,
    /// The confirmation's time, checked again under the lock.
    pin: Option<DateTime<Utc>>,
}

/// Applies `step` in one statement. A lock it cannot get soon, a deadlock or a serialization
/// failure (possible against a completer's batch) undoes it, and it is tried again after a
/// pause.
async fn apply_step(
    conn: &mut PgConnection,
    step: &Step<'_>,
    stopped: &mut Vec<(String, String, i64)>,
) -> Result<i64, Error> {
    let mut tries = 0;
    loop {
        tries += 1;
        let mut tx = conn.begin().await?;
        sqlx::query(
            "select set_config('lock_timeout', $1, true), \
                    set_config('statement_timeout', $2, true)",
        )
        .bind(STEP_LOCK_WAIT)
        .bind(STEP_TIME_LIMIT)
        .execute(&mut *tx)
        .await?;
        let mut groups = Vec::new();
        match step_statement(&mut tx, step, &mut groups).await {
            Err(e) if tries < STEP_TRIES && is_busy(&e) => {
                drop(tx);
                tokio::time::sleep(STEP_PAUSE).await;
            }
            Err(e) => return Err(e.into()),
            Ok(changed) => {
                tx.commit().await?;
                stopped.extend(groups);
                return Ok(changed);
            }
        }
    }
}

/// The statement of `step` (see [`apply_step`]); the attempts a cancel stopped go to `stopped`.
async fn step_statement(
    conn: &mut PgConnection,
    step: &Step<'_>,
    stopped: &mut Vec<(String, String, i64)>,
) -> Result<i64, sqlx::Error> {
    let &Step {
        action,
        filter,
        ids,
        lease,
        pin,
    } = step;
    // The state may have changed since the ids were read: it is checked again under the lock,
    // with the filter's own state when it names one (a literal, one of five constants).
    let mut still = match filter.status {
        Some(status) => format!("{} and status = '{}'", applies_to(action), status.as_str()),
        None => applies_to(action).to_owned(),
    };
    if let Some(pin) = pin {
        // A literal the database's own time wrote.
        let pin = pin.to_rfc3339();
        still.push_str(&format!(
            " and created_at <= '{pin}'::timestamptz \
             and (completed_at is null or completed_at <= '{pin}'::timestamptz)"
        ));
    }
    match action {
        BulkAction::Cancel => {
            // Each handler still running is told to stop.
            sqlx::query_as(&format!(
                "with target as (select id, status as was from tasks \
                 where id = any($1) and {still} order by id for update), {} \
                 select queue, type, count(*) filter (where was = 'RUNNING'), count(*) \
                 from canceled, (select count(*) from notified) n group by queue, type",
                cancel_target()
            ))
            .bind(ids)
            .fetch_all(conn)
            .await
            .map(|groups: Vec<(String, String, i64, i64)>| {
                let changed = groups.iter().map(|(_, _, _, changed)| changed).sum();
                stopped.extend(
                    groups
                        .into_iter()
                        .filter(|(_, _, stopped, _)| *stopped > 0)
                        .map(|(queue, task_type, stopped, _)| (queue, task_type, stopped)),
                );
                changed
            })
        }
        // The statement of a single retry, over all of them: RETRYABLE re-checks each row.
        BulkAction::Retry => {
            sqlx::query_scalar(&format!(
                "with target as (select id, status as was from tasks \
                 where id = any($1) and {RETRYABLE} and {still} order by id for update), {} \
                 select count(*) from retried, (select count(*) from announced) a",
                retried_target()
            ))
            .bind(ids)
            .bind(MAX_ATTEMPTS.end())
            .bind(millis(lease))
            .fetch_one(conn)
            .await
        }
        BulkAction::Delete => {
            sqlx::query_scalar(&format!(
                "with target as (select id from tasks where id = any($1) and {still} \
                 order by id for update), \
                 deleted as (delete from tasks t using target where t.id = target.id \
                 returning t.queue, t.status), \
                 counted as ({}) select count(*) from deleted",
                count_finished("(select queue, status, -1 as delta from deleted) d")
            ))
            .bind(ids)
            .fetch_one(conn)
            .await
        }
    }
}

/// A lock not granted in time, a step past its time limit, a deadlock or a serialization
/// failure: the statement did nothing and may be run again.
fn is_busy(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("55P03" | "57014" | "40P01" | "40001")))
}

/// `prefix` (which ends inside a `where`) followed by the filter's conditions, and with `pin`
/// only tasks created by then and, once finished, finished by then.
fn matching<'a>(
    prefix: &str,
    filter: &'a BulkFilter,
    pin: Option<DateTime<Utc>>,
) -> QueryBuilder<'a, Postgres> {
    let mut sql = QueryBuilder::new(prefix);
    push_conditions(&mut sql, filter);
    if let Some(pin) = pin {
        sql.push(" and created_at <= ")
            .push_bind(pin)
            .push(" and (completed_at is null or completed_at <= ")
            .push_bind(pin)
            .push(")");
    }
    sql
}

fn push_conditions<'a>(sql: &mut QueryBuilder<'a, Postgres>, filter: &'a BulkFilter) {
    let matching = Matching {
        status: filter.status,
        task_type: filter.task_type.as_ref(),
        queue: filter.queue.as_ref(),
        last_error_contains: filter.last_error_contains.as_ref(),
        last_error: filter.last_error.as_ref(),
        created_after: filter.created_after,
        created_before: filter.created_before,
    };
    push_matching(sql, matching);
}

/// What a bulk action's confirmation shows, in one statement: how many tasks `filter` matches
/// now, and the [`Confirmed`] count of those `action` applies to, at the database's now.
pub async fn count_for_confirmation(
    db: impl PgExecutor<'_>,
    filter: &BulkFilter,
    action: BulkAction,
) -> Result<(i64, Confirmed), Error> {
    let states = applies_to(action);
    // `now()` is one instant for the whole statement: the pin the counts were taken at.
    let (at, matched, applicable): (DateTime<Utc>, i64, i64) = matching(
        &format!(
            "select now(), count(*), count(*) filter (where {states}) from tasks \
             where created_at <= now() and (completed_at is null or completed_at <= now())"
        ),
        filter,
        None,
    )
    .build_query_as()
    .fetch_one(db)
    .await?;
    let tasks = u64::try_from(applicable).unwrap_or(0);
    Ok((matched, Confirmed { tasks, at }))
}
