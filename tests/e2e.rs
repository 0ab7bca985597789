//! End to end: the documented scenarios through TaskPilot only, with the real `dtp` and
//! `taskpilot` binaries as child processes over real HTTP and a real PostgreSQL.

use std::time::Duration;
use testkit::scenarios::Against;

use common::{RetryState, TaskStatus, WebTaskStatus};
use reqwest::StatusCode;
use serde_json::json;
use suite::{assert_problem, System};

#[tokio::test]
async fn create_bind_and_automatic_execution_give_a_succeeded_view() {
    let system = System::start().await;
    let api = &system.api;

    let created = api
        .create(json!({"type": "demo", "payload": "hello"}))
        .await;
    let bound = api.bind(created.id, json!({})).await;
    let view = api.wait_for(created.id, TaskStatus::Succeeded).await;

    assert_eq!(created.status, WebTaskStatus::Pending);
    assert_eq!(bound.status, WebTaskStatus::Submitted);
    assert_eq!(Some(view.scheduler_task_id), bound.scheduler_task_id);
    assert_eq!((view.attempt_count, view.max_attempts), (1, 3));
    assert_eq!(view.retry_state, RetryState::Completed);
    let (queue, processing, total) = (
        view.queue_latency_ms.expect("queue"),
        view.processing_latency_ms.expect("processing"),
        view.end_to_end_latency_ms.expect("end to end"),
    );
    assert_eq!(queue + processing, total);
    let web: common::WebTask = api
        .get(&format!("/api/tasks/{}", created.id))
        .await
        .json()
        .await
        .expect("web task");
    assert_eq!(
        web.status,
        WebTaskStatus::Submitted,
        "intent, not execution state"
    );
}

#[tokio::test]
async fn cancel_of_a_running_demo_slow_is_204_and_the_view_shows_canceled_then_repeat_is_204() {
    let system = System::start().await;
    let api = &system.api;
    let id = api
        .create_id(json!({"type": "demo", "payload": {"ms": 30000}}))
        .await;
    api.bind(id, json!({"schedulerType": "demo-slow"})).await;
    api.wait_for(id, TaskStatus::Running).await;

    let cancel = api.cancel(id).await;
    let view = api.execution(id).await;
    let again = api.cancel(id).await;

    assert_eq!(cancel.status(), StatusCode::NO_CONTENT);
    assert_eq!(view.status, TaskStatus::Canceled);
    assert_eq!(view.retry_state, RetryState::Canceled);
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    assert!(system.dtp[0].log_text().contains("aborting handler"));
}

#[tokio::test]
async fn an_unbound_task_is_409_and_an_unknown_one_404() {
    let system = System::start().await;
    let api = &system.api;
    let id = api.create(json!({"type": "demo"})).await.id;

    let unbound_view = api.get(&format!("/api/tasks/{id}/execution")).await;
    let unbound_cancel = api.cancel(id).await;
    let unknown_view = api.get("/api/tasks/777777/execution").await;
    let unknown_cancel = api.cancel(777_777).await;

    let not_bound = "Task is not bound to scheduler yet.";
    assert_eq!(
        assert_problem(unbound_view, StatusCode::CONFLICT).await,
        not_bound
    );
    assert_eq!(
        assert_problem(unbound_cancel, StatusCode::CONFLICT).await,
        not_bound
    );
    assert_problem(unknown_view, StatusCode::NOT_FOUND).await;
    assert_problem(unknown_cancel, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_stopped_dtp_is_503_and_the_same_task_is_readable_once_it_is_back() {
    let mut system = System::start().await;
    let id = system.api.create(json!({"type": "demo"})).await.id;
    system.api.bind(id, json!({})).await;
    let before = system.api.wait_for(id, TaskStatus::Succeeded).await;

    system.dtp[0].terminate(Duration::from_secs(10)).await;
    let down = system.api.get(&format!("/api/tasks/{id}/execution")).await;
    let down_cancel = system.api.cancel(id).await;
    system.dtp[0].restart().await;
    let after = system.api.execution(id).await;

    assert_problem(down, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_problem(down_cancel, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(after, before);
}

#[tokio::test]
async fn a_task_survives_its_dtp_process_being_sigkilled_while_another_one_runs() {
    // dtp-0 serves TaskPilot without a worker; dtp-1 and dtp-2 share the queue.
    let mut system = System::start_with(3, true).await;
    let api = system.api.clone();
    let (id, scheduler_task_id) = api
        .submit(
            json!({"type": "demo-slow", "payload": {"ms": 1500}}),
            json!({}),
        )
        .await;
    api.wait_for(id, TaskStatus::Running).await;

    let victim = system.kill_holder_of(scheduler_task_id).await;
    let holder = system.dtp[victim].name().to_owned();
    let view = api.wait_for(id, TaskStatus::Succeeded).await;
    let finisher = system.worker_of(scheduler_task_id).await.expect("claimed");

    assert_ne!(finisher, holder, "finished by the surviving process");
    assert_eq!(view.attempt_count, 2);
    assert_eq!(view.last_error.as_deref(), Some("worker lost"));
}

testkit::scenario_tests!(
    start: System::start().await,
    against: |system: &System| Against { api: system.api.clone(), dtp_pool: system.dtp_pool.clone() },
    scenarios: [
        a_flaky_task_succeeds_on_its_second_attempt,
        a_failing_task_ends_failed_and_exhausted,
        cancel_of_a_succeeded_task_is_409_with_dtps_reason,
        a_bound_task_whose_dtp_row_is_gone_is_404,
    ]
);
