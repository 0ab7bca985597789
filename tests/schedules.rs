//! Schedules with real processes: three `dtp` processes, the maintenance leader
//! SIGKILLed and restarted in the middle, and still one task per tick.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use suite::{wait_until, System};
use testkit::Sent;

async fn tick_keys(system: &System) -> Vec<String> {
    sqlx::query_scalar("select idempotency_key from tasks order by id")
        .fetch_all(&system.dtp_pool)
        .await
        .expect("keys")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_and_a_leader_restart_make_one_task_per_tick() {
    let mut system = System::start_with(3, false).await;
    let created = reqwest::Client::new()
        .post(format!("{}/schedules", system.dtp[0].url()))
        .json(&json!({"name": "every-second", "cron": "* * * * * *", "task": {"type": "noop"}}))
        .sent()
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    wait_until("two ticks", async || tick_keys(&system).await.len() >= 2).await;

    let index = system.kill_maintenance_leader().await;
    let before = tick_keys(&system).await.len();
    wait_until("another process ticks", async || {
        tick_keys(&system).await.len() >= before + 2
    })
    .await;
    system.dtp[index].restart().await;
    let restarted = tick_keys(&system).await.len();
    wait_until("ticks go on after the restart", async || {
        tick_keys(&system).await.len() >= restarted + 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let keys = tick_keys(&system).await;
    let distinct: HashSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "one task per tick: {keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("schedule:every-second:")));
    let ticks: Vec<chrono::DateTime<chrono::Utc>> = keys
        .iter()
        .map(|k| {
            let tick = k
                .strip_prefix("schedule:every-second:")
                .expect("a tick's key");
            chrono::DateTime::parse_from_rfc3339(tick)
                .expect("a time")
                .to_utc()
        })
        .collect();
    assert!(
        ticks.windows(2).all(|w| w[1] - w[0] == chrono::TimeDelta::seconds(1)),
        "every second from the first tick to the last, none missed across the kill and the restart: {ticks:?}"
    );
}
