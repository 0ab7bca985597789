//! The HTTP API of DTP, route by route of docs/contract.md, against a real PostgreSQL.

mod support;

use common::{RetryState, TaskPage, TaskStatus};
use dtp::queue::{self, TaskId};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{api_only_with, assert_problem, claim, TestApp};
use testkit::Sent;

const JSON: &str = "application/json";

/// API only: tasks stay where the test puts them.
async fn api_only() -> TestApp {
    api_only_with(|_| {}).await
}

#[tokio::test]
async fn create_answers_201_with_location_and_a_pending_task() {
    let app = api_only().await;

    let response = app
        .post_task(json!({"type": "demo", "payload": "hello", "maxAttempts": 5, "priority": 7}))
        .await;

    let (location, task): (_, common::TaskView) = testkit::created(response).await;
    assert_eq!(location, format!("/tasks/{}", task.id));
    assert_eq!(task.task_type, "demo");
    assert_eq!(task.payload, json!("hello"));
    assert_eq!(task.queue, "default");
    assert_eq!(task.status, TaskStatus::Pending);
    assert_eq!(task.retry_state, RetryState::None);
    assert_eq!(
        (task.attempt_count, task.max_attempts, task.priority),
        (0, 5, 7)
    );
    assert_eq!(task.scheduled_for, task.created_at);
    assert!(task.processing_started_at.is_none() && task.completed_at.is_none());
}

