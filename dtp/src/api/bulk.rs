//! `POST /tasks/bulk`: an operator's cancel, retry or delete of every task a filter matches.

use apikit::openapi::{BodyRefused, DatabaseDown};
use apikit::ApiJson;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use common::{BulkOutcome, BulkRequest, Problem};

use super::{operator, ApiError, AppState};

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
    let outcome = operator::bulk(&state, request.action, &request.filter, None).await?;
    Ok(Json(outcome))
}
