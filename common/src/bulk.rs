//! `POST /tasks/bulk`: one action on every task a filter matches.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::TaskStatus;

/// What to do with the matching tasks. Rows an action does not apply to are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    /// PENDING and RUNNING tasks become CANCELED.
    Cancel,
    /// FAILED and CANCELED tasks become PENDING again, as `POST /tasks/{id}/retry` does.
    Retry,
    /// SUCCEEDED, FAILED and CANCELED tasks are deleted.
    Delete,
}

/// Which tasks: all conditions given must hold. At least one, or `"all": true`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct BulkFilter {
    /// In this queue.
    pub queue: Option<String>,
    /// Of this type.
    #[serde(rename = "type")]
    pub task_type: Option<String>,
    /// In this state.
    pub status: Option<TaskStatus>,
    /// Created before this time.
    #[serde(with = "crate::timestamp::option")]
    pub created_before: Option<DateTime<Utc>>,
    /// Created at or after this time.
    #[serde(with = "crate::timestamp::option")]
    pub created_after: Option<DateTime<Utc>>,
    /// Whose last error contains this text (case-sensitive).
    pub last_error_contains: Option<String>,
    /// Whose last error is exactly this text.
    pub last_error: Option<String>,
    /// Every task: required when no other condition is given, so that "everything" is said.
    pub all: bool,
}

/// `POST /tasks/bulk` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkRequest {
    pub action: BulkAction,
    #[serde(deserialize_with = "crate::object::object")]
    pub filter: BulkFilter,
}

/// `POST /tasks/bulk` answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BulkOutcome {
    /// Tasks the filter matched.
    pub matched: u64,
    /// Of those, the ones the action applied to and changed.
    pub changed: u64,
}
