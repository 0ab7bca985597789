//! `GET /workers`: each worker reports itself every heartbeat with its busy slots, says when it
//! stops, and bad windows are refused.

mod support;

use common::{TaskStatus, WorkerList, WorkerView};
use reqwest::StatusCode;
use serde_json::json;
use support::{assert_problem, spawn_app, wait_for_status, worker_for, TestApp};
use testkit::Sent;
use tokio_util::sync::CancellationToken;

async fn workers(app: &TestApp) -> Vec<WorkerView> {
    let list: WorkerList = app.get_ok("/workers").await;
    list.workers
}

async fn until_worker(app: &TestApp, done: impl Fn(&[WorkerView]) -> bool) -> Vec<WorkerView> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let seen = workers(app).await;
        if done(&seen) {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "workers never matched: {seen:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_running_worker_reports_its_busy_slots_and_a_stopped_one_says_so() {
    let app = spawn_app().await;
    let seen = until_worker(&app, |w| !w.is_empty()).await;
    let own = &seen[0];
    assert_eq!((own.concurrency, own.stopped_at), (8, None));
    assert!(own.types.iter().any(|t| t == "noop"), "{:?}", own.types);

    let slow = app.create_id(json!({"type": "probe-slow"})).await;
    wait_for_status(&app.pool, slow, TaskStatus::Running).await;
    until_worker(&app, |w| w.iter().any(|w| w.busy == 1)).await;

    let other = worker_for(&app, "second-worker", |c| c.concurrency = 3);
    let stop = CancellationToken::new();
    let running = tokio::spawn(other.run(stop.clone()));
    until_worker(&app, |w| w.iter().any(|w| w.id == "second-worker")).await;
    stop.cancel();
    running.await.expect("worker stopped");
    let seen = workers(&app).await;
    let second = seen
        .iter()
        .find(|w| w.id == "second-worker")
        .expect("listed");
    assert!(second.stopped_at.is_some());
    assert_eq!((second.busy, second.concurrency), (0, 3));
}

#[tokio::test]
async fn a_bad_window_is_refused_with_problem_json() {
    let app = spawn_app().await;
    for window in ["0", "86401", "soon", "-5"] {
        let url = app.url(&format!("/workers?seenWithinSeconds={window}"));
        let refused = app.client.get(url).sent().await;
        assert_problem(refused, StatusCode::BAD_REQUEST).await;
    }
}
