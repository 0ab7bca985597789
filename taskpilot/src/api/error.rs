//! `ApiError`: the one place where anything that goes wrong becomes an HTTP answer, always as
//! RFC 9457 problem JSON. DTP's typed outcomes are translated here to the SPEC's table.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::{scheduler_client, store};

/// What the execution endpoints answer when DTP gives no usable task.
pub const SCHEDULER_TASK_NOT_AVAILABLE: &str = "scheduler task not available";

/// Every error the API can answer with, named for what the client sees.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: the state forbids this (not bound, DTP refused the cancel, ...).
    #[error("{0}")]
    Conflict(String),
    /// 422: well-formed but invalid, or DTP rejected the task type.
    #[error("{0}")]
    Invalid(String),
    /// 502: DTP failed.
    #[error("{0}")]
    BadGateway(String),
    /// 503: DTP or the database cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// 504: DTP did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
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
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<scheduler_client::Error> for ApiError {
    fn from(error: scheduler_client::Error) -> Self {
        use scheduler_client::Error as E;
        match error {
            e @ E::NotFound(_) => ApiError::NotFound(e.to_string()),
            E::Conflict(reason) => ApiError::Conflict(reason),
            E::Rejected {
                status: 422,
                detail,
            } => ApiError::Invalid(detail),
            // A DTP that refuses our token is a misconfigured upstream, not the client's fault.
            E::Rejected {
                status: 401 | 403, ..
            } => ApiError::BadGateway(
                "the scheduler refused TaskPilot's credentials; check DTP_API_TOKEN".into(),
            ),
            E::Rejected { .. } | E::BadBody(_) => {
                tracing::warn!(error = %error, "DTP gave no usable task");
                ApiError::Conflict(SCHEDULER_TASK_NOT_AVAILABLE.to_owned())
            }
            e @ E::Upstream(_) => ApiError::BadGateway(e.to_string()),
            e @ E::Unreachable(_) => ApiError::Unavailable(e.to_string()),
            e @ E::TimedOut(_) => ApiError::GatewayTimeout(e.to_string()),
        }
    }
}

impl From<store::Error> for ApiError {
    fn from(error: store::Error) -> Self {
        match error {
            e @ store::Error::NotFound(_) => ApiError::NotFound(e.to_string()),
            // DTP's answer for a key reused with another request, so that both services agree.
            e @ store::Error::IdempotencyMismatch(_) => ApiError::Conflict(e.to_string()),
            store::Error::Database(e) => e.into(),
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
