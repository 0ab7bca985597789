//! `/api/tasks`: create (with `Idempotency-Key`), get, list.

use apikit::openapi::{BodyRefused, DatabaseDown};
use apikit::{ApiJson, PathId};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::{CreateWebTask, Problem, WebTask, WebTaskPage};
use serde::Deserialize;

use super::error::UnknownWebTask;
use super::{ApiError, AppState};
use crate::store::{self, Created, NewWebTask};

/// Longest task type.
const MAX_TYPE_LEN: usize = 100;
/// Longest idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Page size when `limit` is absent, and its ceiling.
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;
/// Marks an answer replayed for a repeated `Idempotency-Key`.
const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tasks", post(create).get(list))
        .route("/api/tasks/{id}", get(get_one))
}

/// Creates a web task; with an `Idempotency-Key`, a repeat of the same body replays the answer.
#[utoipa::path(post, path = "/api/tasks", request_body = CreateWebTask, tag = "web tasks",
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses(
        (status = 201, description = "Created (or replayed)", body = WebTask),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        BodyRefused,
        (status = 409, description = "The Idempotency-Key was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing or invalid field", body = Problem, content_type = "application/problem+json"),
        DatabaseDown,
    ))]
pub(super) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<CreateWebTask>,
) -> Result<Response, ApiError> {
    let task = validate(request, idempotency_key(&headers)?)?;
    let mut conn = state.pool.acquire().await?;
    // Bind sends the payload as stored; what DTP could not take is refused now, not at bind.
    let stored = store::stored_size(&mut *conn, &task.payload).await?;
    if usize::try_from(stored).unwrap_or(usize::MAX) > state.max_payload_bytes {
        return Err(ApiError::Invalid(format!(
            "payload is {stored} bytes as stored; at most {} can be bound to DTP \
             (TASKPILOT_MAX_PAYLOAD_BYTES)",
            state.max_payload_bytes
        )));
    }
    let (row, replayed) = match store::create(&mut conn, &task).await? {
        Created::New(row) => {
            tracing::info!(web_task_id = row.id, task_type = %row.task_type, "web task created");
            (row, false)
        }
        Created::Replayed(row) => (row, true),
    };
    let location = format!("/api/tasks/{}", row.id);
    let mut response = (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(row.into_web_task()),
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, header::HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY => Ok(Some(key.to_owned())),
        _ => Err(ApiError::BadRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        )),
    }
}

fn validate(
    request: CreateWebTask,
    idempotency_key: Option<String>,
) -> Result<NewWebTask, ApiError> {
    let payload: serde_json::Value = serde_json::from_str(request.payload.get())
        .map_err(|e| ApiError::Invalid(format!("payload: {e}")))?;
    if request.task_type.contains('\0') || apikit::json_has_nul(&payload) {
        return Err(ApiError::Invalid(
            "NUL characters (\\u0000) cannot be stored; remove them".into(),
        ));
    }
    let task_type = request.task_type.trim();
    if task_type.is_empty() || task_type.len() > MAX_TYPE_LEN {
        return Err(ApiError::Invalid(
            "type must be a non-blank string of at most 100 bytes".into(),
        ));
    }
    Ok(NewWebTask {
        task_type: task_type.to_owned(),
        payload: request.payload,
        idempotency_key,
    })
}

/// One web task.
#[utoipa::path(get, path = "/api/tasks/{id}", tag = "web tasks",
    params(("id" = i64, Path, description = "Web task id", minimum = 1)),
    responses(
        (status = 200, description = "The web task", body = WebTask),
        UnknownWebTask,
        DatabaseDown,
    ))]
pub(super) async fn get_one(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<WebTask>, ApiError> {
    Ok(Json(store::get(&state.pool, id).await?.into_web_task()))
}

/// `GET /api/tasks` query; values arrive as text so that bad ones get a clear 400.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    limit: Option<String>,
    after: Option<String>,
}

/// A page of web tasks, newest first.
#[utoipa::path(get, path = "/api/tasks", tag = "web tasks",
    params(
        ("limit" = Option<i64>, Query, description = "Page size, 1..=500 (default 50)", minimum = 1, maximum = 500),
        ("after" = Option<i64>, Query, description = "Only web tasks older than this id", minimum = 1),
    ),
    responses(
        (status = 200, description = "A page", body = WebTaskPage),
        (status = 400, description = "Bad filter", body = Problem, content_type = "application/problem+json"),
        DatabaseDown,
    ))]
pub(super) async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<WebTaskPage>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = apikit::parse_bounded_int(params.limit.as_deref(), "limit", 1, MAX_PAGE)
        .map_err(ApiError::BadRequest)?
        .unwrap_or(DEFAULT_PAGE);
    let after = apikit::parse_bounded_int(params.after.as_deref(), "after", 1, i64::MAX)
        .map_err(ApiError::BadRequest)?;
    let rows = store::list(&state.pool, after, limit).await?;
    let full_page = i64::try_from(rows.len()).unwrap_or(i64::MAX) == limit;
    let next_after = if full_page {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(WebTaskPage {
        tasks: rows.into_iter().map(|r| r.into_web_task()).collect(),
        next_after,
    }))
}
