//! Observability across the real binaries: one trace from a request to TaskPilot, through a DTP
//! process that only stores the task and another that runs it, to the `http` handler's request
//! to a stand-in server; and every service's `/metrics` passes `promtool check metrics`, with
//! every metric the shipped dashboard and alert rules use.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::json;
use suite::{wait_until, System};

/// A `traceparent`'s trace id and parent span id.
fn trace_and_span(traceparent: &str) -> (String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "traceparent {traceparent:?}");
    assert_eq!(
        (fields[0].len(), fields[1].len(), fields[2].len()),
        (2, 32, 16)
    );
    (fields[1].to_owned(), fields[2].to_owned())
}

/// A server that records the `traceparent` of every request it gets; its URL.
async fn recording_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap| {
            let recorded = recorded.clone();
            async move {
                let traceparent = headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned();
                recorded.lock().expect("lock").push(traceparent);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// Creates and binds a web task whose DTP task calls `url`, sending `traceparent` (if any) on
/// the bind; waits until the stand-in was called, and returns what it got and the DTP task id.
async fn call_through(
    system: &System,
    url: &str,
    seen: &Arc<Mutex<Vec<String>>>,
    traceparent: Option<&str>,
) -> (String, i64) {
    let api = &system.api;
    let id = api
        .create_id(json!({"type": "http", "payload": {"url": url, "body": {}}}))
        .await;
    let mut bind = api
        .http
        .post(api.url(&format!("/api/tasks/{id}/scheduler")))
        .json(&json!({}));
    if let Some(traceparent) = traceparent {
        bind = bind.header("traceparent", traceparent);
    }
    let bound = bind.send().await.expect("bind sent");
    assert_eq!(bound.status(), StatusCode::OK);
    let bound: common::WebTask = bound.json().await.expect("web task");
    wait_until("the stand-in is called", async || {
        !seen.lock().expect("lock").is_empty()
    })
    .await;
    let received = seen.lock().expect("lock").remove(0);
    (received, bound.scheduler_task_id.expect("bound"))
}

#[tokio::test]
async fn one_trace_runs_from_taskpilot_through_both_dtp_processes_to_the_http_handlers_request() {
    let (url, seen) = recording_server().await;
    // dtp-0 (which TaskPilot calls) stores the task; only dtp-1 runs tasks.
    let system = System::start_with(2, true).await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let incoming = format!("00-{trace}-b7ad6b7169203331-01");

    let (received, task_id) = call_through(&system, &url, &seen, Some(&incoming)).await;

    let (sent_trace, sent_parent) = trace_and_span(&received);
    assert_eq!(
        sent_trace, trace,
        "the handler's request continues the trace"
    );
    let stored: Option<String> = sqlx::query_scalar("select traceparent from tasks where id = $1")
        .bind(task_id)
        .fetch_one(&system.dtp_pool)
        .await
        .expect("stored trace context");
    let (stored_trace, stored_parent) = trace_and_span(&stored.expect("stored with the task"));
    assert_eq!(stored_trace, trace);
    // A span of each hop in between: TaskPilot's request, DTP's request, the attempt.
    let spans = BTreeSet::from([
        "b7ad6b7169203331",
        stored_parent.as_str(),
        sent_parent.as_str(),
    ]);
    assert_eq!(spans.len(), 3, "each hop has its own span");
    for service in [&system.taskpilot, &system.dtp[0], &system.dtp[1]] {
        assert!(
            service.log_text().contains(trace),
            "{}'s log lines do not carry the trace id",
            service.name()
        );
    }
}

#[tokio::test]
async fn a_request_without_a_trace_starts_one_that_reaches_the_http_handlers_request() {
    let (url, seen) = recording_server().await;
    let system = System::start().await;

    let (received, _) = call_through(&system, &url, &seen, None).await;

    let (trace, _) = trace_and_span(&received);
    assert_ne!(trace, "0".repeat(32));
    assert!(system.taskpilot.log_text().contains(&trace));
    let garbage = Some("00-not-a-trace-01");
    let (received, _) = call_through(&system, &url, &seen, garbage).await;
    let (other, _) = trace_and_span(&received);
    assert_ne!(other, trace, "an invalid traceparent starts a new trace");
}
