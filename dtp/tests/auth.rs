//! Bearer-token authentication on DTP's API.

mod support;

use apikit::auth::Secret;
use reqwest::StatusCode;
use serde_json::json;
use support::{api_only_with, assert_problem, TestApp};
use testkit::Sent;

const TOKEN: &str = "dtp-test-token";

/// DTP's API alone (no worker), requiring [`TOKEN`].
async fn guarded_api() -> TestApp {
    api_only_with(|c| c.api_token = Some(Secret::new(TOKEN))).await
}

#[tokio::test]
async fn requests_without_the_token_are_401_and_change_nothing() {
    let app = guarded_api().await;
    let create = || {
        app.client
            .post(app.url("/tasks"))
            .json(&json!({"type": "noop"}))
    };

    let missing = create().sent().await;
    let wrong = create().bearer_auth("not-it").sent().await;
    let listed = app.client.get(app.url("/tasks")).sent().await;

    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    for refused in [missing, wrong, listed] {
        assert_problem(refused, StatusCode::UNAUTHORIZED).await;
    }
    app.assert_no_tasks().await;
}

#[tokio::test]
async fn requests_with_the_token_pass_and_health_stays_open() {
    let app = guarded_api().await;

    let created = app
        .client
        .post(app.url("/tasks"))
        .bearer_auth(TOKEN)
        .json(&json!({"type": "noop"}))
        .sent()
        .await;

    assert_eq!(created.status(), StatusCode::CREATED);
    for path in ["/healthz", "/readyz"] {
        let response = app.client.get(app.url(path)).sent().await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[test]
fn the_token_never_appears_in_the_configuration_s_debug_output() {
    let mut config = dtp::Config::defaults();
    config.api_token = Some(Secret::new(TOKEN));
    assert!(!format!("{config:?}").contains(TOKEN));
}
