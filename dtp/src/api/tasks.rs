//! `/tasks`: create (with idempotency keys), get, list, cancel.

use apikit::openapi::{BodyRefused, DatabaseDown};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use common::{BatchCreated, CreateTask, Problem, TaskView};

use super::new_task::validate;
use super::{ApiError, AppState};
use crate::queue::{self, Enqueued, NewTask, TaskId};
use apikit::trace::FollowedTrace;
use apikit::{ApiJson, ApiJsonList, WithId};

/// Most requests in one batch.
pub(super) const MAX_BATCH: usize = 1000;

apikit::problem_answers!(
    /// 400 and 404 for an operation on one task.
    pub(super) UnknownTask: 400 "Id not a positive integer", 404 "No such task"
);

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/tasks", post(create))
        .route("/tasks/batch", post(create_batch))
        .route("/tasks/{id}", get(get_one))
        .route("/tasks/{id}/cancel", put(cancel))
}

/// Creates a task; with an `idempotencyKey`, a repeat of the same request returns the first.
#[utoipa::path(post, path = "/tasks", request_body = CreateTask, tag = "tasks",
    responses(
        (status = 201, description = "Created", body = TaskView),
        (status = 200, description = "Idempotent repeat: the existing task", body = TaskView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency key used for another request", body = Problem, content_type = "application/problem+json"),
        BodyRefused,
        (status = 422, description = "Unknown type or invalid field", body = Problem, content_type = "application/problem+json"),
        DatabaseDown,
    ))]
async fn create(
    State(state): State<AppState>,
    FollowedTrace(trace): FollowedTrace,
    ApiJson(request): ApiJson<CreateTask>,
) -> Result<Response, ApiError> {
    let task = NewTask {
        traceparent: trace.map(|t| t.to_string()),
        ..validate(request, &state)?
    };
    let mut conn = state.pool.acquire().await?;
    match queue::enqueue(&mut conn, &task).await? {
        Enqueued::Created(row) => {
            tracing::info!(task_id = row.id, task_type = %row.task_type, to = "PENDING", "task created");
            state.metrics.task_created(&row.queue, &row.task_type);
            let location = format!("/tasks/{}", row.id);
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(row.into_view()),
            )
                .into_response())
        }
        Enqueued::Existing(row) => Ok((StatusCode::OK, Json(row.into_view())).into_response()),
    }
}

/// Creates up to 1000 tasks in one transaction with one NOTIFY. Every item is validated first;
/// any invalid item (422) or reused idempotency key (409) fails the batch and writes nothing.
#[utoipa::path(post, path = "/tasks/batch", request_body = Vec<CreateTask>, tag = "tasks",
    responses(
        (status = 201, description = "Created (some or all)", body = BatchCreated),
        (status = 200, description = "Every item repeated an idempotency key", body = BatchCreated),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An idempotency key used for another request", body = Problem, content_type = "application/problem+json"),
        BodyRefused,
        (status = 422, description = "Empty or oversized batch, or an invalid item", body = Problem, content_type = "application/problem+json"),
        DatabaseDown,
    ))]
async fn create_batch(
    State(state): State<AppState>,
    FollowedTrace(trace): FollowedTrace,
    ApiJsonList(requests): ApiJsonList<CreateTask>,
) -> Result<Response, ApiError> {
    if requests.is_empty() || requests.len() > MAX_BATCH {
        return Err(ApiError::Invalid(format!(
            "a batch holds 1 to {MAX_BATCH} tasks, got {}",
            requests.len()
        )));
    }
    let traceparent = trace.map(|t| t.to_string());
    let tasks = requests
        .into_iter()
        .enumerate()
        .map(|(i, request)| {
            let task = validate(request, &state).map_err(|e| at_index(i, e))?;
            let traceparent = traceparent.clone();
            Ok(NewTask {
                traceparent,
                ..task
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let mut tx = state.pool.begin().await?;
    let answers = queue::enqueue_many(&mut tx, &tasks).await?;
    tx.commit().await?;
    let mut created = 0;
    for answer in &answers {
        if let Enqueued::Created(row) = answer {
            state.metrics.task_created(&row.queue, &row.task_type);
            created += 1;
        }
    }
    tracing::info!(
        created,
        requested = tasks.len(),
        to = "PENDING",
        "task batch created"
    );
    let status = if created > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let tasks = answers
        .into_iter()
        .map(|a| match a {
            Enqueued::Created(row) | Enqueued::Existing(row) => row.into_view(),
        })
        .collect();
    Ok((status, Json(BatchCreated { created, tasks })).into_response())
}

/// Names the batch item an error is about.
fn at_index(index: usize, error: ApiError) -> ApiError {
    match error {
        ApiError::Invalid(detail) => ApiError::Invalid(format!("tasks[{index}]: {detail}")),
        other => other,
    }
}

/// One task.
#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks",
    params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 200, description = "The task", body = TaskView), UnknownTask, DatabaseDown))]
async fn get_one(WithId(state, id): WithId<AppState>) -> Result<Json<TaskView>, ApiError> {
    Ok(Json(queue::get(&state.pool, TaskId(id)).await?.into_view()))
}

apikit::problem_answers!(
    /// Cancel's 409.
    CancelRefused: 409 "The task already SUCCEEDED or FAILED"
);

/// Cancels a PENDING or RUNNING task (idempotent).
#[utoipa::path(put, path = "/tasks/{id}/cancel", tag = "tasks",
    params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 200, description = "The task, now CANCELED", body = TaskView),
        UnknownTask, CancelRefused, DatabaseDown))]
async fn cancel(WithId(state, id): WithId<AppState>) -> Result<Json<TaskView>, ApiError> {
    super::operator::cancel(&state, TaskId(id)).await.map(Json)
}
