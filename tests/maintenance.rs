//! Maintenance with real processes: the process leading maintenance is SIGKILLed and
//! another takes over the pruning within seconds.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use suite::{wait_until, System};
use testkit::Sent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_maintenance_leader_is_sigkilled_another_process_prunes_within_seconds() {
    let retention = [("DTP_RETENTION_SUCCEEDED", "1s")];
    let mut system = System::start_with_env(2, false, &retention).await;
    let killed = system.kill_maintenance_leader().await;
    let survivor = &system.dtp[1 - killed];

    let created = reqwest::Client::new()
        .post(format!("{}/tasks", survivor.url()))
        .json(&json!({"type": "noop"}))
        .sent()
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let mut taken_over = None;
    wait_until("the other process leads", async || {
        taken_over = system.maintenance_leader().await;
        taken_over.is_some()
    })
    .await;
    assert_eq!(taken_over.as_deref(), Some(survivor.name()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while system.count_tasks("true").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new leader prunes the task a second after it succeeded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
