//! Faults inside one worker that must not break the Guarantees: outcomes the database cannot
//! store, a claim the same worker takes twice, a worker cut off from the database, a claim
//! whose answer is lost, tasks of types a process cannot run, targets that answer without end,
//! and outcomes that cannot be written while claims can.

mod support;

use std::time::Duration;

use common::TaskStatus;
use dtp::handlers::{HandlerRegistry, HttpHandler};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{
    api_only_with, forget_claim, spawn_app_with, wait_for_status, wait_until_all_terminal, PATIENCE,
};
use testkit::{address_of, answering_peer, BodyEnd, FaultyProxy};
use tokio_util::sync::CancellationToken;

async fn status_of(pool: &sqlx::PgPool, id: i64) -> String {
    sqlx::query_scalar("select status from tasks where id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("task exists")
}

/// Polls a condition with a generous bound (a hang guard, not a timing goal).
async fn eventually(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn results_holding_nul_are_stored_cleaned_and_the_rest_of_their_batch_succeeds() {
    let app = spawn_app_with(|_| {}).await;
    let mut batch: Vec<Value> = (0..300)
        .map(|_| json!({"type": "noop", "maxAttempts": 1}))
        .collect();
    for i in 0..6 {
        batch.insert(i * 50, json!({"type": "nul-result", "maxAttempts": 1}));
    }

    let response = app.post_batch(&Value::Array(batch)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    wait_until_all_terminal(&app.pool).await;

    type Outcome = (String, String, i32, Option<String>, Option<Value>);
    let rows: Vec<Outcome> = sqlx::query_as(
        "select type, status, attempt_count, last_error, result from tasks order by id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("tasks");
    assert_eq!(rows.len(), 306);
    for (task_type, status, attempts, last_error, result) in rows {
        assert_eq!(
            (status.as_str(), attempts, last_error.as_deref()),
            ("SUCCEEDED", 1, None),
            "a {task_type} task"
        );
        if task_type == "nul-result" {
            assert_eq!(
                result,
                Some(json!({"text": "a\u{fffd}b", "k\u{fffd}ey": ["\u{fffd}"]})),
                "NUL is replaced by U+FFFD"
            );
        }
    }
}

#[tokio::test]
async fn an_error_holding_nul_is_stored_cleaned() {
    let app = spawn_app_with(|_| {}).await;
    let id = app.create(json!({"type": "nul-error"})).await.id;

    let task = app.wait_for(id, TaskStatus::Failed).await;

    assert_eq!(task.last_error.as_deref(), Some("bad\u{fffd}byte"));
    assert_eq!(task.attempt_count, 1, "a permanent error is not retried");
}

#[tokio::test]
async fn a_stale_attempt_reclaimed_by_the_same_worker_is_aborted_and_the_new_one_keeps_its_lease() {
    let app = spawn_app_with(|_| {}).await;
    let id = app
        .create_id(json!({"type": "probe-slow", "payload": {"ms": 2500}, "maxAttempts": 1}))
        .await;
    wait_for_status(&app.pool, id, TaskStatus::Running).await;

    // The database loses the claim (a crash before its commit reached the disk); the same worker
    // claims the task again while its first run still goes on.
    let mut conn = app.pool.acquire().await.expect("connection");
    forget_claim(&mut conn, id).await;
    drop(conn);

    // The first run is stopped; the second runs to the end under a lease it keeps renewing.
    let task = app.wait_for(id, TaskStatus::Succeeded).await;
    assert!(app.probes.was_aborted(id), "the stale run was stopped");
    assert_eq!(task.attempt_count, 1);
    assert_eq!(task.last_error, None, "the live attempt was never rescued");
}

/// A worker named `id` whose every connection goes through a [`FaultyProxy`] (the service beside
/// it, API and rescuer, reaches the database directly); it runs until the token is canceled.
async fn worker_behind_proxy(
    app: &support::TestApp,
    id: &str,
    tweak: impl FnOnce(&mut dtp::Config),
) -> (FaultyProxy, CancellationToken, tokio::task::JoinHandle<()>) {
    let proxy = FaultyProxy::start(&address_of(&app.db.url)).await;
    let pool = sqlx::PgPool::connect(&proxy.url_for(&app.db.url))
        .await
        .expect("pool through the proxy");
    let worker = dtp::worker::Worker::new(
        pool,
        support::test_registry(&app.probes),
        support::worker_config(app, id, tweak),
    );
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));
    (proxy, stop, running)
}

#[tokio::test]
async fn a_worker_cut_off_from_the_database_stops_its_handlers_before_its_task_is_rescued() {
    let app = api_only_with(|_| {}).await;
    let (proxy, stop, running) = worker_behind_proxy(&app, "cut-off", |_| {}).await;
    let id = app
        .create_id(json!({"type": "probe-slow", "payload": {"ms": 60000}, "maxAttempts": 1}))
        .await;
    wait_for_status(&app.pool, id, TaskStatus::Running).await;

    proxy.partition(true);
    // The rescuer finds the lease expired and fails the attempt ("worker lost"): by then the
    // worker, which could not renew, must have stopped the handler itself.
    let rescued = app.wait_for(id, TaskStatus::Failed).await;
    proxy.partition(false);
    stop.cancel();
    running.await.expect("worker stopped");

    assert_eq!(rescued.last_error.as_deref(), Some("worker lost"));
    let stopped = app.probes.aborted_at(id).expect("the handler was stopped");
    let rescued_at = rescued.completed_at.expect("terminal");
    assert!(
        stopped < rescued_at,
        "the handler ran until {stopped}, after its task was rescued at {rescued_at}"
    );
}

#[tokio::test]
async fn run_once_does_not_wait_past_the_lease_for_a_success_it_cannot_write() {
    let app = api_only_with(|_| {}).await;
    let proxy = FaultyProxy::start(&address_of(&app.db.url)).await;
    let pool = sqlx::PgPool::connect(&proxy.url_for(&app.db.url))
        .await
        .expect("pool through the proxy");
    let config = support::worker_config(&app, "once", |_| {});
    let worker = dtp::worker::Worker::new(pool, support::test_registry(&app.probes), config);
    let id = app
        .create_id(json!({"type": "count", "payload": {"ms": 1500}}))
        .await;
    let once = tokio::spawn(async move { worker.run_once().await });
    wait_for_status(&app.pool, id, TaskStatus::Running).await;

    // The handler succeeds while the database is out of reach, and stays so.
    proxy.partition(true);
    let returned = tokio::time::timeout(PATIENCE, once).await;
    proxy.partition(false);

    let claimed = returned.expect("run_once returned while the database was unreachable");
    assert_eq!(claimed.expect("joined").expect("claimed"), 1);
    assert_eq!(app.probes.runs_of(id), 1);
    assert_ne!(app.get_task(id).await.status, TaskStatus::Succeeded);
}

#[tokio::test]
async fn a_claim_whose_answer_was_lost_is_released_without_using_an_attempt() {
    let app = api_only_with(|_| {}).await;
    let (proxy, stop, running) =
        worker_behind_proxy(&app, "unlucky", |c| c.poll_interval_ms = 60_000).await;
    // A first task prepares the claim statement on the worker's connection; then a
    // notification naming no queue makes it read the queues again, so that the claim below is
    // the first statement it sends (it reads them at most every half second).
    let first = app.create_id(json!({"type": "count"})).await;
    wait_for_status(&app.pool, first, TaskStatus::Succeeded).await;
    sqlx::query("select pg_notify('dtp_task_available', '')")
        .execute(&app.pool)
        .await
        .expect("notify");
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The claim reaches the database and commits; its answer never comes back.
    proxy.cut_after_request(true);
    let id = app
        .create_id(json!({"type": "count", "maxAttempts": 1}))
        .await;
    wait_for_status(&app.pool, id, TaskStatus::Running).await;
    proxy.cut_after_request(false);

    let task = app.wait_for(id, TaskStatus::Succeeded).await;
    stop.cancel();
    running.await.expect("worker stopped");
    assert_eq!(task.attempt_count, 1, "the lost claim did not count");
    assert_eq!(task.last_error, None);
    assert_eq!(app.probes.runs_of(id), 1);
}

#[tokio::test]
async fn a_worker_claims_only_the_types_it_has_handlers_for() {
    // The service knows `count`; the worker beside it only has the built-ins.
    let app = api_only_with(|_| {}).await;
    let foreign = app.create(json!({"type": "count"})).await.id;
    let stop = CancellationToken::new();
    let config = support::worker_config(&app, "builtins-only", |_| {});
    let worker =
        dtp::worker::Worker::new(app.pool.clone(), HandlerRegistry::with_builtins(), config);
    let running = tokio::spawn(worker.run(stop.clone()));

    let own = app.create(json!({"type": "noop"})).await.id;
    app.wait_for(own, TaskStatus::Succeeded).await;
    let foreign_status = status_of(&app.pool, foreign).await;
    stop.cancel();
    running.await.expect("worker stopped");

    assert_eq!(
        foreign_status, "PENDING",
        "left for a process that can run it"
    );
}

/// A worker with the test handlers and an `http` handler that may call loopback; it stops with
/// the returned guard.
fn spawn_http_worker(app: &support::TestApp) -> tokio_util::sync::DropGuard {
    let registry = support::test_registry(&app.probes).register("http", HttpHandler::new(true));
    let config = support::worker_config(app, "w", |_| {});
    let stop = CancellationToken::new();
    tokio::spawn(dtp::worker::Worker::new(app.pool.clone(), registry, config).run(stop.clone()));
    stop.drop_guard()
}

#[tokio::test]
async fn http_targets_answering_nul_succeed_with_cleaned_results() {
    let app = api_only_with(|_| {}).await;
    let _worker = spawn_http_worker(&app);
    let json_nul = answering_peer(br#"{"text":"a\u0000b"}"#, BodyEnd::Once).await;
    let raw_nul = answering_peer(b"a\0b", BodyEnd::Once).await;

    let mut results = Vec::new();
    for url in [json_nul, raw_nul] {
        let id = app
            .create_id(json!({"type": "http", "payload": {"url": url}, "maxAttempts": 1}))
            .await;
        let task = app.wait_for(id, TaskStatus::Succeeded).await;
        results.push(task.result.expect("result")["body"].clone());
    }

    assert_eq!(
        results,
        [json!({"text": "a\u{fffd}b"}), json!("a\u{fffd}b")]
    );
}

#[tokio::test]
async fn an_http_target_answering_an_endless_body_succeeds_with_the_kept_excerpt() {
    let app = api_only_with(|_| {}).await;
    let _worker = spawn_http_worker(&app);
    let url = answering_peer(&[b'x'; 64 * 1024], BodyEnd::Never).await;

    let id = app
        .create(
            json!({"type": "http", "payload": {"url": url}, "timeoutMs": 10000, "maxAttempts": 1}),
        )
        .await
        .id;
    let mut task = app.get_task(id).await;
    eventually("the http task ends", async || {
        task = app.get_task(id).await;
        task.status.is_terminal()
    })
    .await;

    assert_eq!(task.status, TaskStatus::Succeeded, "{:?}", task.last_error);
    let body = task.result.as_ref().and_then(|r| r["body"].as_str());
    assert_eq!(body.map(str::len), Some(4096));
}

/// Outcomes that cannot be written while claims still can: the pool's way to the database is
/// down, the claim loop's direct connection is not (a PgBouncer that stopped, with the claim
/// loop on `DTP_LISTEN_DATABASE_URL`). The worker stops claiming once 2,000 outcomes (successes
/// and failures) wait, instead of running the whole queue into memory, where all of it would
/// run again if the process died; when the writes go through again, every task has ended once.
#[tokio::test]
async fn a_worker_whose_outcomes_cannot_be_written_stops_claiming() {
    const TASKS: usize = 6000;
    // 2,000 outcomes, plus a claim's worth: slots and what is held ahead of them.
    const MOST_RUNNING: i64 = 2000 + 4 + 2 * (4 + 40);
    let app = api_only_with(|_| {}).await;
    let task = |task_type: &str| dtp::queue::NewTask {
        max_attempts: 1,
        max_attempts_requested: true,
        ..dtp::queue::NewTask::new(task_type, Value::Null)
    };
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| task(if i % 2 == 0 { "noop" } else { "demo-fail" }))
        .collect();
    let mut conn = app.pool.acquire().await.expect("connection");
    let created = dtp::queue::enqueue_many(&mut conn, &tasks)
        .await
        .expect("enqueued");
    assert_eq!(created.len(), TASKS);
    drop(conn);

    let proxy = FaultyProxy::start(&address_of(&app.db.url)).await;
    let pool = sqlx::PgPool::connect(&proxy.url_for(&app.db.url))
        .await
        .expect("pool through the proxy");
    let config = support::worker_config(&app, "unwritten", |c| {
        c.concurrency = 4;
        // Thousands of leases to renew in each round, on a slow machine.
        c.lease_ms = 10_000;
        c.heartbeat_ms = Some(1000);
        c.listen_database_url = Some(app.db.url.parse().expect("direct URL"));
    });
    proxy.down(true);
    let worker = dtp::worker::Worker::new(pool, support::test_registry(&app.probes), config);
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));
    let count = async |status: &str| -> i64 {
        sqlx::query_scalar("select count(*) from tasks where status = $1")
            .bind(status)
            .fetch_one(&app.pool)
            .await
            .expect("count")
    };
    eventually("outcomes wait to be written", async || {
        count("RUNNING").await >= 2000
    })
    .await;
    // Long enough for the rest of the queue to be claimed many times over, were it claimed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let claimed = count("RUNNING").await;
    assert!(
        claimed <= MOST_RUNNING,
        "{claimed} tasks claimed while no outcome could be written"
    );
    assert_eq!(count("SUCCEEDED").await + count("FAILED").await, 0);

    proxy.down(false);
    wait_until_all_terminal(&app.pool).await;
    let once: i64 = sqlx::query_scalar(
        "select count(*) from tasks where attempt_count = 1 \
         and status = case type when 'noop' then 'SUCCEEDED' else 'FAILED' end",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(
        once, TASKS as i64,
        "every task ended once, as its handler said"
    );
    stop.cancel();
    running.await.expect("worker ends");
}
