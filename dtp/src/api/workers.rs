//! `GET /workers`: the worker processes seen lately, with their busy slots (what an operator
//! checks when a queue backs up).

use std::collections::HashMap;
use std::time::Duration;

use apikit::openapi::DatabaseDown;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use common::{Problem, WorkerList};

use super::{ApiError, AppState};
use crate::queue;

/// Default window of `GET /workers`, in seconds.
const SEEN_WITHIN_DEFAULT: i64 = 300;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/workers", get(list))
}

/// The workers that reported within `seenWithinSeconds` (default 300), by id: each reports
/// every heartbeat interval with its busy slots, and says when it stops; one that died just
/// stops reporting.
#[utoipa::path(get, path = "/workers", tag = "queues",
    params(("seenWithinSeconds" = Option<i64>, Query, description = "Window, 1..=86400 (default 300)", minimum = 1, maximum = 86400)),
    responses(
        (status = 200, description = "The workers", body = WorkerList),
        (status = 400, description = "Bad window", body = Problem, content_type = "application/problem+json"),
        DatabaseDown,
    ))]
pub(super) async fn list(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<WorkerList>, ApiError> {
    let raw = params.get("seenWithinSeconds").map(String::as_str);
    let seconds = apikit::parse_bounded_int(raw, "seenWithinSeconds", 1, 86_400)
        .map_err(ApiError::BadRequest)?
        .unwrap_or(SEEN_WITHIN_DEFAULT);
    let window = Duration::from_secs(u64::try_from(seconds).unwrap_or(300));
    let rows = queue::workers(&state.pool, window).await?;
    Ok(Json(WorkerList {
        workers: rows.into_iter().map(queue::WorkerRow::into_view).collect(),
    }))
}
