//! `/api/tasks/{id}/execution`: read DTP's execution state as an ExecutionView, and forward
//! cancel. TaskPilot decides nothing here: DTP's answers are translated (see `api::error`).

use apikit::{Caller, PathId};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use common::{ExecutionView, Problem};

use super::error::{DtpFaults, UnknownExecution};
use super::{ApiError, AppState};
use crate::execution::execution_view;
use crate::scheduler_client::Error as SchedulerError;
use crate::store;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tasks/{id}/execution", get(view))
        .route("/api/tasks/{id}/execution/cancel", put(cancel))
}

/// The normalized execution view of a bound web task, read from DTP.
#[utoipa::path(get, path = "/api/tasks/{id}/execution", tag = "execution",
    params(("id" = i64, Path, description = "Web task id", minimum = 1)),
    responses(
        (status = 200, description = "The execution view", body = ExecutionView),
        UnknownExecution,
        (status = 409, description = "Not bound, or DTP gave no usable task", body = Problem, content_type = "application/problem+json"),
        DtpFaults,
    ))]
pub(super) async fn view(
    State(state): State<AppState>,
    PathId(id): PathId,
    caller: Caller,
) -> Result<Json<ExecutionView>, ApiError> {
    let scheduler_task_id = bound_scheduler_task(&state, id).await?;
    let scheduler = &state.scheduler;
    let (task, attempts) = tokio::join!(
        scheduler.get_task(scheduler_task_id, &caller),
        scheduler.get_attempts(scheduler_task_id, &caller)
    );
    let task = task?;
    let attempts = match attempts {
        Ok(attempts) => attempts,
        // A DTP older than the attempt history answers 404 for it while the task exists.
        Err(SchedulerError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(Json(execution_view(task, attempts)))
}

/// Asks DTP to cancel the bound task (idempotent).
#[utoipa::path(put, path = "/api/tasks/{id}/execution/cancel", tag = "execution",
    params(("id" = i64, Path, description = "Web task id", minimum = 1)),
    responses(
        (status = 204, description = "Canceled, now or before"),
        UnknownExecution,
        (status = 409, description = "Not bound, or the task already SUCCEEDED or FAILED", body = Problem, content_type = "application/problem+json"),
        DtpFaults,
    ))]
pub(super) async fn cancel(
    State(state): State<AppState>,
    PathId(id): PathId,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    let scheduler_task_id = bound_scheduler_task(&state, id).await?;
    state
        .scheduler
        .cancel_task(scheduler_task_id, &caller)
        .await?;
    tracing::info!(web_task_id = id, scheduler_task_id, "cancel forwarded");
    Ok(StatusCode::NO_CONTENT)
}

/// The DTP task of web task `id`: 404 when the web task is unknown, 409 when it is not bound.
async fn bound_scheduler_task(state: &AppState, id: i64) -> Result<i64, ApiError> {
    store::get(&state.pool, id)
        .await?
        .scheduler_task_id
        .ok_or_else(|| ApiError::Conflict("Task is not bound to scheduler yet.".into()))
}
