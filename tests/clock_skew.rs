//! A `dtp` process whose clock is hours off (libfaketime, Debian's `faketime` package) still
//! runs delayed tasks on time and keeps its leases, because every time that matters comes from
//! the database.

use std::time::Duration;

use common::{TaskStatus, TaskView};
use serde_json::json;
use suite::System;

/// libfaketime's preload library, as Debian installs it, under the machine's multiarch
/// directory.
fn libfaketime_path() -> Result<String, String> {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("faketime/libfaketime.so.1"))
        .find(|path| path.is_file())
        .map(|path| path.display().to_string())
        .ok_or_else(|| "no /usr/lib/*/faketime/libfaketime.so.1".to_owned())
}

/// libfaketime, or `None` (the test returns) when it is missing outside CI.
fn libfaketime() -> Option<String> {
    testkit::tool_or_skip(libfaketime_path(), "faketime")
}

fn skewed(libfaketime: &str, offset: &str) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".to_owned(), libfaketime.to_owned()),
        ("FAKETIME".to_owned(), offset.to_owned()),
        // Durations (timers, timeouts) stay real; only the wall clock is off.
        ("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
    ]
}

async fn task(system: &System, id: i64) -> TaskView {
    reqwest::get(format!("{}/tasks/{id}", system.dtp[0].url()))
        .await
        .expect("sent")
        .json()
        .await
        .expect("task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_hours_off_run_delayed_tasks_on_time_and_keep_their_leases() {
    let Some(libfaketime) = libfaketime() else {
        return;
    };
    // dtp-0 serves the API with a true clock and runs no worker; the workers are 3 h ahead and
    // 3 h behind.
    let mut system = System::start_with(1, true).await;
    let ahead = system
        .add_worker("dtp-ahead", skewed(&libfaketime, "+3h"))
        .await;
    system
        .add_worker("dtp-behind", skewed(&libfaketime, "-3h"))
        .await;
    let client = reqwest::Client::new();
    let now: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("select now()")
        .fetch_one(&system.dtp_pool)
        .await
        .expect("db clock");
    let run_at = now + chrono::Duration::seconds(3);
    let create = |body: serde_json::Value| {
        client
            .post(format!("{}/tasks", system.dtp[0].url()))
            .json(&body)
            .send()
    };
    let delayed: TaskView = create(json!({"type": "noop", "runAt": run_at.to_rfc3339()}))
        .await
        .expect("sent")
        .json()
        .await
        .expect("task");
    // Longer than the 2 s lease: it survives only if its worker's renewals count.
    let long: TaskView = create(json!({"type": "demo-slow", "payload": {"ms": 5000}}))
        .await
        .expect("sent")
        .json()
        .await
        .expect("task");

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        task(&system, delayed.id).await.status,
        TaskStatus::Pending,
        "run early"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (delayed, long) = loop {
        let (d, l) = (
            task(&system, delayed.id).await,
            task(&system, long.id).await,
        );
        if d.status.is_terminal() && l.status.is_terminal() {
            break (d, l);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not finished: {d:?} {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    assert_eq!(delayed.status, TaskStatus::Succeeded);
    // From the database: the API writes milliseconds, and a start in the same millisecond as
    // `run_at` (microseconds) would read as before it.
    let started: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select processing_started_at from tasks where id = $1")
            .bind(delayed.id)
            .fetch_one(&system.dtp_pool)
            .await
            .expect("started");
    assert!(started >= run_at, "started at {started}, due at {run_at}");
    assert_eq!(long.status, TaskStatus::Succeeded);
    assert_eq!(
        (long.attempt_count, long.last_error),
        (1, None),
        "its lease was kept"
    );
    let log = system.dtp[ahead].log_text();
    let hour_ahead = (now + chrono::Duration::hours(3))
        .format("%Y-%m-%dT%H")
        .to_string();
    assert!(
        log.contains(&hour_ahead),
        "the worker's clock was not skewed:\n{log}"
    );
}
