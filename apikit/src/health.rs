//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: its database answers),
//! the same for both services.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;

use crate::problem_response;

/// How long readiness waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `/healthz` and `/readyz` over `pool`.
pub fn health_router(pool: PgPool) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(pool)
}

async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(pool): State<PgPool>) -> Response {
    let ping = sqlx::query("select 1").execute(&pool);
    let detail = match tokio::time::timeout(READY_TIMEOUT, ping).await {
        Ok(Ok(_)) => return Json(json!({ "status": "ready" })).into_response(),
        Ok(Err(e)) => format!("database unavailable: {e}"),
        Err(_) => "database did not answer in time".to_owned(),
    };
    tracing::warn!(%detail, "not ready");
    problem_response(StatusCode::SERVICE_UNAVAILABLE, Some(detail))
}
