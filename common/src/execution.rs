//! TaskPilot's normalized view of a DTP task's execution.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::queue::Attempt;
use crate::task::{RetryState, TaskStatus};

/// `GET /api/tasks/{id}/execution` body. Latencies are computed by TaskPilot from DTP's
/// timestamps, each `null` until both of its ends exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    /// The DTP task.
    pub scheduler_task_id: i64,
    /// Its queue in DTP.
    pub queue: String,
    /// Execution state, as DTP reports it.
    pub status: TaskStatus,
    /// Attempts started.
    pub attempt_count: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Retry state, as DTP reports it.
    pub retry_state: RetryState,
    /// When the task first became due.
    #[serde(with = "crate::timestamp")]
    pub scheduled_for: DateTime<Utc>,
    /// When its first attempt started.
    #[serde(with = "crate::timestamp::option")]
    pub processing_started_at: Option<DateTime<Utc>>,
    /// When it became terminal.
    #[serde(with = "crate::timestamp::option")]
    pub completed_at: Option<DateTime<Utc>>,
    /// When a waiting retry is due.
    #[serde(with = "crate::timestamp::option")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last failed attempt's error.
    pub last_error: Option<String>,
    /// `processingStartedAt - scheduledFor`.
    pub queue_latency_ms: Option<i64>,
    /// `completedAt - processingStartedAt`.
    pub processing_latency_ms: Option<i64>,
    /// `completedAt - scheduledFor`.
    pub end_to_end_latency_ms: Option<i64>,
    /// Every attempt, as DTP reports them, newest last.
    pub attempts: Vec<Attempt>,
}
