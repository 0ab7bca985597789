//! Faults with real processes: workers SIGKILLed and SIGTERMed mid-run, a poison task that kills
//! its worker on every attempt, and a cancel storm. Executions are counted by the `http` handler
//! calling back into a counting endpoint of the test (served on a multi-threaded runtime, so that
//! it keeps answering while the test waits on a process).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::Sent;

use axum::extract::State;
use axum::Json;
use common::TaskStatus;
use reqwest::StatusCode;
use serde_json::{json, Value};
use suite::{wait_until, System};

type Hits = Arc<Mutex<HashMap<i64, u32>>>;

/// An endpoint that counts calls per `n` and answers after `pause`.
async fn counting_endpoint(pause: Duration) -> (String, Hits) {
    let hits: Hits = Arc::default();
    let router = axum::Router::new()
        .route(
            "/hit",
            axum::routing::post(|State((hits, pause)): State<(Hits, Duration)>, Json(body): Json<Value>| async move {
                let n = body["n"].as_i64().unwrap_or(-1);
                *hits.lock().unwrap_or_else(|e| e.into_inner()).entry(n).or_insert(0) += 1;
                tokio::time::sleep(pause).await;
                Json(json!({"ok": n}))
            }),
        )
        .with_state((hits.clone(), pause));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hit", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, hits)
}

