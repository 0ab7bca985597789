//! What a hostile client, a big table or a busy database must not break: operators' reads and
//! bulk actions against the API's connections, the worker's leases and each other.

mod support;

use common::TaskStatus;
use reqwest::StatusCode;
use serde_json::json;
use support::{api_only_with, assert_problem, spawn_app_with, wait_until_all_terminal};
use testkit::Sent;

/// `rows` SUCCEEDED tasks of type `noop` in queue `default`, loaded by SQL.
async fn load_finished(pool: &sqlx::PgPool, rows: i64) {
    sqlx::query(
        "insert into tasks (type, status, max_attempts, attempt_count, scheduled_for, run_at, \
                            completed_at, last_error) \
         select 'noop', 'SUCCEEDED', 1, 1, now(), now(), now(), 'boom ' || g \
         from generate_series(1, $1) g",
    )
    .bind(rows)
    .execute(pool)
    .await
    .expect("load");
    sqlx::query("analyze tasks")
        .execute(pool)
        .await
        .expect("analyze");
}

#[tokio::test]
async fn operator_reads_no_index_serves_leave_creates_and_readiness_their_connections() {
    let app = api_only_with(|config| {
        config.operator_db_connections = 2;
    })
    .await;
    load_finished(&app.pool, 200_000).await;

    // Filters that walk the whole table, many at once.
    let lists: Vec<_> = (0..24)
        .map(|i| {
            let filter = ["lastErrorContains=nope", "type=nope"][i % 2];
            let request = app
                .client
                .get(app.url(&format!("/tasks?{filter}&limit=500")))
                .send();
            tokio::spawn(request)
        })
        .collect();
    // While they run: at most the operators' connections run them, and the API's own
    // connections still serve creates and readiness.
    let mut most_walking = 0;
    while lists.iter().any(|list| !list.is_finished()) {
        let walking: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity \
             where state = 'active' and backend_type = 'client backend' and query like '%from tasks where true%' \
               and query not like '%pg_stat_activity%'",
        )
        .fetch_one(&app.pool)
        .await
        .expect("activity");
        most_walking = most_walking.max(walking);
        let created = app.post_task(json!({"type": "demo"})).await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let ready = app.client.get(app.url("/readyz")).sent().await;
        assert_eq!(ready.status(), StatusCode::OK);
    }

    assert!(most_walking <= 2, "{most_walking} walks at once");
    for list in lists {
        let response = list.await.expect("joined").expect("answered");
        let status = response.status();
        assert!(
            [
                StatusCode::OK,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::GATEWAY_TIMEOUT
            ]
            .contains(&status),
            "a list answered {status}"
        );
    }
}

#[tokio::test]
async fn a_read_cut_off_by_its_time_limit_is_answered_504_not_500() {
    let app = api_only_with(|config| {
        config.operator_statement_timeout_ms = 1;
    })
    .await;
    load_finished(&app.pool, 50_000).await;

    let list = app
        .client
        .get(app.url("/tasks?lastErrorContains=nope&limit=500"))
        .sent()
        .await;

    let detail = assert_problem(list, StatusCode::GATEWAY_TIMEOUT).await;
    assert!(detail.contains("time limit"), "{detail}");
}

#[tokio::test]
async fn a_bulk_cancel_that_cannot_finish_leaves_running_handlers_running() {
    let app = spawn_app_with(|config| {
        config.lease_ms = 2000;
        config.heartbeat_ms = Some(300);
        // What cut the bulk statement off before its steps had a lock timeout of their own.
        config.statement_timeout_ms = 4000;
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let task = app
            .create(json!({"type": "probe-slow", "queue": "q", "payload": {"ms": 6000}}))
            .await;
        ids.push(task.id);
    }
    for id in &ids {
        app.wait_for(*id, TaskStatus::Running).await;
    }
    // Another transaction holds the counts against writers and does not finish: a cancel cannot
    // record its count.
    let mut blocker = app.pool.begin().await.expect("begin");
    sqlx::query("lock table queue_count_changes in share mode")
        .execute(&mut *blocker)
        .await
        .expect("hold the counts");

    let bulk = app
        .client
        .post(app.url("/tasks/bulk"))
        .json(&json!({"action": "cancel", "filter": {"queue": "q"}}))
        .sent()
        .await;
    let answered = bulk.status();
    let body = bulk.text().await.expect("body");
    blocker.rollback().await.expect("rollback");
    wait_until_all_terminal(&app.pool).await;

    // Busy, or done once the tasks it would cancel had finished.
    assert!(
        answered == StatusCode::SERVICE_UNAVAILABLE
            || (answered == StatusCode::OK && body.contains(r#""changed":0"#)),
        "{answered} {body}"
    );
    for id in ids {
        let task = app.get_task(id).await;
        assert_eq!(
            (task.status, task.attempt_count),
            (TaskStatus::Succeeded, 1),
            "task {id}: {task:?}"
        );
        assert!(
            !app.probes.was_aborted(id),
            "task {id}'s handler was stopped"
        );
    }
}

#[tokio::test]
async fn bulk_actions_racing_over_the_same_tasks_never_answer_500() {
    let app = api_only_with(|_| {}).await;
    // Finished tasks whose rows lie out of id order in the table, as updates leave them.
    sqlx::query(
        "insert into tasks (type, status, max_attempts, attempt_count, scheduled_for, run_at, \
                            completed_at) \
         select 'noop', case when g % 2 = 0 then 'FAILED' else 'CANCELED' end, 1, 1, \
                now(), now(), now() \
         from generate_series(1, 3000) g",
    )
    .execute(&app.pool)
    .await
    .expect("load");
    sqlx::query("update tasks set updated_at = now() where id % 3 = 0")
        .execute(&app.pool)
        .await
        .expect("scatter");

    let bulk = |action: &'static str| {
        let (client, url) = (app.client.clone(), app.url("/tasks/bulk"));
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..6 {
                let response = client
                    .post(&url)
                    .json(&json!({"action": action, "filter": {"type": "noop"}}))
                    .sent()
                    .await;
                statuses.push(response.status());
            }
            statuses
        })
    };
    let racers = [bulk("retry"), bulk("cancel"), bulk("delete"), bulk("retry")];

    for racer in racers {
        for status in racer.await.expect("joined") {
            assert!(
                status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
                "a bulk action answered {status}"
            );
        }
    }
}