#[tokio::test]
async fn a_task_is_created_in_the_queue_it_names_and_listed_by_queue() {
    let app = api_only().await;
    let long_name = "q".repeat(100);
    let emails = app
        .create(json!({"type": "noop", "queue": "emails:eu-1.v2_a"}))
        .await;
    let long = app
        .create(json!({"type": "noop", "queue": long_name}))
        .await;
    app.create(json!({"type": "noop"})).await;

    let page: TaskPage = app.get_ok("/tasks?queue=emails:eu-1.v2_a").await;
    let too_long = app.post_task(json!({"type": "noop", "queue": "q".repeat(101)}));
    let bad_filter = app.client.get(app.url("/tasks?queue=two%20words")).sent();

    assert_eq!(emails.queue, "emails:eu-1.v2_a");
    assert_eq!(long.queue, long_name);
    let ids: Vec<i64> = page.tasks.iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![emails.id]);
    assert_problem(too_long.await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_problem(bad_filter.await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn a_key_reused_in_another_queue_is_409_and_naming_the_default_queue_is_the_same_request() {
    let app = api_only().await;
    let first = app
        .create(json!({"type": "noop", "idempotencyKey": "q-1"}))
        .await;

    let same = app
        .post_task(json!({"type": "noop", "idempotencyKey": "q-1", "queue": "default"}))
        .await;
    let other = app
        .post_task(json!({"type": "noop", "idempotencyKey": "q-1", "queue": "emails"}))
        .await;

    assert_eq!(same.status(), StatusCode::OK);
    let same: common::TaskView = same.json().await.expect("task");
    assert_eq!(same.id, first.id);
    assert_problem(other, StatusCode::CONFLICT).await;
    assert_eq!(app.count_tasks().await, 1);
}

#[tokio::test]
async fn task_bodies_use_camel_case_and_millisecond_utc_timestamps() {
    let app = api_only().await;
    let id = app.create(json!({"type": "noop"})).await.id;

    let body: Value = app
        .client
        .get(app.url(&format!("/tasks/{id}")))
        .sent()
        .await
        .json()
        .await
        .expect("json");

    for key in [
        "id",
        "type",
        "payload",
        "queue",
        "status",
        "attemptCount",
        "maxAttempts",
        "retryState",
        "scheduledFor",
        "processingStartedAt",
        "completedAt",
        "nextAttemptAt",
        "lastError",
        "result",
        "workerId",
        "createdAt",
        "updatedAt",
    ] {
        assert!(body.get(key).is_some(), "missing {key} in {body}");
    }
    let created = body["createdAt"].as_str().expect("string");
    assert_eq!(created.len(), "2026-01-29T20:51:42.077Z".len(), "{created}");
    assert!(created.ends_with('Z'));
}

#[tokio::test]
async fn default_max_attempts_is_three() {
    let app = api_only().await;
    assert_eq!(app.create(json!({"type": "demo"})).await.max_attempts, 3);
}

#[tokio::test]
async fn a_future_run_at_is_the_scheduled_time_and_is_not_claimed_early() {
    let app = api_only().await;
    let run_at = "2099-01-01T00:00:00.000Z";

    let task = app.create(json!({"type": "demo", "runAt": run_at})).await;
    let claimed = claim(&app.pool, "w", 10, std::time::Duration::from_secs(5)).await;

    assert_eq!(task.scheduled_for.to_rfc3339(), "2099-01-01T00:00:00+00:00");
    assert!(claimed.is_empty());
}

#[tokio::test]
async fn get_of_an_unknown_task_is_404_problem() {
    let app = api_only().await;
    let response = app.client.get(app.url("/tasks/424242")).sent().await;
    let detail = assert_problem(response, StatusCode::NOT_FOUND).await;
    assert!(detail.contains("424242"), "{detail}");
}

#[tokio::test]
async fn list_is_newest_first_filtered_and_paged() {
    let app = api_only().await;
    let mut ids = Vec::new();
    for task_type in ["demo", "noop", "demo", "noop", "demo"] {
        ids.push(app.create(json!({"type": task_type})).await.id);
    }
    app.cancel(ids[0]).await;

    let page = |query: &'static str| {
        let app = &app;
        async move { app.get_ok::<TaskPage>(&format!("/tasks?{query}")).await }
    };
    let all = page("").await;
    let demos = page("type=demo").await;
    let canceled = page("status=CANCELED").await;
    let first_two = page("limit=2").await;

    let all_ids: Vec<i64> = all.tasks.iter().map(|t| t.id).collect();
    assert_eq!(all_ids, ids.iter().rev().copied().collect::<Vec<_>>());
    assert_eq!(demos.tasks.len(), 3);
    assert!(demos.tasks.iter().all(|t| t.task_type == "demo"));
    assert_eq!(canceled.tasks.len(), 1);
    assert_eq!(canceled.tasks[0].id, ids[0]);
    assert_eq!(first_two.tasks.len(), 2);
    let next = first_two.next_after.expect("more pages");
    let rest = app
        .client
        .get(app.url(&format!("/tasks?limit=10&after={next}")))
        .sent()
        .await
        .json::<TaskPage>()
        .await
        .expect("page");
    assert_eq!(rest.tasks.len(), 3);
    assert_eq!(rest.next_after, None);
}

#[tokio::test]
async fn bad_list_filters_are_400_problem() {
    let app = api_only().await;
    for query in [
        "status=DONE",
        "limit=0",
        "limit=501",
        "limit=x",
        "after=-1",
        "colour=red",
    ] {
        let response = app
            .client
            .get(app.url(&format!("/tasks?{query}")))
            .sent()
            .await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn cancel_of_a_pending_task_makes_it_canceled_and_repeating_it_is_idempotent() {
    let app = api_only().await;
    let id = app.create(json!({"type": "demo"})).await.id;

    let first = app.cancel(id).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: common::TaskView = first.json().await.expect("task");
    let second = app.cancel(id).await;
    assert_eq!(second.status(), StatusCode::OK);
    let second: common::TaskView = second.json().await.expect("task");

    assert_eq!(first.status, TaskStatus::Canceled);
    assert_eq!(first.retry_state, RetryState::Canceled);
    assert!(first.completed_at.is_some());
    assert_eq!(second.status, TaskStatus::Canceled);
    assert_eq!(second.completed_at, first.completed_at);
    let claimed = claim(&app.pool, "w", 10, std::time::Duration::from_secs(5)).await;
    assert!(claimed.is_empty(), "a canceled task must never be claimed");
}

/// Asserts that cancel of task `id`, which is `state`, is 409 naming the state and changes
/// nothing.
async fn assert_cancel_refused(app: &TestApp, id: i64, state: TaskStatus) {
    let detail = assert_problem(app.cancel(id).await, StatusCode::CONFLICT).await;
    assert_eq!(detail, format!("Cannot cancel task in state {state}"));
    assert_eq!(app.get_task(id).await.status, state);
}

#[tokio::test]
async fn cancel_of_a_succeeded_task_is_409_naming_the_state() {
    let app = api_only().await;
    let id = app.create(json!({"type": "demo"})).await.id;
    let claimed = claim(&app.pool, "w", 1, std::time::Duration::from_secs(5)).await;
    assert!(
        queue::mark_succeeded(&app.pool, TaskId(id), claimed[0].fence(), &json!("ok"))
            .await
            .expect("complete")
    );

    assert_cancel_refused(&app, id, TaskStatus::Succeeded).await;
}

#[tokio::test]
async fn cancel_of_a_failed_task_is_409_naming_the_state() {
    let app = api_only().await;
    let id = app
        .create_id(json!({"type": "demo", "maxAttempts": 1}))
        .await;
    let claimed = claim(&app.pool, "w", 1, std::time::Duration::from_secs(5)).await;
    queue::mark_failed_or_retry(
        &app.pool,
        TaskId(id),
        claimed[0].fence(),
        "boom",
        std::time::Duration::ZERO,
        queue::Failure::Retryable,
    )
    .await
    .expect("fail")
    .expect("fence held");

    assert_cancel_refused(&app, id, TaskStatus::Failed).await;
}

#[tokio::test]
async fn cancel_of_an_unknown_task_is_404_problem() {
    let app = api_only().await;
    assert_problem(app.cancel(999).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_task_with_200() {
    let app = api_only().await;
    let request = json!({"type": "demo", "payload": {"a": 1, "b": 2}, "idempotencyKey": "k-1"});
    let first = app.create(request).await;

    let again = app
        .post_task(json!({"idempotencyKey": "k-1", "payload": {"b": 2, "a": 1}, "type": "demo"}))
        .await;

    assert_eq!(again.status(), StatusCode::OK);
    let again: common::TaskView = again.json().await.expect("task");
    assert_eq!(again.id, first.id);
    assert_eq!(app.count_tasks().await, 1);
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_request_is_409() {
    let app = api_only().await;
    app.create(json!({"type": "demo", "payload": 1, "idempotencyKey": "k-2"}))
        .await;

    let other = app
        .post_task(json!({"type": "demo", "payload": 2, "idempotencyKey": "k-2"}))
        .await;

    assert_problem(other, StatusCode::CONFLICT).await;
    assert_eq!(app.count_tasks().await, 1);
}

#[tokio::test]
async fn a_keyed_repeat_is_the_same_request_on_a_process_with_another_default_max_attempts() {
    let app = api_only_with(|c| c.default_max_attempts = 3).await;
    let (peer, _peer) = support::spawn_peer(&app, |c| c.default_max_attempts = 5).await;
    let request = json!({"type": "demo", "payload": "p", "idempotencyKey": "k-defaults"});
    let first = app.create(request.clone()).await;

    let repeat = app
        .client
        .post(format!("{peer}/tasks"))
        .json(&request)
        .sent()
        .await;

    assert_eq!(
        repeat.status(),
        StatusCode::OK,
        "a genuine retry, not a conflict"
    );
    let repeat: common::TaskView = repeat.json().await.expect("task");
    assert_eq!(repeat.id, first.id);
    assert_eq!(repeat.max_attempts, 3, "the first request's default stands");
}

#[tokio::test]
async fn ten_concurrent_creates_with_one_key_make_one_task() {
    let app = api_only().await;
    let request = json!({"type": "demo", "payload": "same", "idempotencyKey": "race"});

    let sends: Vec<_> = (0..10)
        .map(|_| {
            let (client, url, body) = (app.client.clone(), app.url("/tasks"), request.clone());
            tokio::spawn(async move { client.post(url).json(&body).sent().await })
        })
        .collect();

    let mut ids = Vec::new();
    let mut created = 0;
    for send in sends {
        let answer = send.await.expect("joined");
        assert!(answer.status() == StatusCode::CREATED || answer.status() == StatusCode::OK);
        created += usize::from(answer.status() == StatusCode::CREATED);
        ids.push(answer.json::<common::TaskView>().await.expect("task").id);
    }
    assert_eq!(created, 1);
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert_eq!(app.count_tasks().await, 1);
}

#[tokio::test]
async fn times_outside_years_1_to_9999_are_refused_everywhere_and_store_nothing() {
    let app = api_only().await;
    // One minute east of UTC: year 0 in UTC, which PostgreSQL stores but cannot read back
    // into a page.
    let year_zero = "0000-01-01T00:00:00+00:01";

    let create = app
        .post_task(json!({"type": "demo", "runAt": year_zero}))
        .await;
    let batch = app
        .post_batch(&json!([{"type": "demo"}, {"type": "demo", "runAt": "+10000-01-01T00:00:00Z"}]))
        .await;
    let bulk = app
        .client
        .post(app.url("/tasks/bulk"))
        .json(&json!({"action": "cancel", "filter": {"createdBefore": year_zero}}))
        .sent()
        .await;
    let list = app
        .client
        .get(app.url("/tasks?createdAfter=0000-01-01T00:00:00%2B00:01"))
        .sent()
        .await;

    for (response, status) in [
        (create, StatusCode::UNPROCESSABLE_ENTITY),
        (batch, StatusCode::UNPROCESSABLE_ENTITY),
        (bulk, StatusCode::UNPROCESSABLE_ENTITY),
        (list, StatusCode::BAD_REQUEST),
    ] {
        let detail = assert_problem(response, status).await;
        assert!(detail.contains("year 1 to 9999"), "{detail}");
    }
    app.assert_no_tasks().await;
    let page: TaskPage = app.get_ok("/tasks").await;
    assert!(page.tasks.is_empty());
}

#[tokio::test]
async fn bad_input_gets_the_right_problem_and_writes_nothing() {
    let app = api_only().await;
    let post_raw = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/tasks"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    // (body, content type, status, a word the detail must name)
    const BAD: StatusCode = StatusCode::BAD_REQUEST;
    const INVALID: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;
    #[rustfmt::skip] // a table: one case a line
    let cases = [
        (r#"{"type": "demo""#, JSON, BAD, "JSON"),
        (r#"{"type": "nope"}"#, JSON, INVALID, "demo-slow"),
        (r#"{"type": "demo", "maxAttempts": 0}"#, JSON, INVALID, "maxAttempts"),
        (r#"{"type": "demo", "maxAttempts": 101}"#, JSON, INVALID, "maxAttempts"),
        (r#"{"type": "demo", "maxAttempts": "3"}"#, JSON, INVALID, "maxAttempts"),
        (r#"{"type": "demo", "priority": 5000}"#, JSON, INVALID, "priority"),
        (r#"{"type": "demo", "timeoutMs": 0}"#, JSON, INVALID, "timeoutMs"),
        (r#"{"type": "demo", "idempotencyKey": ""}"#, JSON, INVALID, "idempotencyKey"),
        (r#"{"type": "demo", "runAt": "tomorrow"}"#, JSON, INVALID, "year 1 to 9999"),
        (r#"{"type": "demo", "surprise": 1}"#, JSON, INVALID, "surprise"),
        (r#"{"payload": 1}"#, JSON, INVALID, "type"),
        (r#"{"type": "demo", "queue": ""}"#, JSON, INVALID, "queue"),
        (r#"{"type": "demo", "queue": "two words"}"#, JSON, INVALID, "queue"),
        (r#"{"type": "demo", "queue": "caf\u00e9"}"#, JSON, INVALID, "queue"),
        (r#"{"type": "demo", "queue": 7}"#, JSON, INVALID, "queue"),
        (r#"{"type": "demo"}"#, "text/plain", StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type"),
        (r#"["demo"]"#, JSON, INVALID, "object"),
    ];
    for (body, content_type, status, mentions) in cases {
        let response = post_raw(body, content_type).await.expect("sent");
        let detail = assert_problem(response, status).await;
        assert!(
            detail.contains(mentions),
            "{body}: {status}: {detail:?} should mention {mentions:?}"
        );
    }

    let oversized = format!(
        r#"{{"type": "demo", "payload": "{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let response = app
        .client
        .post(app.url("/tasks"))
        .header("content-type", JSON)
        .body(oversized)
        .sent()
        .await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;

    // serde's derive reads a struct from an array of its fields in order: every body that is
    // an object, and every object inside one, refuses an array; the batch, a list, refuses an
    // object.
    #[rustfmt::skip]
    let shapes = [
        (Method::POST, "/tasks/bulk", r#"["cancel", {"all": true}]"#, "object"),
        (Method::POST, "/schedules", r#"["s", "* * * * *", "UTC", {"type": "demo"}]"#, "object"),
        (Method::PATCH, "/schedules/s", "[true]", "object"),
        (Method::PATCH, "/queues/q", "[true]", "object"),
        (Method::POST, "/tasks/batch", r#"{"type": "demo"}"#, "sequence"),
        (Method::POST, "/tasks/batch", r#"[["demo"]]"#, "object"),
        (Method::POST, "/tasks/bulk", r#"{"action": "cancel", "filter": [null, null, null, null, null, true]}"#, "object"),
        (Method::POST, "/schedules", r#"{"name": "s", "cron": "* * * * *", "task": ["demo"]}"#, "object"),
        (Method::PATCH, "/schedules/s", r#"{"task": ["demo"]}"#, "object"),
    ];
    for (method, path, body, mentions) in shapes {
        let response = app
            .client
            .request(method, app.url(path))
            .header("content-type", JSON)
            .body(body)
            .sent()
            .await;
        let detail = assert_problem(response, INVALID).await;
        assert!(detail.contains(mentions), "{path} {body}: {detail:?}");
    }
    let schedules: Value = app.get_ok("/schedules").await;
    assert_eq!(schedules["schedules"], json!([]), "no schedule was made");

    app.assert_no_tasks().await;
}

#[tokio::test]
async fn bad_ids_unknown_routes_and_wrong_methods_are_problem_json() {
    let app = api_only().await;
    let cases = [
        (Method::GET, "/tasks/abc", StatusCode::BAD_REQUEST),
        (Method::GET, "/tasks/0", StatusCode::BAD_REQUEST),
        (Method::GET, "/tasks/-5", StatusCode::BAD_REQUEST),
        (
            Method::GET,
            "/tasks/99999999999999999999",
            StatusCode::BAD_REQUEST,
        ),
        (Method::PUT, "/tasks/abc/cancel", StatusCode::BAD_REQUEST),
        (Method::GET, "/no/such/route", StatusCode::NOT_FOUND),
        (
            Method::DELETE,
            "/tasks/1/cancel",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::GET,
            "/tasks/1/cancel",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (method, path, status) in cases {
        let response = app.client.request(method, app.url(path)).send().await;
        assert_problem(response.expect("sent"), status).await;
    }
}

#[tokio::test]
async fn health_and_readiness_answer_200_with_a_database() {
    let app = api_only().await;
    for path in ["/healthz", "/readyz"] {
        let response = app.client.get(app.url(path)).sent().await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn a_batch_creates_every_task_in_request_order() {
    let app = api_only().await;
    let batch = json!([
        {"type": "noop", "payload": 1},
        {"type": "demo", "payload": 2, "priority": 5},
        {"type": "noop", "payload": 3, "maxAttempts": 7},
    ]);

    let response = app.post_batch(&batch).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let created: common::BatchCreated = response.json().await.expect("batch");
    assert_eq!(created.created, 3);
    let payloads: Vec<Value> = created.tasks.iter().map(|t| t.payload.clone()).collect();
    assert_eq!(payloads, vec![json!(1), json!(2), json!(3)]);
    assert_eq!(created.tasks[1].priority, 5);
    assert_eq!(created.tasks[2].max_attempts, 7);
    assert!(created
        .tasks
        .iter()
        .all(|t| t.status == TaskStatus::Pending));
    assert_eq!(app.count_tasks().await, 3);
}

#[tokio::test]
async fn a_batch_with_one_invalid_item_is_422_naming_it_and_writes_nothing() {
    let app = api_only().await;
    let batch = json!([{"type": "noop"}, {"type": "noop", "maxAttempts": 0}]);

    let response = app.post_batch(&batch).await;

    let detail = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(detail.starts_with("tasks[1]:"), "{detail}");
    app.assert_no_tasks().await;
}

#[tokio::test]
async fn an_empty_or_oversized_batch_is_422() {
    let app = api_only().await;
    let too_many: Vec<Value> = (0..1001).map(|_| json!({"type": "noop"})).collect();
    for batch in [json!([]), json!(too_many)] {
        let response = app.post_batch(&batch).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    app.assert_no_tasks().await;
}

#[tokio::test]
async fn a_repeated_batch_with_idempotency_keys_returns_the_same_tasks_with_200() {
    let app = api_only().await;
    let batch = json!([
        {"type": "noop", "payload": "a", "idempotencyKey": "b-1"},
        {"type": "noop", "payload": "b"},
        {"type": "noop", "payload": "a", "idempotencyKey": "b-1"},
    ]);
    let first: common::BatchCreated = app.post_batch(&batch).await.json().await.expect("batch");

    let keyed_only = json!([{"type": "noop", "payload": "a", "idempotencyKey": "b-1"}]);
    let again = app.post_batch(&keyed_only).await;

    assert_eq!(
        first.created, 2,
        "the key repeated inside the batch makes one task"
    );
    assert_eq!(first.tasks[0].id, first.tasks[2].id);
    assert_eq!(again.status(), StatusCode::OK);
    let again: common::BatchCreated = again.json().await.expect("batch");
    assert_eq!((again.created, again.tasks[0].id), (0, first.tasks[0].id));
    assert_eq!(app.count_tasks().await, 2);
}

#[tokio::test]
async fn a_batch_reusing_a_key_for_another_request_is_409_and_writes_nothing() {
    let app = api_only().await;
    app.create(json!({"type": "noop", "payload": 1, "idempotencyKey": "taken"}))
        .await;
    let batch =
        json!([{"type": "noop"}, {"type": "noop", "payload": 2, "idempotencyKey": "taken"}]);

    let response = app.post_batch(&batch).await;

    assert_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(app.count_tasks().await, 1);
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_the_known_types() {
    let app = api_only().await;

    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .sent()
        .await
        .json()
        .await
        .expect("json");

    for path in [
        "/tasks",
        "/tasks/batch",
        "/tasks/{id}",
        "/tasks/{id}/cancel",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    let types = &doc["components"]["schemas"]["CreateTask"]["properties"]["type"]["enum"];
    assert!(
        types
            .as_array()
            .expect("enum")
            .contains(&json!("demo-slow")),
        "{types}"
    );
}

#[tokio::test]
async fn nul_characters_are_refused_with_4xx_and_nothing_is_written() {
    let app = api_only().await;
    let nul_payload = app
        .post_task(json!({"type": "demo", "payload": {"k": "a\u{0}b"}}))
        .await;
    let nul_key = app
        .post_task(json!({"type": "demo", "idempotencyKey": "k\u{0}"}))
        .await;
    let nul_filter = app.client.get(app.url("/tasks?type=a%00b")).sent().await;

    let invalid = StatusCode::UNPROCESSABLE_ENTITY;
    for (refused, status) in [(nul_payload, invalid), (nul_key, invalid)] {
        assert_problem(refused, status).await;
    }
    assert_problem(nul_filter, StatusCode::BAD_REQUEST).await;
    app.assert_no_tasks().await;
}

#[tokio::test]
async fn a_stored_status_the_code_does_not_know_is_an_error_not_another_state() {
    let app = api_only().await;
    let id = app.create(json!({"type": "noop"})).await.id;
    // A newer version's state, or a hand edit: the schema's check is lifted to plant it.
    sqlx::query("alter table tasks drop constraint tasks_status_check")
        .execute(&app.pool)
        .await
        .expect("drop check");
    app.plant("update tasks set status = 'PAUSED' where id = $1", id)
        .await;

    let read = app
        .client
        .get(app.url(&format!("/tasks/{id}")))
        .sent()
        .await;
    let cancel = app.cancel(id).await;

    assert_problem(read, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert_problem(cancel, StatusCode::INTERNAL_SERVER_ERROR).await;
}

#[tokio::test]
async fn a_create_with_a_traceparent_stores_its_own_span_in_that_trace_and_one_without_stores_none()
{
    let app = api_only_with(|_| {}).await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = app
        .client
        .post(app.url("/tasks"))
        .header("traceparent", incoming)
        .json(&json!({"type": "noop"}))
        .sent()
        .await;
    assert_eq!(traced.status(), StatusCode::CREATED);
    let traced: common::TaskView = traced.json().await.expect("task");
    let untraced = app.create(json!({"type": "noop"})).await;
    let invalid = app
        .client
        .post(app.url("/tasks"))
        .header(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )
        .json(&json!({"type": "noop"}))
        .sent()
        .await;
    assert_eq!(
        invalid.status(),
        StatusCode::CREATED,
        "an invalid traceparent is ignored"
    );
    let invalid: common::TaskView = invalid.json().await.expect("task");

    let stored = |id: i64| {
        sqlx::query_scalar::<_, Option<String>>("select traceparent from tasks where id = $1")
            .bind(id)
            .fetch_one(&app.pool)
    };
    let kept = stored(traced.id).await.expect("read").expect("stored");
    assert!(
        kept.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{kept}"
    );
    assert!(
        !kept.contains("00f067aa0ba902b7"),
        "DTP's own span, not the caller's"
    );
    assert_eq!(stored(untraced.id).await.expect("read"), None);
    assert_eq!(stored(invalid.id).await.expect("read"), None);
}