async fn count_by_status(system: &System, status: &str) -> i64 {
    system.count_tasks(&format!("status = '{status}'")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_one_sigkilled_one_sigtermed_lose_nothing_and_only_the_killed_ones_tasks_run_twice(
) {
    let mut system = System::start_with(3, false).await;
    let (url, hits) = counting_endpoint(Duration::from_millis(20)).await;
    let total = 2000;
    let client = reqwest::Client::new();
    for chunk in (0..total).collect::<Vec<i64>>().chunks(500) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|n| json!({"type": "http", "payload": {"url": url, "body": {"n": n}}, "maxAttempts": 5}))
            .collect();
        let response = client
            .post(format!("{}/tasks/batch", system.dtp[0].url()))
            .json(&batch)
            .sent()
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    wait_until("a quarter is done", async || {
        count_by_status(&system, "SUCCEEDED").await >= total / 4
    })
    .await;

    system.dtp[1].kill();
    let sql = "select id from tasks where status = 'RUNNING' and worker_id = 'dtp-1'";
    let running_on_killed: HashSet<i64> = rows::<(i64,)>(&system, sql)
        .await
        .into_iter()
        .map(|(id,)| id)
        .collect();
    system.dtp[2].terminate(Duration::from_secs(10)).await;
    wait_until("every task is finished", async || {
        count_by_status(&system, "SUCCEEDED").await == total
    })
    .await;

    let sql = "select (payload -> 'body' ->> 'n')::bigint, id from tasks";
    let ids_by_n: HashMap<i64, i64> = rows(&system, sql).await.into_iter().collect();
    let hits = hits.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(
        hits.len(),
        usize::try_from(total).expect("fits"),
        "every task ran"
    );
    let twice: Vec<i64> = hits
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(n, _)| ids_by_n[n])
        .collect();
    let details: Vec<(i64, i32, Option<String>, Option<String>)> = sqlx::query_as(
        "select id, attempt_count, worker_id, last_error from tasks where id = any($1) order by id",
    )
    .bind(&twice)
    .fetch_all(&system.dtp_pool)
    .await
    .expect("details");
    assert!(
        twice.iter().all(|id| running_on_killed.contains(id)),
        "ran twice but not on the killed worker: {:?}; (id, attempts, worker, last error) of all that ran twice: {details:?}",
        twice.iter().filter(|id| !running_on_killed.contains(id)).collect::<Vec<_>>()
    );
    println!(
        "{total} tasks; {} running on the SIGKILLed worker, {} ran twice",
        running_on_killed.len(),
        twice.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_task_that_kills_its_worker_every_time_ends_failed_after_max_attempts() {
    let mut system = System::start_with(3, true).await;
    let api = system.api.clone();
    let (id, scheduler_task_id) = api
        .submit(
            json!({"type": "demo-slow", "payload": {"ms": 60000}}),
            json!({"maxAttempts": 2}),
        )
        .await;

    for attempt in 1..=2 {
        let view = loop {
            let view = api.execution(id).await;
            if view.status == TaskStatus::Running && view.attempt_count == attempt {
                break view;
            }
            assert!(!view.status.is_terminal(), "attempt {attempt}: {view:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let victim = system.kill_holder_of(scheduler_task_id).await;
        assert_eq!(view.attempt_count, attempt);
        system.dtp[victim].restart().await;
    }
    let view = api.wait_for(id, TaskStatus::Failed).await;

    assert_eq!(view.attempt_count, 2);
    assert_eq!(view.last_error.as_deref(), Some("worker lost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cancel_storm_every_task_answered_204_ends_canceled() {
    let system = System::start().await;
    let api = system.api.clone();
    let mut slow = Vec::new();
    let mut quick = Vec::new();
    for i in 0..150u64 {
        // A third finish in 200-600 ms, so some cancels race their success; the rest take a
        // minute, so that, however slowly the machine creates the 300 tasks, some are still
        // running or waiting when the cancels come (`canceled > 0` below).
        let ms = if i % 3 == 0 {
            200 + (i % 5) * 100
        } else {
            60_000
        };
        let id = api
            .create_id(json!({"type": "x", "payload": {"ms": ms}}))
            .await;
        api.bind(id, json!({"schedulerType": "demo-slow"})).await;
        slow.push(id);
        let id = api
            .create_and_bind(json!({"type": "noop"}), json!({}))
            .await;
        quick.push(id);
    }

    let cancels: Vec<_> = slow
        .iter()
        .map(|&id| {
            let api = api.clone();
            tokio::spawn(async move { (id, api.cancel(id).await.status()) })
        })
        .collect();
    let mut answered = Vec::new();
    for cancel in cancels {
        answered.push(cancel.await.expect("joined"));
    }

    let mut canceled = 0;
    for (id, status) in answered {
        let view = loop {
            let view = api.execution(id).await;
            if view.status.is_terminal() {
                break view;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        match status {
            StatusCode::NO_CONTENT => {
                canceled += 1;
                assert_eq!(
                    view.status,
                    TaskStatus::Canceled,
                    "web task {id} answered 204"
                );
            }
            StatusCode::CONFLICT => assert_eq!(view.status, TaskStatus::Succeeded),
            other => panic!("cancel of {id} answered {other}"),
        }
    }
    for id in quick {
        api.wait_for(id, TaskStatus::Succeeded).await;
    }
    assert!(canceled > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_only_process_rescues_the_task_of_a_killed_worker() {
    // dtp-0 serves the API and runs no worker; dtp-1 is the only worker, and is SIGKILLed.
    let mut system = System::start_with(2, true).await;
    let id = system
        .create_dtp_task(json!({"type": "demo-slow", "payload": {"ms": 600000}, "maxAttempts": 1}))
        .await
        .id;
    wait_until("the worker runs the task", async || {
        system.worker_of(id).await.as_deref() == Some("dtp-1")
    })
    .await;

    system.dtp[1].kill();

    wait_until("the API-only process rescues it", async || {
        count_by_status(&system, "FAILED").await == 1
    })
    .await;
    let last_error: Option<String> =
        sqlx::query_scalar("select last_error from tasks where id = $1")
            .bind(id)
            .fetch_one(&system.dtp_pool)
            .await
            .expect("task");
    assert_eq!(last_error.as_deref(), Some("worker lost"));
}

/// The rows `sql` returns from DTP's database.
async fn rows<T>(system: &System, sql: &str) -> Vec<T>
where
    T: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    let query = sqlx::query_as::<_, T>(sql)
        .fetch_all(&system.dtp_pool)
        .await;
    query.unwrap_or_else(|e| panic!("{sql}: {e}"))
}
