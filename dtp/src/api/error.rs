//! `ApiError`: the one place where anything that goes wrong becomes an HTTP answer, always as
//! RFC 9457 problem JSON.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::queue;

/// Every error the API can answer with, named for what the client sees.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad id, bad filter, unparsable JSON).
    #[error("{0}")]
    BadRequest(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: the task's state forbids this, or an idempotency key is reused differently.
    #[error("{0}")]
    Conflict(String),
    /// 422: well-formed but invalid (unknown type, field out of range).
    #[error("{0}")]
    Invalid(String),
    /// 503: the database is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected database error; logged in full, answered opaquely.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<queue::Error> for ApiError {
    fn from(error: queue::Error) -> Self {
        match error {
            queue::Error::NotFound(id) => ApiError::NotFound(format!("Task {id} not found")),
            e @ queue::Error::CannotCancel { .. } => ApiError::Conflict(e.to_string()),
            e @ queue::Error::IdempotencyConflict(_) => ApiError::Conflict(e.to_string()),
            queue::Error::Database(e) => e.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        let internal = |e: sqlx::Error| ApiError::Internal(e.into());
        dbsetup::answer_for(error, ApiError::Unavailable, ApiError::Invalid, internal)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        apikit::error_response(self.status(), &self)
    }
}
