//! Extractors with problem-JSON rejections, and the catch-all for bare error answers.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::object::Object;
use common::problem::PROBLEM_CONTENT_TYPE;
use serde::de::DeserializeOwned;

use crate::problem_response;

/// A request the framework refused before it reached a handler: status and explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 400, 413, 415 or 422.
    pub status: StatusCode,
    /// What was wrong.
    pub detail: String,
}

impl Rejection {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Rejection {
            status,
            detail: detail.into(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        problem_response(self.status, Some(self.detail))
    }
}

impl From<JsonRejection> for Rejection {
    fn from(rejection: JsonRejection) -> Self {
        Rejection::new(rejection.status(), rejection.body_text())
    }
}

/// A JSON object body, as `axum::Json` parses it, with problem-JSON rejections: 400 malformed
/// JSON, 422 not an object (see [`common::object`]), wrong field types or unknown fields, 415
/// wrong content type, 413 body over the limit. For a body that is a list, see [`ApiJsonList`].
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Rejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(Object(value)) = axum::Json::<Object<T>>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

/// A JSON array body of objects, each read as a `T`, with the rejections of [`ApiJson`].
pub struct ApiJsonList<T>(pub Vec<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJsonList<T> {
    type Rejection = Rejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(list) = axum::Json::<Vec<Object<T>>>::from_request(req, state).await?;
        Ok(ApiJsonList(
            list.into_iter().map(|Object(item)| item).collect(),
        ))
    }
}

fn not_json() -> Rejection {
    Rejection::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "Expected request with `Content-Type: application/json`",
    )
}

/// An optional JSON body: an empty body gives `T::default()`; a non-empty one is parsed like
/// [`ApiJson`] (and must say it is JSON).
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = Rejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|e| Rejection::new(e.status(), e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !is_json(&parts.headers) {
            return Err(not_json());
        }
        let axum::Json(Object(value)) = axum::Json::<Object<T>>::from_bytes(&bytes)?;
        Ok(OptionalJson(value))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// A resource id from the path: a positive 64-bit integer, else 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| Rejection::new(StatusCode::BAD_REQUEST, e.body_text()))?;
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(PathId(id)),
            _ => Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                format!("id must be a positive integer, got {raw:?}"),
            )),
        }
    }
}

/// An operation on one resource: the service's state and the id from the path, refused as
/// [`PathId`] refuses a bad one.
pub struct WithId<S>(pub S, pub i64);

impl<S: Clone + Send + Sync> FromRequestParts<S> for WithId<S> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let PathId(id) = PathId::from_request_parts(parts, state).await?;
        Ok(WithId(state.clone(), id))
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
        .is_some_and(|v| {
            let v = v.as_bytes();
            // A page rendered for people (the dashboard's) keeps its HTML.
            v.starts_with(PROBLEM_CONTENT_TYPE.as_bytes()) || v.starts_with(b"text/html")
        });
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
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}
