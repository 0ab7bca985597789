//! TaskPilot against a real DTP and a real PostgreSQL: create, bind, execution view, cancel, and
//! every row of the error-translation table (docs/contract.md) that a healthy DTP can produce.

mod support;

use common::{RetryState, TaskStatus, WebTaskPage, WebTaskStatus};
use reqwest::{Method, StatusCode};
use testkit::Sent;

const JSON: &str = "application/json";
use serde_json::json;
use support::{
    assert_problem, dtp_task_count, spawn_dtp, spawn_system, spawn_taskpilot, TaskPilotClient,
};
use testkit::scenarios::Against;

#[tokio::test]
async fn create_answers_201_with_a_pending_unbound_web_task() {
    let system = spawn_system().await;

    let response = system
        .api()
        .post("/api/tasks", json!({"type": "demo", "payload": "hello"}))
        .await;

    let (location, task): (_, common::WebTask) = testkit::created(response).await;
    assert_eq!(location, format!("/api/tasks/{}", task.id));
    assert_eq!(task.task_type, "demo");
    assert_eq!(task.payload, json!("hello"));
    assert_eq!(task.status, WebTaskStatus::Pending);
    assert_eq!(task.scheduler_task_id, None);
    assert_eq!(
        dtp_task_count(&system.dtp).await,
        0,
        "create alone asks nothing of DTP"
    );
}

