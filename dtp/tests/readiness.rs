//! Readiness without a database: the router alone, over a pool that can never connect.

use std::sync::Arc;
use std::time::Duration;

use apikit::metrics::HttpMetrics;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use dtp::api::{ApiConfig, AppState};
use dtp::handlers::HandlerRegistry;
use dtp::metrics::DtpMetrics;
use sqlx::postgres::PgPoolOptions;
use tower::ServiceExt;

fn unreachable_state() -> AppState {
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .expect("lazy pool");
    AppState {
        operator_pool: pool.clone(),
        pool,
        registry: HandlerRegistry::with_builtins(),
        config: Arc::new(ApiConfig {
            default_max_attempts: 3,
            lease: Duration::from_secs(15),
            edge: apikit::EdgeConfig {
                max_body_bytes: 1024,
                request_timeout: Duration::from_secs(5),
                tokens: None,
            },
            metrics_token: None,
            http_metrics: HttpMetrics::default(),
            ui: dtp::ui::UiOptions::default(),
        }),
        metrics: DtpMetrics::default(),
    }
}

fn unreachable_router() -> axum::Router {
    let state = unreachable_state();
    let exposition = dtp::app::exposition(&state.pool, &state.metrics, &state.config.http_metrics);
    dtp::app::router(state, exposition)
}

async fn status_and_type(path: &str, method: &str, body: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request");
    let response = unreachable_router()
        .oneshot(request)
        .await
        .expect("infallible");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.status(), content_type)
}

#[tokio::test]
async fn readyz_is_503_problem_when_the_database_is_unreachable() {
    let (status, content_type) = status_and_type("/readyz", "GET", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(content_type, "application/problem+json");
}

#[tokio::test]
async fn healthz_stays_200_when_the_database_is_unreachable() {
    let (status, _) = status_and_type("/healthz", "GET", "").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn task_routes_answer_503_problem_not_500_when_the_database_is_unreachable() {
    for (path, method, body) in [
        ("/tasks", "POST", r#"{"type": "demo"}"#),
        ("/tasks/1", "GET", ""),
        ("/tasks", "GET", ""),
        ("/tasks/1/cancel", "PUT", ""),
    ] {
        let (status, content_type) = status_and_type(path, method, body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{method} {path}");
        assert_eq!(content_type, "application/problem+json");
    }
}

#[tokio::test]
async fn metrics_are_served_when_the_database_is_unreachable_and_say_the_depth_read_failed() {
    let request = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .expect("request");
    let response = unreachable_router()
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    assert!(text.contains("dtp_depth_read_failures_total 1\n"), "{text}");
    assert!(text.contains("dtp_leases_rescued_total 0\n"), "{text}");
}
