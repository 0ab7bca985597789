//! An operator's actions, each done in one place: the HTTP handlers and the dashboard (`ui`)
//! both call these, so a cancel from either counts the stopped attempt in the metrics, logs
//! the same line and refuses the same input.

use apikit::metrics::SECONDS_BUCKETS;
use common::limits::QueueName;
use common::queue::bounds::{CONCURRENCY_LIMIT, MAX_RATE_PER_SECOND};
use common::{
    AttemptOutcome, BulkAction, BulkFilter, BulkOutcome, Queue, QueuePatch, StatsList, StatsMinute,
    TaskView,
};

pub(crate) use super::schedules::change_schedule;
use super::{ApiError, AppState};
use crate::queue::{self, CancelOutcome, TaskId};

/// Cancels a PENDING or RUNNING task (idempotent); a RUNNING one's handler is told to stop.
pub(crate) async fn cancel(state: &AppState, id: TaskId) -> Result<TaskView, ApiError> {
    let mut conn = state.pool.acquire().await?;
    match queue::cancel(&mut conn, id).await? {
        CancelOutcome::Canceled { task, was_running } => {
            let from = if was_running { "RUNNING" } else { "PENDING" };
            tracing::info!(task_id = %id, from, to = "CANCELED", "task canceled");
            if was_running {
                let (queue, task_type) = (&task.queue, &task.task_type);
                state
                    .metrics
                    .attempt_ended(queue, task_type, AttemptOutcome::Canceled);
            }
            Ok(task.into_view())
        }
        CancelOutcome::AlreadyCanceled(task) => Ok(task.into_view()),
    }
}

/// Makes a FAILED or CANCELED task PENDING again (see `queue::retry`).
pub(crate) async fn retry(state: &AppState, id: TaskId) -> Result<TaskView, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let task = queue::retry(&mut conn, id, state.config.lease).await?;
    tracing::info!(task_id = %id, to = "PENDING", max_attempts = task.max_attempts, "task retried by an operator");
    Ok(task.into_view())
}

/// Makes a PENDING task due now.
pub(crate) async fn run_now(state: &AppState, id: TaskId) -> Result<TaskView, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let due = queue::run_now(&mut conn, id).await?.into_view();
    tracing::info!(task_id = %id, run_at = %due.scheduled_for, "task made due now by an operator");
    Ok(due)
}

/// Deletes a SUCCEEDED, FAILED or CANCELED task.
pub(crate) async fn delete(state: &AppState, id: TaskId) -> Result<(), ApiError> {
    queue::delete(&state.pool, id).await?;
    tracing::info!(task_id = %id, "task deleted by an operator");
    Ok(())
}

/// Applies `action` to every task `filter` matches, once the filter is checked; with
/// `confirmed`, to those an operator confirmed (see `queue::bulk`).
pub(crate) async fn bulk(
    state: &AppState,
    action: BulkAction,
    filter: &BulkFilter,
    confirmed: Option<queue::Confirmed>,
) -> Result<BulkOutcome, ApiError> {
    validate_filter(filter)?;
    let mut conn = state.operator_pool.acquire().await?;
    let lease = state.config.lease;
    let queue::BulkDone { outcome, stopped } =
        queue::bulk(&mut conn, action, filter, lease, confirmed).await?;
    for (queue, task_type, count) in stopped {
        let count = u64::try_from(count).unwrap_or(0);
        let canceled = AttemptOutcome::Canceled;
        state
            .metrics
            .attempts_ended(&queue, &task_type, canceled, count);
    }
    tracing::info!(action = ?action, filter = ?filter, matched = outcome.matched, changed = outcome.changed, "bulk action by an operator");
    Ok(outcome)
}

/// What an operator confirms before a bulk action: how many tasks `filter` matches now (the
/// database's now, returned), and how many of them `action` applies to.
pub(crate) async fn count_for_confirmation(
    state: &AppState,
    filter: &BulkFilter,
    action: BulkAction,
) -> Result<(i64, queue::Confirmed), ApiError> {
    validate_filter(filter)?;
    Ok(queue::count_for_confirmation(&state.operator_pool, filter, action).await?)
}

/// Refuses a filter without a condition (unless it says `all`) or with an invalid one.
pub(crate) fn validate_filter(filter: &BulkFilter) -> Result<(), ApiError> {
    let invalid = |message: &str| Err(ApiError::Invalid(message.to_owned()));
    let conditions = [
        filter.queue.is_some(),
        filter.task_type.is_some(),
        filter.status.is_some(),
        filter.created_before.is_some(),
        filter.created_after.is_some(),
        filter.last_error_contains.is_some(),
        filter.last_error.is_some(),
    ];
    if !filter.all && !conditions.contains(&true) {
        return invalid(
            "a bulk action needs a filter: queue, type, status, createdBefore, createdAfter, \
             lastErrorContains or lastError, or \"all\": true for every task",
        );
    }
    if let Some(queue) = filter.queue.as_deref() {
        QueueName::parse("filter.queue", queue).map_err(ApiError::Invalid)?;
    }
    let text = |t: &Option<String>, most: usize| {
        t.as_deref()
            .is_some_and(|t| t.is_empty() || t.len() > most || t.contains('\0'))
    };
    if text(&filter.task_type, 100) {
        return invalid("filter.type must be 1 to 100 bytes without NUL");
    }
    if text(&filter.last_error_contains, 1024) {
        return invalid("filter.lastErrorContains must be 1 to 1024 bytes without NUL");
    }
    // A stored error is cut to MAX_ERROR_BYTES and marked with "…": any stored one is allowed.
    if text(&filter.last_error, queue::MAX_ERROR_BYTES + '…'.len_utf8()) {
        return invalid("filter.lastError must be 1 to 8195 bytes without NUL");
    }
    Ok(())
}

