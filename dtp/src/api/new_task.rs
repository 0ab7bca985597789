//! A task to create, as a request names it (`POST /tasks`, a batch's items, a schedule's
//! template), checked field by field into a [`NewTask`] before anything is written.

use common::limits::{QueueName, DEFAULT_QUEUE, MAX_ATTEMPTS};
use common::CreateTask;

use super::{ApiError, AppState};
use crate::queue::NewTask;

/// Allowed `priority`.
const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;
/// Allowed `timeoutMs`: up to a day.
const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<i64> = 1..=86_400_000;
/// Longest idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// The start of the idempotency keys of schedule ticks (`queue::tick_key`), which no client may use.
const SCHEDULE_KEY_PREFIX: &str = "schedule:";
/// Checks every field; on error nothing is written.
pub(super) fn validate(request: CreateTask, state: &AppState) -> Result<NewTask, ApiError> {
    let texts = [Some(&request.task_type), request.idempotency_key.as_ref()];
    if texts.iter().flatten().any(|t| t.contains('\0')) || apikit::json_has_nul(&request.payload) {
        return Err(ApiError::Invalid(
            "NUL characters (\\u0000) cannot be stored; remove them".into(),
        ));
    }
    if !state.registry.contains(&request.task_type) {
        return Err(ApiError::Invalid(format!(
            "unknown task type {:?}; known types: {}",
            request.task_type,
            state.registry.names().join(", ")
        )));
    }
    let max_attempts = request
        .max_attempts
        .unwrap_or(state.config.default_max_attempts);
    if !MAX_ATTEMPTS.contains(&max_attempts) {
        return Err(ApiError::Invalid(format!(
            "maxAttempts must be between {} and {}, got {max_attempts}",
            MAX_ATTEMPTS.start(),
            MAX_ATTEMPTS.end()
        )));
    }
    let priority = request.priority.unwrap_or(0);
    if !PRIORITY_RANGE.contains(&priority) {
        return Err(ApiError::Invalid(format!(
            "priority must be between -1000 and 1000, got {priority}"
        )));
    }
    if let Some(timeout) = request.timeout_ms.filter(|t| !TIMEOUT_MS_RANGE.contains(t)) {
        return Err(ApiError::Invalid(format!(
            "timeoutMs must be between 1 and 86400000, got {timeout}"
        )));
    }
    if let Some(key) = &request.idempotency_key {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(ApiError::Invalid(
                "idempotencyKey must be 1 to 255 bytes long".into(),
            ));
        }
        if key.starts_with(SCHEDULE_KEY_PREFIX) {
            return Err(ApiError::Invalid(format!(
                "idempotencyKey may not start with {SCHEDULE_KEY_PREFIX:?}: those keys are the ticks of schedules"
            )));
        }
    }
    let queue = QueueName::parse("queue", request.queue.as_deref().unwrap_or(DEFAULT_QUEUE))
        .map_err(ApiError::Invalid)?
        .into_string();
    Ok(NewTask {
        task_type: request.task_type,
        payload: request.payload,
        queue,
        priority,
        max_attempts,
        max_attempts_requested: request.max_attempts.is_some(),
        timeout_ms: request.timeout_ms,
        run_at: request.run_at,
        idempotency_key: request.idempotency_key,
        traceparent: None,
    })
}
