//! The web task store: ALL SQL about webdb lives here, one function per statement.

mod web_tasks;

pub use web_tasks::{
    bind, create, get, list, same_payload, stored_payload, stored_size, Created, NewWebTask,
    WebTaskRow,
};

/// What the store can refuse, plus the database failing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No web task has this id.
    #[error("Task {0} not found")]
    NotFound(i64),
    /// The idempotency key was first used with a different request.
    #[error("Idempotency-Key {0:?} was already used with a different request")]
    IdempotencyMismatch(String),
    /// The database failed or is unreachable.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}
