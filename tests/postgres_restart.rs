//! PostgreSQL crashing under load (`pg_ctl stop -m immediate` on a cluster the test owns) and
//! coming back: both services answer 503 problem JSON while it is down (never 500, never hang),
//! recover by themselves, and lose nothing that was acknowledged.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;
use suite::System;
use testkit::{assert_unavailable, ThrowawayPostgres};

/// What the load saw: web tasks whose create got 201, DTP tasks whose bind got 200, and every
/// status answered.
#[derive(Default)]
struct Seen {
    created: Vec<i64>,
    bound: Vec<i64>,
    statuses: HashSet<u16>,
}

/// Creates and binds demo tasks through TaskPilot until `stop`.
async fn load(taskpilot: String, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    let record = |f: &dyn Fn(&mut Seen)| f(&mut seen.lock().unwrap_or_else(|e| e.into_inner()));
    // Sends; records the status; the answer when it is `expected`.
    let answered = async |request: reqwest::RequestBuilder, expected: u16| {
        let response = request.send().await.expect("TaskPilot answers");
        let status = response.status().as_u16();
        record(&|s| {
            s.statuses.insert(status);
        });
        (status == expected).then_some(response)
    };
    while !stop.load(Ordering::Relaxed) {
        let create = client
            .post(format!("{taskpilot}/api/tasks"))
            .json(&json!({"type": "demo", "payload": "under load"}));
        let Some(created) = answered(create, 201).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let id = created
            .json::<common::WebTask>()
            .await
            .expect("web task")
            .id;
        record(&|s| s.created.push(id));
        let bind = client.post(format!("{taskpilot}/api/tasks/{id}/scheduler"));
        if let Some(bound) = answered(bind, 200).await {
            let task: common::WebTask = bound.json().await.expect("web task");
            let scheduler_task_id = task.scheduler_task_id.expect("bound");
            record(&|s| s.bound.push(scheduler_task_id));
        }
    }
}

