//! TaskPilot's web task on the wire: create and bind requests, the web task body, a page.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Control-plane intent; never execution state (that is read through `/execution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WebTaskStatus {
    /// Not bound to a DTP task yet.
    Pending,
    /// Bound: a DTP task exists for it.
    Submitted,
}

impl WebTaskStatus {
    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            WebTaskStatus::Pending => "PENDING",
            WebTaskStatus::Submitted => "SUBMITTED",
        }
    }
}

/// `POST /api/tasks` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateWebTask {
    /// The task type; also the default DTP type at bind.
    #[serde(rename = "type")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 100, pattern = r"\S")
    )]
    pub task_type: String,
    /// Any JSON; stored as given and handed to DTP at bind. `null` when absent.
    #[serde(default = "null_payload")]
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub payload: Box<serde_json::value::RawValue>,
}

fn null_payload() -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string("null".to_owned()).expect("null is JSON")
}

/// `POST /api/tasks/{id}/scheduler` body; every field optional, and so is the body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BindRequest {
    /// DTP task type; the web task's type when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 100, pattern = r"\S")
    )]
    pub scheduler_type: Option<String>,
    /// Attempts DTP allows (1..=100); DTP's default when absent.
    // The bounds are `limits::MAX_ATTEMPTS`; the schema attribute needs literals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub max_attempts: Option<i32>,
    /// DTP queue; `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
    pub queue: Option<String>,
}

/// The web task body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebTask {
    /// Web task id.
    pub id: i64,
    /// Task type.
    #[serde(rename = "type")]
    pub task_type: String,
    /// Payload.
    pub payload: Value,
    /// PENDING until bound, SUBMITTED after.
    pub status: WebTaskStatus,
    /// The bound DTP task, or `null`.
    pub scheduler_task_id: Option<i64>,
    /// Creation time.
    #[serde(with = "crate::timestamp")]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(with = "crate::timestamp")]
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/tasks` answer: newest first; pass `nextAfter` as `after` for the next page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebTaskPage {
    /// The web tasks of this page, newest first.
    pub tasks: Vec<WebTask>,
    /// The cursor for the next page; `null` on the last page.
    pub next_after: Option<i64>,
}
