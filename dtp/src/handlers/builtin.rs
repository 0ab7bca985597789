//! The demo handlers, for trying the platform out and for tests.

use std::time::Duration;

use serde_json::{json, Value};

use super::{BoxFuture, Handler, HandlerError, TaskContext};

/// `noop`: succeeds at once with `null`.
pub struct Noop;

impl Handler for Noop {
    fn run(&self, _ctx: TaskContext) -> BoxFuture<'_, Result<Value, HandlerError>> {
        Box::pin(async { Ok(Value::Null) })
    }
}

/// `demo`: succeeds after a short sleep, echoing its payload as the result.
pub struct Demo;

/// How long `demo` pretends to work.
const DEMO_SLEEP: Duration = Duration::from_millis(100);

impl Handler for Demo {
    fn run(&self, ctx: TaskContext) -> BoxFuture<'_, Result<Value, HandlerError>> {
        Box::pin(async move {
            tokio::time::sleep(DEMO_SLEEP).await;
            Ok(ctx.payload)
        })
    }
}

/// `demo-slow`: sleeps `payload.ms` (default 5000) and stops early when canceled.
pub struct DemoSlow;

/// `demo-slow`'s sleep when the payload names none.
const DEMO_SLOW_DEFAULT_MS: u64 = 5000;

impl Handler for DemoSlow {
    fn run(&self, ctx: TaskContext) -> BoxFuture<'_, Result<Value, HandlerError>> {
        Box::pin(async move {
            let ms = ctx.payload_field("ms").unwrap_or(DEMO_SLOW_DEFAULT_MS);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(json!({ "sleptMs": ms })),
                _ = ctx.cancel.cancelled() => Err(HandlerError::Retryable("interrupted".into())),
            }
        })
    }
}

/// `demo-fail`: always fails (retryably, so it uses every attempt).
pub struct DemoFail;

impl Handler for DemoFail {
    fn run(&self, ctx: TaskContext) -> BoxFuture<'_, Result<Value, HandlerError>> {
        Box::pin(async move {
            Err(HandlerError::Retryable(format!(
                "demo-fail always fails (attempt {})",
                ctx.attempt
            )))
        })
    }
}

/// `demo-flaky`: fails its first `payload.failTimes` attempts (default 1), then succeeds.
pub struct DemoFlaky;

impl Handler for DemoFlaky {
    fn run(&self, ctx: TaskContext) -> BoxFuture<'_, Result<Value, HandlerError>> {
        Box::pin(async move {
            let fail_times: i64 = ctx.payload_field("failTimes").unwrap_or(1);
            if i64::from(ctx.attempt) <= fail_times {
                return Err(HandlerError::Retryable(format!(
                    "demo-flaky failure {} of {fail_times}",
                    ctx.attempt
                )));
            }
            Ok(json!({ "succeededOnAttempt": ctx.attempt }))
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::queue::TaskId;

    fn ctx(attempt: i32, payload: Value) -> TaskContext {
        TaskContext {
            id: TaskId(1),
            attempt,
            max_attempts: 3,
            payload,
            cancel: CancellationToken::new(),
            trace: apikit::trace::TraceContext::root(),
        }
    }

    #[tokio::test]
    async fn demo_flaky_fails_its_first_attempts_then_succeeds() {
        let payload = json!({ "failTimes": 2 });
        assert!(DemoFlaky.run(ctx(1, payload.clone())).await.is_err());
        assert!(DemoFlaky.run(ctx(2, payload.clone())).await.is_err());
        assert_eq!(
            DemoFlaky.run(ctx(3, payload)).await,
            Ok(json!({ "succeededOnAttempt": 3 }))
        );
    }

    #[tokio::test]
    async fn demo_echoes_its_payload() {
        assert_eq!(Demo.run(ctx(1, json!("hello"))).await, Ok(json!("hello")));
    }

    #[tokio::test]
    async fn demo_slow_returns_early_when_canceled() {
        let context = ctx(1, json!({ "ms": 60_000 }));
        context.cancel.cancel();
        assert!(DemoSlow.run(context).await.is_err());
    }
}
