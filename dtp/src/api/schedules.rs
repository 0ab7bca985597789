//! Schedules: `POST/GET/PATCH/DELETE /schedules`. A schedule's ticks are enqueued by the
//! maintenance leader (`worker::maintenance`).

use apikit::openapi::{BodyRefused, DatabaseDown};
use apikit::ApiJson;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use common::limits::is_queue_name;
use common::{CreateTask, NewSchedule, Schedule, ScheduleList, SchedulePatch};

use super::new_task::validate as validate_task;
use super::{ApiError, AppState};
use crate::cadence::Cadence;
use crate::queue::{self, ScheduleFields};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/schedules", get(list).post(create))
        .route("/schedules/{name}", get(one).patch(change).delete(remove))
}

apikit::problem_answers!(
    /// What creating or changing a schedule refuses.
    ScheduleRefused: 400 "Malformed JSON",
        422 "Invalid name, cron (or one that never fires), time zone or task"
);

apikit::problem_answers!(
    /// 404 for a schedule that does not exist.
    UnknownSchedule: 404 "No such schedule"
);

/// Creates a schedule: each tick of `cron` in `timezone` enqueues one `task`.
#[utoipa::path(post, path = "/schedules", request_body = NewSchedule, tag = "schedules",
    responses((status = 201, description = "Created", body = Schedule),
        (status = 409, description = "A schedule has this name", body = common::Problem, content_type = "application/problem+json"),
        ScheduleRefused, BodyRefused, DatabaseDown))]
pub(super) async fn create(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<NewSchedule>,
) -> Result<(StatusCode, Json<Schedule>), ApiError> {
    if !is_queue_name(&request.name) {
        return Err(ApiError::Invalid(
            "a schedule name is 1 to 100 characters of A-Z a-z 0-9 _ . : -".into(),
        ));
    }
    let cadence = cadence(&request.cron, &request.timezone).await?;
    let task = template(request.task, &state)?;
    let now = database_now(&state).await?;
    let fields = ScheduleFields {
        name: &request.name,
        cron: &request.cron,
        timezone: &request.timezone,
        task: &task,
        paused: request.paused,
        next_run_at: (!request.paused).then(|| cadence.next_after(now)).flatten(),
    };
    let schedule = queue::create_schedule(&state.pool, &fields).await?;
    tracing::info!(schedule = %schedule.name, cron = %schedule.cron, timezone = %schedule.timezone, next_run_at = ?schedule.next_run_at, "schedule created");
    Ok((StatusCode::CREATED, Json(schedule)))
}

/// Every schedule, by name.
#[utoipa::path(get, path = "/schedules", tag = "schedules",
    responses((status = 200, description = "The schedules", body = ScheduleList), DatabaseDown))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<ScheduleList>, ApiError> {
    let schedules = queue::schedules(&state.pool).await?;
    Ok(Json(ScheduleList { schedules }))
}

/// One schedule, with its next and last tick.
#[utoipa::path(get, path = "/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 200, description = "The schedule", body = Schedule), UnknownSchedule, DatabaseDown))]
pub(super) async fn one(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    Ok(Json(queue::schedule(&state.pool, &name).await?))
}

/// Changes any of `cron`, `timezone`, `task` and `paused`. A new cadence, or a resume, counts
/// the next tick from now: ticks missed while paused are not enqueued.
#[utoipa::path(patch, path = "/schedules/{name}", request_body = SchedulePatch, tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 200, description = "The schedule as changed", body = Schedule),
        UnknownSchedule, ScheduleRefused, BodyRefused, DatabaseDown))]
pub(super) async fn change(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(patch): ApiJson<SchedulePatch>,
) -> Result<Json<Schedule>, ApiError> {
    change_schedule(&state, &name, patch).await.map(Json)
}

/// Changes a schedule as `PATCH /schedules/{name}` does (the dashboard's pause and resume too).
pub(crate) async fn change_schedule(
    state: &AppState,
    name: &str,
    patch: SchedulePatch,
) -> Result<Schedule, ApiError> {
    // Read, merged and written back under the row's lock: two changes do not undo each other.
    let mut tx = state.pool.begin().await?;
    let current = queue::lock_schedule(&mut *tx, name).await?;
    let cron = patch.cron.unwrap_or(current.cron.clone());
    let timezone = patch.timezone.unwrap_or(current.timezone.clone());
    let cadence = cadence(&cron, &timezone).await?;
    let task = match patch.task {
        Some(task) => template(task, state)?,
        None => current.task.clone(),
    };
    let paused = patch.paused.unwrap_or(current.paused);
    let recount = cron != current.cron || timezone != current.timezone || paused != current.paused;
    let next_run_at = match (paused, recount) {
        (true, _) | (false, false) => None,
        (false, true) => cadence.next_after(queue::database_now(&mut *tx).await?),
    };
    let fields = ScheduleFields {
        name,
        cron: &cron,
        timezone: &timezone,
        task: &task,
        paused,
        next_run_at,
    };
    let schedule = queue::update_schedule(&mut *tx, &fields, recount).await?;
    tx.commit().await?;
    tracing::info!(schedule = %schedule.name, paused = schedule.paused, next_run_at = ?schedule.next_run_at, "schedule changed");
    Ok(schedule)
}

/// Deletes a schedule; the tasks it made stay.
#[utoipa::path(delete, path = "/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 204, description = "Deleted"), UnknownSchedule, DatabaseDown))]
pub(super) async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    queue::delete_schedule(&state.pool, &name).await?;
    tracing::info!(schedule = %name, "schedule deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The pattern read in the zone, off the runtime's threads: telling a pattern that never fires
/// searches its ticks for years ahead, CPU work a request must not do on a thread that serves
/// others.
async fn cadence(cron: &str, timezone: &str) -> Result<Cadence, ApiError> {
    let (cron, timezone) = (cron.to_owned(), timezone.to_owned());
    tokio::task::spawn_blocking(move || Cadence::parse(&cron, &timezone))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("reading a cron pattern: {e}")))?
        .map_err(ApiError::Invalid)
}

/// The task a tick creates, checked as a create request is, with `maxAttempts` resolved now
/// (ticks do not depend on the default of the process that enqueues them).
fn template(task: CreateTask, state: &AppState) -> Result<CreateTask, ApiError> {
    if task.run_at.is_some() || task.idempotency_key.is_some() {
        return Err(ApiError::Invalid(
            "task.runAt and task.idempotencyKey are set by each tick; leave them out".into(),
        ));
    }
    let checked = validate_task(task.clone(), state).map_err(|e| match e {
        ApiError::Invalid(detail) => ApiError::Invalid(format!("task: {detail}")),
        other => other,
    })?;
    Ok(CreateTask {
        max_attempts: Some(checked.max_attempts),
        queue: Some(checked.queue),
        ..task
    })
}

async fn database_now(state: &AppState) -> Result<DateTime<Utc>, ApiError> {
    Ok(queue::database_now(&state.pool).await?)
}
