//! `GET /metrics` of a real DTP over HTTP: after a known workload every counter, histogram count
//! and depth gauge is exactly what the workload did; scraped as fast as a client can, the depth
//! is read from the database at most once a second; the metrics token guards the route.

mod support;

use std::time::{Duration, Instant};

use common::TaskStatus;
use reqwest::StatusCode;
use serde_json::json;
use support::{spawn_app, spawn_app_with, wait_for_status, wait_until_all_terminal};
use testkit::metrics::{scrape, scrape_until};
use testkit::Sent;

#[tokio::test]
async fn after_a_known_workload_every_count_is_exact() {
    let app = spawn_app().await;
    // A task a peer with other handlers claimed and then died holding: its lease ran out.
    sqlx::query(
        "insert into tasks (type, payload, max_attempts, status, attempt_count, worker_id, \
         claim_token, lease_expires_at, scheduled_for, run_at, attempt_started_at, \
         processing_started_at) \
         values ('elsewhere', '{}', 1, 'RUNNING', 1, 'dead-peer', 7, now(), now(), now(), now(), now())",
    )
    .execute(&app.pool)
    .await
    .expect("plant a dead peer's task");
    for _ in 0..10 {
        app.create(json!({"type": "noop"})).await;
    }
    for _ in 0..3 {
        app.create(json!({"type": "demo-flaky", "queue": "mail"}))
            .await;
    }
    for _ in 0..2 {
        app.create(json!({"type": "demo-fail", "queue": "mail", "maxAttempts": 1}))
            .await;
    }
    let slow = app.create_id(json!({"type": "probe-slow"})).await;
    wait_for_status(&app.pool, slow, TaskStatus::Running).await;
    assert_eq!(app.cancel(slow).await.status(), StatusCode::OK);
    let in_bulk = app
        .create_id(json!({"type": "probe-slow", "queue": "bulk"}))
        .await;
    wait_for_status(&app.pool, in_bulk, TaskStatus::Running).await;
    let bulk = json!({"action": "cancel", "filter": {"queue": "bulk"}});
    let canceled = app
        .client
        .post(app.url("/tasks/bulk"))
        .json(&bulk)
        .sent()
        .await;
    assert_eq!(canceled.status(), StatusCode::OK);
    let timing_out =
        json!({"type": "probe-slow", "queue": "slow", "timeoutMs": 100, "maxAttempts": 1});
    app.create(timing_out).await;
    wait_until_all_terminal(&app.pool).await;

    let url = app.url("/metrics");
    let expected = [
        // Created through the API (the dead peer's task was not).
        ("dtp_tasks_created_total{queue=\"default\",type=\"noop\"}", 10.0),
        ("dtp_tasks_created_total{queue=\"mail\",type=\"demo-flaky\"}", 3.0),
        ("dtp_tasks_created_total{queue=\"mail\",type=\"demo-fail\"}", 2.0),
        ("dtp_tasks_created_total{queue=\"default\",type=\"probe-slow\"}", 1.0),
        ("dtp_tasks_created_total{queue=\"bulk\",type=\"probe-slow\"}", 1.0),
        ("dtp_tasks_created_total{queue=\"slow\",type=\"probe-slow\"}", 1.0),
        // Every attempt's ending, as its history names it.
        ("dtp_task_attempts_total{queue=\"default\",type=\"noop\",outcome=\"succeeded\"}", 10.0),
        ("dtp_task_attempts_total{queue=\"mail\",type=\"demo-flaky\",outcome=\"retry\"}", 3.0),
        ("dtp_task_attempts_total{queue=\"mail\",type=\"demo-flaky\",outcome=\"succeeded\"}", 3.0),
        ("dtp_task_attempts_total{queue=\"mail\",type=\"demo-fail\",outcome=\"failed\"}", 2.0),
        ("dtp_task_attempts_total{queue=\"default\",type=\"probe-slow\",outcome=\"canceled\"}", 1.0),
        ("dtp_task_attempts_total{queue=\"bulk\",type=\"probe-slow\",outcome=\"canceled\"}", 1.0),
        ("dtp_task_attempts_total{queue=\"slow\",type=\"probe-slow\",outcome=\"timeout\"}", 1.0),
        ("dtp_task_attempts_total{queue=\"default\",type=\"elsewhere\",outcome=\"lost\"}", 1.0),
        ("dtp_leases_rescued_total", 1.0),
        // Attempts this worker started: 10 + 6 + 2 + 1.
        ("dtp_task_queue_wait_seconds_count{queue=\"default\"}", 11.0),
        ("dtp_task_queue_wait_seconds_count{queue=\"mail\"}", 8.0),
        // Handlers that returned (the canceled one was stopped).
        ("dtp_task_run_seconds_count{queue=\"default\",type=\"noop\"}", 10.0),
        ("dtp_task_run_seconds_count{queue=\"mail\",type=\"demo-flaky\"}", 6.0),
        ("dtp_task_run_seconds_count{queue=\"mail\",type=\"demo-fail\"}", 2.0),
        // The timed-out handler ran; the two canceled ones were stopped.
        ("dtp_task_run_seconds_count{queue=\"slow\",type=\"probe-slow\"}", 1.0),
        ("dtp_task_queue_wait_seconds_count{queue=\"bulk\"}", 1.0),
        ("dtp_task_queue_wait_seconds_count{queue=\"slow\"}", 1.0),
        ("dtp_tasks{queue=\"bulk\",state=\"CANCELED\"}", 1.0),
        ("dtp_tasks{queue=\"slow\",state=\"FAILED\"}", 1.0),
        ("dtp_worker_slots{state=\"busy\"}", 0.0),
        ("dtp_worker_slots{state=\"free\"}", 8.0),
        ("dtp_tasks_pruned_total", 0.0),
        ("dtp_schedule_catch_ups_cut_total", 0.0),
        // The queue as the database has it.
        ("dtp_tasks{queue=\"default\",state=\"SUCCEEDED\"}", 10.0),
        ("dtp_tasks{queue=\"default\",state=\"FAILED\"}", 1.0),
        ("dtp_tasks{queue=\"default\",state=\"CANCELED\"}", 1.0),
        ("dtp_tasks{queue=\"default\",state=\"PENDING\"}", 0.0),
        ("dtp_tasks{queue=\"default\",state=\"RUNNING\"}", 0.0),
        ("dtp_tasks{queue=\"mail\",state=\"SUCCEEDED\"}", 3.0),
        ("dtp_tasks{queue=\"mail\",state=\"FAILED\"}", 2.0),
        ("dtp_queue_oldest_pending_age_seconds{queue=\"mail\"}", 0.0),
        // Requests, by route template: never an id.
        ("dtp_http_requests_total{route=\"/tasks\",method=\"POST\",status=\"201\"}", 18.0),
        ("dtp_http_requests_total{route=\"/tasks/bulk\",method=\"POST\",status=\"200\"}", 1.0),
        ("dtp_http_requests_total{route=\"/tasks/{id}/cancel\",method=\"PUT\",status=\"200\"}", 1.0),
        ("dtp_http_request_duration_seconds_count{route=\"/tasks\",method=\"POST\",status=\"201\"}", 18.0),
    ];
    scrape_until(&app.client, &url, &expected).await;
    // Nothing more comes later (a double count would): a few rescue rounds and depth reads on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let scrape = scrape(&app.client, &url).await;
    assert_eq!(scrape.mismatches(&expected), Vec::<String>::new());
    let stopped = "dtp_task_run_seconds_count{queue=\"default\",type=\"probe-slow\"}";
    assert_eq!(
        scrape.value(stopped),
        0.0,
        "a stopped handler has no run time"
    );

    // Claims: at least one per attempt started, each taking at least one task.
    assert!(scrape.value("dtp_claim_seconds_count") >= scrape.value("dtp_claim_batch_size_count"));
    assert_eq!(scrape.value("dtp_claim_batch_size_sum"), 21.0);
    let path = format!("/tasks/{slow}");
    let ids_in_labels = scrape.0.keys().any(|series| series.contains(&path));
    assert!(!ids_in_labels, "a label carries a task id");
}

