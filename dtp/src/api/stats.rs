//! `GET /stats`: what the workers did per minute, for the dashboard's charts.

use std::collections::HashMap;

use apikit::openapi::DatabaseDown;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use common::{Problem, StatsList};

use super::{ApiError, AppState};

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
