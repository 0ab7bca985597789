//! An operator's actions on one task: retry, run now, delete.

use apikit::WithId;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use common::TaskView;

use super::{operator, ApiError, AppState};
use crate::queue::TaskId;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/tasks/{id}/retry", post(retry))
        .route("/tasks/{id}/run-now", post(run_now))
        .route("/tasks/{id}", delete(remove))
}

/// What an action on one task answers with.
type Answer<T> = Result<T, ApiError>;

apikit::problem_answers!(
    /// Retry's problem answers.
    RetryRefused: 400 "Id not a positive integer", 404 "No such task",
        409 "The task is PENDING, RUNNING or SUCCEEDED, or has made 100 attempts",
        503 "Database unavailable"
);

/// Makes a FAILED or CANCELED task PENDING again, due now (a task canceled while running: a
/// lease after its cancel); `maxAttempts` is raised by one if its attempts were used up.
#[utoipa::path(post, path = "/tasks/{id}/retry", tag = "operator",
    params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 200, description = "The task, PENDING", body = TaskView), RetryRefused))]
pub(super) async fn retry(WithId(state, id): WithId<AppState>) -> Answer<Json<TaskView>> {
    operator::retry(&state, TaskId(id)).await.map(Json)
}

apikit::problem_answers!(
    /// Run-now's problem answers.
    RunNowRefused: 400 "Id not a positive integer", 404 "No such task",
        409 "The task is not PENDING", 503 "Database unavailable"
);

/// Makes a PENDING task due now (a delayed task, or a retry waiting for its backoff).
#[utoipa::path(post, path = "/tasks/{id}/run-now", tag = "operator",
    params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 200, description = "The task, due now", body = TaskView), RunNowRefused))]
pub(super) async fn run_now(WithId(state, id): WithId<AppState>) -> Answer<Json<TaskView>> {
    operator::run_now(&state, TaskId(id)).await.map(Json)
}

apikit::problem_answers!(
    /// Delete's problem answers.
    DeleteRefused: 400 "Id not a positive integer", 404 "No such task",
        409 "The task is PENDING or RUNNING: cancel it first", 503 "Database unavailable"
);

/// Deletes a SUCCEEDED, FAILED or CANCELED task.
#[utoipa::path(delete, path = "/tasks/{id}", tag = "operator",
    params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 204, description = "Deleted"), DeleteRefused))]
pub(super) async fn remove(WithId(state, id): WithId<AppState>) -> Answer<StatusCode> {
    operator::delete(&state, TaskId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
