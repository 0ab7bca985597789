//! Queues (`GET/PATCH /queues`, pause, resume) and a task's attempts: what an operator reads
//! and steers.

use apikit::openapi::{BodyRefused, DatabaseDown};
use apikit::{ApiJson, WithId};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::{AttemptList, Queue, QueueList, QueuePatch};

use super::tasks::UnknownTask;
use super::{operator, ApiError, AppState};
use crate::queue::{self, TaskId};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/queues", get(list))
        .route("/queues/{name}", get(one).patch(configure))
        .route("/queues/{name}/pause", post(pause))
        .route("/queues/{name}/resume", post(resume))
        .route("/tasks/{id}/attempts", get(attempts))
        .route("/counts/recount", post(recount))
}

/// Counts every queue's finished tasks again from the tasks themselves, for a table changed
/// by SQL (a bulk load, a restore, a process of a version before the counts); the queues with
/// the new counts. Writes that change counts wait while it counts (about a second per
/// 5,000,000 finished tasks).
#[utoipa::path(post, path = "/counts/recount", tag = "queues",
    responses((status = 200, description = "The queues, counted again", body = QueueList), DatabaseDown))]
pub(super) async fn recount(State(state): State<AppState>) -> Result<Json<QueueList>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let rows = queue::recount(&mut conn).await?;
    tracing::info!(rows, "finished counts recounted by an operator");
    let queues = queue::queues(&mut *conn).await?;
    Ok(Json(QueueList { queues }))
}

/// Every queue (the default one, each a task names, each with settings) by name, with its
/// settings, tasks per state and oldest due task's wait.
#[utoipa::path(get, path = "/queues", tag = "queues",
    responses((status = 200, description = "The queues", body = QueueList), DatabaseDown))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<QueueList>, ApiError> {
    let queues = queue::queues(&state.pool).await?;
    Ok(Json(QueueList { queues }))
}

apikit::problem_answers!(
    /// 404 for a queue no task names and nobody configured.
    UnknownQueue: 404 "No such queue"
);

/// One queue.
#[utoipa::path(get, path = "/queues/{name}", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, description = "The queue", body = Queue), UnknownQueue, DatabaseDown))]
pub(super) async fn one(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Queue>, ApiError> {
    queue::queue(&state.pool, &name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("Queue {name:?} not found")))
}

apikit::problem_answers!(
    /// What PATCH refuses.
    SettingsRefused: 400 "Malformed JSON", 422 "Invalid name or value"
);

apikit::problem_answers!(
    /// What pause and resume refuse.
    QueueNameRefused: 422 "Invalid name"
);

/// Changes a queue's settings: any of `concurrencyLimit`, `rateLimitPerSecond` (`null` removes
/// a limit) and `paused`. Every process obeys the change within a second. A queue no task names
/// yet may be configured ahead of its tasks.
#[utoipa::path(patch, path = "/queues/{name}", request_body = QueuePatch, tag = "queues",
    params(("name" = String, Path, description = "Queue name, 1..=100 of A-Z a-z 0-9 _ . : -")),
    responses((status = 200, description = "The queue as changed", body = Queue),
        SettingsRefused, BodyRefused, DatabaseDown))]
pub(super) async fn configure(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(patch): ApiJson<QueuePatch>,
) -> Result<Json<Queue>, ApiError> {
    apply(&state, &name, &patch).await.map(Json)
}

/// Pauses a queue: none of its PENDING tasks is claimed until it is resumed; running ones
/// finish. Idempotent.
#[utoipa::path(post, path = "/queues/{name}/pause", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, description = "The queue, paused", body = Queue), QueueNameRefused, DatabaseDown))]
pub(super) async fn pause(state: State<AppState>, name: Path<String>) -> Answer {
    set_paused(state, name, true).await
}

/// Resumes a paused queue. Idempotent.
#[utoipa::path(post, path = "/queues/{name}/resume", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, description = "The queue, not paused", body = Queue), QueueNameRefused, DatabaseDown))]
pub(super) async fn resume(state: State<AppState>, name: Path<String>) -> Answer {
    set_paused(state, name, false).await
}

/// What the queue operations answer with.
type Answer = Result<Json<Queue>, ApiError>;

async fn set_paused(
    State(state): State<AppState>,
    Path(name): Path<String>,
    paused: bool,
) -> Answer {
    let patch = QueuePatch {
        paused: Some(paused),
        ..QueuePatch::default()
    };
    apply(&state, &name, &patch).await.map(Json)
}

async fn apply(state: &AppState, name: &str, patch: &QueuePatch) -> Result<Queue, ApiError> {
    operator::configure_queue(state, name, patch).await
}

/// The attempts of a task, oldest first: worker, start, end, duration, outcome and error of
/// each; the one running now, if any, last, without end or outcome.
#[utoipa::path(get, path = "/tasks/{id}/attempts", tag = "tasks",
    params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 200, description = "The attempts", body = AttemptList), UnknownTask, DatabaseDown))]
pub(super) async fn attempts(
    WithId(state, id): WithId<AppState>,
) -> Result<Json<AttemptList>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let attempts = queue::attempts(&mut conn, TaskId(id)).await?;
    Ok(Json(AttemptList { attempts }))
}
