//! The `tasks` row as read from the database, and its wire form.

use chrono::{DateTime, Utc};
use common::{RetryState, TaskStatus, TaskView};
use serde_json::Value;

use super::status::StoredStatus;

/// Every column of `tasks` that reads return.
pub(crate) const TASK_COLUMNS: &str = "id, type, payload, queue, status, priority, attempt_count, \
     max_attempts, timeout_ms, scheduled_for, run_at, processing_started_at, completed_at, \
     next_attempt_at, last_error, result, worker_id, lease_expires_at, idempotency_key, \
     created_at, updated_at";

/// One task as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    /// Task id.
    pub id: i64,
    /// Handler name.
    #[sqlx(rename = "type")]
    pub task_type: String,
    /// Handler input.
    pub payload: Value,
    /// The queue it is in.
    pub queue: String,
    /// The state.
    pub status: StoredStatus,
    /// Higher runs first.
    pub priority: i32,
    /// Attempts started; the fencing token of the running attempt.
    pub attempt_count: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Per-task execution timeout.
    pub timeout_ms: Option<i64>,
    /// When the task first became due.
    pub scheduled_for: DateTime<Utc>,
    /// When it may next be claimed.
    pub run_at: DateTime<Utc>,
    /// Start of the first attempt.
    pub processing_started_at: Option<DateTime<Utc>>,
    /// When it became terminal.
    pub completed_at: Option<DateTime<Utc>>,
    /// Due time of a waiting retry.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Handler result.
    pub result: Option<Value>,
    /// Worker of the latest attempt.
    pub worker_id: Option<String>,
    /// Lease deadline while RUNNING.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Idempotency key given at creation.
    pub idempotency_key: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl TaskRow {
    /// The state.
    pub fn status(&self) -> TaskStatus {
        self.status.0
    }

    /// The retry state derived from status and attempts.
    pub fn retry_state(&self) -> RetryState {
        match self.status() {
            TaskStatus::Succeeded => RetryState::Completed,
            TaskStatus::Failed => RetryState::Exhausted,
            TaskStatus::Canceled => RetryState::Canceled,
            TaskStatus::Pending if self.attempt_count > 0 => RetryState::RetryScheduled,
            TaskStatus::Running if self.attempt_count > 1 => RetryState::Retrying,
            TaskStatus::Pending | TaskStatus::Running => RetryState::None,
        }
    }

    /// The task body of the HTTP API.
    pub fn into_view(self) -> TaskView {
        let status = self.status();
        let retry_state = self.retry_state();
        TaskView {
            id: self.id,
            task_type: self.task_type,
            payload: self.payload,
            queue: self.queue,
            status,
            attempt_count: self.attempt_count,
            max_attempts: self.max_attempts,
            retry_state,
            priority: self.priority,
            scheduled_for: self.scheduled_for,
            processing_started_at: self.processing_started_at,
            completed_at: self.completed_at,
            next_attempt_at: self.next_attempt_at,
            last_error: self.last_error,
            result: self.result,
            worker_id: self.worker_id,
            timeout_ms: self.timeout_ms,
            idempotency_key: self.idempotency_key,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}
