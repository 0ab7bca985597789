//! An operator's actions on one task: retry, run-now, delete, each allowed only in the
//! states it applies to, answering problem JSON otherwise and changing nothing then.

mod support;

use std::time::Duration;

use common::{BulkOutcome, RetryState, TaskStatus, TaskView};
use dtp::queue::{self, TaskId};
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{api_only_with, assert_problem, claim, spawn_app_with, TestApp};
use testkit::Sent;

const LEASE: Duration = Duration::from_secs(30);

/// Sends `method` to `/tasks/{id}{action}`.
async fn act(app: &TestApp, method: Method, id: i64, action: &str) -> reqwest::Response {
    let url = app.url(&format!("/tasks/{id}{action}"));
    app.client.request(method, url).sent().await
}

async fn retry(app: &TestApp, id: i64) -> reqwest::Response {
    act(app, Method::POST, id, "/retry").await
}

/// A task created by `request`, claimed once and failed for good.
async fn failed(app: &TestApp, request: serde_json::Value) -> i64 {
    let id = app.create_id(request).await;
    let fence = claim(&app.pool, "w", 1, LEASE).await[0].fence();
    let failed = queue::mark_failed_or_retry(
        &app.pool,
        TaskId(id),
        fence,
        "boom",
        LEASE,
        queue::Failure::Permanent,
    );
    failed.await.expect("fail").expect("fence held");
    id
}

#[tokio::test]
async fn retry_of_a_failed_task_makes_it_pending_and_due_now_with_one_more_attempt() {
    let app = api_only_with(|_| {}).await;
    let id = failed(&app, json!({"type": "noop", "maxAttempts": 1})).await;

    let response = retry(&app, id).await;

    assert_eq!(response.status(), StatusCode::OK);
    let task: TaskView = response.json().await.expect("task");
    assert_eq!(task.status, TaskStatus::Pending);
    assert_eq!((task.attempt_count, task.max_attempts), (1, 2));
    assert_eq!(task.retry_state, RetryState::RetryScheduled);
    assert_eq!(task.completed_at, None);
    assert_eq!(task.next_attempt_at, None);
    assert_eq!(
        task.last_error.as_deref(),
        Some("boom"),
        "the last error is kept"
    );
    let again = claim(&app.pool, "w", 1, LEASE).await;
    assert_eq!(again.len(), 1, "due now");
    assert_eq!(again[0].attempt_count, 2);
}

#[tokio::test]
async fn retry_of_a_canceled_task_with_attempts_left_keeps_its_max_attempts() {
    let app = api_only_with(|_| {}).await;
    let id = app.create_id(json!({"type": "noop"})).await;
    app.cancel(id).await;

    let response = retry(&app, id).await;

    assert_eq!(response.status(), StatusCode::OK);
    let task: TaskView = response.json().await.expect("task");
    assert_eq!(task.status, TaskStatus::Pending);
    assert_eq!((task.attempt_count, task.max_attempts), (0, 3));
}

