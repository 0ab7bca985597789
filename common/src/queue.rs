//! Queues and attempts: `GET/PATCH /queues`, `GET /tasks/{id}/attempts`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// A queue: its settings and what it holds now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    /// The name tasks give in `queue`.
    pub name: String,
    /// No task of a paused queue is claimed; running ones finish.
    pub paused: bool,
    /// At most this many of its tasks run at once, across all processes.
    pub concurrency_limit: Option<i32>,
    /// At most this many of its tasks start per second, across all processes.
    pub rate_limit_per_second: Option<f64>,
    /// Tasks per state.
    pub counts: QueueCounts,
    /// How long its oldest due PENDING task has waited; `null` when none is due.
    pub oldest_pending_age_ms: Option<i64>,
}

/// A queue's tasks per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub struct QueueCounts {
    pub pending: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub canceled: i64,
}

/// `GET /queues` answer, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueList {
    /// Every queue a task names or that has settings, by name.
    pub queues: Vec<Queue>,
}

/// `PATCH /queues/{name}` body: the settings to change; a field left out keeps its value, and
/// `null` removes a limit. Read from a JSON object only, as every body (see [`crate::object`]):
/// as an array, `[null, null]` would clear both limits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueuePatch {
    /// 1..=1000000, or `null` for no limit.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i32>, minimum = 1, maximum = 1000000))]
    #[serde(default, deserialize_with = "given")]
    pub concurrency_limit: Option<Option<i32>>,
    /// Above 0 and at most 1000000, or `null` for no limit.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, exclusive_minimum = 0, maximum = 1000000))]
    #[serde(default, deserialize_with = "given")]
    pub rate_limit_per_second: Option<Option<f64>>,
    /// Pause (`true`) or resume (`false`); not `null`.
    #[serde(default, deserialize_with = "not_null")]
    pub paused: Option<bool>,
}

/// A field that may be left out but not given as `null`.
fn not_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`, by `default`).
fn given<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The bounds of a queue's settings: the API's validation and the database's checks agree.
pub mod bounds {
    use std::ops::RangeInclusive;

    /// `concurrencyLimit`.
    pub const CONCURRENCY_LIMIT: RangeInclusive<i32> = 1..=1_000_000;
    /// `rateLimitPerSecond`'s largest value (it must also be above 0).
    pub const MAX_RATE_PER_SECOND: f64 = 1_000_000.0;
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttemptOutcome {
    /// The handler returned a result.
    Succeeded,
    /// The handler failed and no attempt was left (or the failure was permanent).
    Failed,
    /// The handler failed; the task was scheduled again.
    Retry,
    /// Its worker stopped renewing the lease (died, hung, lost the network); rescued.
    Lost,
    /// The task was canceled while the attempt ran.
    Canceled,
    /// The handler ran past its timeout.
    Timeout,
    /// Its worker shut down and handed the task back (not counted against `maxAttempts`).
    Released,
}

/// One attempt at running a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The attempt's number (a released attempt's number is used again by the next).
    pub attempt: i32,
    /// The worker that ran it.
    pub worker_id: Option<String>,
    /// When it started.
    #[serde(with = "crate::timestamp::option")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended; `null` while it runs.
    #[serde(with = "crate::timestamp::option")]
    pub finished_at: Option<DateTime<Utc>>,
    /// From start to end.
    pub duration_ms: Option<i64>,
    /// How it ended; `null` while it runs.
    pub outcome: Option<AttemptOutcome>,
    /// The error it ended with.
    pub error: Option<String>,
}

/// `GET /tasks/{id}/attempts` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptList {
    /// Oldest first; the attempt running now, if any, last.
    pub attempts: Vec<Attempt>,
}

/// A worker process as it last reported (`GET /workers`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WorkerView {
    /// Its id (`DTP_WORKER_ID`).
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// When it first reported.
    pub started_at: DateTime<Utc>,
    /// When it last reported (every heartbeat interval while it runs).
    pub last_seen_at: DateTime<Utc>,
    /// When it stopped, if it said so (a worker that died just stops reporting).
    pub stopped_at: Option<DateTime<Utc>>,
    /// Its concurrency slots.
    pub concurrency: i32,
    /// Slots running a handler when it last reported.
    pub busy: i32,
    /// The task types it runs.
    pub types: Vec<String>,
}

/// `GET /workers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerList {
    /// By id.
    pub workers: Vec<WorkerView>,
}

/// One minute of what the workers did (`GET /stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StatsMinute {
    /// The minute's start (database clock).
    pub minute: DateTime<Utc>,
    /// Attempts that succeeded.
    pub succeeded: i64,
    /// Attempts that failed or timed out.
    pub failed: i64,
    /// Attempts retried after failing.
    pub retried: i64,
    /// Attempts started in the minute.
    pub started: i64,
    /// Queue wait (due to started) of those attempts: median and 95th percentile, in ms, read
    /// from histogram buckets (`null` when none started).
    pub queue_wait_p50_ms: Option<f64>,
    /// 95th percentile of the queue wait, in ms.
    pub queue_wait_p95_ms: Option<f64>,
    /// Run time of the handlers that returned: median, in ms.
    pub run_p50_ms: Option<f64>,
    /// 95th percentile of the run time, in ms.
    pub run_p95_ms: Option<f64>,
}

/// `GET /stats`: the last minutes, oldest first, every minute present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsList {
    /// Oldest first.
    pub minutes: Vec<StatsMinute>,
}
