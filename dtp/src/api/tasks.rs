//! `/tasks`: create (with idempotency keys), get, list, cancel.

use apikit::openapi::{BodyRefused, DatabaseDown};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use common::limits::{is_queue_name, DEFAULT_QUEUE, MAX_ATTEMPTS};
use common::{BatchCreated, CreateTask, Problem, TaskPage, TaskStatus, TaskView};
use serde_json::Value;

use super::{ApiError, AppState};
use crate::queue::{self, Enqueued, NewTask, TaskId};
use apikit::trace::FollowedTrace;
use apikit::{ApiJson, ApiJsonList, WithId};

/// Allowed `priority`.
const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;
/// Allowed `timeoutMs`: up to a day.
const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<i64> = 1..=86_400_000;
/// Longest idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// The start of the idempotency keys of schedule ticks (`queue::tick_key`), which no client may use.
const SCHEDULE_KEY_PREFIX: &str = "schedule:";
/// Most requests in one batch.
const MAX_BATCH: usize = 1000;

/// DTP's API description, generated from the handlers above.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "DTP",
        description = "The execution plane: tasks, their states and attempts, cancel, an operator's retry, run-now, delete and bulk actions, and queues with pause and global limits."
    ),
    paths(
        create,
        create_batch,
        get_one,
        super::list::list,
        cancel,
        super::operate::retry,
        super::operate::run_now,
        super::operate::remove,
        super::bulk::bulk,
        super::queues::attempts,
        super::queues::list,
        super::queues::one,
        super::queues::configure,
        super::queues::pause,
        super::queues::resume,
        super::queues::recount,
        super::schedules::create,
        super::schedules::list,
        super::schedules::one,
        super::schedules::change,
        super::schedules::remove,
        super::workers::list,
        super::stats::stats
    ),
    components(schemas(
        CreateTask,
        TaskView,
        TaskPage,
        BatchCreated,
        Problem,
        TaskStatus,
        common::BulkRequest,
        common::BulkFilter,
        common::BulkAction,
        common::BulkOutcome,
        common::Queue,
        common::QueueCounts,
        common::QueueList,
        common::QueuePatch,
        common::Attempt,
        common::AttemptOutcome,
        common::AttemptList,
        common::NewSchedule,
        common::Schedule,
        common::ScheduleList,
        common::SchedulePatch,
        common::WorkerView,
        common::WorkerList,
        common::StatsMinute,
        common::StatsList
    ))
)]
pub struct ApiDoc;

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
        .route("/openapi.json", get(openapi))
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

/// Checks every field; on error nothing is written.
pub(super) fn validate(request: CreateTask, state: &AppState) -> Result<NewTask, ApiError> {
    let texts = [Some(&request.task_type), request.idempotency_key.as_ref()];
    if texts.iter().flatten().any(|t| t.contains('\0')) || apikit::json_has_nul(&request.payload) {
        return Err(ApiError::Invalid(
            "NUL characters (\\u0000) cannot be stored; remove them".into(),
        ));
    }
    if !state.registry.contains(&request.task_type) {
        return Err(ApiError::Invalid(format!(
            "unknown task type {:?}; known types: {}",
            request.task_type,
            state.registry.names().join(", ")
        )));
    }
    let max_attempts = request
        .max_attempts
        .unwrap_or(state.config.default_max_attempts);
    if !MAX_ATTEMPTS.contains(&max_attempts) {
        return Err(ApiError::Invalid(format!(
            "maxAttempts must be between {} and {}, got {max_attempts}",
            MAX_ATTEMPTS.start(),
            MAX_ATTEMPTS.end()
        )));
    }
    let priority = request.priority.unwrap_or(0);
    if !PRIORITY_RANGE.contains(&priority) {
        return Err(ApiError::Invalid(format!(
            "priority must be between -1000 and 1000, got {priority}"
        )));
    }
    if let Some(timeout) = request.timeout_ms.filter(|t| !TIMEOUT_MS_RANGE.contains(t)) {
        return Err(ApiError::Invalid(format!(
            "timeoutMs must be between 1 and 86400000, got {timeout}"
        )));
    }
    if let Some(key) = &request.idempotency_key {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(ApiError::Invalid(
                "idempotencyKey must be 1 to 255 bytes long".into(),
            ));
        }
        if key.starts_with(SCHEDULE_KEY_PREFIX) {
            return Err(ApiError::Invalid(format!(
                "idempotencyKey may not start with {SCHEDULE_KEY_PREFIX:?}: those keys are the ticks of schedules"
            )));
        }
    }
    let queue = request.queue.unwrap_or_else(|| DEFAULT_QUEUE.to_owned());
    if !is_queue_name(&queue) {
        return Err(ApiError::Invalid(format!(
            "queue must be 1 to 100 characters of A-Z a-z 0-9 _ . : -, got {queue:?}"
        )));
    }
    Ok(NewTask {
        task_type: request.task_type,
        payload: request.payload,
        queue,
        priority,
        max_attempts,
        max_attempts_requested: request.max_attempts.is_some(),
        timeout_ms: request.timeout_ms,
        run_at: request.run_at,
        idempotency_key: request.idempotency_key,
        traceparent: None,
    })
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

/// The API description, with the task types this process actually knows as the `type` enum.
async fn openapi(State(state): State<AppState>) -> Json<Value> {
    let mut doc = serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi()).unwrap_or_default();
    if let Some(task_type) = doc.pointer_mut("/components/schemas/CreateTask/properties/type") {
        task_type["enum"] = Value::from(state.registry.names());
    }
    let batch = "/paths/~1tasks~1batch/post/requestBody/content/application~1json/schema";
    if let Some(Value::Object(schema)) = doc.pointer_mut(batch) {
        schema.insert("minItems".into(), 1.into());
        schema.insert("maxItems".into(), MAX_BATCH.into());
    }
    Json(doc)
}
