//! `GET /stats`: what the workers did per minute, added up over processes from `minute_stats`.

mod support;

use std::time::Duration;

use common::StatsList;
use reqwest::StatusCode;
use serde_json::json;
use support::{assert_problem, spawn_app, wait_until_all_terminal, TestApp};
use testkit::Sent;

/// Sums of succeeded, failed, retried and started over the minutes of `path`.
async fn sums(app: &TestApp, path: &str) -> (i64, i64, i64, i64) {
    let list: StatsList = app.get_ok(path).await;
    list.minutes.iter().fold((0, 0, 0, 0), |(s, f, r, n), m| {
        (s + m.succeeded, f + m.failed, r + m.retried, n + m.started)
    })
}

#[tokio::test]
async fn the_minutes_add_up_what_the_workers_did_per_queue() {
    let app = spawn_app().await;
    for _ in 0..5 {
        app.create(json!({"type": "noop"})).await;
    }
    for _ in 0..2 {
        app.create(json!({"type": "demo-fail", "queue": "mail", "maxAttempts": 1}))
            .await;
    }
    app.create(json!({"type": "demo-flaky", "queue": "mail"}))
        .await;
    wait_until_all_terminal(&app.pool).await;

    // Each process adds its figures every 5 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sums(&app, "/stats?minutes=5").await != (6, 2, 1, 9) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            sums(&app, "/stats?minutes=5").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        sums(&app, "/stats?minutes=5&queue=mail").await,
        (1, 2, 1, 4)
    );
    let list: StatsList = app.get_ok("/stats").await;
    assert_eq!(
        list.minutes.len(),
        60,
        "every minute of the hour, zero or not"
    );
    let busy = list
        .minutes
        .iter()
        .find(|m| m.started > 0)
        .expect("a busy minute");
    let (p50, p95) = (
        busy.run_p50_ms.expect("a median"),
        busy.run_p95_ms.expect("a 95th"),
    );
    assert!(p50 > 0.0 && p50 <= p95, "{p50} {p95}");
    assert!(list
        .minutes
        .iter()
        .filter(|m| m.started == 0)
        .all(|m| m.run_p50_ms.is_none()));
}

#[tokio::test]
async fn bad_parameters_are_refused_with_problem_json() {
    let app = spawn_app().await;
    for query in [
        "minutes=0",
        "minutes=1441",
        "minutes=soon",
        "queue=bad%20name",
    ] {
        let refused = app
            .client
            .get(app.url(&format!("/stats?{query}")))
            .sent()
            .await;
        assert_problem(refused, StatusCode::BAD_REQUEST).await;
    }
}
