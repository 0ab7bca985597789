//! The HTTP edge both services share, so that every error either of them sends is RFC 9457
//! problem JSON: the problem response itself, extractors whose rejections are problem JSON, the
//! catch-all for answers the framework produces (unknown route, wrong method, timeout), request
//! ids, the health endpoints, bearer-token authentication, and shutdown on SIGINT/SIGTERM.
//!
//! It knows no service's routes or domain errors; each service's `ApiError` builds on
//! [`problem_response`].

pub mod auth;
mod extract;
mod health;
mod request_id;
mod shutdown;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use common::problem::{Problem, PROBLEM_CONTENT_TYPE};

pub use extract::{problem_for_bare_errors, ApiJson, OptionalJson, PathId, Rejection};
pub use health::health_router;
pub use request_id::{with_request_id, RequestId, REQUEST_ID_HEADER};
pub use shutdown::cancel_on_signals;

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

/// Fallback for unknown routes: 404 problem JSON.
pub async fn no_such_route() -> Response {
    problem_response(StatusCode::NOT_FOUND, Some("no such route".to_owned()))
}