#[tokio::test]
async fn scraped_as_fast_as_possible_the_depth_is_read_at_most_once_a_second() {
    let app = spawn_app().await;
    app.create(json!({"type": "noop"})).await;
    let url = app.url("/metrics");
    let before = scrape(&app.client, &url)
        .await
        .value("dtp_depth_reads_total");

    let started = Instant::now();
    let scrapers: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (app.client.clone(), url.clone());
            tokio::spawn(async move {
                let mut took = Vec::new();
                while started.elapsed() < Duration::from_secs(10) {
                    let sent = Instant::now();
                    let response = client.get(&url).sent().await;
                    assert_eq!(response.status(), StatusCode::OK);
                    response.bytes().await.expect("scrape body");
                    took.push(sent.elapsed());
                }
                took
            })
        })
        .collect();
    let mut took = Vec::new();
    for scraper in scrapers {
        took.extend(scraper.await.expect("scraper"));
    }
    let elapsed = started.elapsed();
    let reads = scrape(&app.client, &url)
        .await
        .value("dtp_depth_reads_total")
        - before;

    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    println!(
        "{} scrapes in {elapsed:.1?}: p50 {:?}, p99 {:?}, max {:?}; {reads} depth reads",
        took.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    assert!(took.len() > 100, "only {} scrapes answered", took.len());
    // One read per started second, and one more for the scrape that reads right away.
    let most = elapsed.as_secs_f64().ceil() + 1.0;
    assert!(
        reads >= 1.0 && reads <= most,
        "{reads} depth reads in {elapsed:?}"
    );
}

