//! Bearer-token authentication on TaskPilot's API, and TaskPilot presenting its token to DTP.

mod support;

use apikit::auth::Secret;
use reqwest::StatusCode;
use serde_json::json;
use support::{assert_problem, spawn_dtp_with, spawn_taskpilot_with};
use testkit::Sent;

#[tokio::test]
async fn taskpilot_refuses_requests_without_a_token_and_serves_those_with_one() {
    let dtp = spawn_dtp_with(|c| c.api_token = Some(Secret::new("dtp-secret"))).await;
    let taskpilot = spawn_taskpilot_with(&dtp.address, |c| {
        c.api_tokens = vec![Secret::new("user-a"), Secret::new("user-b")];
        c.dtp_api_token = Some(Secret::new("dtp-secret"));
    })
    .await;
    let client = reqwest::Client::new();

    let refused = client
        .post(taskpilot.url("/api/tasks"))
        .json(&json!({"type": "noop"}))
        .sent()
        .await;
    let created: common::WebTask = client
        .post(taskpilot.url("/api/tasks"))
        .bearer_auth("user-b")
        .json(&json!({"type": "noop"}))
        .sent()
        .await
        .json()
        .await
        .expect("web task");
    let bound = client
        .post(taskpilot.url(&format!("/api/tasks/{}/scheduler", created.id)))
        .bearer_auth("user-a")
        .sent()
        .await;
    let health = client.get(taskpilot.url("/readyz")).sent().await;

    assert_problem(refused, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        bound.status(),
        StatusCode::OK,
        "TaskPilot presented DTP's token"
    );
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_dtp_that_refuses_taskpilots_credentials_is_502_and_nothing_is_bound() {
    let dtp = spawn_dtp_with(|c| c.api_token = Some(Secret::new("dtp-secret"))).await;
    let taskpilot = spawn_taskpilot_with(&dtp.address, |c| {
        c.dtp_api_token = Some(Secret::new("wrong"));
    })
    .await;
    let api = taskpilot.api();
    let id = api.create_id(json!({"type": "noop"})).await;

    let detail = api.bind_refused(id, StatusCode::BAD_GATEWAY).await;

    assert!(detail.contains("DTP_API_TOKEN"), "{detail}");
}

#[tokio::test]
async fn tokens_can_come_from_a_file() {
    let dtp = spawn_dtp_with(|_| {}).await;
    let file = std::env::temp_dir().join(format!("taskpilot-tokens-{}", std::process::id()));
    std::fs::write(&file, "# one per line\nfrom-file\n").expect("write tokens");
    let taskpilot =
        spawn_taskpilot_with(&dtp.address, |c| c.api_tokens_file = Some(file.clone())).await;
    let client = reqwest::Client::new();

    let response = client
        .get(taskpilot.url("/api/tasks"))
        .bearer_auth("from-file")
        .sent()
        .await;
    let refused = client.get(taskpilot.url("/api/tasks")).sent().await;
    let _ = std::fs::remove_file(&file);

    assert_eq!(response.status(), StatusCode::OK);
    assert_problem(refused, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn a_cross_site_browser_request_cannot_bind_or_cancel_a_web_task() {
    let dtp = spawn_dtp_with(|_| {}).await;
    let taskpilot = spawn_taskpilot_with(&dtp.address, |_| {}).await;
    let api = taskpilot.api();
    let id = api.create_id(json!({"type": "noop"})).await;
    let client = reqwest::Client::new();

    let bind = client
        .post(taskpilot.url(&format!("/api/tasks/{id}/scheduler")))
        .header("sec-fetch-site", "cross-site")
        .sent()
        .await;
    let create = client
        .post(taskpilot.url("/api/tasks"))
        .header("origin", "http://attacker.example")
        .header("content-type", "text/plain")
        .body(r#"{"type": "noop"}"#)
        .sent()
        .await;

    for refused in [bind, create] {
        assert_problem(refused, StatusCode::FORBIDDEN).await;
    }
    let task: common::WebTask = client
        .get(taskpilot.url(&format!("/api/tasks/{id}")))
        .sent()
        .await
        .json()
        .await
        .expect("web task");
    assert_eq!(
        task.scheduler_task_id, None,
        "a cross-site request bound it"
    );
}
