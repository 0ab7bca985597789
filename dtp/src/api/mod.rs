//! The HTTP API: parses and validates requests, calls the `queue`, renders answers.
//! No SQL and no retry logic here; every error leaves through [`error::ApiError`].

mod bulk;
pub mod error;
pub(crate) mod list;
mod new_task;
mod openapi;
mod operate;
pub(crate) mod operator;
mod queues;
mod schedules;
mod stats;
mod tasks;
mod workers;

use std::sync::Arc;

use apikit::EdgeConfig;
use axum::Router;
use sqlx::PgPool;

use crate::handlers::HandlerRegistry;
use crate::metrics::DtpMetrics;

pub use error::ApiError;

/// What the API needs from the rest of the service.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `maxAttempts` of a task that names none.
    pub default_max_attempts: i32,
    /// The workers' lease (`DTP_LEASE_MS`): a task canceled while running is retried no sooner
    /// than a lease after its cancel, when its canceled attempt has surely stopped.
    pub lease: std::time::Duration,
    /// Body limit, request timeout, bearer tokens.
    pub edge: EdgeConfig,
    /// The bearer token `/metrics` needs (`DTP_METRICS_TOKEN`); open without one.
    pub metrics_token: Option<apikit::auth::Secret>,
    /// The requests' metrics.
    pub http_metrics: apikit::metrics::HttpMetrics,
    /// The dashboard at `/ui` (`DTP_UI_READ_ONLY`).
    pub ui: UiOptions,
}

/// How the dashboard behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct UiOptions {
    /// Hide every action and refuse any that is sent anyway (`DTP_UI_READ_ONLY`).
    pub read_only: bool,
}

/// Shared by every request handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The queue database.
    pub pool: PgPool,
    /// The same database for operators' reads and bulk actions, a few connections of their own
    /// with a shorter statement timeout (`DTP_OPERATOR_DB_CONNECTIONS`).
    pub operator_pool: PgPool,
    /// Known task types, to refuse unknown ones at creation.
    pub registry: HandlerRegistry,
    /// API settings.
    pub config: Arc<ApiConfig>,
    /// What this process counts (tasks created, attempts a cancel stopped).
    pub metrics: DtpMetrics,
}

/// The API's routes (tasks, queues, schedules, workers, stats, `/openapi.json`), for
/// [`crate::app::router`] to serve beside the dashboard behind the service's edge.
pub fn routes() -> Router<AppState> {
    [
        tasks::router(),
        openapi::router(),
        list::router(),
        operate::router(),
        bulk::router(),
        queues::router(),
        schedules::router(),
        workers::router(),
        stats::router(),
    ]
    .into_iter()
    .fold(Router::new(), Router::merge)
}
