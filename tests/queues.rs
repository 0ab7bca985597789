//! Queue settings obeyed by real `dtp` processes sharing one database: a global
//! concurrency limit sampled from outside while processes are killed and stopped, a global rate
//! limit, and pause and resume reaching every process within a second.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use suite::{wait_until, System};
use testkit::Sent;

async fn configure(system: &System, queue: &str, settings: Value) {
    let url = format!("{}/queues/{queue}", system.dtp[0].url());
    let response = reqwest::Client::new()
        .patch(url)
        .json(&settings)
        .sent()
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn act(system: &System, path: &str) {
    let url = format!("{}{path}", system.dtp[0].url());
    let response = reqwest::Client::new().post(url).sent().await;
    assert_eq!(response.status(), StatusCode::OK, "POST {path}");
}

async fn enqueue(system: &System, n: usize, task: Value) {
    let client = reqwest::Client::new();
    let tasks: Vec<Value> = (0..n).map(|_| task.clone()).collect();
    for chunk in tasks.chunks(500) {
        let response = client
            .post(format!("{}/tasks/batch", system.dtp[0].url()))
            .json(&chunk)
            .sent()
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
}

async fn scalar<T>(pool: &PgPool, sql: &str) -> T
where
    T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn count(system: &System, condition: &str) -> i64 {
    system.count_tasks(condition).await
}

/// Samples, as often as the database answers, how many tasks of `queue` are RUNNING, until
/// stopped; the most seen. A task is RUNNING in the database from before its handler starts
/// until after it ends, so this bounds what runs from above.
fn sample_running(
    pool: PgPool,
    queue: &str,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<(i64, u64)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let sql = format!("select count(*) from tasks where queue = '{queue}' and status = 'RUNNING'");
    let stopped = stop.clone();
    let most = Arc::new(AtomicI64::new(0));
    let sampler = tokio::spawn(async move {
        let mut samples = 0;
        while !stopped.load(Ordering::Acquire) {
            let running: i64 = scalar(&pool, &sql).await;
            most.fetch_max(running, Ordering::AcqRel);
            samples += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (most.load(Ordering::Acquire), samples)
    });
    (stop, sampler)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_never_run_more_than_a_queues_concurrency_limit_even_when_one_is_killed_and_one_stopped(
) {
    let mut system = System::start_with(3, false).await;
    configure(&system, "limited", json!({"concurrencyLimit": 3})).await;
    let total = 500;
    enqueue(
        &system,
        total,
        json!({"type": "demo-slow", "payload": {"ms": 50}, "queue": "limited"}),
    )
    .await;
    let (stop, sampler) = sample_running(system.dtp_pool.clone(), "limited");

    wait_until("a fifth is done", async || {
        count(&system, "status = 'SUCCEEDED'").await >= 100
    })
    .await;
    system.dtp[1].kill();
    wait_until("two fifths are done", async || {
        count(&system, "status = 'SUCCEEDED'").await >= 200
    })
    .await;
    // A graceful stop hands back what it runs after the grace period: released, then claimed again.
    system.dtp[2].terminate(Duration::from_secs(10)).await;
    system.add_worker("dtp-3", Vec::new()).await;
    let total = i64::try_from(total).expect("fits");
    wait_until("every task is done", async || {
        count(&system, "status = 'SUCCEEDED'").await == total
    })
    .await;

    stop.store(true, Ordering::Release);
    let (most, samples) = sampler.await.expect("sampler");
    println!("{samples} samples; at most {most} RUNNING at once");
    assert!(samples > 1000, "sampled often: {samples}");
    assert!(
        most <= 3,
        "never more than the limit: {most} RUNNING at once"
    );
    assert_eq!(
        most, 3,
        "the limit was reached, so the test proves something"
    );
    let workers = count(&system, "worker_id in ('dtp-0', 'dtp-1', 'dtp-2', 'dtp-3')").await;
    assert_eq!(workers, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_start_no_more_than_a_queues_rate_limit() {
    let system = System::start_with(2, false).await;
    configure(&system, "rated", json!({"rateLimitPerSecond": 5.0})).await;
    enqueue(&system, 20, json!({"type": "noop", "queue": "rated"})).await;
    wait_until("every task is done", async || {
        count(&system, "status = 'SUCCEEDED'").await == 20
    })
    .await;
    let spread: f64 = scalar(
        &system.dtp_pool,
        "select extract(epoch from max(attempt_started_at) - min(attempt_started_at))::float8 \
         from tasks",
    )
    .await;
    println!("20 tasks at 5/s started over {spread:.2} s");
    assert!(
        spread >= 3.5,
        "20 starts at 5/s take at least 3.5 s, took {spread:.2} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_stops_every_process_claiming_within_a_second_and_a_resume_restarts_them_within_a_second(
) {
    let system = System::start_with(3, false).await;
    enqueue(
        &system,
        600,
        json!({"type": "demo-slow", "payload": {"ms": 100}, "queue": "p"}),
    )
    .await;
    wait_until("some tasks are done", async || {
        count(&system, "status = 'SUCCEEDED'").await >= 50
    })
    .await;
    act(&system, "/queues/p/pause").await;
    let paused_at: DateTime<Utc> = scalar(&system.dtp_pool, "select now()").await;
    wait_until("nothing runs", async || {
        count(&system, "status = 'RUNNING'").await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let last_start: DateTime<Utc> = scalar(
        &system.dtp_pool,
        "select max(attempt_started_at) from tasks",
    )
    .await;
    let after_pause = (last_start - paused_at).num_milliseconds();
    println!("last start {after_pause} ms after the pause");
    assert!(
        after_pause <= 1000,
        "a start {after_pause} ms after the pause"
    );
    let waiting = count(&system, "status = 'PENDING'").await;
    assert!(waiting > 0, "the paused queue holds tasks");

    let resumed_at: DateTime<Utc> = scalar(&system.dtp_pool, "select now()").await;
    act(&system, "/queues/p/resume").await;
    wait_until("the queue runs again", async || {
        count(&system, "status = 'PENDING'").await < waiting
    })
    .await;
    let first_start: DateTime<Utc> = sqlx::query_scalar(
        "select min(attempt_started_at) from tasks where attempt_started_at > $1",
    )
    .bind(resumed_at)
    .fetch_one(&system.dtp_pool)
    .await
    .expect("first start after the resume");
    let after_resume = (first_start - resumed_at).num_milliseconds();
    println!("first start {after_resume} ms after the resume");
    assert!(
        after_resume <= 1000,
        "first start {after_resume} ms after the resume"
    );
}
