//! Tasks claimed ahead of free slots (`worker::ahead`): they are RUNNING under the worker's
//! lease before a slot starts them, so a cancel must still win, a stopping worker must hand
//! them back unstarted, none may wait long behind slow tasks, and a hand-back the database
//! could not take is not lost.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TaskStatus;
use dtp::handlers::{handler_fn, HandlerRegistry};
use dtp::queue::{self, NewTask};
use dtp::worker::Worker;
use reqwest::StatusCode;
use serde_json::Value;
use support::{api_only_with, wait_until_all_terminal, worker_config, TestApp, PATIENCE};
use testkit::{address_of, FaultyProxy};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

const TASKS: usize = 200;

/// `gated` tasks that each wait for a permit of `gate` and count their runs by task id.
#[derive(Clone)]
struct Gated {
    gate: Arc<Semaphore>,
    runs: Arc<Mutex<HashMap<i64, usize>>>,
    /// Handlers waiting at the gate now.
    waiting: Arc<AtomicUsize>,
}

impl Default for Gated {
    fn default() -> Self {
        Gated {
            gate: Arc::new(Semaphore::new(0)),
            runs: Arc::default(),
            waiting: Arc::default(),
        }
    }
}

impl Gated {
    fn registry(&self) -> HandlerRegistry {
        let gated = self.clone();
        HandlerRegistry::empty().register(
            "gated",
            handler_fn(move |ctx| {
                let gated = gated.clone();
                async move {
                    *gated.runs().entry(ctx.id.0).or_default() += 1;
                    gated.waiting.fetch_add(1, Ordering::SeqCst);
                    let permit = gated.gate.acquire().await;
                    gated.waiting.fetch_sub(1, Ordering::SeqCst);
                    permit.map(|p| p.forget()).map_err(|e| {
                        dtp::handlers::HandlerError::Permanent(format!("gate closed: {e}"))
                    })?;
                    Ok(Value::Null)
                }
            }),
        )
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<i64, usize>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ran(&self, id: i64) -> bool {
        self.runs().contains_key(&id)
    }
}

/// Through the queue, not the API: the API accepts only the types its own process runs.
async fn enqueue_gated(app: &TestApp) {
    let task = NewTask {
        max_attempts: 1,
        max_attempts_requested: true,
        ..NewTask::new("gated", Value::Null)
    };
    let mut conn = app.pool.acquire().await.expect("connection");
    let created = queue::enqueue_many(&mut conn, &vec![task; TASKS])
        .await
        .expect("enqueued");
    assert_eq!(created.len(), TASKS);
}

async fn ids_with_status(app: &TestApp, status: &str) -> Vec<i64> {
    sqlx::query_scalar("select id from tasks where status = $1 order by id")
        .bind(status)
        .fetch_all(&app.pool)
        .await
        .expect("ids")
}

/// Lets tasks finish one at a time until the worker holds RUNNING tasks it has not started
/// (claimed ahead because tasks were finishing); those tasks' ids. Looks only while every one
/// of the worker's `slots` waits at the gate and no permit is left, so that no held task can
/// start between the look and the test's next step.
async fn until_tasks_are_held(app: &TestApp, gated: &Gated, slots: usize) -> Vec<i64> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        while gated.waiting.load(Ordering::SeqCst) < slots || gated.gate.available_permits() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the worker's slots never all waited at the gate"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let held: Vec<i64> = ids_with_status(app, "RUNNING")
            .await
            .into_iter()
            .filter(|id| !gated.ran(*id))
            .collect();
        if !held.is_empty() {
            return held;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never claimed ahead"
        );
        gated.gate.add_permits(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that the held task `id` never ran and is PENDING again as if never claimed:
/// uncounted, not started, no attempt recorded (not rescued as a lost one), in its place in
/// the queue.
async fn assert_back_as_never_claimed(app: &TestApp, gated: &Gated, id: i64) {
    let (status, attempts, started, history, moved): (String, i32, bool, i64, bool) =
        sqlx::query_as(
            "select status, attempt_count, processing_started_at is not null, \
                    (select count(*) from task_attempts a where a.task_id = t.id), \
                    run_at <> scheduled_for \
             from tasks t where id = $1",
        )
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("task");
    assert!(!gated.ran(id), "task {id} was held, not run");
    assert_eq!(
        (status.as_str(), attempts, started, history, moved),
        ("PENDING", 0, false, 0, false),
        "task {id} is back as if never claimed, in its place in the queue"
    );
}

fn start_worker(
    app: &TestApp,
    gated: &Gated,
    concurrency: usize,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let config = worker_config(app, "ahead", |c| {
        c.concurrency = concurrency;
        c.shutdown_grace_ms = 100;
    });
    let worker = Worker::new(app.pool.clone(), gated.registry(), config);
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));
    (stop, running)
}

