//! Property test of the state machine against a real PostgreSQL: random sequences of claims,
//! completions, failures, cancels, lease expiries, rescues, releases (current or stale) and an
//! operator's retries and run-nows never move a task along an edge the state machine does not
//! have, never give it more attempts than it allows, and nothing leaves a terminal state but a
//! retry.

mod support;

use std::time::Duration;
use support::claim;

use common::TaskStatus;
use dtp::queue::{self, TaskId};
use proptest::prelude::*;
use serde_json::json;
use sqlx::PgPool;

#[derive(Debug, Clone)]
enum Step {
    Claim,
    Succeed {
        stale: bool,
    },
    Fail {
        permanent: bool,
        stale: bool,
    },
    Cancel,
    ExpireAndRescue,
    Release {
        stale: bool,
    },
    /// An operator's retry; `lease` zero or thirty seconds (a task canceled while running is
    /// due a lease after its cancel).
    Retry {
        lease_secs: u64,
    },
    RunNow,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Claim),
        2 => any::<bool>().prop_map(|stale| Step::Succeed { stale }),
        2 => (any::<bool>(), any::<bool>()).prop_map(|(permanent, stale)| Step::Fail { permanent, stale }),
        1 => Just(Step::Cancel),
        2 => Just(Step::ExpireAndRescue),
        1 => any::<bool>().prop_map(|stale| Step::Release { stale }),
        1 => prop_oneof![Just(0u64), Just(30u64)].prop_map(|lease_secs| Step::Retry { lease_secs }),
        1 => Just(Step::RunNow),
    ]
}

/// The state machine's edges (staying put is always allowed); a retry is the one way out of
/// FAILED and CANCELED.
fn allowed(from: TaskStatus, to: TaskStatus, step: &Step) -> bool {
    use TaskStatus::*;
    let retried =
        matches!(step, Step::Retry { .. }) && matches!((from, to), (Failed | Canceled, Pending));
    from == to
        || retried
        || matches!(
            (from, to),
            (Pending, Running)
                | (Pending, Canceled)
                | (Running, Succeeded)
                | (Running, Pending)
                | (Running, Failed)
                | (Running, Canceled)
        )
}

/// A connection of `pool`, for the queue functions that run a transaction of their own.
async fn conn(pool: &PgPool) -> sqlx::pool::PoolConnection<sqlx::Postgres> {
    pool.acquire().await.expect("connection")
}

async fn status_and_attempt(pool: &PgPool, id: i64) -> (TaskStatus, i32) {
    let (status, attempt, _) = state(pool, id).await;
    (status, attempt)
}

/// Status, attempts made and attempts allowed.
async fn state(pool: &PgPool, id: i64) -> (TaskStatus, i32, i32) {
    let (status, attempt, max): (String, i32, i32) =
        sqlx::query_as("select status, attempt_count, max_attempts from tasks where id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("task");
    (status.parse().expect("status"), attempt, max)
}

async fn apply(pool: &PgPool, id: i64, step: &Step) {
    let task = TaskId(id);
    let (_, attempt) = status_and_attempt(pool, id).await;
    let claim_token: Option<i64> =
        sqlx::query_scalar("select claim_token from tasks where id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("task");
    let current = queue::Fence {
        attempt,
        claim_token: claim_token.unwrap_or(0),
    };
    // A stale fence: the previous attempt, or this attempt of a claim the database lost.
    let token = |stale: bool| match stale {
        false => current,
        true if attempt % 2 == 0 => queue::Fence {
            attempt: attempt - 1,
            ..current
        },
        true => queue::Fence {
            claim_token: current.claim_token.wrapping_add(1),
            ..current
        },
    };
    let lease = Duration::from_secs(30);
    match step {
        Step::Claim => {
            claim(pool, "w", 1, lease).await;
        }
        Step::Succeed { stale } => {
            queue::mark_succeeded(pool, task, token(*stale), &json!("ok"))
                .await
                .expect("succeed");
        }
        Step::Fail { permanent, stale } => {
            queue::mark_failed_or_retry(
                pool,
                task,
                token(*stale),
                "boom",
                Duration::ZERO,
                if *permanent {
                    queue::Failure::Permanent
                } else {
                    queue::Failure::Retryable
                },
            )
            .await
            .expect("fail");
        }
        Step::Cancel => {
            let _ = queue::cancel(&mut *conn(pool).await, task).await;
        }
        Step::ExpireAndRescue => {
            sqlx::query("update tasks set lease_expires_at = now() - interval '1 second' where id = $1 and status = 'RUNNING'")
                .bind(id)
                .execute(pool)
                .await
                .expect("expire");
            let mut tx = pool.begin().await.expect("tx");
            let expired = queue::lock_expired(&mut tx, 10, Duration::ZERO)
                .await
                .expect("lock");
            let lost: Vec<_> = expired.into_iter().map(|t| (t, Duration::ZERO)).collect();
            queue::fail_expired(&mut tx, &lost).await.expect("rescue");
            tx.commit().await.expect("commit");
        }
        Step::Release { stale } => {
            queue::release(pool, task, token(*stale))
                .await
                .expect("release");
        }
        Step::Retry { lease_secs } => {
            let lease = Duration::from_secs(*lease_secs);
            let _ = queue::retry(&mut *conn(pool).await, task, lease).await;
        }
        Step::RunNow => {
            let _ = queue::run_now(&mut *conn(pool).await, task).await;
        }
    }
}

/// One case: a task with `max_attempts` taken through `steps`, alone in the queue (claims and
/// rescues take any task, so the cases before it are cleared away first).
async fn check_sequence(app: &support::TestApp, max_attempts: i32, steps: &[Step]) {
    sqlx::query("truncate tasks cascade")
        .execute(&app.pool)
        .await
        .expect("clear the queue");
    let id = app
        .create(json!({"type": "noop", "maxAttempts": max_attempts}))
        .await
        .id;
    let mut seen_terminal: Option<TaskStatus> = None;
    for step in steps {
        let (before, attempts_before) = status_and_attempt(&app.pool, id).await;
        apply(&app.pool, id, step).await;
        let (after, attempts_after, allowed_attempts) = state(&app.pool, id).await;
        assert!(
            allowed(before, after, step),
            "{step:?} moved {before} -> {after}"
        );
        assert!(
            attempts_after <= allowed_attempts
                && allowed_attempts <= max_attempts.max(attempts_after + 1),
            "{attempts_after} attempts of {allowed_attempts} (created with {max_attempts})"
        );
        if let Some(terminal) =
            seen_terminal.filter(|_| after.is_terminal() || !matches!(step, Step::Retry { .. }))
        {
            assert_eq!(after, terminal, "{step:?} left terminal {terminal}");
            assert_eq!(attempts_after, attempts_before);
        }
        seen_terminal = after.is_terminal().then_some(after);
    }
}

/// 48 random sequences (shrunk to the shortest failing one) against one service and database:
/// a database per case spent most of the test's time creating and migrating databases.
#[test]
fn no_sequence_of_operations_breaks_the_state_machine() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // No rescuer of its own: a case's expiries are rescued by its steps alone, so that a case
    // runs the same every time and a failure shrinks reliably.
    let app = runtime.block_on(support::api_only_with(|config| {
        config.rescue_interval_ms = 86_400_000;
    }));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        source_file: Some(file!()),
        ..ProptestConfig::default()
    });
    let cases = (1i32..4, proptest::collection::vec(step(), 1..25));
    let outcome = runner.run(&cases, |(max_attempts, steps)| {
        runtime.block_on(check_sequence(&app, max_attempts, &steps));
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
