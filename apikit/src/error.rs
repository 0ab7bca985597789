//! `ApiError`: every error either service answers with, named for what the client sees, and the
//! one place where it becomes an HTTP answer (RFC 9457 problem JSON). Each service turns its own
//! domain errors into it (`api/error.rs`); a failed statement is turned into it here, the same
//! way for both.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::db;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad id, bad filter, unparsable JSON).
    #[error("{0}")]
    BadRequest(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: the state forbids this, or an idempotency key is reused with another request.
    #[error("{0}")]
    Conflict(String),
    /// 422: well-formed but invalid (unknown type, field out of range).
    #[error("{0}")]
    Invalid(String),
    /// 502: a service this one depends on failed (TaskPilot: DTP).
    #[error("{0}")]
    BadGateway(String),
    /// 503: the database, or a service this one depends on, cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// 504: a service this one depends on did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// 500: a bug or an unexpected database error; logged in full, answered opaquely.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// The status it is answered with, and what the client is told (see [`crate::public_detail`]).
    pub fn status_and_detail(&self) -> (StatusCode, String) {
        let status = self.status();
        (status, crate::public_detail(status, self))
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The database unreachable, busy (a deadlock, a serialization failure, a lock or resource
/// it could not get) is 503; a statement cut off by its time limit is 504; a value it refused
/// is 422 (the client sent it); anything else is 500 (a bug).
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        let code = match &error {
            sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
            _ => None,
        };
        if db::is_unavailable(&error) {
            ApiError::Unavailable(format!("database unavailable: {error}"))
        } else if code.as_deref() == Some("57014") {
            ApiError::GatewayTimeout(
                "the database did not finish this request within its time limit; \
                 narrow the filters or try again later"
                    .into(),
            )
        } else if db::is_transient(&error) {
            ApiError::Unavailable(format!("the database was busy, try again: {error}"))
        } else if db::is_invalid_data(&error) {
            ApiError::Invalid(format!("the database refused a value: {error}"))
        } else {
            ApiError::Internal(error.into())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::error_response(self.status(), &self)
    }
}
