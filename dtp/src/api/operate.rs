//! An operator's actions on one task: retry, run now, delete.

use apikit::openapi::DatabaseDown;
use apikit::PathId;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use common::{Problem, TaskView};

use super::tasks::UnknownTask;
use super::{ApiError, AppState};
use crate::queue::{self, TaskId};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/tasks/{id}/retry", post(retry))
        .route("/tasks/{id}/run-now", post(run_now))
        .route("/tasks/{id}", delete(remove))
}

/// Makes a FAILED or CANCELED task PENDING again, due now (a task canceled while running: a
/// lease after its cancel); `maxAttempts` is raised by one if its attempts were used up.
#[utoipa::path(post, path = "/tasks/{id}/retry", tag = "operator",
    params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses(
        (status = 200, description = "The task, PENDING and due now (a lease after its cancel if it was canceled while running)", body = TaskView),
        UnknownTask,
        (status = 409, description = "The task is PENDING, RUNNING or SUCCEEDED, or has made 100 attempts", body = Problem, content_type = "application/problem+json"),
        DatabaseDown,
    ))]
pub(super) async fn retry(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<TaskView>, ApiError> {
    let task = queue::retry(&state.pool, TaskId(id), state.config.lease).await?;
    tracing::info!(
        task_id = id,
        to = "PENDING",
        max_attempts = task.max_attempts,
        "task retried by an operator"
    );
    Ok(Json(task.into_view()))
}

/// Makes a PENDING task due now (a delayed task, or a retry waiting for its backoff).
#[utoipa::path(post, path = "/tasks/{id}/run-now", tag = "operator",
    params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses(
        (status = 200, description = "The task, due now", body = TaskView),
        UnknownTask,
        (status = 409, description = "The task is not PENDING", body = Problem, content_type = "application/problem+json"),
        DatabaseDown,
    ))]
pub(super) async fn run_now(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<TaskView>, ApiError> {
    let task = queue::run_now(&state.pool, TaskId(id)).await?;
    tracing::info!(task_id = id, "task made due now by an operator");
    Ok(Json(task.into_view()))
}

/// Deletes a SUCCEEDED, FAILED or CANCELED task.
#[utoipa::path(delete, path = "/tasks/{id}", tag = "operator",
    params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses(
        (status = 204, description = "Deleted"),
        UnknownTask,
        (status = 409, description = "The task is PENDING or RUNNING: cancel it first", body = Problem, content_type = "application/problem+json"),
        DatabaseDown,
    ))]
pub(super) async fn remove(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    queue::delete(&state.pool, TaskId(id)).await?;
    tracing::info!(task_id = id, "task deleted by an operator");
    Ok(StatusCode::NO_CONTENT)
}