#[tokio::test]
async fn the_metrics_token_guards_metrics_and_only_metrics() {
    let app =
        spawn_app_with(|c| c.metrics_token = Some("scrape-secret".parse().expect("token"))).await;
    let url = app.url("/metrics");
    let refused = app.client.get(&url).sent().await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let wrong = app.client.get(&url).bearer_auth("guess").sent().await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let allowed = app
        .client
        .get(&url)
        .bearer_auth("scrape-secret")
        .sent()
        .await;
    assert_eq!(allowed.status(), StatusCode::OK);
    // The API token is a separate setting: none here, so the API stays open.
    let health = app.client.get(app.url("/healthz")).sent().await;
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_request_with_an_invented_method_adds_no_series_of_its_own() {
    let app = spawn_app().await;
    for method in ["BREW", "FOO", "X-ANYTHING"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        app.client.request(method, app.url("/tasks")).sent().await;
    }
    let url = app.url("/metrics");
    let expected = [(
        r#"dtp_http_requests_total{route="/tasks",method="other",status="405"}"#,
        3.0,
    )];
    let scrape = scrape_until(&app.client, &url, &expected).await;
    assert!(!scrape
        .0
        .keys()
        .any(|s| s.contains("BREW") || s.contains("FOO")));
}

#[tokio::test]
async fn the_api_token_and_the_metrics_token_each_open_only_their_own_routes() {
    let app = spawn_app_with(|c| {
        c.api_token = Some("api-secret".parse().expect("token"));
        c.metrics_token = Some("scrape-secret".parse().expect("token"));
    })
    .await;
    let (metrics, tasks) = (app.url("/metrics"), app.url("/tasks"));
    let get = |url: &str, token: &str| app.client.get(url).bearer_auth(token).sent();
    assert_eq!(
        get(&metrics, "api-secret").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&tasks, "scrape-secret").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&metrics, "scrape-secret").await.status(),
        StatusCode::OK
    );
    assert_eq!(get(&tasks, "api-secret").await.status(), StatusCode::OK);
}
