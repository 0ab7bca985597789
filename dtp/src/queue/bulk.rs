//! An operator's action on every task a filter matches (`POST /tasks/bulk`): cancel, retry or
//! delete, each changing only the rows it applies to, in one transaction.

use std::time::Duration;

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

/// Applies `action` to the tasks `filter` matches; `lease` as for [`super::retry`]. The caller
/// has checked that the filter names at least one condition or says `all`. With `at_most`
/// (the count an operator confirmed), nothing changes and [`Error::MatchesGrew`] is returned if
/// more tasks than that are in a state the action applies to.
pub async fn bulk(
    conn: &mut PgConnection,
    action: BulkAction,
    filter: &BulkFilter,
    lease: Duration,
    at_most: Option<u64>,
) -> Result<BulkDone, Error> {
    let mut tx = conn.begin().await?;
    let mut stopped = Vec::new();
    if let Some(confirmed) = at_most {
        let applicable = count_matching(&mut *tx, filter, Some(action)).await?;
        let applicable = u64::try_from(applicable).unwrap_or(0);
        if applicable > confirmed {
            return Err(Error::MatchesGrew {
                applicable,
                confirmed,
            });
        }
    }
    let matched = count_matching(&mut *tx, filter, None).await?;
    let changed: i64 = match action {
        BulkAction::Cancel => {
            // The row locks order the cancel against completions, as a single cancel does;
            // each handler still running is told to stop.
            let mut sql = matching(
                "with target as (select id, status as was from tasks \
                 where status in ('PENDING', 'RUNNING')",
                filter,
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
            let ids: Vec<i64> = matching(
                "select id from tasks where status in ('FAILED', 'CANCELED')",
                filter,
            )
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
                filter,
            );
            sql.push(format_args!(
                " returning queue, status), counted as ({}) select count(*) from deleted",
                count_finished("(select queue, status, -1 as delta from deleted) d")
            ));
            sql.build_query_scalar().fetch_one(&mut *tx).await?
        }
    };
    tx.commit().await?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(BulkDone {
        outcome: BulkOutcome {
            matched: count(matched),
            changed: count(changed),
        },
        stopped,
    })
}

/// `prefix` (which ends inside a `where`) followed by the filter's conditions.
fn matching<'a>(prefix: &str, filter: &'a BulkFilter) -> QueryBuilder<'a, Postgres> {
    let mut sql = QueryBuilder::new(prefix);
    push_conditions(&mut sql, filter);
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

/// How many tasks `filter` matches; with `action`, only those in a state it applies to (what a
/// bulk action's confirmation shows).
pub async fn count_matching(
    db: impl PgExecutor<'_>,
    filter: &BulkFilter,
    action: Option<BulkAction>,
) -> Result<i64, Error> {
    let states = match action {
        None => "true",
        Some(BulkAction::Cancel) => "status in ('PENDING', 'RUNNING')",
        Some(BulkAction::Retry) => "status in ('FAILED', 'CANCELED')",
        Some(BulkAction::Delete) => "status in ('SUCCEEDED', 'FAILED', 'CANCELED')",
    };
    let count = matching(
        &format!("select count(*) from tasks where {states}"),
        filter,
    )
    .build_query_scalar()
    .fetch_one(db)
    .await?;
    Ok(count)
}
