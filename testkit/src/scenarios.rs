//! Behaviours checked twice: in-process (`taskpilot/tests`) and across the real binaries
//! (`tests/e2e.rs`). Each is written once here, against TaskPilot's API (and DTP's database
//! where a fault is planted), and run by [`scenario_tests!`](crate::scenario_tests) there.

use common::{AttemptOutcome, RetryState, TaskStatus};
use reqwest::StatusCode;
use serde_json::json;

use sqlx::PgPool;

use crate::{assert_problem, TaskPilotClient};

/// What a scenario runs against: a TaskPilot, and the database of the DTP it talks to.
pub struct Against {
    pub api: TaskPilotClient,
    pub dtp_pool: PgPool,
}

/// One `#[tokio::test]` per named scenario, each on a system that `$start` (an expression
/// evaluated in the test) starts, reached through `$against` (a closure from the started
/// system to an [`Against`]).
#[macro_export]
macro_rules! scenario_tests {
    (start: $start:expr, against: $against:expr, scenarios: [$($scenario:ident),+ $(,)?]) => {$(
        #[tokio::test]
        async fn $scenario() {
            let system = $start;
            $crate::scenarios::$scenario($against(&system)).await;
        }
    )+};
}

/// A `demo-flaky` task fails its first attempt and succeeds on its second, in the queue its
/// binding names; the view lists both attempts, newest last.
pub async fn a_flaky_task_succeeds_on_its_second_attempt(Against { api, .. }: Against) {
    let task = json!({"type": "demo-flaky"});
    let bind = json!({"queue": "flaky"});
    let view = api.run_until(task, bind, TaskStatus::Succeeded).await;
    assert_eq!(
        (view.attempt_count, view.retry_state),
        (2, RetryState::Completed)
    );
    assert_eq!(view.queue, "flaky");
    assert!(
        view.last_error.is_some(),
        "the first attempt's error is kept"
    );
    let attempts: Vec<(i32, Option<AttemptOutcome>)> = view
        .attempts
        .iter()
        .map(|a| (a.attempt, a.outcome))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, Some(AttemptOutcome::Retry)),
            (2, Some(AttemptOutcome::Succeeded))
        ]
    );
    assert_eq!(view.attempts[0].error, view.last_error);
}

/// A `demo-fail` task bound without options uses DTP's default of three attempts and ends
/// FAILED, exhausted, naming its error.
pub async fn a_failing_task_ends_failed_and_exhausted(Against { api, .. }: Against) {
    let api = &api;
    let task = json!({"type": "demo-fail"});
    let view = api.run_until(task, json!({}), TaskStatus::Failed).await;
    assert_eq!(view.attempt_count, 3);
    assert_eq!(view.retry_state, RetryState::Exhausted);
    assert!(view.last_error.expect("error").contains("demo-fail"));
    assert!(view.end_to_end_latency_ms.is_some());
}

/// Cancel of a SUCCEEDED task is 409 with DTP's reason, and the task stays SUCCEEDED.
pub async fn cancel_of_a_succeeded_task_is_409_with_dtps_reason(Against { api, .. }: Against) {
    let api = &api;
    let id = api
        .create_and_bind(json!({"type": "demo"}), json!({}))
        .await;
    api.wait_for(id, TaskStatus::Succeeded).await;
    let detail = assert_problem(api.cancel(id).await, StatusCode::CONFLICT).await;
    assert_eq!(detail, "Cannot cancel task in state SUCCEEDED");
    assert_eq!(api.execution(id).await.status, TaskStatus::Succeeded);
}

/// A bound task whose DTP row is gone (deleted on `dtp_pool`) is 404 naming the DTP task, for
/// the view and for cancel.
pub async fn a_bound_task_whose_dtp_row_is_gone_is_404(Against { api, dtp_pool }: Against) {
    let api = &api;
    let id = api.create_id(json!({"type": "demo"})).await;
    let scheduler_task_id = api
        .bind_to_scheduler(id, json!({"schedulerType": "demo-slow"}))
        .await;
    sqlx::query("delete from tasks where id = $1")
        .bind(scheduler_task_id)
        .execute(&dtp_pool)
        .await
        .expect("delete");

    let view = api.get(&format!("/api/tasks/{id}/execution")).await;
    let cancel = api.cancel(id).await;

    let expected = format!("Scheduler task not found: {scheduler_task_id}");
    assert_eq!(assert_problem(view, StatusCode::NOT_FOUND).await, expected);
    assert_eq!(
        assert_problem(cancel, StatusCode::NOT_FOUND).await,
        expected
    );
}