/// Changes a queue's settings (pause, resume, limits), once they are checked.
pub(crate) async fn configure_queue(
    state: &AppState,
    name: &str,
    patch: &QueuePatch,
) -> Result<Queue, ApiError> {
    validate_queue_patch(name, patch)?;
    let mut conn = state.pool.acquire().await?;
    let queue = queue::configure(&mut conn, name, patch).await?;
    tracing::info!(queue = name, paused = queue.paused, concurrency_limit = ?queue.concurrency_limit, rate_limit_per_second = ?queue.rate_limit_per_second, "queue configured by an operator");
    Ok(queue)
}

fn validate_queue_patch(name: &str, patch: &QueuePatch) -> Result<(), ApiError> {
    let invalid = |message: &str| Err(ApiError::Invalid(message.to_owned()));
    QueueName::parse("the queue name", name).map_err(ApiError::Invalid)?;
    if let Some(Some(limit)) = patch.concurrency_limit {
        if !CONCURRENCY_LIMIT.contains(&limit) {
            return invalid("concurrencyLimit must be an integer from 1 to 1000000, or null");
        }
    }
    if let Some(Some(rate)) = patch.rate_limit_per_second {
        if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE_PER_SECOND) {
            return invalid("rateLimitPerSecond must be above 0 and at most 1000000, or null");
        }
    }
    Ok(())
}

/// The last `minutes` minutes of every process's counts (in `queue` only, when given).
pub(crate) async fn stats(
    state: &AppState,
    minutes: i64,
    queue: Option<&str>,
) -> Result<StatsList, ApiError> {
    if let Some(queue) = queue {
        QueueName::parse("queue", queue).map_err(ApiError::BadRequest)?;
    }
    let rows = queue::minute_stats(
        &state.operator_pool,
        minutes,
        queue,
        crate::metrics::MINUTE_BUCKETS,
    )
    .await?;
    Ok(summarize(rows))
}

/// Each minute's counts, and its percentiles read from its buckets.
fn summarize(rows: Vec<queue::MinuteRow>) -> StatsList {
    let minutes = rows
        .into_iter()
        .map(|row| {
            let c = row.counted;
            StatsMinute {
                minute: row.minute,
                succeeded: c.succeeded,
                failed: c.failed,
                retried: c.retried,
                started: c.wait_buckets.iter().sum(),
                queue_wait_p50_ms: percentile_ms(&c.wait_buckets, 0.5),
                queue_wait_p95_ms: percentile_ms(&c.wait_buckets, 0.95),
                run_p50_ms: percentile_ms(&c.run_buckets, 0.5),
                run_p95_ms: percentile_ms(&c.run_buckets, 0.95),
            }
        })
        .collect();
    StatsList { minutes }
}

/// The `q` quantile of the observations counted in `buckets` (per bound of
/// [`SECONDS_BUCKETS`], then one past the last), in ms: interpolated within its bucket as
/// Prometheus' `histogram_quantile` does, and the last bound for the bucket past it.
fn percentile_ms(buckets: &[i64], q: f64) -> Option<f64> {
    let total: i64 = buckets.iter().sum();
    if total <= 0 {
        return None;
    }
    // Counts below 2^53: exact as floats.
    #[allow(clippy::cast_precision_loss)]
    let rank = q * total as f64;
    let mut below = 0i64;
    for (i, &count) in buckets.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let reached = (below + count) as f64 >= rank && count > 0;
        if reached {
            let Some(&upper) = SECONDS_BUCKETS.get(i) else {
                return SECONDS_BUCKETS.last().map(|s| s * 1000.0);
            };
            let lower = if i == 0 { 0.0 } else { SECONDS_BUCKETS[i - 1] };
            #[allow(clippy::cast_precision_loss)]
            let within = (rank - below as f64) / count as f64;
            return Some((lower + (upper - lower) * within) * 1000.0);
        }
        below += count;
    }
    SECONDS_BUCKETS.last().map(|s| s * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_read_from_the_buckets() {
        let mut buckets = vec![0; SECONDS_BUCKETS.len() + 1];
        assert_eq!(percentile_ms(&buckets, 0.5), None);
        // 100 observations in (1 ms, 2.5 ms]: the median is halfway.
        buckets[2] = 100;
        let median = percentile_ms(&buckets, 0.5).expect("some");
        assert!((median - 1.75).abs() < 1e-9, "{median}");
        // One slow one past the last bound: the 100th percentile is the last bound.
        buckets[SECONDS_BUCKETS.len()] = 1;
        assert_eq!(percentile_ms(&buckets, 1.0), Some(60_000.0));
        assert!(percentile_ms(&buckets, 0.95).expect("some") <= 2.5);
    }
}