#[tokio::test]
async fn retry_is_refused_for_pending_running_and_succeeded_tasks_and_changes_nothing() {
    let app = api_only_with(|_| {}).await;
    let running = app.create_id(json!({"type": "noop"})).await;
    let succeeded = app.create_id(json!({"type": "noop"})).await;
    let claimed = claim(&app.pool, "w", 2, LEASE).await;
    let pending = app.create_id(json!({"type": "noop"})).await;
    let fence_of = |id| claimed.iter().find(|t| t.id == id).map(|t| t.fence());
    let done = (
        TaskId(succeeded),
        fence_of(succeeded).expect("claimed"),
        json!(1),
    );
    queue::mark_succeeded_many(&app.pool, &[done])
        .await
        .expect("succeed");
    let before = app.get_task(pending).await;

    for (id, state) in [
        (pending, TaskStatus::Pending),
        (running, TaskStatus::Running),
        (succeeded, TaskStatus::Succeeded),
    ] {
        let detail = assert_problem(retry(&app, id).await, StatusCode::CONFLICT).await;
        assert_eq!(detail, format!("Cannot retry task in state {state}"));
        assert_eq!(app.get_task(id).await.status, state);
    }
    assert_eq!(app.get_task(pending).await, before);
    assert_problem(retry(&app, 4040).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn retry_of_a_task_that_made_the_most_attempts_a_task_may_have_is_409() {
    let app = api_only_with(|_| {}).await;
    let id = failed(&app, json!({"type": "noop", "maxAttempts": 100})).await;
    app.plant("update tasks set attempt_count = 100 where id = $1", id)
        .await;

    let detail = assert_problem(retry(&app, id).await, StatusCode::CONFLICT).await;

    assert!(detail.contains("most attempts"), "{detail}");
    assert_eq!(app.get_task(id).await.status, TaskStatus::Failed);
}

#[tokio::test]
async fn a_retried_task_runs_again_on_a_worker() {
    let app = spawn_app_with(|_| {}).await;
    let id = app
        .create_id(json!({"type": "demo-fail", "maxAttempts": 1}))
        .await;
    app.wait_for(id, TaskStatus::Failed).await;

    assert_eq!(retry(&app, id).await.status(), StatusCode::OK);

    let failed_again = app.wait_for(id, TaskStatus::Failed).await;
    assert_eq!(
        (failed_again.attempt_count, failed_again.max_attempts),
        (2, 2)
    );
}

#[tokio::test]
async fn run_now_makes_a_delayed_task_due_now() {
    let app = api_only_with(|_| {}).await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let id = app
        .create_id(json!({"type": "noop", "runAt": later.to_rfc3339()}))
        .await;
    assert!(
        claim(&app.pool, "w", 1, LEASE).await.is_empty(),
        "not due yet"
    );

    let response = act(&app, Method::POST, id, "/run-now").await;

    assert_eq!(response.status(), StatusCode::OK);
    let task: TaskView = response.json().await.expect("task");
    assert!(task.scheduled_for < later, "first due now: {task:?}");
    assert_eq!(claim(&app.pool, "w", 1, LEASE).await.len(), 1);
}

#[tokio::test]
async fn run_now_of_a_task_that_is_not_pending_is_409_and_of_an_unknown_one_404() {
    let app = api_only_with(|_| {}).await;
    let id = app.create_id(json!({"type": "noop"})).await;
    claim(&app.pool, "w", 1, LEASE).await;

    let running = act(&app, Method::POST, id, "/run-now").await;
    let unknown = act(&app, Method::POST, 4040, "/run-now").await;

    let detail = assert_problem(running, StatusCode::CONFLICT).await;
    assert_eq!(detail, "Cannot run-now task in state RUNNING");
    assert_problem(unknown, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn delete_removes_a_finished_task_and_refuses_one_that_may_still_run() {
    let app = api_only_with(|_| {}).await;
    let finished = app.create_id(json!({"type": "noop"})).await;
    app.cancel(finished).await;
    let pending = app.create_id(json!({"type": "noop"})).await;

    let deleted = act(&app, Method::DELETE, finished, "").await;
    let refused = act(&app, Method::DELETE, pending, "").await;
    let unknown = act(&app, Method::DELETE, 4040, "").await;

    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = app
        .client
        .get(app.url(&format!("/tasks/{finished}")))
        .sent();
    assert_problem(gone.await, StatusCode::NOT_FOUND).await;
    let detail = assert_problem(refused, StatusCode::CONFLICT).await;
    assert_eq!(detail, "Cannot delete task in state PENDING");
    assert_eq!(app.get_task(pending).await.status, TaskStatus::Pending);
    assert_problem(unknown, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_task_canceled_while_running_is_retried_only_a_lease_after_its_cancel() {
    let app = api_only_with(|c| c.lease_ms = 60_000).await;
    let id = app.create_id(json!({"type": "noop"})).await;
    claim(&app.pool, "w", 1, LEASE).await;
    app.cancel(id).await;

    let retried = retry(&app, id).await;
    let claimed_after_retry = claim(&app.pool, "w", 1, LEASE).await;
    let brought_forward = act(&app, Method::POST, id, "/run-now").await;
    let claimed_after_run_now = claim(&app.pool, "w", 1, LEASE).await;

    assert_eq!(retried.status(), StatusCode::OK);
    assert_eq!(brought_forward.status(), StatusCode::OK);
    assert_eq!(app.get_task(id).await.status, TaskStatus::Pending);
    assert!(
        claimed_after_retry.is_empty(),
        "its canceled attempt may still run"
    );
    assert!(
        claimed_after_run_now.is_empty(),
        "run-now does not bring it forward either"
    );
}

#[tokio::test]
async fn run_now_makes_a_retry_waiting_for_its_backoff_due_now() {
    let app = api_only_with(|_| {}).await;
    let id = app.create_id(json!({"type": "noop"})).await;
    let fence = claim(&app.pool, "w", 1, LEASE).await[0].fence();
    let hour = Duration::from_secs(3600);
    let failed = queue::mark_failed_or_retry(
        &app.pool,
        TaskId(id),
        fence,
        "boom",
        hour,
        queue::Failure::Retryable,
    );
    failed.await.expect("fail").expect("fence held");
    assert!(app.get_task(id).await.next_attempt_at.is_some());

    let response = act(&app, Method::POST, id, "/run-now").await;

    let task: TaskView = response.json().await.expect("task");
    assert_eq!(task.next_attempt_at, None);
    assert_eq!(task.retry_state, RetryState::RetryScheduled);
    assert_eq!(claim(&app.pool, "w", 1, LEASE).await.len(), 1);
}

#[tokio::test]
async fn delete_is_allowed_in_every_terminal_state_and_refused_while_running() {
    let app = api_only_with(|_| {}).await;
    let succeeded = app.create_id(json!({"type": "noop"})).await;
    let fence = claim(&app.pool, "w", 1, LEASE).await[0].fence();
    let done = [(TaskId(succeeded), fence, json!(1))];
    queue::mark_succeeded_many(&app.pool, &done)
        .await
        .expect("succeed");
    let failed = failed(&app, json!({"type": "noop", "maxAttempts": 1})).await;
    let running = app.create_id(json!({"type": "noop"})).await;
    claim(&app.pool, "w", 1, LEASE).await;

    for id in [succeeded, failed] {
        let deleted = act(&app, Method::DELETE, id, "").await;
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT, "task {id}");
    }
    let refused = act(&app, Method::DELETE, running, "").await;

    let detail = assert_problem(refused, StatusCode::CONFLICT).await;
    assert_eq!(detail, "Cannot delete task in state RUNNING");
    assert_eq!(app.count_tasks().await, 1);
}

async fn bulk(app: &TestApp, body: serde_json::Value) -> reqwest::Response {
    app.client
        .post(app.url("/tasks/bulk"))
        .json(&body)
        .sent()
        .await
}

#[tokio::test]
async fn bulk_cancel_cancels_the_matching_pending_and_running_tasks_only() {
    let app = api_only_with(|_| {}).await;
    let finished = failed(
        &app,
        json!({"type": "noop", "queue": "mail", "maxAttempts": 1}),
    )
    .await;
    let running = app
        .create_id(json!({"type": "noop", "queue": "mail"}))
        .await;
    claim(&app.pool, "w", 1, LEASE).await;
    let pending = app
        .create_id(json!({"type": "noop", "queue": "mail"}))
        .await;
    let elsewhere = app
        .create_id(json!({"type": "noop", "queue": "other"}))
        .await;

    let response = bulk(
        &app,
        json!({"action": "cancel", "filter": {"queue": "mail"}}),
    )
    .await;

    assert_eq!(response.status(), StatusCode::OK);
    let outcome: BulkOutcome = response.json().await.expect("outcome");
    assert_eq!((outcome.matched, outcome.changed), (3, 2));
    for (id, state) in [
        (running, TaskStatus::Canceled),
        (pending, TaskStatus::Canceled),
        (finished, TaskStatus::Failed),
        (elsewhere, TaskStatus::Pending),
    ] {
        assert_eq!(app.get_task(id).await.status, state, "task {id}");
    }
}

#[tokio::test]
async fn bulk_retry_by_last_error_and_bulk_delete_by_status() {
    let app = api_only_with(|_| {}).await;
    let boom = failed(&app, json!({"type": "noop", "maxAttempts": 1})).await;
    let other = app.create_id(json!({"type": "noop"})).await;
    let fence = claim(&app.pool, "w", 1, LEASE).await[0].fence();
    let failed = queue::mark_failed_or_retry(
        &app.pool,
        TaskId(other),
        fence,
        "quiet",
        LEASE,
        queue::Failure::Permanent,
    );
    failed.await.expect("fail").expect("fence held");

    let retried = bulk(
        &app,
        json!({"action": "retry", "filter": {"lastErrorContains": "oo"}}),
    );
    let outcome: BulkOutcome = retried.await.json().await.expect("outcome");
    let page: common::TaskPage = app.get_ok("/tasks?lastErrorContains=qui").await;
    let deleted = bulk(
        &app,
        json!({"action": "delete", "filter": {"status": "FAILED"}}),
    );
    let deleted: BulkOutcome = deleted.await.json().await.expect("outcome");

    assert_eq!((outcome.matched, outcome.changed), (1, 1));
    assert_eq!(app.get_task(boom).await.status, TaskStatus::Pending);
    assert_eq!(
        page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![other]
    );
    assert_eq!((deleted.matched, deleted.changed), (1, 1));
    assert_eq!(app.count_tasks().await, 1);
}

#[tokio::test]
async fn a_bulk_action_without_a_filter_or_with_a_bad_one_is_422_and_changes_nothing() {
    let app = api_only_with(|_| {}).await;
    let id = app.create_id(json!({"type": "noop"})).await;

    for body in [
        json!({"action": "cancel", "filter": {}}),
        json!({"action": "cancel", "filter": {"all": false}}),
        json!({"action": "cancel", "filter": {"queue": "two words"}}),
        json!({"action": "cancel", "filter": {"lastErrorContains": ""}}),
        json!({"action": "cancel", "filter": {"colour": "red"}}),
        json!({"action": "explode", "filter": {"all": true}}),
        json!({"action": "cancel"}),
    ] {
        let refused = bulk(&app, body.clone()).await;
        assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    assert_eq!(app.get_task(id).await.status, TaskStatus::Pending);

    let everything = bulk(&app, json!({"action": "cancel", "filter": {"all": true}})).await;
    let outcome: BulkOutcome = everything.json().await.expect("outcome");
    assert_eq!((outcome.matched, outcome.changed), (1, 1));
}

#[tokio::test]
async fn exact_error_and_creation_time_filter_the_list_and_a_bulk_action_alike() {
    let app = api_only_with(|_| {}).await;
    let mut ids = Vec::new();
    for error in ["boom", "boom and more"] {
        let id = app
            .create_id(json!({"type": "noop", "maxAttempts": 1}))
            .await;
        let fence = claim(&app.pool, "w", 1, LEASE).await[0].fence();
        let failed = queue::mark_failed_or_retry(
            &app.pool,
            TaskId(id),
            fence,
            error,
            LEASE,
            queue::Failure::Permanent,
        );
        failed.await.expect("fail").expect("fence held");
        ids.push(id);
    }
    let (exact, longer) = (ids[0], ids[1]);
    sqlx::query("update tasks set created_at = '2026-01-01T00:00:00Z' where id = $1")
        .bind(exact)
        .execute(&app.pool)
        .await
        .expect("backdated");

    let ids_of = |page: common::TaskPage| page.tasks.iter().map(|t| t.id).collect::<Vec<_>>();
    let page = app.get_ok("/tasks?lastError=boom").await;
    assert_eq!(ids_of(page), vec![exact], "exact, not contained");
    let page = app.get_ok("/tasks?lastErrorContains=boom").await;
    assert_eq!(ids_of(page), vec![longer, exact]);
    let page = app
        .get_ok("/tasks?createdBefore=2026-06-01T00:00:00Z")
        .await;
    assert_eq!(ids_of(page), vec![exact]);
    // Without an offset (a browser's datetime-local), UTC.
    let page = app.get_ok("/tasks?createdAfter=2026-06-01T00:00").await;
    assert_eq!(ids_of(page), vec![longer]);
    let refused = app
        .client
        .get(app.url("/tasks?createdAfter=yesterday"))
        .sent()
        .await;
    assert_problem(refused, StatusCode::BAD_REQUEST).await;

    let refused = bulk(
        &app,
        json!({"action": "delete", "filter": {"lastError": ""}}),
    )
    .await;
    assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    let retried = bulk(
        &app,
        json!({"action": "retry", "filter": {"lastError": "boom"}}),
    )
    .await;
    let outcome: BulkOutcome = retried.json().await.expect("outcome");
    assert_eq!((outcome.matched, outcome.changed), (1, 1));
    assert_eq!(app.get_task(exact).await.status, TaskStatus::Pending);
    assert_eq!(app.get_task(longer).await.status, TaskStatus::Failed);
    let deleted = bulk(
        &app,
        json!({"action": "delete", "filter": {"createdAfter": "2026-06-01T00:00:00Z"}}),
    )
    .await;
    let outcome: BulkOutcome = deleted.json().await.expect("outcome");
    assert_eq!((outcome.matched, outcome.changed), (1, 1));
    assert_eq!(app.count_tasks().await, 1);
}
