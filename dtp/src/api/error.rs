//! DTP's domain errors as the shared [`ApiError`], the one type its API answers with.

pub use apikit::ApiError;

use crate::queue;

impl From<queue::Error> for ApiError {
    fn from(error: queue::Error) -> Self {
        match error {
            queue::Error::NotFound(id) => ApiError::NotFound(format!("Task {id} not found")),
            e @ queue::Error::Refused { .. } => ApiError::Conflict(e.to_string()),
            e @ queue::Error::NoAttemptsLeft(_) => ApiError::Conflict(e.to_string()),
            e @ queue::Error::MatchesGrew { .. } => ApiError::Conflict(e.to_string()),
            e @ queue::Error::IdempotencyConflict(_) => ApiError::Conflict(e.to_string()),
            e @ queue::Error::UnknownSchedule(_) => ApiError::NotFound(e.to_string()),
            e @ queue::Error::ScheduleExists(_) => ApiError::Conflict(e.to_string()),
            queue::Error::Database(e) => e.into(),
        }
    }
}
