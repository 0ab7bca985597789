//! Schedules: `POST/GET/PATCH/DELETE /schedules`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::CreateTask;

/// `POST /schedules` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSchedule {
    /// 1..=100 characters of `[A-Za-z0-9_.:-]`.
    pub name: String,
    /// Standard cron (5 fields) or with seconds first (6 fields).
    pub cron: String,
    /// An IANA time zone, `UTC` when absent.
    #[serde(default = "utc")]
    pub timezone: String,
    /// The task each tick creates (without `runAt` or `idempotencyKey`: the tick sets them).
    #[serde(deserialize_with = "crate::object::object")]
    pub task: CreateTask,
    /// A paused schedule creates nothing.
    #[serde(default)]
    pub paused: bool,
}

fn utc() -> String {
    "UTC".to_owned()
}

/// `PATCH /schedules/{name}` body: any subset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchedulePatch {
    /// A new pattern.
    pub cron: Option<String>,
    /// A new time zone.
    pub timezone: Option<String>,
    /// A new task.
    #[serde(default, deserialize_with = "crate::object::optional_object")]
    pub task: Option<CreateTask>,
    /// Pause or resume; a resumed schedule's next tick is the first after now.
    pub paused: Option<bool>,
}

/// A schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Its name.
    pub name: String,
    /// Its pattern.
    pub cron: String,
    /// Its time zone.
    pub timezone: String,
    /// The task each tick creates.
    pub task: CreateTask,
    /// Whether it is paused.
    pub paused: bool,
    /// Its next tick (`null` while paused).
    #[serde(with = "crate::timestamp::option")]
    pub next_run_at: Option<DateTime<Utc>>,
    /// The tick it last enqueued.
    #[serde(with = "crate::timestamp::option")]
    pub last_run_at: Option<DateTime<Utc>>,
    /// Creation time.
    #[serde(with = "crate::timestamp")]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(with = "crate::timestamp")]
    pub updated_at: DateTime<Utc>,
}

/// `GET /schedules` answer, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleList {
    /// Every schedule.
    pub schedules: Vec<Schedule>,
}