async fn wait_for(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready().await {
        assert!(Instant::now() < deadline, "not recovered: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_crash_under_load_is_503_then_both_services_recover_and_lose_nothing() {
    let Some(postgres) = ThrowawayPostgres::start() else {
        return;
    };
    let (dtp_url, web_url) = (postgres.database_url("dtp"), postgres.database_url("webdb"));
    let system = System::start_on(&dtp_url, &web_url, 1, false).await;
    let (taskpilot, dtp) = (system.taskpilot.url(), system.dtp[0].url());
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let loader = tokio::spawn(load(taskpilot.clone(), stop.clone(), seen.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;

    postgres.stop_immediately();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    let demo = json!({"type": "demo"});
    let while_down = [
        (
            "TaskPilot get",
            client.get(format!("{taskpilot}/api/tasks/1")),
        ),
        (
            "TaskPilot create",
            client.post(format!("{taskpilot}/api/tasks")).json(&demo),
        ),
        ("DTP get", client.get(format!("{dtp}/tasks/1"))),
        (
            "DTP create",
            client.post(format!("{dtp}/tasks")).json(&demo),
        ),
        ("DTP readiness", client.get(format!("{dtp}/readyz"))),
    ];
    for (what, request) in while_down {
        assert_unavailable(request, what).await;
    }
    postgres.start_again();

    wait_for("TaskPilot creates again", async || {
        let response = client
            .post(format!("{taskpilot}/api/tasks"))
            .json(&json!({"type": "demo"}))
            .send()
            .await;
        response.is_ok_and(|r| r.status().as_u16() == 201)
    })
    .await;
    wait_for("DTP is ready again", async || {
        let response = client.get(format!("{dtp}/readyz")).send().await;
        response.is_ok_and(|r| r.status().is_success())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    loader.await.expect("load");

    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    assert!(
        !seen.statuses.contains(&500),
        "a 500 was answered: {:?}",
        seen.statuses
    );
    let web = PgPool::connect(&web_url).await.expect("webdb");
    let web_lost = missing(&seen.created, &web, "select id from web_tasks").await;
    assert!(
        web_lost.is_empty(),
        "web tasks acknowledged then lost: {web_lost:?}"
    );
    let dtp_lost = missing(&seen.bound, &system.dtp_pool, "select id from tasks").await;
    assert!(
        dtp_lost.is_empty(),
        "DTP tasks acknowledged then lost: {dtp_lost:?}"
    );

    // Every task finishes, and no RUNNING task outlives its lease by more than a rescue round.
    wait_for("every DTP task finishes", async || {
        let open: i64 =
            sqlx::query_scalar("select count(*) from tasks where status in ('PENDING', 'RUNNING')")
                .fetch_one(&system.dtp_pool)
                .await
                .unwrap_or(1);
        let stale: i64 = sqlx::query_scalar(
            "select count(*) from tasks where status = 'RUNNING' \
             and lease_expires_at < now() - interval '1 second'",
        )
        .fetch_one(&system.dtp_pool)
        .await
        .unwrap_or(0);
        assert_eq!(
            stale, 0,
            "a RUNNING task kept an expired lease past a rescue round"
        );
        open == 0
    })
    .await;
    let failed: i64 = sqlx::query_scalar("select count(*) from tasks where status <> 'SUCCEEDED'")
        .fetch_one(&system.dtp_pool)
        .await
        .expect("count");
    assert_eq!(failed, 0);
    println!(
        "{} web tasks created and {} bound under load; statuses seen: {:?}",
        seen.created.len(),
        seen.bound.len(),
        seen.statuses
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_running_across_an_outage_longer_than_their_lease_are_recorded_as_they_ended() {
    let Some(postgres) = ThrowawayPostgres::start() else {
        return;
    };
    let (dtp_url, web_url) = (postgres.database_url("dtp"), postgres.database_url("webdb"));
    // Lease 2 s (the suite's fast settings): the outage below lasts three leases, within the
    // four a running handler is kept for. One attempt succeeds while the database is down, one
    // after it is back, and one times out while it is down: each outcome waits for the
    // database and is recorded as it happened, none as a lease lost.
    let system = System::start_on(&dtp_url, &web_url, 1, false).await;
    let attempts = [
        (json!({"ms": 3000}), None, ("SUCCEEDED", None)),
        (json!({"ms": 9000}), None, ("SUCCEEDED", None)),
        (
            json!({"ms": 60000}),
            Some(2000),
            ("FAILED", Some("timed out after 2000 ms")),
        ),
    ];
    let mut ids = Vec::new();
    for (payload, timeout_ms, _) in &attempts {
        let body = json!({"type": "demo-slow", "payload": payload, "timeoutMs": timeout_ms, "maxAttempts": 1});
        ids.push(system.create_dtp_task(body).await.id);
    }
    for &id in &ids {
        wait_for("the task runs", async || {
            system
                .outcome_of(id)
                .await
                .is_some_and(|(status, ..)| status == "RUNNING")
        })
        .await;
    }

    postgres.stop_immediately();
    tokio::time::sleep(Duration::from_secs(6)).await;
    postgres.start_again();

    for (id, (_, _, (status, error))) in ids.into_iter().zip(attempts) {
        let mut outcome = None;
        wait_for("the task ends", async || {
            outcome = system.outcome_of(id).await;
            outcome
                .as_ref()
                .is_some_and(|(status, ..)| status != "RUNNING" && status != "PENDING")
        })
        .await;
        assert_eq!(
            outcome,
            Some((status.to_owned(), 1, error.map(str::to_owned))),
            "task {id}: the attempt's own outcome, recorded once the database is back"
        );
    }
}

/// The ids of `acknowledged` that `ids_query` does not return.
async fn missing(acknowledged: &[i64], pool: &PgPool, ids_query: &str) -> Vec<i64> {
    let stored: HashSet<i64> = sqlx::query_scalar(ids_query)
        .fetch_all(pool)
        .await
        .expect("stored ids")
        .into_iter()
        .collect();
    let lost = acknowledged.iter().filter(|id| !stored.contains(id));
    lost.copied().collect()
}
