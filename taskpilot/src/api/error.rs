//! TaskPilot's errors as the shared [`ApiError`], the one type its API answers with: DTP's typed
//! outcomes are translated here to the contract's table (`docs/contract.md`).

pub use apikit::ApiError;

use crate::{scheduler_client, store};

/// What the execution endpoints answer when DTP gives no usable task.
pub const SCHEDULER_TASK_NOT_AVAILABLE: &str = "scheduler task not available";

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
            E::Rejected { status: 413, .. } => ApiError::BadGateway(
                "the scheduler refused the task as too large: DTP_MAX_BODY_BYTES must exceed \
                 TASKPILOT_MAX_PAYLOAD_BYTES by 1 KiB"
                    .into(),
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

apikit::problem_answers!(
    /// The answers every operation that calls DTP can give when DTP fails.
    pub DtpFaults: 502 "DTP failed", 503 "DTP or the database unreachable", 504 "DTP too slow"
);

apikit::problem_answers!(
    /// 400 and 404 for an operation on one web task.
    pub UnknownWebTask: 400 "Id not a positive integer", 404 "No such web task"
);

apikit::problem_answers!(
    /// 400 and 404 for an operation on the execution of one web task.
    pub UnknownExecution: 400 "Id not a positive integer", 404 "No such web task, or DTP has no such task"
);
