//! The REST façade: parses and validates requests, calls the `store` and the
//! `scheduler_client`, renders answers. No SQL, no DTP URLs; every error leaves through
//! [`error::ApiError`].

mod binding;
pub mod error;
mod execution;
mod tasks;

use std::sync::Arc;

use apikit::EdgeConfig;
use axum::Router;
use sqlx::PgPool;

use crate::scheduler_client::SchedulerClient;

pub use error::ApiError;

/// Shared by every request handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The web task database.
    pub pool: PgPool,
    /// DTP.
    pub scheduler: SchedulerClient,
    /// API settings.
    pub config: Arc<EdgeConfig>,
    /// `TASKPILOT_MAX_PAYLOAD_BYTES`: a web task DTP could not take is refused at creation.
    pub max_payload_bytes: usize,
}

/// What `/metrics` needs: the token it asks for, the requests' metrics, and the answer.
pub struct MetricsEdge {
    /// `TASKPILOT_METRICS_TOKEN`; open without one.
    pub token: Option<apikit::auth::Secret>,
    /// Recorded by every route.
    pub http: apikit::metrics::HttpMetrics,
    /// Answers a scrape.
    pub exposition: apikit::metrics::Exposition,
}

/// TaskPilot's API description, generated from the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "TaskPilot",
        description = "The control plane: web tasks, their binding to DTP, execution views, cancel."
    ),
    paths(
        tasks::create,
        tasks::get_one,
        tasks::list,
        binding::bind,
        execution::view,
        execution::cancel
    ),
    components(schemas(
        common::CreateWebTask,
        common::WebTask,
        common::WebTaskPage,
        common::BindRequest,
        common::ExecutionView,
        common::Attempt,
        common::AttemptOutcome,
        common::Problem
    ))
)]
pub struct ApiDoc;

async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

/// The whole API: web task routes, execution routes, health, `/metrics`, problem-JSON
/// fallbacks, limits, request ids and request logging.
pub fn router(state: AppState, metrics: MetricsEdge) -> Router {
    let (config, pool) = (state.config.clone(), state.pool.clone());
    let api = Router::new()
        .merge(tasks::router())
        .merge(binding::router())
        .merge(execution::router())
        .with_state(state);
    let open = Router::new()
        .route("/openapi.json", axum::routing::get(openapi))
        .merge(apikit::metrics::metrics_router(
            metrics.exposition,
            metrics.token,
        ));
    apikit::edge_router("taskpilot", &config, api, open, pool, &metrics.http)
}
