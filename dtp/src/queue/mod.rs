//! The queue: ALL SQL about tasks lives here, one function per statement, named for its intent.
//!
//! Functions take an executor (pool, connection or transaction) so the caller owns the
//! transaction. Every transition out of RUNNING is fenced by `status = 'RUNNING'` and the
//! attempt's [`Fence`] (attempt number and claim token), so a worker whose lease was taken over
//! can never overwrite a newer outcome. This module knows nothing about timing, HTTP or handlers.

mod attempts;
mod bulk;
mod cancel;
mod claim;
mod complete;
mod counts;
mod enqueue;
mod operate;
mod read;
mod ready;
mod rescue;
mod retention;
mod row;
mod schedules;
mod settings;
mod stats;
mod status;
mod storable;
mod workers;

pub use attempts::attempts;
pub use bulk::{bulk, count_for_confirmation, BulkDone, Confirmed};
pub use cancel::{cancel, CancelOutcome};
pub use claim::{
    claim_available, every_ready_queue, renew_leases, restricted_queues, Claim, Claimed,
    ClaimedTask, Fence, QueueCursor, Renewed,
};
pub use complete::{
    mark_failed_many, mark_failed_or_retry, mark_succeeded, mark_succeeded_many, release,
    release_lost_claim, release_many, release_unstarted, AttemptFailure, FailedAttempt, Failure,
};
pub use counts::{fold_counts, recount};
pub use enqueue::{enqueue, enqueue_many, Enqueued, NewTask};
pub use operate::{delete, retry, run_now};
pub use read::{
    explain_list, failure_groups, get, list, Detail, FailureGroup, ListFilter, ListedTask,
    TaskListPage, PAGE_DETAIL_BYTES,
};
pub use ready::{promote_due, ready_queues, Announcement, ClaimKey, PROMOTION_BATCH};
pub use rescue::{fail_expired, lock_expired, ExpiredLease};
pub use retention::prune;
pub use row::TaskRow;
pub use schedules::{
    create_schedule, database_now, delete_schedule, due_schedules, enqueue_tick, enqueue_ticks,
    lock_schedule, record_round, schedule, schedules, tick_key, update_schedule, DueSchedule,
    ScheduleFields, ScheduleMove, TickOutcome,
};
pub use settings::{configure, queue, queues};
pub use stats::{add_minute_stats, minute_stats, prune_minute_stats, MinuteRow, QueueMinute};
pub use status::StoredStatus;
pub use storable::MAX_ERROR_BYTES;
pub use workers::{prune_workers, report_worker, worker_stopped, workers, WorkerRow};

use std::fmt;

use common::TaskStatus;

/// Notified when tasks become ready, with their queue and the first of them in claim order
/// ([`Announcement`]; empty: some queue, look).
pub const CHANNEL_TASKS_READY: &str = "dtp_tasks_ready";
/// Notified by processes of the release before when tasks of a queue became due, with the
/// queue's name; heard while a fleet is upgraded. The new announcements go on a channel of
/// their own: a process of the release before would take each for the name of a queue.
pub const CHANNEL_TASK_AVAILABLE: &str = "dtp_task_available";
/// Notified (payload: the queue's name) when a queue's settings change, so that every claimer
/// reads them again at once.
pub const CHANNEL_QUEUE_CHANGED: &str = "dtp_queue_changed";
/// Notified with the task id when a RUNNING task is canceled, so its worker aborts the handler.
pub const CHANNEL_TASK_CANCELED: &str = "dtp_task_canceled";

/// A DTP task id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub i64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the queue can refuse, plus the database failing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No task has this id.
    #[error("task {0} not found")]
    NotFound(TaskId),
    /// An action the task's state does not allow: cancel of a SUCCEEDED or FAILED task, retry
    /// of one that is not FAILED or CANCELED, run-now of one that is not PENDING, delete of a
    /// PENDING or RUNNING one.
    #[error("Cannot {action} task in state {status}")]
    Refused {
        /// The task.
        id: TaskId,
        /// What was asked, as the endpoint names it.
        action: &'static str,
        /// The state that refuses it.
        status: TaskStatus,
    },
    /// Retry of a task that has made the most attempts any task may have.
    #[error("Cannot retry task {0}: it has made the most attempts a task may have")]
    NoAttemptsLeft(TaskId),
    /// No schedule has this name.
    #[error("schedule {0:?} not found")]
    UnknownSchedule(String),
    /// A schedule already has this name.
    #[error("a schedule named {0:?} already exists")]
    ScheduleExists(String),
    /// A confirmed bulk action applies to more tasks than the operator confirmed: it changed
    /// `changed` of them (none if it knew before it began) and stopped.
    #[error("the filter now applies to at least {applicable} tasks, more than the {confirmed} confirmed; {changed} were changed, confirm again for the rest")]
    MatchesGrew {
        /// Tasks it would apply to now (at least).
        applicable: u64,
        /// Tasks the operator confirmed.
        confirmed: u64,
        /// Tasks it changed before it stopped.
        changed: u64,
    },
    /// The idempotency key was first used with a different request.
    #[error("idempotency key {0:?} was already used for a different request")]
    IdempotencyConflict(String),
    /// The database failed or is unreachable.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Milliseconds as the `bigint` the SQL multiplies by `interval '1 millisecond'`.
fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
