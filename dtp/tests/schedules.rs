//! Schedules: the API and its refusals, ticks enqueued by the maintenance leader,
//! one task per tick, and the latest missed tick enqueued once after a stop.

mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Schedule, ScheduleList, TaskStatus};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{api_only_with, assert_problem, TestApp};
use testkit::Sent;

async fn post(app: &TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/schedules"))
        .json(&body)
        .sent()
        .await
}

async fn created(app: &TestApp, body: Value) -> Schedule {
    let response = post(app, body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("schedule")
}

/// `(idempotency key, status)` of every task, by id.
async fn tasks(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as("select idempotency_key, status from tasks order by id")
        .fetch_all(&app.pool)
        .await
        .expect("tasks")
}

/// Waits until at least `count` tasks exist (a hang bound, not a timing goal), then a round and
/// a half more, in which no other task may come; returns them all.
async fn settled_tasks(app: &TestApp, count: usize) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    while tasks(app).await.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} ticks never came"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tasks(app).await
}

/// A schedule ticking every day at midnight UTC (so that no new tick comes while a test
/// looks, but at midnight) whose next tick `planted` (SQL) moves into the past, once the
/// service's maintenance leader has run a round (the leader was up).
async fn daily_behind(app: &TestApp, planted: &str) {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        let rounds: i64 = sqlx::query_scalar("select count(*) from maintenance_rounds")
            .fetch_one(&app.pool)
            .await
            .expect("rounds");
        if rounds > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no maintenance round ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    created(
        app,
        json!({"name": "daily", "cron": "0 0 * * *", "task": {"type": "noop"}}),
    )
    .await;
    sqlx::raw_sql(planted)
        .execute(&app.pool)
        .await
        .expect("plant the missed ticks");
}

