//! `GET /stats`: what the workers did per minute, for the dashboard's charts.

use std::collections::HashMap;

use apikit::metrics::SECONDS_BUCKETS;
use apikit::openapi::DatabaseDown;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use common::{Problem, StatsList, StatsMinute};

use super::{ApiError, AppState};
use crate::queue;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/stats", get(stats))
}

/// The last `minutes` minutes (default 60, at most 1440), oldest first, summed over every
/// process and queue (or for `queue`): attempts succeeded, failed and retried, and the queue
/// wait and run time percentiles of the attempts of each minute.
#[utoipa::path(get, path = "/stats", tag = "queues",
    params(
        ("minutes" = Option<i64>, Query, description = "How many minutes, 1..=1440 (default 60)", minimum = 1, maximum = 1440),
        ("queue" = Option<String>, Query, description = "Only this queue"),
    ),
    responses(
        (status = 200, description = "The minutes", body = StatsList),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        DatabaseDown,
    ))]
pub(super) async fn stats(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<StatsList>, ApiError> {
    let raw = params.get("minutes").map(String::as_str);
    let minutes = apikit::parse_bounded_int(raw, "minutes", 1, 1440)
        .map_err(ApiError::BadRequest)?
        .unwrap_or(60);
    let queue = params.get("queue").map(String::as_str);
    super::operator::stats(&state, minutes, queue)
        .await
        .map(Json)
}

/// Each minute's counts, and its percentiles read from its buckets.
pub(super) fn summarize(rows: Vec<queue::MinuteRow>) -> StatsList {
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
