//! TaskPilot's `GET /metrics` over HTTP: after a known set of requests, the counts per route
//! template and status, and per DTP call and outcome, are exact.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::{assert_problem, closed_port, spawn_system, spawn_taskpilot};
use testkit::metrics::scrape_until;
use testkit::Sent;

#[tokio::test]
async fn requests_and_dtp_calls_are_counted_exactly_by_route_status_operation_and_outcome() {
    let system = spawn_system().await;
    let api = system.api();
    let id = api
        .create_id(json!({"type": "demo-slow", "payload": {"ms": 30000}}))
        .await;
    api.bind(id, json!({})).await;
    api.execution(id).await;
    assert_eq!(api.cancel(id).await.status(), StatusCode::NO_CONTENT);
    assert_problem(api.get("/api/tasks/4040").await, StatusCode::NOT_FOUND).await;
    assert_eq!(api.get("/nowhere").await.status(), StatusCode::NOT_FOUND);

    let expected = [
        (
            r#"taskpilot_http_requests_total{route="/api/tasks",method="POST",status="201"}"#,
            1.0,
        ),
        (
            r#"taskpilot_http_requests_total{route="/api/tasks/{id}/scheduler",method="POST",status="200"}"#,
            1.0,
        ),
        (
            r#"taskpilot_http_requests_total{route="/api/tasks/{id}/execution",method="GET",status="200"}"#,
            1.0,
        ),
        (
            r#"taskpilot_http_requests_total{route="/api/tasks/{id}/execution/cancel",method="PUT",status="204"}"#,
            1.0,
        ),
        (
            r#"taskpilot_http_requests_total{route="/api/tasks/{id}",method="GET",status="404"}"#,
            1.0,
        ),
        (
            r#"taskpilot_http_requests_total{route="unmatched",method="GET",status="404"}"#,
            1.0,
        ),
        (
            r#"taskpilot_http_request_duration_seconds_count{route="/api/tasks",method="POST",status="201"}"#,
            1.0,
        ),
        (
            r#"taskpilot_dtp_requests_total{operation="create_task",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"taskpilot_dtp_requests_total{operation="get_task",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"taskpilot_dtp_requests_total{operation="get_attempts",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"taskpilot_dtp_requests_total{operation="cancel_task",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"taskpilot_dtp_request_duration_seconds_count{operation="cancel_task",outcome="ok"}"#,
            1.0,
        ),
    ];
    let url = system.taskpilot.url("/metrics");
    let scrape = scrape_until(&system.client, &url, &expected).await;
    let path = format!("/api/tasks/{id}");
    let ids_in_labels = scrape.0.keys().any(|series| series.contains(&path));
    assert!(!ids_in_labels, "a label carries a task id");
}

#[tokio::test]
async fn a_dtp_that_does_not_answer_is_counted_as_unreachable() {
    let taskpilot = spawn_taskpilot(&closed_port().await).await;
    let api = taskpilot.api();
    let id = api.create_id(json!({"type": "demo"})).await;
    let refused = api.try_bind(id, json!({})).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);

    let client = reqwest::Client::new();
    let expected = [
        ("taskpilot_dtp_requests_total{operation=\"create_task\",outcome=\"unreachable\"}", 1.0),
        ("taskpilot_http_requests_total{route=\"/api/tasks/{id}/scheduler\",method=\"POST\",status=\"503\"}", 1.0),
    ];
    scrape_until(&client, &taskpilot.url("/metrics"), &expected).await;
    let unauthorized = client.get(taskpilot.url("/metrics")).sent().await;
    assert_eq!(
        unauthorized.status(),
        StatusCode::OK,
        "open without a metrics token"
    );
}
