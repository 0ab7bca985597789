//! The worker against a real PostgreSQL: every transition of the state machine, retries,
//! timeouts, cancel of running tasks, exclusivity across workers, rescue and shutdown.

mod support;

use std::time::Duration;
use testkit::Sent;

use common::{RetryState, TaskStatus};
use dtp::queue::{self, TaskId};
use dtp::worker::Rescuer;
use reqwest::StatusCode;
use serde_json::json;
use support::{
    api_only_with, claim, forget_claim, spawn_app, spawn_app_with, wait_for_status,
    wait_until_all_terminal, worker_for,
};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_demo_task_runs_to_succeeded_with_its_payload_as_result() {
    let app = spawn_app().await;
    let id = app
        .create_id(json!({"type": "demo", "payload": "hello"}))
        .await;

    let task = app.wait_for(id, TaskStatus::Succeeded).await;

    assert_eq!(task.result, Some(json!("hello")));
    assert_eq!(task.attempt_count, 1);
    assert_eq!(task.retry_state, RetryState::Completed);
    assert!(task.worker_id.is_some());
    let started = task.processing_started_at.expect("started");
    let completed = task.completed_at.expect("completed");
    assert!(task.scheduled_for <= started && started <= completed);
    assert!(task.next_attempt_at.is_none() && task.last_error.is_none());
}

#[tokio::test]
async fn a_noop_task_succeeds() {
    let app = spawn_app().await;
    let id = app.create(json!({"type": "noop"})).await.id;
    let task = app.wait_for(id, TaskStatus::Succeeded).await;
    assert_eq!(task.result.unwrap_or_default(), json!(null));
}

#[tokio::test]
async fn demo_flaky_succeeds_on_its_second_attempt() {
    let app = spawn_app().await;
    let id = app.create(json!({"type": "demo-flaky"})).await.id;

    let task = app.wait_for(id, TaskStatus::Succeeded).await;

    assert_eq!(task.attempt_count, 2);
    assert_eq!(task.retry_state, RetryState::Completed);
    assert!(task
        .last_error
        .expect("first failure kept")
        .contains("demo-flaky"));
}

#[tokio::test]
async fn demo_fail_uses_every_attempt_then_is_failed_and_exhausted() {
    let app = spawn_app().await;
    let id = app
        .create_id(json!({"type": "demo-fail", "maxAttempts": 3}))
        .await;

    let task = app.wait_for(id, TaskStatus::Failed).await;

    assert_eq!(task.attempt_count, 3);
    assert_eq!(task.retry_state, RetryState::Exhausted);
    assert!(task.completed_at.is_some());
    assert!(task.next_attempt_at.is_none());
    assert!(task.last_error.expect("error").contains("attempt 3"));
}

#[tokio::test]
async fn a_failed_attempt_schedules_a_retry_after_its_backoff() {
    let app = api_only_with(|_| {}).await;
    // Base and cap both large: with full jitter, the fast settings' 100 ms cap made the delay
    // shorter than the time between the two claims now and then.
    let worker = worker_for(&app, "w1", |c| {
        c.backoff_base_ms = 600_000;
        c.backoff_cap_ms = 600_000;
    });
    let id = app
        .create_id(json!({"type": "demo-fail", "maxAttempts": 3}))
        .await;

    assert_eq!(worker.run_once().await.expect("ran"), 1);
    let task = app.get_task(id).await;
    let claimed_again = worker.run_once().await.expect("ran");

    assert_eq!(task.status, TaskStatus::Pending);
    assert_eq!(task.retry_state, RetryState::RetryScheduled);
    assert_eq!(task.attempt_count, 1);
    let next = task.next_attempt_at.expect("retry scheduled");
    let failed_at = task.updated_at;
    assert!(next >= failed_at && next <= failed_at + chrono::Duration::minutes(10));
    assert!(task.last_error.is_some());
    assert!(task.completed_at.is_none());
    assert_eq!(
        claimed_again, 0,
        "a retry is not claimed before its backoff"
    );
}

#[tokio::test]
async fn a_running_retry_is_shown_as_retrying() {
    let app = api_only_with(|_| {}).await;
    let id = app.create(json!({"type": "demo-fail"})).await.id;
    let lease = Duration::from_secs(30);
    let first = claim(&app.pool, "w", 1, lease).await;
    queue::mark_failed_or_retry(
        &app.pool,
        TaskId(id),
        first[0].fence(),
        "x",
        Duration::ZERO,
        queue::Failure::Retryable,
    )
    .await
    .expect("fail")
    .expect("fence held");

    let second = claim(&app.pool, "w", 1, lease).await;
    let task = app.get_task(id).await;

    assert_eq!(second[0].attempt_count, 2);
    assert_eq!(task.status, TaskStatus::Running);
    assert_eq!(task.retry_state, RetryState::Retrying);
    assert!(task.next_attempt_at.is_none());
}

