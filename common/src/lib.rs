//! Wire types that cross HTTP between `dtp`, `taskpilot`, tests and clients.
//!
//! This crate holds exactly the JSON contract of `docs/contract.md`: DTP's task, TaskPilot's web task and
//! execution view, states, and the RFC 9457 problem body. It must not grow helpers, database code or behaviour.

pub mod bulk;
pub mod execution;
pub mod limits;
pub mod object;
pub mod problem;
pub mod queue;
pub mod schedule;
pub mod task;
pub mod timestamp;
pub mod web_task;

pub use bulk::{BulkAction, BulkFilter, BulkOutcome, BulkRequest};
pub use execution::ExecutionView;
pub use problem::Problem;
pub use queue::{
    Attempt, AttemptList, AttemptOutcome, Queue, QueueCounts, QueueList, QueuePatch, StatsList,
    StatsMinute, WorkerList, WorkerView,
};
pub use schedule::{NewSchedule, Schedule, ScheduleList, SchedulePatch};
pub use task::{BatchCreated, CreateTask, RetryState, TaskPage, TaskStatus, TaskView};
pub use web_task::{BindRequest, CreateWebTask, WebTask, WebTaskPage, WebTaskStatus};
