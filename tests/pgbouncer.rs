//! Many processes through PgBouncer in transaction mode: three `dtp` processes whose pools go
//! through a PgBouncer that keeps four server connections, with the listener, the claim loop,
//! the lease heartbeat, the maintenance lead and migrations on direct connections
//! (`DTP_LISTEN_DATABASE_URL`). Every task runs
//! once, notifications wake the workers, a cancel reaches a running handler, and no statement
//! meets another client's prepared statement or notification. And PostgreSQL crashing behind
//! PgBouncer: the processes answer 503, carry their attempts across the outage and lose nothing;
//! but a refused direct connection, with the server up, is no outage.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};
use suite::{wait_until, PgBouncer, System};
use testkit::{address_of, assert_unavailable, FaultyProxy, Sent, TestDb, ThrowawayPostgres};

const TASKS: usize = 3000;
const SERVER_CONNECTIONS: u32 = 4;
/// Tasks of 200 ms around the crash: two processes of 8 slots take more than a second.
const SHORT_TASKS: usize = 100;
/// How long the server stays down: more than two leases of the suite's fast settings, and well
/// within the four a handler is carried across.
const OUTAGE: Duration = Duration::from_millis(4500);

async fn enqueue(url: &str, tasks: &[Value]) {
    let response = reqwest::Client::new()
        .post(format!("{url}/tasks/batch"))
        .json(tasks)
        .sent()
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

/// `processes` `dtp` processes whose pools go through `bouncer` to the queue at `dtp_url`, with
/// their sessions on `direct_url`, and a TaskPilot over `web_url`.
async fn behind(
    bouncer: &PgBouncer,
    dtp_url: &str,
    web_url: &str,
    direct_url: &str,
    processes: usize,
) -> System {
    let pooled = bouncer.url_for(dtp_url);
    System::start_on_with(
        dtp_url,
        web_url,
        processes,
        false,
        &[
            ("DTP_DATABASE_URL", pooled.as_str()),
            ("DTP_LISTEN_DATABASE_URL", direct_url),
        ],
    )
    .await
}

#[tokio::test]
async fn three_processes_through_pgbouncer_in_transaction_mode_run_every_task_once() {
    let Some(pgbouncer) = PgBouncer::installed() else {
        return;
    };
    let dtp_db = TestDb::create().await;
    let web_db = TestDb::create().await;
    let bouncer = PgBouncer::start(&pgbouncer, &dtp_db.url, SERVER_CONNECTIONS).await;
    let system = behind(&bouncer, &dtp_db.url, &web_db.url, &dtp_db.url, 3).await;

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
    // Four pooled; per process the listener, claim, heartbeat and maintenance connections,
    // direct; and this test's own (besides the sampler's). Without PgBouncer: 14 per process.
    let most = most_backends.load(Ordering::Relaxed);
    assert!(
        most <= i64::from(SERVER_CONNECTIONS) + 12 + 2,
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

/// PostgreSQL crashing behind PgBouncer: PgBouncer keeps the pools' client connections open and
/// answers for a server it cannot reach, so a process learns of the outage only from PgBouncer's
/// errors. The API still answers 503 promptly, an attempt running across an outage longer than
/// its lease runs on to success (the heartbeat tells a server that is down from one that is
/// unreachable on a direct connection), and every task runs to success afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_crash_behind_pgbouncer_is_503_then_the_workers_carry_on_and_lose_nothing() {
    let Some(pgbouncer) = PgBouncer::installed() else {
        return;
    };
    let Some(postgres) = ThrowawayPostgres::start() else {
        return;
    };
    let (dtp_url, web_url) = (postgres.database_url("dtp"), postgres.database_url("webdb"));
    let mut admin = PgConnection::connect(&postgres.url())
        .await
        .expect("connect to the throwaway server");
    // PgBouncer reaches only databases that exist; the direct connections would create it.
    admin
        .execute("create database dtp")
        .await
        .expect("create database");
    admin.close().await.expect("close");
    let bouncer = PgBouncer::start(&pgbouncer, &dtp_url, SERVER_CONNECTIONS).await;
    let system = behind(&bouncer, &dtp_url, &web_url, &dtp_url, 2).await;

    // Lease 2 s (the suite's fast settings); the outage below lasts more than twice that.
    let across = system
        .create_dtp_task(json!({"type": "demo-slow", "payload": {"ms": 9000}, "maxAttempts": 1}))
        .await;
    let short: Vec<Value> = (0..SHORT_TASKS)
        .map(|_| json!({"type": "demo-slow", "payload": {"ms": 200}}))
        .collect();
    enqueue(&system.dtp[0].url(), &short).await;
    wait_until("the long attempt runs", async || {
        system
            .outcome_of(across.id)
            .await
            .is_some_and(|(status, ..)| status == "RUNNING")
    })
    .await;

    let down_since = std::time::Instant::now();
    postgres.stop_immediately();
    let client = reqwest::Client::new();
    let dtp = system.dtp[1].url();
    assert_unavailable(
        client
            .post(format!("{dtp}/tasks"))
            .json(&json!({"type": "noop"})),
        "DTP create through PgBouncer",
    )
    .await;
    assert_unavailable(
        client.get(format!("{dtp}/tasks/{}", across.id)),
        "DTP get through PgBouncer",
    )
    .await;
    tokio::time::sleep(OUTAGE.saturating_sub(down_since.elapsed())).await;
    postgres.start_again();

    wait_until("every task has finished", async || {
        system
            .try_count_tasks("status in ('PENDING', 'RUNNING')")
            .await
            == Some(0)
    })
    .await;
    assert_eq!(
        system.outcome_of(across.id).await,
        Some(("SUCCEEDED".to_owned(), 1, None)),
        "the attempt that ran across the outage ran on to success"
    );
    assert_eq!(
        system
            .count_tasks("type = 'demo-slow' and status = 'SUCCEEDED'")
            .await,
        SHORT_TASKS as i64 + 1,
        "every task succeeded"
    );

    // Work created after the outage is heard of and run.
    let after = system.create_dtp_task(json!({"type": "noop"})).await;
    wait_until("a task created after the outage runs", async || {
        system
            .outcome_of(after.id)
            .await
            .is_some_and(|(status, ..)| status == "SUCCEEDED")
    })
    .await;
}

/// The direct connection refused while PostgreSQL runs on and PgBouncer still reaches it (a
/// firewall rejecting the direct port, a direct URL left naming an old primary): the refusal
/// must not pass for a server that is down, or the handler would carry on while the process's
/// rescuer, through PgBouncer, gave its expired lease to another run. The heartbeat renews
/// through the pool instead, and the attempt runs to success, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_direct_connection_with_the_server_up_behind_pgbouncer_is_no_outage() {
    let Some(pgbouncer) = PgBouncer::installed() else {
        return;
    };
    let dtp_db = TestDb::create().await;
    let web_db = TestDb::create().await;
    let bouncer = PgBouncer::start(&pgbouncer, &dtp_db.url, SERVER_CONNECTIONS).await;
    let direct = FaultyProxy::start(&address_of(&dtp_db.url)).await;
    let direct_url = direct.url_for(&dtp_db.url);
    let system = behind(&bouncer, &dtp_db.url, &web_db.url, &direct_url, 1).await;
    // Three leases of the suite's fast settings: long enough to be rescued if not renewed.
    let task = system
        .create_dtp_task(json!({"type": "demo-slow", "payload": {"ms": 6000}, "maxAttempts": 1}))
        .await;
    wait_until("the attempt runs", async || {
        system
            .count_tasks(&format!("id = {} and status = 'RUNNING'", task.id))
            .await
            == 1
    })
    .await;

    direct.refuse();
    wait_until("the task ends", async || {
        system
            .count_tasks(&format!(
                "id = {} and status not in ('PENDING', 'RUNNING')",
                task.id
            ))
            .await
            == 1
    })
    .await;
    assert_eq!(
        system.outcome_of(task.id).await,
        Some(("SUCCEEDED".to_owned(), 1, None)),
        "the lease was kept through PgBouncer, and nothing rescued the attempt"
    );
    let log = system.dtp[0].log_text();
    assert!(
        !log.contains("the database is down"),
        "a refused direct connection passed for a server that is down:\n{log}"
    );
}