#[tokio::test]
async fn a_permanent_error_fails_the_task_without_retrying() {
    let app = spawn_app().await;
    let id = app
        .create_id(
            json!({"type": "http", "payload": {"url": "file:///etc/passwd"}, "maxAttempts": 5}),
        )
        .await;

    let task = app.wait_for(id, TaskStatus::Failed).await;

    assert_eq!(task.attempt_count, 1);
    assert!(task.last_error.expect("error").contains("scheme"));
}

#[tokio::test]
async fn a_handler_that_overruns_its_timeout_fails_its_attempt() {
    let app = spawn_app().await;
    let id = app.create_id(json!({"type": "demo-slow", "payload": {"ms": 60_000}, "timeoutMs": 100, "maxAttempts": 1})).await;

    let task = app.wait_for(id, TaskStatus::Failed).await;

    assert_eq!(task.last_error.as_deref(), Some("timed out after 100 ms"));
}

#[tokio::test]
async fn a_panicking_handler_fails_its_attempt_and_the_worker_carries_on() {
    let app = spawn_app().await;
    let panicking = app
        .create_id(json!({"type": "panic", "maxAttempts": 1}))
        .await;
    let next = app.create(json!({"type": "noop"})).await.id;

    let task = app.wait_for(panicking, TaskStatus::Failed).await;
    app.wait_for(next, TaskStatus::Succeeded).await;

    assert!(task.last_error.expect("error").contains("panicked"));
}

#[tokio::test]
async fn cancel_of_a_running_task_aborts_its_handler_and_it_stays_canceled() {
    // Heartbeats too rare to matter: the abort must come from the cancel notification.
    let app = spawn_app_with(|c| {
        c.lease_ms = 1_200_000;
        c.heartbeat_ms = Some(600_000);
    })
    .await;
    let id = app
        .create_id(json!({"type": "probe-slow", "payload": {"ms": 1500}}))
        .await;
    wait_for_status(&app.pool, id, TaskStatus::Running).await;

    let response = app.cancel(id).await;

    assert_eq!(response.status(), StatusCode::OK);
    let canceled: common::TaskView = response.json().await.expect("task");
    assert_eq!(canceled.status, TaskStatus::Canceled);
    wait_until(|| app.probes.was_aborted(id)).await;
    // Past the moment the handler would have finished: nothing overwrote the cancel.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let task = app.get_task(id).await;
    assert_eq!(task.status, TaskStatus::Canceled);
    assert_eq!(task.result, None);
    assert_eq!(task.completed_at, canceled.completed_at);
}

#[tokio::test]
async fn a_worker_that_misses_the_cancel_notification_learns_it_from_lease_renewal() {
    let app = spawn_app().await;
    let id = app.create(json!({"type": "probe-slow"})).await.id;
    wait_for_status(&app.pool, id, TaskStatus::Running).await;

    // Cancel behind the worker's back: no notification is sent.
    sqlx::query(
        "update tasks set status = 'CANCELED', completed_at = now(), lease_expires_at = null where id = $1",
    )
    .bind(id)
    .execute(&app.pool)
    .await
    .expect("update");

    wait_until(|| app.probes.was_aborted(id)).await;
    assert_eq!(app.get_task(id).await.status, TaskStatus::Canceled);
}

#[tokio::test]
async fn an_idle_worker_is_woken_by_notification_without_polling() {
    let app = spawn_app_with(|c| c.poll_interval_ms = 600_000).await;
    // Let the worker run its start-up claim and go idle.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let id = app.create(json!({"type": "noop"})).await.id;

    app.wait_for(id, TaskStatus::Succeeded).await;
}

