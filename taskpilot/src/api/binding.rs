//! `POST /api/tasks/{id}/scheduler`: bind a web task to a DTP task, exactly once.
//!
//! The DTP task is created with the web task's `bind_key` as its idempotency key (random, drawn
//! when the web task was created, see `migrations/webdb/0002_bind_key.sql`), so racing binds and
//! a bind retried after TaskPilot died between DTP's answer and its own write all end on the
//! same DTP task, while another TaskPilot sharing the DTP, or this one after its webdb was
//! recreated, never meets the key. No database transaction is held across the call to DTP.

use apikit::openapi::BodyRefused;
use apikit::{Caller, OptionalJson, PathId};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use common::limits::{QueueName, MAX_ATTEMPTS};
use common::{BindRequest, Problem, TaskView, WebTask};
use serde::Serialize;
use serde_json::value::RawValue;

use super::error::DtpFaults;
use super::{ApiError, AppState};
use crate::scheduler_client;
use crate::store::{self, WebTaskRow};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/tasks/{id}/scheduler", post(bind))
}

/// Binds a web task to a DTP task, exactly once (idempotent).
#[utoipa::path(post, path = "/api/tasks/{id}/scheduler", request_body(content = Option<BindRequest>, description = "Optional"), tag = "web tasks",
    params(("id" = i64, Path, description = "Web task id", minimum = 1)),
    responses(
        (status = 200, description = "The web task, bound", body = WebTask),
        (status = 400, description = "Id not a positive integer, or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such web task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "DTP answered with no usable task", body = Problem, content_type = "application/problem+json"),
        BodyRefused,
        (status = 422, description = "Invalid field, or DTP rejected the type", body = Problem, content_type = "application/problem+json"),
        DtpFaults,
    ))]
pub(super) async fn bind(
    State(state): State<AppState>,
    PathId(id): PathId,
    caller: Caller,
    OptionalJson(request): OptionalJson<BindRequest>,
) -> Result<Json<WebTask>, ApiError> {
    validate(&request)?;
    let task = store::get(&state.pool, id).await?;
    if task.scheduler_task_id.is_some() {
        return Ok(Json(task.into_web_task()));
    }
    let scheduled = create_or_adopt(&state, &task, request, &caller).await?;
    let mut conn = state.pool.acquire().await?;
    let bound = store::bind(&mut conn, id, scheduled.id).await?;
    tracing::info!(web_task_id = id, scheduler_task_id = ?bound.scheduler_task_id, "web task bound");
    Ok(Json(bound.into_web_task()))
}

fn validate(request: &BindRequest) -> Result<(), ApiError> {
    if let Some(scheduler_type) = &request.scheduler_type {
        if scheduler_type.trim().is_empty()
            || scheduler_type.len() > 100
            || scheduler_type.contains('\0')
        {
            return Err(ApiError::Invalid(
                "schedulerType must be a non-blank string of at most 100 bytes".into(),
            ));
        }
    }
    if let Some(max) = request.max_attempts.filter(|m| !MAX_ATTEMPTS.contains(m)) {
        return Err(ApiError::Invalid(format!(
            "maxAttempts must be between {} and {}, got {max}",
            MAX_ATTEMPTS.start(),
            MAX_ATTEMPTS.end()
        )));
    }
    if let Some(queue) = request.queue.as_deref() {
        QueueName::parse("queue", queue).map_err(ApiError::Invalid)?;
    }
    Ok(())
}

/// `POST /tasks` as bind sends it (the fields of `common::CreateTask` it sets): the web task's
/// payload as stored, byte for byte, so that what was accepted at creation is what DTP gets.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BindTask<'a> {
    #[serde(rename = "type")]
    task_type: &'a str,
    payload: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_attempts: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<&'a str>,
    idempotency_key: &'a str,
}

/// Creates the DTP task of `task`, or finds the one an earlier, interrupted bind created.
async fn create_or_adopt(
    state: &AppState,
    task: &WebTaskRow,
    request: BindRequest,
    caller: &Caller,
) -> Result<TaskView, ApiError> {
    let key = task.bind_key.clone();
    let payload = store::stored_payload(&state.pool, task.id).await?;
    let create = BindTask {
        task_type: request.scheduler_type.as_deref().unwrap_or(&task.task_type),
        payload: &payload,
        max_attempts: request.max_attempts,
        queue: request.queue.as_deref(),
        idempotency_key: &key,
    };
    match state.scheduler.create_task(&create, caller).await {
        Ok(created) => Ok(created),
        // The key was used by an earlier bind with other options: that task is the one.
        Err(scheduler_client::Error::Conflict(_)) => {
            let earlier = state
                .scheduler
                .find_by_idempotency_key(&key, caller)
                .await?
                .ok_or_else(|| {
                    ApiError::BadGateway(format!(
                        "scheduler refused key {key:?} as used but has no task with it"
                    ))
                })?;
            // Its type may differ (an earlier bind may have named another schedulerType), its
            // payload may not: a task with another payload is not this web task's.
            if !store::same_payload(&state.pool, task.id, &earlier.payload).await? {
                return Err(ApiError::Conflict(format!(
                    "scheduler task {} holds this web task's key but another payload; not adopted",
                    earlier.id
                )));
            }
            Ok(earlier)
        }
        Err(e) => Err(e.into()),
    }
}
