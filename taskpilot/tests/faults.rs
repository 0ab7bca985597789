//! The fault rows of the error-translation table (docs/contract.md), which a healthy DTP cannot produce:
//! TaskPilot pointed at a stand-in that fails, stalls or answers nonsense, or at a closed port.

mod support;

use std::time::Duration;
use testkit::Sent;

use reqwest::StatusCode;
use serde_json::json;
use support::{assert_problem, closed_port, force_bind, spawn_taskpilot, stand_in, Misbehaviour};

/// Asserts both execution endpoints of a bound web task answer `status`, and that a bind of an
/// unbound one does too while leaving it unbound.
async fn assert_all_endpoints(dtp_url: &str, status: StatusCode) {
    let taskpilot = spawn_taskpilot(dtp_url).await;
    let api = taskpilot.api();
    let bound = api.create(json!({"type": "demo"})).await.id;
    force_bind(&taskpilot, bound, 77).await;
    let unbound = api.create(json!({"type": "demo"})).await.id;

    let view = api.get(&format!("/api/tasks/{bound}/execution")).await;
    let cancel = api.cancel(bound).await;
    let bind = api.try_bind(unbound, json!({})).await;

    assert_problem(view, status).await;
    assert_problem(cancel, status).await;
    assert_problem(bind, status).await;
    let still: common::WebTask = api.web_task(unbound).await;
    assert_eq!(
        still.scheduler_task_id, None,
        "a failed bind changes nothing"
    );
}

/// TaskPilot pointed at `dtp_url`, with one web task bound (in webdb only) to DTP task 77.
async fn bound_task_on(dtp_url: &str) -> (support::Service, support::TaskPilotClient, i64) {
    let taskpilot = spawn_taskpilot(dtp_url).await;
    let api = taskpilot.api();
    let id = api.create(json!({"type": "demo"})).await.id;
    force_bind(&taskpilot, id, 77).await;
    (taskpilot, api, id)
}

/// A DTP that answers every request with a 500.
const FAILING: Misbehaviour = Misbehaviour::Answer(StatusCode::INTERNAL_SERVER_ERROR, "boom");

/// The problem TaskPilot answers, with `status`, for the execution view of a task bound on a
/// DTP that misbehaves so; its detail.
async fn view_problem_through(misbehaviour: Misbehaviour, status: StatusCode) -> String {
    let dtp = stand_in(misbehaviour).await;
    let (_taskpilot, api, id) = bound_task_on(&dtp.address).await;
    let view = api.get(&format!("/api/tasks/{id}/execution")).await;
    assert_problem(view, status).await
}

#[tokio::test]
async fn dtp_answering_5xx_is_502() {
    let dtp = stand_in(FAILING).await;
    assert_all_endpoints(&dtp.address, StatusCode::BAD_GATEWAY).await;
}

#[tokio::test]
async fn dtp_unreachable_is_503() {
    assert_all_endpoints(&closed_port().await, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn dtp_slower_than_the_timeout_is_504() {
    let dtp = stand_in(Misbehaviour::Slow(Duration::from_secs(3))).await;
    assert_all_endpoints(&dtp.address, StatusCode::GATEWAY_TIMEOUT).await;
}

#[tokio::test]
async fn a_slow_dtp_is_answered_504_within_taskpilots_timeout_not_after_dtp() {
    let dtp = stand_in(Misbehaviour::Slow(Duration::from_secs(10))).await;
    let (_taskpilot, api, id) = bound_task_on(&dtp.address).await;

    let started = std::time::Instant::now();
    let view = api.get(&format!("/api/tasks/{id}/execution")).await;
    let elapsed = started.elapsed();

    assert_problem(view, StatusCode::GATEWAY_TIMEOUT).await;
    // The DTP timeout in these tests is 500 ms; DTP itself would take 10 s.
    assert!(
        elapsed < Duration::from_secs(3),
        "answered after {elapsed:?}"
    );
}

#[tokio::test]
async fn dtp_answering_2xx_without_a_task_is_409_scheduler_task_not_available() {
    let answer = Misbehaviour::Answer(StatusCode::OK, "not json");

    let detail = view_problem_through(answer, StatusCode::CONFLICT).await;

    assert_eq!(detail, "scheduler task not available");
}

#[tokio::test]
async fn dtp_answering_another_4xx_is_409_scheduler_task_not_available() {
    let answer = Misbehaviour::Answer(StatusCode::BAD_REQUEST, "nope");

    let detail = view_problem_through(answer, StatusCode::CONFLICT).await;

    assert_eq!(detail, "scheduler task not available");
}

#[tokio::test]
async fn the_request_id_is_passed_to_dtp_and_echoed_to_the_client() {
    let dtp = stand_in(FAILING).await;
    let (taskpilot, api, id) = bound_task_on(&dtp.address).await;

    let response = api
        .http
        .get(taskpilot.url(&format!("/api/tasks/{id}/execution")))
        .header("x-request-id", "trace-me-123")
        .sent()
        .await;

    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
    let seen = dtp.request_ids.lock().expect("lock").clone();
    assert!(!seen.is_empty(), "DTP was asked");
    assert!(
        seen.iter().all(|id| id == "trace-me-123"),
        "every call to DTP (the task and its attempts) carries the id: {seen:?}"
    );
}

#[tokio::test]
async fn dtp_answering_an_endless_body_is_409_unusable_not_read_to_the_end() {
    let dtp = testkit::answering_peer(b"[0,0,0,0,0,0,0,0,", testkit::BodyEnd::Never).await;
    // A timeout longer than the test's patience: only a bounded read can answer in time.
    let taskpilot = support::spawn_taskpilot_with(&dtp, |c| {
        c.dtp_timeout_ms = 600_000;
        c.request_timeout_ms = 700_000;
    })
    .await;
    let api = taskpilot.api();
    let id = api.create(json!({"type": "demo"})).await.id;
    force_bind(&taskpilot, id, 77).await;

    let view = tokio::time::timeout(
        Duration::from_secs(60),
        api.get(&format!("/api/tasks/{id}/execution")),
    )
    .await
    .expect("TaskPilot answers instead of reading forever");

    // The table's row for "a 2xx without a usable body".
    assert_problem(view, StatusCode::CONFLICT).await;
}
