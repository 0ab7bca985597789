//! `/openapi.json`: DTP's API description, one document for every route of `api/`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use common::{BatchCreated, CreateTask, Problem, TaskPage, TaskStatus, TaskView};
use serde_json::Value;

use super::tasks::MAX_BATCH;
use super::AppState;

/// DTP's API description, generated from the handlers' annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "DTP",
        description = "The execution plane: tasks, their states and attempts, cancel, an operator's retry, run-now, delete and bulk actions, and queues with pause and global limits."
    ),
    paths(
        super::tasks::create,
        super::tasks::create_batch,
        super::tasks::get_one,
        super::list::list,
        super::tasks::cancel,
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

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi))
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
