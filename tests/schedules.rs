//! Schedules with real processes (SPEC §7): three `dtp` processes, the maintenance leader
//! SIGKILLed and restarted in the middle, and still one task per tick.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use suite::{wait_until, System};
use testkit::Sent;

async fn leader(system: &System) -> Option<String> {
    let name: Option<String> = sqlx::query_scalar(
        "select a.application_name from pg_locks l join pg_stat_activity a on a.pid = l.pid \
         where l.locktype = 'advisory' and l.granted and l.classid = 1146376269 \
           and l.objid = 1 and l.objsubid = 2 and l.database = \
               (select oid from pg_database where datname = current_database())",
    )
    .fetch_optional(&system.dtp_pool)
    .await
    .expect("leader");
    name.and_then(|n| n.strip_prefix("dtp-maintenance:").map(str::to_owned))
}

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

    let mut first = None;
    wait_until("a process leads", async || {
        first = leader(&system).await;
        first.is_some()
    })
    .await;
    let first = first.expect("a leader");
    let index = system
        .dtp
        .iter()
        .position(|p| p.name() == first)
        .expect("the leader is one of ours");
    system.dtp[index].kill();
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