#[tokio::test]
async fn a_schedule_is_created_read_changed_and_deleted() {
    let app = api_only_with(|_| {}).await;
    let nightly = created(
        &app,
        json!({"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris",
               "task": {"type": "noop", "payload": {"report": true}}}),
    )
    .await;
    assert_eq!(nightly.timezone, "Europe/Paris");
    assert_eq!(
        nightly.task.max_attempts,
        Some(3),
        "the default resolved at creation"
    );
    assert!(nightly.next_run_at.is_some_and(|next| next > Utc::now()));
    assert_eq!(nightly.last_run_at, None);

    let list: ScheduleList = app.get_ok("/schedules").await;
    assert_eq!(list.schedules, std::slice::from_ref(&nightly));
    let again = post(
        &app,
        json!({"name": "nightly", "cron": "* * * * *", "task": {"type": "noop"}}),
    )
    .await;
    assert_problem(again, StatusCode::CONFLICT).await;

    let url = app.url("/schedules/nightly");
    let paused: Schedule = app
        .client
        .patch(&url)
        .json(&json!({"paused": true}))
        .sent()
        .await
        .json()
        .await
        .expect("schedule");
    assert!(paused.paused);
    assert_eq!(
        paused.next_run_at, None,
        "a paused schedule has no next tick"
    );
    let resumed: Schedule = app
        .client
        .patch(&url)
        .json(&json!({"paused": false, "cron": "0 4 * * *"}))
        .sent()
        .await
        .json()
        .await
        .expect("schedule");
    assert_eq!(resumed.cron, "0 4 * * *");
    assert!(resumed.next_run_at.is_some());

    assert_eq!(
        app.client.delete(&url).sent().await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(app.client.get(&url).sent().await, StatusCode::NOT_FOUND).await;
    assert_problem(app.client.delete(&url).sent().await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn invalid_schedules_are_422_naming_the_problem_and_write_nothing() {
    let app = api_only_with(|_| {}).await;
    let task = json!({"type": "noop"});
    let refused = [
        (
            json!({"name": "x", "cron": "not cron", "task": task}),
            "cron",
        ),
        (
            json!({"name": "x", "cron": "* * * *", "task": task}),
            "fields",
        ),
        (
            json!({"name": "x", "cron": "0 0 30 2 *", "task": task}),
            "never fires",
        ),
        (
            json!({"name": "x", "cron": "* * * * *", "timezone": "Mars/Olympus", "task": task}),
            "time zone",
        ),
        (
            json!({"name": "x", "cron": "* * * * *", "task": {"type": "no-such-type"}}),
            "unknown task type",
        ),
        (
            json!({"name": "x", "cron": "* * * * *", "task": {"type": "noop", "runAt": "2030-01-01T00:00:00Z"}}),
            "runAt",
        ),
        (
            json!({"name": "x", "cron": "* * * * *", "task": {"type": "noop", "maxAttempts": 0}}),
            "maxAttempts",
        ),
        (
            json!({"name": "bad name", "cron": "* * * * *", "task": task}),
            "name",
        ),
        (
            json!({"name": "x", "cron": format!("0{}3 * * *", " ".repeat(300)), "task": task}),
            "characters",
        ),
    ];
    for (body, names) in refused {
        let detail = assert_problem(
            post(&app, body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert!(detail.contains(names), "{body}: {detail}");
    }
    let list: ScheduleList = app.get_ok("/schedules").await;
    assert!(list.schedules.is_empty(), "nothing written");
}

#[tokio::test]
async fn each_tick_enqueues_one_task_named_by_its_tick_and_deleting_the_schedule_keeps_them() {
    let app = api_only_with(|_| {}).await;
    created(
        &app,
        json!({"name": "every-second", "cron": "* * * * * *", "task": {"type": "noop"}}),
    )
    .await;
    settled_tasks(&app, 3).await;
    let schedule: Schedule = app.get_ok("/schedules/every-second").await;
    let deleted = app
        .client
        .delete(app.url("/schedules/every-second"))
        .sent()
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    let made = tasks(&app).await;
    let mut ticks: Vec<DateTime<Utc>> = made
        .iter()
        .map(|(key, _)| {
            let tick = key
                .strip_prefix("schedule:every-second:")
                .expect("a tick's key");
            DateTime::parse_from_rfc3339(tick)
                .expect("a time")
                .with_timezone(&Utc)
        })
        .collect();
    let count = ticks.len();
    ticks.dedup();
    assert_eq!(ticks.len(), count, "one task per tick");
    assert!(
        ticks.windows(2).all(|w| w[1] > w[0]),
        "ticks in order: {ticks:?}"
    );
    assert!(schedule
        .last_run_at
        .is_some_and(|last| ticks.contains(&last)));
    assert!(
        !made.is_empty(),
        "the tasks stay after the schedule is deleted"
    );
}

#[tokio::test]
async fn a_late_round_enqueues_every_tick_it_missed() {
    let app = api_only_with(|_| {}).await;
    // The leader was up but its rounds came late: three ticks passed since the schedule's next.
    daily_behind(
        &app,
        "update schedules set next_run_at = date_trunc('day', now()) - interval '2 days'",
    )
    .await;
    let made = settled_tasks(&app, 3).await;
    assert_eq!(made.len(), 3, "one task for each of the three ticks");
}

#[tokio::test]
async fn after_a_stop_only_the_latest_missed_tick_is_enqueued() {
    let app = api_only_with(|_| {}).await;
    // Every process was down for ten days: the tick due ten days ago and nine more passed, and
    // no leader ran a round.
    daily_behind(
        &app,
        "update schedules set next_run_at = date_trunc('day', now()) - interval '10 days'; \
         update maintenance_rounds set round_at = now() - interval '10 days'",
    )
    .await;
    let made = settled_tasks(&app, 1).await;
    assert_eq!(
        made.len(),
        1,
        "one task for the latest missed tick: {made:?}"
    );
    let schedule: Schedule = app.get_ok("/schedules/daily").await;
    let latest: DateTime<Utc> = sqlx::query_scalar("select date_trunc('day', now())")
        .fetch_one(&app.pool)
        .await
        .expect("now");
    assert_eq!(schedule.last_run_at, Some(latest));
    assert!(schedule.next_run_at.is_some_and(|next| next > latest));
    assert_eq!(
        made[0].1,
        TaskStatus::Pending.as_str(),
        "an API-only process runs nothing"
    );
}

#[tokio::test]
async fn a_client_cannot_take_the_idempotency_key_of_a_tick() {
    let app = api_only_with(|_| {}).await;
    let key = "schedule:nightly:2026-03-02T02:00:00Z";
    let response = app
        .post_task(json!({"type": "noop", "idempotencyKey": key}))
        .await;
    let detail = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(detail.contains("schedule:"), "{detail}");
    app.assert_no_tasks().await;
}
