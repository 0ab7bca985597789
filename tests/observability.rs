//! Observability across the real binaries: one trace from a request to TaskPilot, through a DTP
//! process that only stores the task and another that runs it, to the `http` handler's request
//! to a stand-in server; spans exported over OTLP when the endpoint is set, linked to what was
//! sent on; JSON log lines; and every service's `/metrics` passes `promtool check metrics`,
//! with every metric the shipped dashboard and alert rules use.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::json;
use suite::{wait_until, Service, ServiceKind, System};
use testkit::TestDb;

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
    let url = serve_post("/hook", move |headers, _| {
        let traceparent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        recorded.lock().expect("lock").push(traceparent);
    })
    .await;
    (url, seen)
}

/// Serves `POST path` on a free loopback port, calling `record` with each request's headers
/// and body; its URL.
async fn serve_post(
    path: &str,
    record: impl Fn(HeaderMap, axum::body::Bytes) + Clone + Send + Sync + 'static,
) -> String {
    let app = axum::Router::new().route(
        path,
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let record = record.clone();
            async move {
                record(headers, body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}{path}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
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

#[tokio::test]
async fn with_an_otlp_endpoint_spans_are_exported_and_linked_to_what_is_sent_on_and_logs_are_json()
{
    let (url, seen) = recording_server().await;
    let exported = Arc::new(Mutex::new(Vec::<u8>::new()));
    let collector = exported.clone();
    let endpoint = serve_post("/v1/traces", move |headers, body| {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(content_type, "application/x-protobuf");
        collector.lock().expect("lock").extend_from_slice(&body);
    })
    .await;
    let db = TestDb::create().await;
    let env = [
        ("DTP_DATABASE_URL", db.url.as_str()),
        ("DTP_HTTP_ALLOW_PRIVATE", "true"),
        ("LOG_FORMAT", "json"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            endpoint.trim_end_matches("/v1/traces"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let dtp = Service::start(ServiceKind::Dtp, "dtp-otel", suite::owned_env(&env)).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let created = reqwest::Client::new()
        .post(format!("{}/tasks", dtp.url()))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({"type": "http", "payload": {"url": url, "body": {}}}))
        .send()
        .await
        .expect("create sent");
    assert_eq!(created.status(), StatusCode::CREATED);
    wait_until("the stand-in is called", async || {
        !seen.lock().expect("lock").is_empty()
    })
    .await;
    let (sent_trace, sent_parent) = trace_and_span(&seen.lock().expect("lock")[0]);
    assert_eq!(sent_trace, trace);

    // The attempt's span, exported, is the parent named in what the handler sent on.
    let (trace_bytes, span_bytes) = (hex_bytes(trace), hex_bytes(&sent_parent));
    wait_until("the attempt's span is exported", async || {
        let body = exported.lock().expect("lock");
        body.windows(8).any(|w| w == span_bytes.as_slice())
    })
    .await;
    let body = exported.lock().expect("lock").clone();
    assert!(body.windows(16).any(|w| w == trace_bytes.as_slice()));
    assert!(body.windows(3).any(|w| w == b"dtp"), "service name");

    let log = dtp.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let traced = lines
        .iter()
        .filter(|line| line["span"]["trace_id"] == trace)
        .count();
    assert!(
        traced >= 2,
        "the request's and the attempt's lines carry the trace id:\n{log}"
    );
}

/// The metric names `text` (PromQL, or a rules file) uses: every word that starts with one of
/// our prefixes.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    for c in text.chars().chain([' ']) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if word.starts_with("dtp_") || word.starts_with("taskpilot_") {
            names.insert(word.clone());
        }
        word.clear();
    }
    names
}

/// The names of the samples `exposition` holds.
fn served_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Runs `promtool` over `exposition`; panics with its complaints.
fn promtool_check_metrics(promtool: &std::path::Path, service: &str, exposition: &str) {
    use std::io::Write;
    let mut promtool = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian's `prometheus` package; .ci/run installs it)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("exposition written");
    let checked = promtool.wait_with_output().expect("promtool ran");
    assert!(
        checked.status.success(),
        "promtool check metrics of {service}:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[tokio::test]
async fn the_scrapes_pass_promtool_and_hold_every_metric_the_dashboard_and_alerts_use() {
    let Some(promtool) = testkit::tool_or_skip(
        testkit::find_program("PROMTOOL", &["promtool"]),
        "prometheus",
    ) else {
        return;
    };
    let (url, seen) = recording_server().await;
    let system = System::start().await;
    // A workload that gives every family a series: a task through TaskPilot that calls out.
    call_through(&system, &url, &seen, None).await;
    let client = reqwest::Client::new();
    let dtp_metrics = format!("{}/metrics", system.dtp[0].url());
    wait_until("the task's success is counted", async || {
        let scrape = testkit::metrics::scrape(&client, &dtp_metrics).await;
        scrape
            .0
            .keys()
            .any(|s| s.starts_with("dtp_task_attempts_total{"))
    })
    .await;
    let mut served = BTreeSet::new();
    for service in [&system.dtp[0], &system.taskpilot] {
        let exposition = client
            .get(format!("{}/metrics", service.url()))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("scrape body");
        promtool_check_metrics(&promtool, service.name(), &exposition);
        served.extend(served_names(&exposition));
    }

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard_text =
        std::fs::read_to_string(root.join("docker/grafana/dashboards/taskpilot.json"))
            .expect("dashboard");
    let dashboard: serde_json::Value =
        serde_json::from_str(&dashboard_text).expect("dashboard JSON");
    let alerts =
        std::fs::read_to_string(root.join("docker/prometheus/alerts.yml")).expect("alerts");
    let mut used = metric_names_in(&alerts);
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_i64().expect("panel id")),
            "panel ids are unique"
        );
        let grid = &panel["gridPos"];
        let right = grid["x"].as_i64().expect("x") + grid["w"].as_i64().expect("w");
        assert!(right <= 24, "panel {} fits the grid", panel["title"]);
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "prometheus",
            "provisioned data source"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has a query", panel["title"]);
        for target in targets {
            used.extend(metric_names_in(target["expr"].as_str().expect("expr")));
        }
    }
    let missing: Vec<_> = used.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "used by the dashboard or alerts, not served: {missing:?}"
    );
    assert!(used.len() >= 15, "the dashboard and alerts use {used:?}");
}
