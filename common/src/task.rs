//! DTP's task on the wire: the create request, the task body, its states and a page of tasks.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a task is in its life. SUCCEEDED, FAILED and CANCELED are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Waiting to be claimed (new, delayed, or waiting for a retry).
    Pending,
    /// Claimed by a worker that holds its lease.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Failed permanently, or ran out of attempts.
    Failed,
    /// Canceled before it could finish.
    Canceled,
}

impl TaskStatus {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Canceled,
    ];

    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "PENDING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Succeeded => "SUCCEEDED",
            TaskStatus::Failed => "FAILED",
            TaskStatus::Canceled => "CANCELED",
        }
    }

    /// Nothing leaves a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Canceled
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = String;

    /// Accepts the wire name in any letter case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown status {s:?}; expected one of PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED")
            })
    }
}

/// Where a task stands with respect to retries; derived from status and attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RetryState {
    /// No failed attempt yet, not terminal.
    None,
    /// PENDING after a failed attempt, waiting for its backoff.
    RetryScheduled,
    /// RUNNING attempt 2 or later.
    Retrying,
    /// SUCCEEDED.
    Completed,
    /// FAILED.
    Exhausted,
    /// CANCELED.
    Canceled,
}

/// `POST /tasks` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTask {
    /// Handler name, e.g. `demo`.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 100))]
    #[serde(rename = "type")]
    pub task_type: String,
    /// Any JSON; handed to the handler as is. `null` when absent.
    #[serde(default)]
    pub payload: Value,
    /// The queue, `default` when absent: 1..=100 characters of `[A-Za-z0-9_.:-]`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Attempts allowed, 1..=100; the server's default (3) when absent.
    // The bounds are `limits::MAX_ATTEMPTS`; the schema attribute needs literals.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i32>,
    /// Not before this time; now when absent.
    #[serde(
        default,
        with = "crate::timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub run_at: Option<DateTime<Utc>>,
    /// Higher runs first; -1000..=1000, default 0.
    #[cfg_attr(feature = "openapi", schema(minimum = -1000, maximum = 1000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// A repeat of the same request with the same key returns the first task.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 255))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Per-task execution timeout in milliseconds; the handler's or server's default when absent.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86_400_000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<i64>,
}

impl CreateTask {
    /// A request for `task_type` with `payload` and every option left to the server.
    pub fn new(task_type: impl Into<String>, payload: Value) -> Self {
        CreateTask {
            task_type: task_type.into(),
            payload,
            queue: None,
            max_attempts: None,
            run_at: None,
            priority: None,
            idempotency_key: None,
            timeout_ms: None,
        }
    }
}

/// The task body DTP answers with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    /// DTP's task id.
    pub id: i64,
    /// Handler name.
    #[serde(rename = "type")]
    pub task_type: String,
    /// The payload given at creation (absent from a list that did not ask for it: `null`).
    #[serde(default)]
    pub payload: Value,
    /// The queue it is in.
    pub queue: String,
    /// Current state.
    pub status: TaskStatus,
    /// Attempts started so far.
    pub attempt_count: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Derived from status and attempts.
    pub retry_state: RetryState,
    /// Higher runs first.
    pub priority: i32,
    /// When the task first became due (creation time, or `runAt`).
    #[serde(with = "crate::timestamp")]
    pub scheduled_for: DateTime<Utc>,
    /// When its first attempt started.
    #[serde(with = "crate::timestamp::option")]
    pub processing_started_at: Option<DateTime<Utc>>,
    /// When it became terminal.
    #[serde(with = "crate::timestamp::option")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Set only while a retry waits for its backoff.
    #[serde(with = "crate::timestamp::option")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// The handler's result, once SUCCEEDED.
    pub result: Option<Value>,
    /// The worker that ran (or runs) the latest attempt.
    pub worker_id: Option<String>,
    /// Per-task execution timeout, when one was given.
    pub timeout_ms: Option<i64>,
    /// The idempotency key given at creation.
    pub idempotency_key: Option<String>,
    /// Creation time.
    #[serde(with = "crate::timestamp")]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(with = "crate::timestamp")]
    pub updated_at: DateTime<Utc>,
}

/// `GET /tasks` answer: newest first; pass `nextAfter` as `after` for the next page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TaskPage {
    /// The tasks of this page, newest first.
    pub tasks: Vec<TaskView>,
    /// The cursor for the next page; `null` on the last page.
    pub next_after: Option<i64>,
}

/// `POST /tasks/batch` answer: one task per request, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BatchCreated {
    /// How many were new (the others repeated an idempotency key).
    pub created: usize,
    /// The tasks, in the order of the requests.
    pub tasks: Vec<TaskView>,
}