/// Held tasks are RUNNING: a cancel makes one CANCELED at once, as for a task whose handler
/// runs. Whether its handler starts depends on whether the worker heard of the cancel before
/// the task's turn came; either way it stays CANCELED and the others each run once.
#[tokio::test]
async fn a_task_canceled_while_held_ahead_stays_canceled_and_the_others_run_once() {
    let app = api_only_with(|_| {}).await;
    enqueue_gated(&app).await;
    let gated = Gated::default();
    let (stop, running) = start_worker(&app, &gated, 2);
    let held = until_tasks_are_held(&app, &gated, 2).await;
    let canceled = held[held.len() / 2];

    assert_eq!(app.cancel(canceled).await.status(), StatusCode::OK);
    gated.gate.add_permits(TASKS * 2);
    wait_until_all_terminal(&app.pool).await;

    assert_eq!(ids_with_status(&app, "CANCELED").await, vec![canceled]);
    let task = app.get_task(canceled).await;
    assert_eq!(task.result, None, "no outcome was written over the cancel");
    let succeeded = ids_with_status(&app, "SUCCEEDED").await;
    assert_eq!(succeeded.len(), TASKS - 1);
    let runs = gated.runs().clone();
    for id in succeeded {
        assert_eq!(runs.get(&id), Some(&1), "task {id} ran once");
    }
    stop.cancel();
    running.await.expect("worker stopped");
}

#[tokio::test]
async fn tasks_held_ahead_go_back_unstarted_when_the_worker_stops() {
    let app = api_only_with(|_| {}).await;
    enqueue_gated(&app).await;
    let gated = Gated::default();
    let (stop, running) = start_worker(&app, &gated, 2);
    let held = until_tasks_are_held(&app, &gated, 2).await;

    stop.cancel();
    running.await.expect("worker stopped");

    assert!(ids_with_status(&app, "RUNNING").await.is_empty());
    for id in held {
        assert_back_as_never_claimed(&app, &gated, id).await;
    }
}

#[tokio::test]
async fn tasks_held_ahead_behind_slow_ones_go_back_for_other_workers() {
    let app = api_only_with(|_| {}).await;
    enqueue_gated(&app).await;
    let gated = Gated::default();
    let (stop, running) = start_worker(&app, &gated, 1);
    let held = until_tasks_are_held(&app, &gated, 1).await;

    // The one slot stays on a task that does not finish; what is held goes back.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while ids_with_status(&app, "RUNNING").await.len() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "held tasks never handed back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let other = Gated::default();
    other.gate.add_permits(TASKS * 2);
    let (other_stop, other_running) = start_worker(&app, &other, 4);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !held.iter().all(|id| other.ran(*id)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other worker never ran the handed-back tasks"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in &held {
        assert!(!gated.ran(*id), "task {id} ran only on the other worker");
        let task = app.wait_for(*id, TaskStatus::Succeeded).await;
        assert_eq!(task.status, TaskStatus::Succeeded);
        assert_eq!(task.attempt_count, 1, "handing back used no attempt");
    }
    gated.gate.add_permits(TASKS * 2);
    for (stop, running) in [(stop, running), (other_stop, other_running)] {
        stop.cancel();
        running.await.expect("worker stopped");
    }
}

#[tokio::test]
async fn tasks_held_while_the_database_is_down_go_back_uncounted_once_it_is_back() {
    let app = api_only_with(|_| {}).await;
    enqueue_gated(&app).await;
    let gated = Gated::default();
    // The worker reaches the database through a proxy; the test and the service's rescuer
    // directly.
    let proxy = FaultyProxy::start(&address_of(&app.db.url)).await;
    let pool = sqlx::PgPool::connect(&proxy.url_for(&app.db.url))
        .await
        .expect("pool through the proxy");
    let config = worker_config(&app, "ahead", |c| {
        c.concurrency = 1;
        c.lease_ms = 5000;
        c.heartbeat_ms = Some(500);
        c.shutdown_grace_ms = 100;
    });
    let worker = Worker::new(pool, gated.registry(), config);
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));
    let held = until_tasks_are_held(&app, &gated, 1).await;

    // Down for longer than a task may be held: the hand-back fails; the tasks stay the
    // worker's, their leases renewed once the database is back, until it succeeds.
    proxy.down(true);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    proxy.down(false);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while ids_with_status(&app, "RUNNING").await.len() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "held tasks never handed back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for id in held {
        assert_back_as_never_claimed(&app, &gated, id).await;
    }
    gated.gate.add_permits(TASKS * 2);
    stop.cancel();
    running.await.expect("worker stopped");
}
