//! `POST /tasks/bulk`: an operator's cancel, retry or delete of every task a filter matches.

use apikit::openapi::{BodyRefused, DatabaseDown};
use apikit::ApiJson;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use common::limits::is_queue_name;
use common::{AttemptOutcome, BulkFilter, BulkOutcome, BulkRequest, Problem};

use super::{ApiError, AppState};
use crate::queue;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/tasks/bulk", post(bulk))
}

/// Cancels (PENDING, RUNNING), retries (FAILED, CANCELED) or deletes (terminal) every task the
/// filter matches; rows the action does not apply to are skipped and counted as matched only.
#[utoipa::path(post, path = "/tasks/bulk", request_body = BulkRequest, tag = "operator",
    responses(
        (status = 200, description = "How many tasks matched, and how many the action changed", body = BulkOutcome),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No filter (say \"all\": true for every task), or an invalid condition", body = Problem, content_type = "application/problem+json"),
        BodyRefused,
        DatabaseDown,
    ))]
pub(super) async fn bulk(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<BulkRequest>,
) -> Result<Json<BulkOutcome>, ApiError> {
    validate(&request.filter)?;
    let mut conn = state.pool.acquire().await?;
    let queue::BulkDone { outcome, stopped } = queue::bulk(
        &mut conn,
        request.action,
        &request.filter,
        state.config.lease,
    )
    .await?;
    for (queue, task_type, count) in stopped {
        let count = u64::try_from(count).unwrap_or(0);
        let canceled = AttemptOutcome::Canceled;
        state
            .metrics
            .attempts_ended(&queue, &task_type, canceled, count);
    }
    tracing::info!(action = ?request.action, filter = ?request.filter, matched = outcome.matched, changed = outcome.changed, "bulk action by an operator");
    Ok(Json(outcome))
}

fn validate(filter: &BulkFilter) -> Result<(), ApiError> {
    let invalid = |message: &str| Err(ApiError::Invalid(message.to_owned()));
    let conditions = [
        filter.queue.is_some(),
        filter.task_type.is_some(),
        filter.status.is_some(),
        filter.created_before.is_some(),
        filter.last_error_contains.is_some(),
    ];
    if !filter.all && !conditions.contains(&true) {
        return invalid(
            "a bulk action needs a filter: queue, type, status, createdBefore or \
             lastErrorContains, or \"all\": true for every task",
        );
    }
    if filter.queue.as_deref().is_some_and(|q| !is_queue_name(q)) {
        return invalid("filter.queue must be 1 to 100 characters of A-Z a-z 0-9 _ . : -");
    }
    let text = |t: &Option<String>, most: usize| {
        t.as_deref()
            .is_some_and(|t| t.is_empty() || t.len() > most || t.contains('\0'))
    };
    if text(&filter.task_type, 100) {
        return invalid("filter.type must be 1 to 100 bytes without NUL");
    }
    if text(&filter.last_error_contains, 1024) {
        return invalid("filter.lastErrorContains must be 1 to 1024 bytes without NUL");
    }
    Ok(())
}
