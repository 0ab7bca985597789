//! Extractors whose rejections are problem JSON, and the catch-all that turns any other bare
//! error answer (unknown route, wrong method, timeout) into problem JSON.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::Response;
use common::problem::PROBLEM_CONTENT_TYPE;
use serde::de::DeserializeOwned;

use super::error::{problem_response, ApiError};
use crate::queue::TaskId;

/// `axum::Json` with problem-JSON rejections: 400 malformed JSON, 422 wrong field types or
/// unknown fields, 415 wrong content type, 413 body over the limit.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    ApiError::Rejected {
        status: rejection.status(),
        detail: rejection.body_text(),
    }
}

/// A task id from the path: a positive integer, else 400.
pub struct TaskIdPath(pub TaskId);

impl<S: Send + Sync> FromRequestParts<S> for TaskIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(TaskIdPath(TaskId(id))),
            _ => Err(ApiError::BadRequest(format!(
                "task id must be a positive integer, got {raw:?}"
            ))),
        }
    }
}

/// Largest bare error body carried over into `detail`.
const MAX_DETAIL: usize = 1024;

/// Rewrites error answers that are not problem JSON yet (axum's 404/405, timeouts, ...).
pub async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_CONTENT_TYPE.as_bytes()));
    if status.as_u16() < 400 || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_DETAIL * 4)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let detail = match (text.is_empty(), status) {
        (false, _) => Some(text.chars().take(MAX_DETAIL).collect()),
        (true, StatusCode::NOT_FOUND) => Some("no such route".to_owned()),
        (true, StatusCode::METHOD_NOT_ALLOWED) => {
            Some("method not allowed on this route; see the Allow header".to_owned())
        }
        (true, _) => None,
    };
    let mut rewritten = problem_response(status, detail);
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        rewritten.headers_mut().insert(header::ALLOW, allow.clone());
    }
    rewritten
}

/// Fallback for unknown routes.
pub async fn no_such_route() -> Response {
    problem_response(StatusCode::NOT_FOUND, Some("no such route".to_owned()))
}
