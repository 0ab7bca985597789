//! The HTTP edge both services share, so that every error either of them sends is RFC 9457
//! problem JSON: the problem response itself, extractors whose rejections are problem JSON, the
//! catch-all for answers the framework produces (unknown route, wrong method, timeout), request
//! ids, the health endpoints, bearer-token authentication, logging, the bound server and shutdown on SIGINT/SIGTERM;
//! and,
//! outbound, reading a peer's answer without letting the peer decide how much memory it takes.
//!
//! It knows no service's routes or domain errors; each service's `ApiError` builds on
//! [`problem_response`].

pub mod auth;
pub mod db;
mod error;
mod extract;
mod health;
pub mod metrics;
pub mod openapi;
mod peer_body;
mod request_id;
mod server;
mod shutdown;
pub mod telemetry;
pub mod trace;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use common::problem::{Problem, PROBLEM_CONTENT_TYPE};

pub use error::ApiError;
pub use extract::{
    problem_for_bare_errors, ApiJson, ApiJsonList, OptionalJson, PathId, Rejection, WithId,
};
use health::health_router;
pub use peer_body::{read_at_most, PeerBody};
pub use request_id::{with_request_id, Caller, RequestId, REQUEST_ID_HEADER};
pub use server::{run_binary, run_service, HttpServer};
pub use shutdown::cancel_on_signals;
pub use telemetry::{continue_trace, init_telemetry, Telemetry};

/// The problem-JSON response for `status` with `detail`.
pub fn problem_response(status: StatusCode, detail: Option<String>) -> Response {
    let problem = Problem {
        problem_type: "about:blank".to_owned(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
    };
    let mut response = (status, axum::Json(problem)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    response
}

/// The problem response for a service's error: a 500 is logged in full (with its causes) and
/// answered opaquely, other 5xx are logged and explained, 4xx are explained.
pub fn error_response(status: StatusCode, error: &(dyn std::error::Error + 'static)) -> Response {
    problem_response(status, Some(public_detail(status, error)))
}

/// What a client is told of `error` answered with `status`: its text, or for a 500 a pointer to
/// the server log, where the error is written in full. Faults (5xx) are logged either way.
pub fn public_detail(status: StatusCode, error: &(dyn std::error::Error + 'static)) -> String {
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = ?error, "internal error");
        "internal error; see the server log".to_owned()
    } else {
        if status.is_server_error() {
            tracing::warn!(%status, detail = %error, "answering with a fault");
        }
        error.to_string()
    }
}

/// Whether `value` holds a NUL character in any string or key: PostgreSQL cannot store one in
/// `text` or `jsonb`, so such input is refused up front.
pub fn json_has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(json_has_nul),
        serde_json::Value::Object(map) => map
            .iter()
            .any(|(key, item)| key.contains('\0') || json_has_nul(item)),
        _ => false,
    }
}

/// Parses an optional integer query parameter `name` that must lie in `min..=max`; the error is
/// the sentence a 400 answer should carry.
pub fn parse_bounded_int(
    raw: Option<&str>,
    name: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, String> {
    raw.map(|raw| {
        raw.parse::<i64>()
            .ok()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| format!("{name} must be an integer from {min} to {max}, got {raw:?}"))
    })
    .transpose()
}

/// Fallback for unknown routes: 404 problem JSON.
pub async fn no_such_route() -> Response {
    problem_response(StatusCode::NOT_FOUND, Some("no such route".to_owned()))
}

/// The HTTP settings both services take.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Largest request body accepted; larger is 413.
    pub max_body_bytes: usize,
    /// Requests taking longer are answered 408.
    pub request_timeout: std::time::Duration,
    /// Bearer tokens the service's routes require; `None`: no authentication (and a warning).
    pub tokens: Option<auth::ApiTokens>,
}

/// A service's whole router: `protected` behind the bearer tokens, `open` (the OpenAPI
/// document, `/metrics`) and the health routes over `pool` without them; then, around all, a
/// problem-JSON `404` for unknown routes, the body limit (`413`), the request timeout (`408`),
/// problem JSON for every answer the framework produces bare, the request metrics (which so
/// count every answer as the client got it), and request ids (outermost, so every answer
/// carries one).
pub fn edge_router(
    service: &str,
    config: &EdgeConfig,
    protected: axum::Router,
    open: axum::Router,
    pool: sqlx::PgPool,
    http_metrics: &metrics::HttpMetrics,
) -> axum::Router {
    let router = auth::protect(protected, config.tokens.clone(), service)
        .merge(open)
        .merge(health_router(pool))
        .fallback(no_such_route)
        .layer(axum::middleware::from_fn(auth::refuse_cross_site))
        .layer(axum::extract::DefaultBodyLimit::max(config.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        // Outermost but for request ids, so that it also sees the answers of the layers above.
        .layer(axum::middleware::map_response(problem_for_bare_errors));
    with_request_id(http_metrics.record_requests(router))
}
