//! Handlers run the user's work. They are looked up by task `type` in a [`HandlerRegistry`],
//! get a [`TaskContext`], and answer with a JSON result or a classified [`HandlerError`].
//!
//! Handlers know nothing about rows, leases or retries: the worker owns all of that.

mod builtin;
mod http;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use apikit::trace::TraceContext;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::queue::TaskId;

pub use builtin::{Demo, DemoFail, DemoFlaky, DemoSlow, Noop};
pub use http::HttpHandler;

/// A boxed, sendable future, as handlers return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a handler is given for one attempt.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The task.
    pub id: TaskId,
    /// This attempt's number, from 1.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// The task's payload.
    pub payload: Value,
    /// Fired when the task is canceled or the worker must stop: stop work and return soon.
    /// The worker also drops the handler's future, so awaiting this is for cleanup, not safety.
    pub cancel: CancellationToken,
    /// The attempt's span context, continuing the trace of the request that created the task:
    /// send `trace.to_string()` as `traceparent` on the handler's own calls.
    pub trace: TraceContext,
}

impl TaskContext {
    /// The payload's field `name` as a `T`; `None` when it is missing or not a `T`.
    pub fn payload_field<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        let field = self.payload.get(name)?;
        T::deserialize(field).ok()
    }
}

/// Why an attempt failed, which decides whether it is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth another attempt (after backoff) while attempts remain.
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help: the task is FAILED at once.
    #[error("{0}")]
    Permanent(String),
}

/// User work for one task type.
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt.
    fn run(&self, ctx: TaskContext) -> BoxFuture<'_, Result<Value, HandlerError>>;

    /// The execution timeout for this type; the worker's default when `None`.
    /// A task's own `timeoutMs` takes precedence.
    fn timeout(&self) -> Option<Duration> {
        None
    }
}

/// A handler made from an async closure; see [`handler_fn`].
pub struct FnHandler<F> {
    f: F,
    timeout: Option<Duration>,
}

/// Wraps `async |ctx| -> Result<Value, HandlerError>` as a [`Handler`].
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, HandlerError>> + Send + 'static,
{
    FnHandler { f, timeout: None }
}

impl<F> FnHandler<F> {
    /// Sets the execution timeout of this type.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, HandlerError>> + Send + 'static,
{
    fn run(&self, ctx: TaskContext) -> BoxFuture<'_, Result<Value, HandlerError>> {
        Box::pin((self.f)(ctx))
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// Handlers by task type. Cheap to clone.
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    handlers: BTreeMap<String, Arc<dyn Handler>>,
}

impl HandlerRegistry {
    /// A registry with no handlers.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A registry with the built-ins: `noop`, `demo`, `demo-slow`, `demo-fail`,
    /// `demo-flaky` and `http` (which refuses internal addresses; register
    /// `HttpHandler::new(true)` over it to allow them).
    pub fn with_builtins() -> Self {
        Self::empty()
            .register("noop", Noop)
            .register("demo", Demo)
            .register("demo-slow", DemoSlow)
            .register("demo-fail", DemoFail)
            .register("demo-flaky", DemoFlaky)
            .register("http", HttpHandler::default())
    }

    /// Adds (or replaces) the handler of `task_type`.
    pub fn register(mut self, task_type: impl Into<String>, handler: impl Handler) -> Self {
        self.handlers.insert(task_type.into(), Arc::new(handler));
        self
    }

    /// The handler of `task_type`.
    pub fn get(&self, task_type: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(task_type).cloned()
    }

    /// Whether `task_type` has a handler.
    pub fn contains(&self, task_type: &str) -> bool {
        self.handlers.contains_key(task_type)
    }

    /// Every registered type, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.handlers.keys().map(String::as_str).collect()
    }
}

impl std::fmt::Debug for HandlerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.handlers.keys()).finish()
    }
}
