//! `GET /tasks`: a page of tasks, newest first, by the filters given.

use apikit::openapi::DatabaseDown;
use axum::extract::{Query, State};
use axum::Json;
use common::limits::is_queue_name;
use common::{Problem, TaskPage, TaskStatus};
use serde::Deserialize;

use super::{ApiError, AppState};

pub(super) fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/tasks", axum::routing::get(list))
}
use crate::queue::{self, ListFilter, TaskId};

/// Page size when `limit` is absent, and its ceiling.
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

/// `GET /tasks` query; every value arrives as text so that bad values get a clear 400.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    status: Option<String>,
    #[serde(rename = "type")]
    task_type: Option<String>,
    queue: Option<String>,
    #[serde(rename = "lastErrorContains")]
    last_error_contains: Option<String>,
    limit: Option<String>,
    after: Option<String>,
    #[serde(rename = "idempotencyKey")]
    idempotency_key: Option<String>,
}

/// A page of tasks, newest first.
#[utoipa::path(get, path = "/tasks", tag = "tasks",
    params(
        ("status" = Option<TaskStatus>, Query, description = "Only tasks in this state"),
        ("type" = Option<String>, Query, description = "Only tasks of this type"),
        ("queue" = Option<String>, Query, description = "Only tasks in this queue"),
        ("lastErrorContains" = Option<String>, Query, description = "Only tasks whose last error contains this text"),
        ("limit" = Option<i64>, Query, description = "Page size, 1..=500 (default 50)", minimum = 1, maximum = 500),
        ("after" = Option<i64>, Query, description = "Only tasks older than this id", minimum = 1),
        ("idempotencyKey" = Option<String>, Query, description = "Only the task created with this key"),
    ),
    responses(
        (status = 200, description = "A page", body = TaskPage),
        (status = 400, description = "Bad filter", body = Problem, content_type = "application/problem+json"),
        DatabaseDown,
    ))]
pub(super) async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TaskPage>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let filter = parse_filter(params)?;
    let rows = queue::list(&state.pool, &filter).await?;
    let full_page = i64::try_from(rows.len()).unwrap_or(i64::MAX) == filter.limit;
    let next_after = if full_page {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(TaskPage {
        tasks: rows.into_iter().map(|r| r.into_view()).collect(),
        next_after,
    }))
}

fn parse_filter(params: ListParams) -> Result<ListFilter, ApiError> {
    let texts = [
        params.task_type.as_ref(),
        params.queue.as_ref(),
        params.last_error_contains.as_ref(),
        params.idempotency_key.as_ref(),
    ];
    if texts.iter().flatten().any(|t| t.contains('\0')) {
        return Err(ApiError::BadRequest(
            "filters cannot contain NUL characters".into(),
        ));
    }
    if let Some(queue) = params.queue.as_deref().filter(|q| !is_queue_name(q)) {
        return Err(ApiError::BadRequest(format!(
            "queue must be 1 to 100 characters of A-Z a-z 0-9 _ . : -, got {queue:?}"
        )));
    }
    let status = params
        .status
        .map(|s| s.parse::<TaskStatus>())
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let limit = apikit::parse_bounded_int(params.limit.as_deref(), "limit", 1, MAX_PAGE)
        .map_err(ApiError::BadRequest)?
        .unwrap_or(DEFAULT_PAGE);
    let after = apikit::parse_bounded_int(params.after.as_deref(), "after", 1, i64::MAX)
        .map_err(ApiError::BadRequest)?
        .map(TaskId);
    Ok(ListFilter {
        status,
        task_type: params.task_type,
        queue: params.queue,
        last_error_contains: params.last_error_contains,
        idempotency_key: params.idempotency_key,
        after,
        limit,
    })
}
