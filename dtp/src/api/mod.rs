//! The HTTP API: parses and validates requests, calls the `queue`, renders answers.
//! No SQL and no retry logic here; every error leaves through [`error::ApiError`].

pub mod error;
mod extract;
mod health;
mod tasks;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use sqlx::PgPool;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::handlers::HandlerRegistry;

pub use error::ApiError;

/// What the API needs from the rest of the service.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `maxAttempts` of a task that names none.
    pub default_max_attempts: i32,
    /// Largest request body accepted; larger is 413.
    pub max_body_bytes: usize,
    /// Requests taking longer are answered 408.
    pub request_timeout: Duration,
}

/// Shared by every request handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The queue database.
    pub pool: PgPool,
    /// Known task types, to refuse unknown ones at creation.
    pub registry: HandlerRegistry,
    /// API settings.
    pub config: Arc<ApiConfig>,
}

/// The whole API: task routes, health routes, problem-JSON fallbacks, tracing, limits.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    Router::new()
        .merge(tasks::router())
        .merge(health::router())
        .fallback(extract::no_such_route)
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::map_response(
            extract::problem_for_bare_errors,
        ))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(TraceLayer::new_for_http())
}
