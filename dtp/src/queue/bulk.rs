//! An operator's action on every task a filter matches (`POST /tasks/bulk`): cancel, retry or
//! delete, each changing only the rows it applies to, in one transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};

use common::limits::MAX_ATTEMPTS;
use common::{BulkAction, BulkFilter, BulkOutcome};
use sqlx::{Connection, PgConnection, PgExecutor, Postgres, QueryBuilder};

use super::cancel::cancel_target;
use super::counts::count_finished;
use super::operate::{retried_target, RETRYABLE};
use super::read::{push_matching, Matching};
use super::{millis, Error, CHANNEL_TASK_AVAILABLE};

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

/// Applies `action` to the tasks `filter` matches; `lease` as for [`super::retry`]. The caller
/// has checked that the filter names at least one condition or says `all`.
///
/// With `confirmed`, only tasks that qualified when the operator counted them: created by then
/// and, once finished, finished by then (a task created or finished since is not taken along,
/// so the set only shrinks); and if the action still changes more tasks than were confirmed (a
/// task retried since its count and open again), nothing is changed and
/// [`Error::MatchesGrew`] says so. The count is the action's own, in its transaction.
pub async fn bulk(
    conn: &mut PgConnection,
    action: BulkAction,
    filter: &BulkFilter,
    lease: Duration,
    confirmed: Option<Confirmed>,
) -> Result<BulkDone, Error> {
    let pin = confirmed.map(|c| c.at);
    let matching = |prefix: &str| matching(prefix, filter, pin);
    let mut tx = conn.begin().await?;
    let mut stopped = Vec::new();
    let matched = count_matching(&mut *tx, filter, pin).await?;
    let changed: i64 = match action {
        BulkAction::Cancel => {
            // The row locks order the cancel against completions, as a single cancel does;
            // each handler still running is told to stop.
            let mut sql = matching(
                "with target as (select id, status as was from tasks \
                 where status in ('PENDING', 'RUNNING')",
            );
            sql.push(format_args!(
                " order by id for update), {} \
                 select queue, type, count(*) filter (where was = 'RUNNING'), count(*) \
                 from canceled, (select count(*) from notified) n group by queue, type",
                cancel_target()
            ));
            let groups: Vec<(String, String, i64, i64)> =
                sql.build_query_as().fetch_all(&mut *tx).await?;
            let changed = groups.iter().map(|(_, _, _, changed)| changed).sum();
            stopped = groups
                .into_iter()
                .filter(|(_, _, stopped, _)| *stopped > 0)
                .map(|(queue, task_type, stopped, _)| (queue, task_type, stopped))
                .collect();
            changed
        }
        BulkAction::Retry => {
            let ids: Vec<i64> =
                matching("select id from tasks where status in ('FAILED', 'CANCELED')")
                    .build_query_scalar()
                    .fetch_all(&mut *tx)
                    .await?;
            // The statement of a single retry, over all of them: RETRYABLE re-checks each row.
            sqlx::query_scalar(&format!(
                "with target as (select id, status as was from tasks \
                 where id = any($1) and {RETRYABLE} order by id for update), {} , \
                 notified as (select pg_notify('{CHANNEL_TASK_AVAILABLE}', '') \
                 where exists (select 1 from retried)) \
                 select count(*) from retried, (select count(*) from notified) n",
                retried_target()
            ))
            .bind(&ids)
            .bind(MAX_ATTEMPTS.end())
            .bind(millis(lease))
            .fetch_one(&mut *tx)
            .await?
        }
        BulkAction::Delete => {
            let mut sql = matching(
                "with deleted as (delete from tasks \
                 where status in ('SUCCEEDED', 'FAILED', 'CANCELED')",
            );
            sql.push(format_args!(
                " returning queue, status), counted as ({}) select count(*) from deleted",
                count_finished("(select queue, status, -1 as delta from deleted) d")
            ));
            sql.build_query_scalar().fetch_one(&mut *tx).await?
        }
    };
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    if let Some(confirmed) = confirmed.filter(|c| count(changed) > c.tasks) {
        // Dropped uncommitted: every change is undone, its notifications never sent.
        return Err(Error::MatchesGrew {
            applicable: count(changed),
            confirmed: confirmed.tasks,
        });
    }
    tx.commit().await?;
    Ok(BulkDone {
        outcome: BulkOutcome {
            matched: count(matched),
            changed: count(changed),
        },
        stopped,
    })
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

/// How many tasks `filter` matches; with `pin`, as [`bulk`] with a confirmation at `pin`.
pub async fn count_matching(
    db: impl PgExecutor<'_>,
    filter: &BulkFilter,
    pin: Option<DateTime<Utc>>,
) -> Result<i64, Error> {
    let count = matching("select count(*) from tasks where true", filter, pin)
        .build_query_scalar()
        .fetch_one(db)
        .await?;
    Ok(count)
}

/// What a bulk action's confirmation shows, in one statement: how many tasks `filter` matches
/// now, and the [`Confirmed`] count of those `action` applies to, at the database's now.
pub async fn count_for_confirmation(
    db: impl PgExecutor<'_>,
    filter: &BulkFilter,
    action: BulkAction,
) -> Result<(i64, Confirmed), Error> {
    let states = match action {
        BulkAction::Cancel => "status in ('PENDING', 'RUNNING')",
        BulkAction::Retry => "status in ('FAILED', 'CANCELED')",
        BulkAction::Delete => "status in ('SUCCEEDED', 'FAILED', 'CANCELED')",
    };
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
