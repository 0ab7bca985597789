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

#[tokio::test]
async fn cross_site_browser_requests_change_nothing_unless_a_token_authenticated_them() {
    let open = api_only_with(|_| {}).await;
    let pause = |app: &TestApp| app.client.post(app.url("/queues/emails/pause"));
    let host = open.address.trim_start_matches("http://").to_owned();

    // What a web page's no-cors fetch or form sends: no body, no content type.
    let cross_site = pause(&open)
        .header("sec-fetch-site", "cross-site")
        .sent()
        .await;
    let same_site = pause(&open)
        .header("sec-fetch-site", "same-site")
        .sent()
        .await;
    let old_browser = pause(&open)
        .header("origin", "http://attacker.example")
        .sent()
        .await;
    let null_origin = pause(&open).header("origin", "null").sent().await;
    let create = open
        .client
        .post(open.url("/tasks"))
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "text/plain")
        .body(r#"{"type": "noop"}"#)
        .sent()
        .await;
    for refused in [cross_site, same_site, old_browser, null_origin, create] {
        let detail = assert_problem(refused, StatusCode::FORBIDDEN).await;
        assert!(detail.contains("another site"), "{detail}");
    }
    // Never configured, so unknown.
    let queue = open.client.get(open.url("/queues/emails")).sent().await;
    assert_eq!(
        queue.status(),
        StatusCode::NOT_FOUND,
        "a cross-site request paused it"
    );
    open.assert_no_tasks().await;

    // The service's own pages, what a user typed, and clients that are not browsers pass.
    let same_origin = pause(&open)
        .header("sec-fetch-site", "same-origin")
        .sent()
        .await;
    let typed = pause(&open).header("sec-fetch-site", "none").sent().await;
    let own_origin = pause(&open)
        .header("origin", format!("http://{host}"))
        .sent()
        .await;
    let curl = pause(&open).sent().await;
    for passed in [same_origin, typed, own_origin, curl] {
        assert_eq!(passed.status(), StatusCode::OK);
    }

    let guarded = guarded_api().await;
    let with_token = pause(&guarded)
        .header("sec-fetch-site", "cross-site")
        .bearer_auth(TOKEN)
        .sent()
        .await;
    let wrong_token = pause(&guarded)
        .header("sec-fetch-site", "cross-site")
        .bearer_auth("not-it")
        .sent()
        .await;
    assert_eq!(with_token.status(), StatusCode::OK);
    assert_problem(wrong_token, StatusCode::UNAUTHORIZED).await;
}