#[tokio::test]
async fn get_returns_the_web_task_and_404_for_an_unknown_one() {
    let system = spawn_system().await;
    let api = system.api();
    let created = api.create(json!({"type": "demo"})).await;

    let found = api.get(&format!("/api/tasks/{}", created.id)).await;
    let missing = api.get("/api/tasks/987654").await;

    assert_eq!(found.status(), StatusCode::OK);
    assert_eq!(
        found.json::<common::WebTask>().await.expect("web task"),
        created
    );
    assert_problem(missing, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn list_pages_newest_first() {
    let system = spawn_system().await;
    let api = system.api();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(api.create(json!({"type": "demo"})).await.id);
    }

    let first: WebTaskPage = api
        .get("/api/tasks?limit=2")
        .await
        .json()
        .await
        .expect("page");
    let after = first.next_after.expect("a next page");
    let second: WebTaskPage = api
        .get(&format!("/api/tasks?limit=2&after={after}"))
        .await
        .json()
        .await
        .expect("page");

    let first_ids: Vec<i64> = first.tasks.iter().map(|t| t.id).collect();
    assert_eq!(first_ids, vec![ids[2], ids[1]]);
    assert_eq!(second.tasks.len(), 1);
    assert_eq!(second.tasks[0].id, ids[0]);
    assert_eq!(second.next_after, None);
}

#[tokio::test]
async fn a_repeated_idempotency_key_replays_the_first_answer() {
    let system = spawn_system().await;
    let send = |payload: serde_json::Value| {
        system
            .client
            .post(system.taskpilot.url("/api/tasks"))
            .header("idempotency-key", "order-42")
            .json(&json!({"type": "demo", "payload": payload}))
            .send()
    };

    let first = send(json!({"n": 1})).await.expect("sent");
    let again = send(json!({"n": 1})).await.expect("sent");
    let different = send(json!({"n": 2})).await.expect("sent");

    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let first: common::WebTask = first.json().await.expect("web task");
    let again: common::WebTask = again.json().await.expect("web task");
    assert_eq!(first, again);
    // The same answer as DTP's for a key reused with another request.
    assert_problem(different, StatusCode::CONFLICT).await;
    let count: i64 = sqlx::query_scalar("select count(*) from web_tasks")
        .fetch_one(&system.taskpilot.pool)
        .await
        .expect("count");
    assert_eq!(count, 1);
}

#[tokio::test]
async fn bind_creates_one_dtp_task_and_marks_the_web_task_submitted() {
    let system = spawn_system().await;
    let api = system.api();
    let created = api
        .create(json!({"type": "demo", "payload": "hello"}))
        .await;

    let bound = api
        .bind(
            created.id,
            json!({"schedulerType": "demo-slow", "maxAttempts": 2, "queue": "slow"}),
        )
        .await;

    assert_eq!(bound.status, WebTaskStatus::Submitted);
    let scheduler_task_id = bound.scheduler_task_id.expect("bound");
    let (task_type, max_attempts, queue): (String, i32, String) =
        sqlx::query_as("select type, max_attempts, queue from tasks where id = $1")
            .bind(scheduler_task_id)
            .fetch_one(&system.dtp.pool)
            .await
            .expect("dtp task");
    assert_eq!(
        (task_type.as_str(), max_attempts, queue.as_str()),
        ("demo-slow", 2, "slow")
    );
    assert_eq!(api.execution(created.id).await.queue, "slow");
}

#[tokio::test]
async fn bind_without_a_body_uses_the_web_task_type() {
    let system = spawn_system().await;
    let api = system.api();
    let created = api.create(json!({"type": "noop"})).await;

    let response = system
        .client
        .post(
            system
                .taskpilot
                .url(&format!("/api/tasks/{}/scheduler", created.id)),
        )
        .sent()
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let bound: common::WebTask = response.json().await.expect("web task");
    api.wait_for(bound.id, TaskStatus::Succeeded).await;
}

#[tokio::test]
async fn binding_a_bound_task_returns_it_unchanged_and_asks_dtp_for_nothing() {
    let system = spawn_system().await;
    let api = system.api();
    let created = api.create(json!({"type": "demo"})).await;
    let first = api.bind(created.id, json!({})).await;

    // With DTP gone, a call to it would fail: the second bind must not make one.
    system.dtp.stop();
    let second = api.bind(created.id, json!({"schedulerType": "noop"})).await;

    assert_eq!(second, first);
    assert_eq!(dtp_task_count(&system.dtp).await, 1);
}

#[tokio::test]
async fn twenty_concurrent_binds_leave_one_dtp_task() {
    let system = spawn_system().await;
    let id = system.api().create(json!({"type": "demo"})).await.id;

    let binds: Vec<_> = (0..20)
        .map(|_| {
            let client = system.client.clone();
            let url = system.taskpilot.url(&format!("/api/tasks/{id}/scheduler"));
            tokio::spawn(async move { client.post(url).json(&json!({})).sent().await })
        })
        .collect();
    let mut scheduler_ids = Vec::new();
    for bind in binds {
        let response = bind.await.expect("joined");
        assert_eq!(response.status(), StatusCode::OK);
        let task: common::WebTask = response.json().await.expect("web task");
        scheduler_ids.push(task.scheduler_task_id.expect("bound"));
    }

    assert!(
        scheduler_ids.windows(2).all(|w| w[0] == w[1]),
        "{scheduler_ids:?}"
    );
    assert_eq!(dtp_task_count(&system.dtp).await, 1);
}

/// The DTP idempotency key webdb holds for web task `id`.
async fn bind_key_of(system: &support::System, id: i64) -> String {
    sqlx::query_scalar("select bind_key from web_tasks where id = $1")
        .bind(id)
        .fetch_one(&system.taskpilot.pool)
        .await
        .expect("web task")
}

#[tokio::test]
async fn bind_adopts_the_dtp_task_an_interrupted_bind_already_created() {
    let system = spawn_system().await;
    let api = system.api();
    let id = api.create(json!({"type": "demo", "payload": "p"})).await.id;
    // TaskPilot died after DTP created the task and before webdb recorded it.
    let orphan: common::TaskView = system
        .client
        .post(system.dtp.url("/tasks"))
        .json(&json!({"type": "demo", "payload": "p", "idempotencyKey": bind_key_of(&system, id).await})).sent().await
        .json()
        .await
        .expect("task");

    let bound = api.bind(id, json!({})).await;

    assert_eq!(bound.scheduler_task_id, Some(orphan.id));
    assert_eq!(dtp_task_count(&system.dtp).await, 1);
}

#[tokio::test]
async fn bind_adopts_the_earlier_dtp_task_even_when_retried_with_other_options() {
    let system = spawn_system().await;
    let api = system.api();
    let id = api.create(json!({"type": "demo"})).await.id;
    let orphan: common::TaskView = system
        .client
        .post(system.dtp.url("/tasks"))
        .json(&json!({"type": "demo-slow", "idempotencyKey": bind_key_of(&system, id).await}))
        .sent()
        .await
        .json()
        .await
        .expect("task");

    let bound = api.bind(id, json!({"schedulerType": "noop"})).await;

    assert_eq!(bound.scheduler_task_id, Some(orphan.id));
    assert_eq!(dtp_task_count(&system.dtp).await, 1);
}

/// The DTP task a web task is bound to, as DTP has it.
async fn dtp_task_of(
    system_dtp: &support::Service,
    api: &TaskPilotClient,
    id: i64,
) -> common::TaskView {
    let web = api.get(&format!("/api/tasks/{id}")).await;
    let web: common::WebTask = web.json().await.expect("web task");
    let scheduler_task_id = web.scheduler_task_id.expect("bound");
    reqwest::get(system_dtp.url(&format!("/tasks/{scheduler_task_id}")))
        .await
        .expect("sent")
        .json()
        .await
        .expect("task")
}

#[tokio::test]
async fn two_taskpilots_sharing_one_dtp_each_get_their_own_dtp_task() {
    let dtp = spawn_dtp().await;
    let (a, b) = (
        spawn_taskpilot(&dtp.address).await,
        spawn_taskpilot(&dtp.address).await,
    );
    let (api_a, api_b) = (a.api(), b.api());
    let id_a = api_a
        .create_id(json!({"type": "demo", "payload": "from A"}))
        .await;
    let id_b = api_b
        .create_id(json!({"type": "demo", "payload": "from B"}))
        .await;
    assert_eq!(id_a, id_b, "both webdbs start their ids at 1");

    api_a.bind(id_a, json!({})).await;
    api_b.bind(id_b, json!({})).await;

    let (task_a, task_b) = (
        dtp_task_of(&dtp, &api_a, id_a).await,
        dtp_task_of(&dtp, &api_b, id_b).await,
    );
    assert_ne!(task_a.id, task_b.id);
    assert_eq!(task_a.payload, json!("from A"));
    assert_eq!(task_b.payload, json!("from B"));
    assert_eq!(dtp_task_count(&dtp).await, 2);
}

#[tokio::test]
async fn a_recreated_webdb_reusing_ids_binds_new_dtp_tasks_not_the_old_ones() {
    let system = spawn_system().await;
    let api = system.api();
    let old = api
        .create_id(json!({"type": "demo", "payload": "old"}))
        .await;
    api.bind(old, json!({})).await;
    // webdb is recreated (or restored from a backup): ids start again from 1.
    sqlx::query("truncate web_tasks restart identity")
        .execute(&system.taskpilot.pool)
        .await
        .expect("truncate");

    let new = api
        .create_id(json!({"type": "demo", "payload": "new"}))
        .await;
    assert_eq!(new, old, "the id is reused");
    api.bind(new, json!({})).await;

    assert_eq!(
        dtp_task_of(&system.dtp, &api, new).await.payload,
        json!("new")
    );
    assert_eq!(dtp_task_count(&system.dtp).await, 2);
}

#[tokio::test]
async fn bind_with_a_type_dtp_does_not_know_is_422_and_leaves_the_task_unbound() {
    let system = spawn_system().await;
    let api = system.api();
    let id = api.create_id(json!({"type": "no-such-handler"})).await;

    let detail = api.bind_refused(id, StatusCode::UNPROCESSABLE_ENTITY).await;

    assert!(detail.contains("no-such-handler"), "{detail}");
    assert_eq!(api.web_task(id).await.status, WebTaskStatus::Pending);
    assert_eq!(dtp_task_count(&system.dtp).await, 0);
}

#[tokio::test]
async fn bind_of_an_unknown_web_task_is_404() {
    let system = spawn_system().await;
    let response = system
        .api()
        .post("/api/tasks/5555/scheduler", json!({}))
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn the_execution_view_of_a_succeeded_task_has_consistent_latencies() {
    let system = spawn_system().await;
    let api = system.api();
    let id = api
        .create_id(json!({"type": "demo", "payload": "hello"}))
        .await;
    let scheduler_task_id = api.bind(id, json!({})).await.scheduler_task_id;

    let view = api.wait_for(id, TaskStatus::Succeeded).await;

    assert_eq!(Some(view.scheduler_task_id), scheduler_task_id);
    assert_eq!((view.attempt_count, view.max_attempts), (1, 3));
    assert_eq!(view.retry_state, RetryState::Completed);
    let queue = view.queue_latency_ms.expect("queue latency");
    let processing = view.processing_latency_ms.expect("processing latency");
    let end_to_end = view.end_to_end_latency_ms.expect("end-to-end latency");
    assert!(
        queue >= 0 && processing >= 100,
        "demo sleeps 100 ms: {processing}"
    );
    assert_eq!(queue + processing, end_to_end);
    let started = view.processing_started_at.expect("started");
    assert_eq!(queue, (started - view.scheduled_for).num_milliseconds());
}

#[tokio::test]
async fn cancel_of_a_running_task_is_204_then_the_view_shows_canceled_and_repeating_is_204() {
    let system = spawn_system().await;
    let api = system.api();
    let id = api
        .create_id(json!({"type": "demo-slow", "payload": {"ms": 30000}}))
        .await;
    api.bind(id, json!({})).await;
    api.wait_for(id, TaskStatus::Running).await;

    let first = api.cancel(id).await;
    let view = api.execution(id).await;
    let again = api.cancel(id).await;

    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    assert_eq!(first.text().await.expect("body"), "");
    assert_eq!(view.status, TaskStatus::Canceled);
    assert_eq!(view.retry_state, RetryState::Canceled);
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn execution_and_cancel_of_an_unbound_task_are_409() {
    let system = spawn_system().await;
    let api = system.api();
    let id = api.create(json!({"type": "demo"})).await.id;

    let view = api.get(&format!("/api/tasks/{id}/execution")).await;
    let cancel = api.cancel(id).await;

    assert_eq!(
        assert_problem(view, StatusCode::CONFLICT).await,
        "Task is not bound to scheduler yet."
    );
    assert_eq!(
        assert_problem(cancel, StatusCode::CONFLICT).await,
        "Task is not bound to scheduler yet."
    );
}

#[tokio::test]
async fn execution_and_cancel_of_an_unknown_web_task_are_404() {
    let system = spawn_system().await;
    let api = system.api();
    assert_problem(
        api.get("/api/tasks/4040/execution").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(api.cancel(4040).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn bad_input_gets_problem_json_and_writes_nothing() {
    let system = spawn_system().await;
    // (method, path, body, content type, status)
    const BAD: StatusCode = StatusCode::BAD_REQUEST;
    const INVALID: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;
    #[rustfmt::skip] // a table: one case a line
    let cases = [
        (Method::POST, "/api/tasks", r#"{"type": "demo""#, JSON, BAD),
        (Method::POST, "/api/tasks", r#"{"payload": 1}"#, JSON, INVALID),
        (Method::POST, "/api/tasks", r#"{"type": "  "}"#, JSON, INVALID),
        (Method::POST, "/api/tasks", r#"{"type": 7}"#, JSON, INVALID),
        (Method::POST, "/api/tasks", r#"{"type": "demo", "extra": 1}"#, JSON, INVALID),
        (Method::POST, "/api/tasks", r#"{"type": "demo"}"#, "text/plain", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (Method::POST, "/api/tasks", r#"["demo"]"#, JSON, INVALID),
        (Method::POST, "/api/tasks/1/scheduler", r#"["demo-slow", 3]"#, JSON, INVALID),
        (Method::POST, "/api/tasks/1/scheduler", r#"{"maxAttempts": "#, JSON, BAD),
        (Method::POST, "/api/tasks/1/scheduler", r#"{"maxAttempts": 0}"#, JSON, INVALID),
        (Method::POST, "/api/tasks/1/scheduler", r#"{"colour": "red"}"#, JSON, INVALID),
        (Method::POST, "/api/tasks/1/scheduler", r#"{"queue": "no spaces"}"#, JSON, INVALID),
        (Method::POST, "/api/tasks/1/scheduler", r#"{}"#, "text/plain", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (Method::POST, "/api/tasks/abc/scheduler", "", JSON, BAD),
        (Method::GET, "/api/tasks/abc", "", JSON, BAD),
        (Method::GET, "/api/tasks/0/execution", "", JSON, BAD),
        (Method::PUT, "/api/tasks/-1/execution/cancel", "", JSON, BAD),
        (Method::GET, "/api/tasks?limit=0", "", JSON, BAD),
        (Method::GET, "/api/tasks?page=2", "", JSON, BAD),
        (Method::GET, "/api/nothing", "", JSON, StatusCode::NOT_FOUND),
        (Method::DELETE, "/api/tasks/1", "", JSON, StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (method, path, body, content_type, status) in cases {
        let response = system
            .client
            .request(method, system.taskpilot.url(path))
            .header("content-type", content_type)
            .body(body)
            .sent()
            .await;
        assert_problem(response, status).await;
    }
    let oversized = format!(
        r#"{{"type": "demo", "payload": "{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let response = system
        .client
        .post(system.taskpilot.url("/api/tasks"))
        .header("content-type", JSON)
        .body(oversized)
        .sent()
        .await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;

    let count: i64 = sqlx::query_scalar("select count(*) from web_tasks")
        .fetch_one(&system.taskpilot.pool)
        .await
        .expect("count");
    assert_eq!(count, 0);
    assert_eq!(dtp_task_count(&system.dtp).await, 0);
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let system = spawn_system().await;

    let doc: serde_json::Value = system
        .api()
        .get("/openapi.json")
        .await
        .json()
        .await
        .expect("json");

    for path in [
        "/api/tasks",
        "/api/tasks/{id}",
        "/api/tasks/{id}/scheduler",
        "/api/tasks/{id}/execution",
        "/api/tasks/{id}/execution/cancel",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
}

testkit::scenario_tests!(
    start: spawn_system().await,
    against: |system: &support::System| Against { api: system.api(), dtp_pool: system.dtp.pool.clone() },
    scenarios: [
        a_flaky_task_succeeds_on_its_second_attempt,
        a_failing_task_ends_failed_and_exhausted,
        cancel_of_a_succeeded_task_is_409_with_dtps_reason,
        a_bound_task_whose_dtp_row_is_gone_is_404,
    ]
);

#[tokio::test]
async fn a_payload_is_bound_as_stored_and_one_dtp_could_not_take_is_refused_at_create() {
    let system = spawn_system().await;
    let api = system.api();
    let raw = |body: String| {
        system
            .client
            .post(system.taskpilot.url("/api/tasks"))
            .header("content-type", JSON)
            .body(body)
            .sent()
    };

    // A number whose text serde rewrites (`1000000000000000.0`) on its way through a value.
    let exact = raw(r#"{"type": "noop", "payload": {"n": 1e15}}"#.to_owned()).await;
    let (_, exact): (_, common::WebTask) = testkit::created(exact).await;
    let scheduled = api.bind_to_scheduler(exact.id, json!({})).await;
    let dtp_pool = &system.dtp.pool;
    let (n,): (String,) = sqlx::query_as("select payload->>'n' from tasks where id = $1")
        .bind(scheduled)
        .fetch_one(dtp_pool)
        .await
        .expect("dtp task");
    assert_eq!(n, "1000000000000000");

    // Under TaskPilot's body limit, over what DTP takes once bind adds its fields; and a few
    // bytes that PostgreSQL stores as a megabyte of digits.
    let near_the_limit = format!(
        r#"{{"type": "noop", "payload": "{}"}}"#,
        "x".repeat(1024 * 1024 - 100)
    );
    let digits = format!(
        r#"{{"type": "noop", "payload": [{}]}}"#,
        vec!["1e300"; 4000].join(",")
    );
    for body in [near_the_limit, digits] {
        let detail = assert_problem(raw(body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(detail.contains("TASKPILOT_MAX_PAYLOAD_BYTES"), "{detail}");
    }
    let page: WebTaskPage = api.get("/api/tasks").await.json().await.expect("page");
    assert_eq!(page.tasks.len(), 1, "nothing but the first was stored");
}
