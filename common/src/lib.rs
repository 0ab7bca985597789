//! Wire types that cross HTTP between `dtp`, `taskpilot`, tests and clients.
//!
//! This crate holds exactly the JSON contract of `SPEC.md`: requests, task bodies, states and the
//! RFC 9457 problem body. It must not grow helpers, database code or behaviour.

pub mod problem;
pub mod task;
pub mod timestamp;

pub use problem::Problem;
pub use task::{CreateTask, RetryState, TaskPage, TaskStatus, TaskView};