#[tokio::test]
async fn several_workers_run_each_of_thousands_of_tasks_exactly_once() {
    let app = api_only_with(|_| {}).await;
    let total = 3000;
    sqlx::query(
        "insert into tasks (type, payload, max_attempts, scheduled_for, run_at) \
         select 'count', '{}', 3, now(), now() from generate_series(1, $1)",
    )
    .bind(total)
    .execute(&app.pool)
    .await
    .expect("bulk insert");
    let stop = CancellationToken::new();
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let worker = worker_for(&app, &format!("worker-{i}"), |c| c.concurrency = 8);
            tokio::spawn(worker.run(stop.clone()))
        })
        .collect();

    wait_until_all_terminal(&app.pool).await;
    stop.cancel();
    for worker in workers {
        worker.await.expect("worker stopped");
    }

    let succeeded: i64 = sqlx::query_scalar(
        "select count(*) from tasks where status = 'SUCCEEDED' and attempt_count = 1",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    let workers_used: i64 = sqlx::query_scalar("select count(distinct worker_id) from tasks")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    let runs = app.probes.runs.lock().expect("probe lock").clone();
    let outcomes: Vec<(String, i32, Option<String>, i64)> = sqlx::query_as(
        "select status, attempt_count, last_error, count(*) from tasks group by 1, 2, 3 order by 4 desc",
    )
    .fetch_all(&app.pool)
    .await
    .expect("outcomes");
    assert_eq!(succeeded, i64::from(total), "outcomes: {outcomes:?}");
    assert_eq!(runs.len(), usize::try_from(total).expect("fits"));
    assert!(runs.values().all(|&n| n == 1), "some task ran twice");
    assert!(workers_used > 1, "work was not shared");
}

#[tokio::test]
async fn a_cancel_answered_200_always_ends_canceled_whatever_the_handler_did() {
    let app = spawn_app().await;
    let mut races = Vec::new();
    for i in 0..300u64 {
        let id = app
            .create_id(json!({"type": "count", "payload": {"ms": i % 4}}))
            .await;
        let (client, url) = (app.client.clone(), app.url(&format!("/tasks/{id}/cancel")));
        races.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i % 6)).await;
            let status = client.put(url).sent().await.status();
            (id, status)
        }));
    }
    let mut outcomes = Vec::new();
    for race in races {
        outcomes.push(race.await.expect("joined"));
    }

    wait_until_all_terminal(&app.pool).await;
    let (mut canceled, mut too_late) = (0, 0);
    for (id, answer) in outcomes {
        let task = app.get_task(id).await;
        match answer {
            StatusCode::OK => {
                canceled += 1;
                assert_eq!(task.status, TaskStatus::Canceled, "task {id} answered 200");
            }
            StatusCode::CONFLICT => {
                too_late += 1;
                assert_eq!(task.status, TaskStatus::Succeeded, "task {id} answered 409");
            }
            other => panic!("unexpected cancel answer {other}"),
        }
    }
    println!("{canceled} canceled, {too_late} finished first");
}

#[tokio::test]
async fn a_task_whose_worker_stopped_renewing_is_rescued_and_finished_by_another() {
    let app = api_only_with(|_| {}).await;
    let id = app.create(json!({"type": "count"})).await.id;
    // A worker claims it and dies (as if SIGKILLed): it never renews, never completes.
    let dead = claim(&app.pool, "dead-worker", 1, Duration::from_millis(300)).await;
    assert_eq!(dead.len(), 1);
    let stop = CancellationToken::new();
    let live = tokio::spawn(worker_for(&app, "live-worker", |_| {}).run(stop.clone()));

    let task = app.wait_for(id, TaskStatus::Succeeded).await;
    stop.cancel();
    live.await.expect("worker stopped");

    assert_eq!(task.attempt_count, 2);
    assert_eq!(task.last_error.as_deref(), Some("worker lost"));
    assert_eq!(task.worker_id.as_deref(), Some("live-worker"));
    assert_eq!(app.probes.runs_of(id), 1);

    // The dead worker comes back and reports its stale attempt: nothing changes.
    let stale = TaskId(id);
    let attempt = dead[0].fence();
    assert!(
        !queue::mark_succeeded(&app.pool, stale, attempt, &json!("stale"))
            .await
            .expect("query")
    );
    assert!(queue::mark_failed_or_retry(
        &app.pool,
        stale,
        attempt,
        "stale",
        Duration::ZERO,
        queue::Failure::Retryable
    )
    .await
    .expect("query")
    .is_none());
    assert!(!queue::release(&app.pool, stale, attempt)
        .await
        .expect("query"));
    let after = app.get_task(id).await;
    assert_eq!(after.status, TaskStatus::Succeeded);
    assert_eq!(after.result, task.result);
    assert_eq!(after.updated_at, task.updated_at);
}

