//! Many processes through PgBouncer in transaction mode: three `dtp` processes whose pools go
//! through a PgBouncer that keeps four server connections, with the listener, the claim loop,
//! the maintenance lead and migrations on direct connections (`DTP_LISTEN_DATABASE_URL`). Every task runs
//! once, notifications wake the workers, a cancel reaches a running handler, and no statement
//! meets another client's prepared statement or notification.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use suite::{wait_until, PgBouncer, System};
use testkit::{Sent, TestDb};

const TASKS: usize = 3000;
const SERVER_CONNECTIONS: u32 = 4;

async fn enqueue(url: &str, tasks: &[Value]) {
    let response = reqwest::Client::new()
        .post(format!("{url}/tasks/batch"))
        .json(tasks)
        .sent()
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn three_processes_through_pgbouncer_in_transaction_mode_run_every_task_once() {
    let dtp_db = TestDb::create().await;
    let web_db = TestDb::create().await;
    let bouncer = PgBouncer::start(&dtp_db.url, SERVER_CONNECTIONS).await;
    let pooled = bouncer.url_for(&dtp_db.url);
    let system = System::start_on_with(
        &dtp_db.url,
        &web_db.url,
        3,
        false,
        &[
            ("DTP_DATABASE_URL", pooled.as_str()),
            ("DTP_LISTEN_DATABASE_URL", dtp_db.url.as_str()),
        ],
    )
    .await;

    // How many server connections the database serves at most while the work runs: the
    // pools share PgBouncer's few.
    let most_backends = Arc::new(AtomicI64::new(0));
    let sampling = {
        let (pool, most) = (system.dtp_pool.clone(), most_backends.clone());
        let name = dtp_db.name.clone();
        tokio::spawn(async move {
            loop {
                let backends: Result<i64, _> = sqlx::query_scalar(
                    "select count(*) from pg_stat_activity \
                     where datname = $1 and pid <> pg_backend_pid()",
                )
                .bind(&name)
                .fetch_one(&pool)
                .await;
                if let Ok(backends) = backends {
                    most.fetch_max(backends, Ordering::Relaxed);
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };

    let slow = system
        .create_dtp_task(json!({"type": "demo-slow", "payload": {"ms": 60000}}))
        .await;
    let noops: Vec<Value> = (0..TASKS).map(|_| json!({"type": "noop"})).collect();
    let flaky: Vec<Value> = (0..30)
        .map(|_| json!({"type": "demo-flaky", "payload": {"failTimes": 1}}))
        .collect();
    for (i, chunk) in noops.chunks(500).enumerate() {
        enqueue(&system.dtp[i % 3].url(), chunk).await;
    }
    enqueue(&system.dtp[1].url(), &flaky).await;
    wait_until("the slow task runs", async || {
        system
            .count_tasks(&format!("id = {} and status = 'RUNNING'", slow.id))
            .await
            == 1
    })
    .await;
    let canceled = reqwest::Client::new()
        .put(format!("{}/tasks/{}/cancel", system.dtp[2].url(), slow.id))
        .sent()
        .await;
    assert_eq!(canceled.status(), StatusCode::OK);

    wait_until("every task has finished", async || {
        system.count_tasks("status in ('PENDING', 'RUNNING')").await == 0
    })
    .await;
    sampling.abort();

    assert_eq!(
        system
            .count_tasks("type = 'noop' and status = 'SUCCEEDED' and attempt_count = 1")
            .await,
        TASKS as i64,
        "every noop task ran once"
    );
    assert_eq!(
        system
            .count_tasks("type = 'demo-flaky' and status = 'SUCCEEDED' and attempt_count = 2")
            .await,
        30,
        "a failed attempt was retried once"
    );
    assert_eq!(
        system
            .count_tasks(&format!("id = {} and status = 'CANCELED'", slow.id))
            .await,
        1
    );
    let workers: i64 =
        sqlx::query_scalar("select count(distinct worker_id) from tasks where type = 'noop'")
            .fetch_one(&system.dtp_pool)
            .await
            .expect("workers");
    assert_eq!(workers, 3, "every process took tasks");
    // Four pooled; per process the listener, claim and maintenance connections, direct; and
    // this test's own (besides the sampler's). Without PgBouncer: 14 per process.
    let most = most_backends.load(Ordering::Relaxed);
    assert!(
        most <= i64::from(SERVER_CONNECTIONS) + 9 + 2,
        "{most} server connections: the pools did not go through PgBouncer"
    );
    for process in &system.dtp {
        let log = process.log_text();
        for symptom in ["prepared statement", "NotificationResponse"] {
            assert!(
                !log.contains(symptom),
                "{} logged {symptom:?}:\n{log}",
                process.name()
            );
        }
    }
    let bounced = bouncer.log_text();
    assert!(
        !bounced.contains("ERROR"),
        "PgBouncer logged errors:\n{bounced}"
    );
}