#[tokio::test]
async fn a_lost_last_attempt_fails_the_task_with_worker_lost() {
    // The service's own rescuer stays out of the way (its first round comes before it has been
    // connected for a lease, its next in ten minutes).
    let app = api_only_with(|c| c.rescue_interval_ms = 600_000).await;
    let id = app
        .create_id(json!({"type": "noop", "maxAttempts": 1}))
        .await;
    claim(&app.pool, "dead-worker", 1, Duration::from_millis(50)).await;
    let mut rescuer = Rescuer::new(&app.pool, &support::worker_config(&app, "rescuer", |_| {}));

    tokio::time::sleep(Duration::from_millis(200)).await;
    let rescued = rescuer.rescue_once().await.expect("rescue");

    let task = app.get_task(id).await;
    assert_eq!(rescued, 1);
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.retry_state, RetryState::Exhausted);
    assert_eq!(task.last_error.as_deref(), Some("worker lost"));
}

#[tokio::test]
async fn a_live_lease_is_not_rescued() {
    let app = api_only_with(|_| {}).await;
    let id = app.create(json!({"type": "noop"})).await.id;
    claim(&app.pool, "busy-worker", 1, Duration::from_secs(60)).await;

    let rescued = Rescuer::new(&app.pool, &support::worker_config(&app, "rescuer", |_| {}))
        .rescue_once()
        .await
        .expect("rescue");

    assert_eq!(rescued, 0);
    assert_eq!(app.get_task(id).await.status, TaskStatus::Running);
}

#[tokio::test]
async fn shutdown_lets_short_handlers_finish_within_the_grace_period() {
    let app = api_only_with(|_| {}).await;
    let worker = worker_for(&app, "w", |c| c.shutdown_grace_ms = 10_000);
    let id = app
        .create_id(json!({"type": "probe-slow", "payload": {"ms": 300}}))
        .await;
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));
    wait_for_status(&app.pool, id, TaskStatus::Running).await;

    stop.cancel();
    running.await.expect("worker stopped");

    assert_eq!(app.get_task(id).await.status, TaskStatus::Succeeded);
}

#[tokio::test]
async fn shutdown_hands_unfinished_tasks_back_to_the_queue_after_the_grace_period() {
    let app = api_only_with(|_| {}).await;
    let worker = worker_for(&app, "w", |c| c.shutdown_grace_ms = 100);
    let id = app.create(json!({"type": "probe-slow"})).await.id;
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));
    wait_for_status(&app.pool, id, TaskStatus::Running).await;

    stop.cancel();
    running.await.expect("worker stopped");

    let task = app.get_task(id).await;
    assert_eq!(task.status, TaskStatus::Pending);
    assert_eq!(
        task.attempt_count, 0,
        "an interrupted attempt is not counted"
    );
    assert!(task.processing_started_at.is_none());
    assert!(app.probes.was_aborted(id));
    let claimed = claim(&app.pool, "next", 1, Duration::from_secs(5)).await;
    assert_eq!(claimed.len(), 1, "handed back at once, not after a backoff");
}

/// Polls a condition with a generous bound (a hang guard, not a timing goal).
async fn wait_until(condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_worker_whose_claim_the_database_lost_stops_once_the_task_is_claimed_again() {
    let app = spawn_app().await;
    let id = app.create(json!({"type": "probe-slow"})).await.id;
    wait_for_status(&app.pool, id, TaskStatus::Running).await;

    // The database crashes and comes back without the claim; another worker claims the task
    // under the same attempt number before the first worker hears of anything.
    let mut tx = app.pool.begin().await.expect("transaction");
    forget_claim(&mut tx, id).await;
    let types = support::test_types();
    let again = queue::Claim::new("other-worker", &types, 1, Duration::from_secs(30));
    let next = queue::claim_available(&mut tx, &again)
        .await
        .expect("claim")
        .tasks
        .remove(0);
    tx.commit().await.expect("commit");
    assert_eq!(next.attempt_count, 1);

    // Its lease renewal no longer matches: the first worker aborts its handler.
    wait_until(|| app.probes.was_aborted(id)).await;
    let task = app.get_task(id).await;
    assert_eq!(task.status, TaskStatus::Running);
    assert_eq!(task.worker_id.as_deref(), Some("other-worker"));
    assert!(
        queue::mark_succeeded(&app.pool, TaskId(id), next.fence(), &json!("done"))
            .await
            .expect("query")
    );
}

#[tokio::test]
async fn a_batch_wakes_an_idle_worker_and_every_task_runs_once() {
    let app = spawn_app_with(|c| c.poll_interval_ms = 600_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let batch: serde_json::Value = (0..200).map(|_| json!({"type": "count"})).collect();

    let response = app.post_batch(&batch).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    wait_until_all_terminal(&app.pool).await;

    let runs = app.probes.runs.lock().expect("probe lock").clone();
    assert_eq!(runs.len(), 200);
    assert!(runs.values().all(|&n| n == 1));
}
