//! Queues: settings read and changed over HTTP, and what the claim does with them
//! (pause, global concurrency and rate limits, round-robin between queues); a task's attempt
//! history. The multi-process proofs of the limits are in `tests/queues.rs`.

mod support;

use std::time::Duration;

use common::{AttemptList, AttemptOutcome, Queue, QueueList, TaskStatus};
use dtp::queue::{self, TaskId};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{api_only_with, assert_problem, claim, TestApp};
use testkit::Sent;

const LEASE: Duration = Duration::from_secs(30);

async fn patch(app: &TestApp, name: &str, body: Value) -> reqwest::Response {
    let url = app.url(&format!("/queues/{name}"));
    app.client.patch(url).json(&body).sent().await
}

async fn configured(app: &TestApp, name: &str, body: Value) -> Queue {
    let response = patch(app, name, body).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("queue")
}

async fn post(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.post(app.url(path)).sent().await
}

/// Creates `n` `noop` tasks in `queue`; their ids.
async fn enqueue(app: &TestApp, queue: &str, n: usize) -> Vec<i64> {
    let batch: Vec<Value> = (0..n)
        .map(|_| json!({"type": "noop", "queue": queue}))
        .collect();
    let response = app.post_batch(&json!(batch)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: common::BatchCreated = response.json().await.expect("batch");
    created.tasks.iter().map(|t| t.id).collect()
}

fn queues_of(claimed: &[queue::ClaimedTask], tasks: &[i64]) -> usize {
    claimed.iter().filter(|t| tasks.contains(&t.id)).count()
}

#[tokio::test]
async fn get_queues_lists_the_default_queue_each_named_one_and_each_configured_one_with_counts() {
    let app = api_only_with(|_| {}).await;
    let empty: QueueList = app.get_ok("/queues").await;
    assert_eq!(empty.queues.len(), 1, "the default queue always exists");
    assert_eq!(empty.queues[0].name, "default");

    enqueue(&app, "mail", 3).await;
    let ids = enqueue(&app, "default", 2).await;
    app.cancel(ids[0]).await;
    configured(&app, "later", json!({"paused": true})).await;
    let list: QueueList = app.get_ok("/queues").await;
    let names: Vec<&str> = list.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["default", "later", "mail"], "by name");
    let default = &list.queues[0];
    assert_eq!((default.counts.pending, default.counts.canceled), (1, 1));
    let mail = &list.queues[2];
    assert_eq!(mail.counts.pending, 3);
    assert!(mail.oldest_pending_age_ms.is_some_and(|age| age >= 0));
    assert!(list.queues[1].paused);
    assert_eq!(list.queues[1].counts, common::QueueCounts::default());

    let one: Queue = app.get_ok("/queues/mail").await;
    assert_eq!((&one.name, one.counts), (&mail.name, mail.counts));
    let unknown = app.client.get(app.url("/queues/nobody")).sent().await;
    assert_problem(unknown, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn patch_sets_any_subset_of_settings_and_null_removes_a_limit() {
    let app = api_only_with(|_| {}).await;
    let set = configured(
        &app,
        "q",
        json!({"concurrencyLimit": 5, "rateLimitPerSecond": 2.5}),
    )
    .await;
    assert_eq!(set.concurrency_limit, Some(5));
    assert_eq!(set.rate_limit_per_second, Some(2.5));
    assert!(!set.paused);

    let paused = configured(&app, "q", json!({"paused": true})).await;
    assert!(paused.paused, "paused");
    assert_eq!(
        paused.concurrency_limit,
        Some(5),
        "a field left out keeps its value"
    );

    let cleared = configured(&app, "q", json!({"concurrencyLimit": null})).await;
    assert_eq!(cleared.concurrency_limit, None, "null removes the limit");
    assert_eq!(cleared.rate_limit_per_second, Some(2.5));
    assert!(cleared.paused);
}

#[tokio::test]
async fn invalid_settings_are_422_and_change_nothing() {
    let app = api_only_with(|_| {}).await;
    configured(&app, "q", json!({"concurrencyLimit": 2})).await;
    let refused = [
        ("q", json!({"concurrencyLimit": 0})),
        ("q", json!({"concurrencyLimit": 1_000_001})),
        ("q", json!({"concurrencyLimit": 1.5})),
        ("q", json!({"concurrencyLimit": "3"})),
        ("q", json!({"rateLimitPerSecond": 0})),
        ("q", json!({"rateLimitPerSecond": -1.0})),
        ("q", json!({"rateLimitPerSecond": 2_000_000.0})),
        ("q", json!({"paused": "yes"})),
        ("q", json!({"paused": null})),
        ("q", json!({"concurrency": 3})),
        ("q", json!([null, null])),
        ("q", json!([1])),
        ("bad%20name", json!({"paused": true})),
        (&"x".repeat(101), json!({"paused": true})),
    ];
    for (name, body) in refused {
        let response = patch(&app, name, body.clone()).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        let q: Queue = app.get_ok("/queues/q").await;
        assert_eq!(q.concurrency_limit, Some(2), "{body} changed nothing");
        assert!(!q.paused, "{body} changed nothing");
    }
    let list: QueueList = app.get_ok("/queues").await;
    assert_eq!(list.queues.len(), 2, "no queue made by a refused request");
}

#[tokio::test]
async fn pause_and_resume_are_idempotent_and_a_paused_queue_is_not_claimed() {
    let app = api_only_with(|_| {}).await;
    let held = enqueue(&app, "held", 3).await;
    let other = enqueue(&app, "other", 2).await;
    for _ in 0..2 {
        let response = post(&app, "/queues/held/pause").await;
        assert_eq!(response.status(), StatusCode::OK);
        let queue: Queue = response.json().await.expect("queue");
        assert!(queue.paused);
    }
    let claimed = claim(&app.pool, "w", 10, LEASE).await;
    assert_eq!(queues_of(&claimed, &held), 0, "nothing of a paused queue");
    assert_eq!(queues_of(&claimed, &other), 2, "other queues go on");

    // Create, cancel, retry and delete still work on a paused queue.
    let created = enqueue(&app, "held", 2).await;
    assert_eq!(app.cancel(created[0]).await.status(), StatusCode::OK);
    let retried = post(&app, &format!("/tasks/{}/retry", created[0])).await;
    assert_eq!(retried.status(), StatusCode::OK);
    assert_eq!(app.cancel(created[1]).await.status(), StatusCode::OK);
    let url = app.url(&format!("/tasks/{}", created[1]));
    let deleted = app.client.delete(url).sent().await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    for _ in 0..2 {
        let response = post(&app, "/queues/held/resume").await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let claimed = claim(&app.pool, "w", 10, LEASE).await;
    assert_eq!(claimed.len(), 4, "every task of the resumed queue");
}

#[tokio::test]
async fn a_running_task_of_a_queue_paused_under_it_still_finishes() {
    let app = api_only_with(|_| {}).await;
    let id = enqueue(&app, "q", 1).await[0];
    let running = claim(&app.pool, "w", 1, LEASE).await.remove(0);
    post(&app, "/queues/q/pause").await;
    let done = queue::mark_succeeded(&app.pool, TaskId(id), running.fence(), &json!(1)).await;
    assert!(
        done.expect("succeed"),
        "the fence holds: pause does not touch running tasks"
    );
}

#[tokio::test]
async fn a_concurrency_limit_caps_the_running_tasks_of_its_queue_across_claims() {
    let app = api_only_with(|_| {}).await;
    configured(&app, "limited", json!({"concurrencyLimit": 2})).await;
    let limited = enqueue(&app, "limited", 5).await;
    let first = claim(&app.pool, "w1", 10, LEASE).await;
    assert_eq!(queues_of(&first, &limited), 2);
    let second = claim(&app.pool, "w2", 10, LEASE).await;
    assert!(second.is_empty(), "the limit holds across claimers");
    queue::mark_succeeded(&app.pool, first[0].task_id(), first[0].fence(), &json!(1))
        .await
        .expect("succeed");
    let third = claim(&app.pool, "w2", 10, LEASE).await;
    assert_eq!(third.len(), 1, "one slot freed, one claimed");

    configured(&app, "limited", json!({"concurrencyLimit": null})).await;
    let rest = claim(&app.pool, "w2", 10, LEASE).await;
    assert_eq!(rest.len(), 2, "no limit any more");
}

#[tokio::test]
async fn a_rate_limit_starts_no_more_than_its_tokens() {
    let app = api_only_with(|_| {}).await;
    configured(&app, "rated", json!({"rateLimitPerSecond": 1.0})).await;
    enqueue(&app, "rated", 5).await;
    // A bucket of one token (a tenth of a second's worth, at least one) that refills in 1 s.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(claim(&app.pool, "w", 10, LEASE).await.len(), 1);
    assert!(
        claim(&app.pool, "w", 10, LEASE).await.is_empty(),
        "no token left"
    );
}

#[tokio::test]
async fn a_rate_limited_queue_gives_a_claim_no_more_than_it_starts_at_once() {
    let app = api_only_with(|_| {}).await;
    // A bucket of 10 tokens (a tenth of a second's worth), full after 150 ms.
    configured(&app, "rated", json!({"rateLimitPerSecond": 100.0})).await;
    let rated = enqueue(&app, "rated", 20).await;
    let free = enqueue(&app, "free", 20).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let types = support::test_types();
    // Two free slots, and room for eighteen more to hold for slots about to free up.
    let mut claim = queue::Claim::new("w", &types, 20, LEASE);
    claim.start_now = 2;

    let mut conn = app.pool.acquire().await.expect("connection");
    let claimed = queue::claim_available(&mut conn, &claim)
        .await
        .expect("claim");

    // A rated task held for a slot would start later than its token allowed.
    assert_eq!(queues_of(&claimed.tasks, &rated), 2);
    assert_eq!(
        queues_of(&claimed.tasks, &free),
        10,
        "the free queue's share"
    );
    assert_eq!(claimed.held_to_limits, ["rated"]);
}

#[tokio::test]
async fn a_busy_queue_does_not_starve_a_small_one() {
    let app = api_only_with(|_| {}).await;
    enqueue(&app, "busy", 200).await;
    let small = enqueue(&app, "small", 3).await;
    let claimed = claim(&app.pool, "w", 10, LEASE).await;
    assert_eq!(
        queues_of(&claimed, &small),
        3,
        "the small queue's tasks come in the first claim, though 200 older ones wait"
    );
    assert_eq!(
        claimed.len(),
        8,
        "an equal share of the claim from each queue"
    );
    assert_eq!(
        claim(&app.pool, "w", 10, LEASE).await.len(),
        10,
        "the next claim takes the rest"
    );
}

/// An attempt as the tests compare it: number, worker, outcome, error.
type Seen<'a> = (
    i32,
    Option<&'a str>,
    Option<AttemptOutcome>,
    Option<&'a str>,
);

async fn attempts(app: &TestApp, id: i64) -> Vec<common::Attempt> {
    let list: AttemptList = app.get_ok(&format!("/tasks/{id}/attempts")).await;
    list.attempts
}

#[tokio::test]
async fn attempts_list_each_ending_oldest_first_and_survive_a_retry() {
    let app = api_only_with(|_| {}).await;
    let id = app
        .create_id(json!({"type": "noop", "maxAttempts": 2}))
        .await;
    assert!(
        attempts(&app, id).await.is_empty(),
        "none before the first claim"
    );

    let first = claim(&app.pool, "w1", 1, LEASE).await.remove(0);
    let running = attempts(&app, id).await;
    assert_eq!(running.len(), 1);
    assert_eq!(
        running[0].outcome, None,
        "the running attempt, without an outcome"
    );
    assert_eq!(running[0].worker_id.as_deref(), Some("w1"));

    let failure = queue::Failure::Retryable;
    queue::mark_failed_or_retry(
        &app.pool,
        TaskId(id),
        first.fence(),
        "boom",
        Duration::ZERO,
        failure,
    )
    .await
    .expect("fail");
    let second = claim(&app.pool, "w2", 1, LEASE).await.remove(0);
    let timeout = queue::Failure::TimedOut;
    queue::mark_failed_or_retry(
        &app.pool,
        TaskId(id),
        second.fence(),
        "timed out",
        Duration::ZERO,
        timeout,
    )
    .await
    .expect("fail");
    let retried = app
        .client
        .post(app.url(&format!("/tasks/{id}/retry")))
        .sent()
        .await;
    assert_eq!(retried.status(), StatusCode::OK);
    let third = claim(&app.pool, "w3", 1, LEASE).await.remove(0);
    queue::mark_succeeded(&app.pool, TaskId(id), third.fence(), &json!("ok"))
        .await
        .expect("succeed");

    let list = attempts(&app, id).await;
    let seen: Vec<Seen<'_>> = list
        .iter()
        .map(|a| {
            (
                a.attempt,
                a.worker_id.as_deref(),
                a.outcome,
                a.error.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (1, Some("w1"), Some(AttemptOutcome::Retry), Some("boom")),
            (
                2,
                Some("w2"),
                Some(AttemptOutcome::Timeout),
                Some("timed out")
            ),
            (3, Some("w3"), Some(AttemptOutcome::Succeeded), None),
        ]
    );
    for attempt in &list {
        let (Some(started), Some(finished)) = (attempt.started_at, attempt.finished_at) else {
            panic!("an ended attempt has a start and an end: {attempt:?}");
        };
        assert!(finished >= started);
        assert!(attempt.duration_ms.is_some_and(|ms| ms >= 0));
    }
}

#[tokio::test]
async fn a_cancel_while_running_and_a_hand_back_are_attempts_and_a_pending_cancel_is_not() {
    let app = api_only_with(|_| {}).await;
    let pending = app.create_id(json!({"type": "noop"})).await;
    app.cancel(pending).await;
    assert!(attempts(&app, pending).await.is_empty());

    let id = app.create_id(json!({"type": "noop"})).await;
    let claimed = claim(&app.pool, "w", 1, LEASE).await.remove(0);
    queue::release(&app.pool, TaskId(id), claimed.fence())
        .await
        .expect("release");
    claim(&app.pool, "w", 1, LEASE).await;
    app.cancel(id).await;
    let outcomes: Vec<(i32, Option<AttemptOutcome>)> = attempts(&app, id)
        .await
        .iter()
        .map(|a| (a.attempt, a.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            (1, Some(AttemptOutcome::Released)),
            (1, Some(AttemptOutcome::Canceled))
        ],
        "a hand-back is not counted: the next claim is attempt 1 again"
    );
}

/// Lets the lease of RUNNING task `id` run out and rescues it, as a rescuer would.
async fn rescue(app: &TestApp, id: i64) {
    app.plant(
        "update tasks set lease_expires_at = now() - interval '1 hour' where id = $1",
        id,
    )
    .await;
    let mut tx = app.pool.begin().await.expect("tx");
    let expired = queue::lock_expired(&mut tx, 10, Duration::ZERO)
        .await
        .expect("lock");
    let lost: Vec<_> = expired.into_iter().map(|e| (e, Duration::ZERO)).collect();
    queue::fail_expired(&mut tx, &lost).await.expect("rescue");
    tx.commit().await.expect("commit");
}

#[tokio::test]
async fn a_rescued_attempt_is_lost_and_the_history_goes_with_a_deleted_task() {
    let app = api_only_with(|_| {}).await;
    let id = app
        .create_id(json!({"type": "noop", "maxAttempts": 1}))
        .await;
    claim(&app.pool, "w", 1, LEASE).await;
    rescue(&app, id).await;
    assert_eq!(app.get_task(id).await.status, TaskStatus::Failed);
    let list = attempts(&app, id).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].outcome, Some(AttemptOutcome::Lost));
    assert_eq!(list[0].error.as_deref(), Some("worker lost"));

    let deleted = app
        .client
        .delete(app.url(&format!("/tasks/{id}")))
        .sent()
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let left: i64 = sqlx::query_scalar("select count(*) from task_attempts")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(left, 0, "deleted with its task");
    let gone = app
        .client
        .get(app.url(&format!("/tasks/{id}/attempts")))
        .sent()
        .await;
    assert_problem(gone, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn with_one_slot_a_worker_takes_turns_between_queues() {
    let app = api_only_with(|_| {}).await;
    let busy = enqueue(&app, "busy", 40).await;
    app.plant(
        "update tasks set run_at = now() - interval '1 hour' where queue = 'busy' and id >= $1",
        busy[0],
    )
    .await;
    let small = enqueue(&app, "small", 3).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = support::worker_for(&app, "one-slot", |c| c.concurrency = 1);
    let running = tokio::spawn(worker.run(stop.clone()));
    support::wait_until_all_terminal(&app.pool).await;
    stop.cancel();
    running.await.expect("worker stopped");

    let order: Vec<i64> =
        sqlx::query_scalar("select id from tasks order by attempt_started_at, id")
            .fetch_all(&app.pool)
            .await
            .expect("start order");
    let latest_small = small
        .iter()
        .map(|id| order.iter().position(|o| o == id).expect("ran"))
        .max();
    assert!(
        latest_small.is_some_and(|at| at < 8),
        "the small queue's three tasks start among the first claims, taking turns with the \
         busy queue's 40 older ones: started {latest_small:?}th"
    );
}

#[tokio::test]
async fn a_task_canceled_while_running_keeps_its_place_under_the_limit_for_a_lease() {
    let app = api_only_with(|_| {}).await;
    configured(&app, "one", json!({"concurrencyLimit": 1})).await;
    let ids = enqueue(&app, "one", 2).await;
    assert_eq!(claim(&app.pool, "w", 10, LEASE).await.len(), 1);
    let canceled = app.cancel(ids[0]).await;
    assert_eq!(canceled.status(), StatusCode::OK);
    assert!(
        claim(&app.pool, "w", 10, LEASE).await.is_empty(),
        "its handler may still run until its worker hears of the cancel"
    );
    let short = Duration::from_millis(50);
    tokio::time::sleep(short * 2).await;
    assert_eq!(
        claim(&app.pool, "w", 10, short).await.len(),
        1,
        "a lease after the cancel, the place is free"
    );
}

#[tokio::test]
async fn a_claim_locks_only_the_limited_queues_it_takes_from() {
    let app = api_only_with(|_| {}).await;
    configured(&app, "a", json!({"concurrencyLimit": 5})).await;
    configured(&app, "b", json!({"concurrencyLimit": 5})).await;
    enqueue(&app, "a", 1).await;
    enqueue(&app, "b", 1).await;
    // A claim from `a` whose transaction stays open keeps the locks it took.
    let mut holder = app.pool.begin().await.expect("transaction");
    let types = support::test_types();
    let only_a = [queue::QueueCursor::start(String::from("a"))];
    let mut from_a = queue::Claim::new("w1", &types, 10, LEASE);
    from_a.queues = Some(&only_a);
    let took = queue::claim_available(&mut holder, &from_a)
        .await
        .expect("claim");
    assert_eq!(took.tasks.len(), 1);

    let other = claim(&app.pool, "w2", 10, LEASE).await;
    assert_eq!(other.len(), 1, "b is free to the other claimer: {other:?}");
    holder.rollback().await.expect("rollback");
}

/// The counts `GET /queues` answers, per queue, against a count of the table itself.
async fn assert_counts_agree(app: &TestApp, after: &str) {
    let list: QueueList = app.get_ok("/queues").await;
    let answered: Vec<(String, [i64; 5])> = list
        .queues
        .iter()
        .map(|q| {
            let c = q.counts;
            let counts = [c.pending, c.running, c.succeeded, c.failed, c.canceled];
            (q.name.clone(), counts)
        })
        .filter(|(name, counts)| name != "default" || counts.iter().any(|n| *n != 0))
        .collect();
    let counted: Vec<(String, [i64; 5])> = sqlx::query_as::<_, (String, i64, i64, i64, i64, i64)>(
        "select queue, count(*) filter (where status = 'PENDING'), \
                count(*) filter (where status = 'RUNNING'), \
                count(*) filter (where status = 'SUCCEEDED'), \
                count(*) filter (where status = 'FAILED'), \
                count(*) filter (where status = 'CANCELED') \
         from tasks group by queue order by queue",
    )
    .fetch_all(&app.pool)
    .await
    .expect("count")
    .into_iter()
    .map(|(name, p, r, s, f, c)| (name, [p, r, s, f, c]))
    .collect();
    assert_eq!(answered, counted, "after {after}");
}

async fn bulk(app: &TestApp, action: &str, filter: Value) {
    let body = json!({"action": action, "filter": filter});
    let response = app
        .client
        .post(app.url("/tasks/bulk"))
        .json(&body)
        .sent()
        .await;
    assert_eq!(response.status(), StatusCode::OK, "bulk {action}");
}

#[tokio::test]
async fn finished_counts_stay_exact_through_every_transition_into_and_out_of_a_finished_state() {
    let app = api_only_with(|_| {}).await;
    let ids: Vec<i64> = {
        let batch: Vec<Value> = (0..6)
            .map(|_| json!({"type": "noop", "queue": "q", "maxAttempts": 1}))
            .collect();
        let created: common::BatchCreated = app
            .post_batch(&json!(batch))
            .await
            .json()
            .await
            .expect("batch");
        created.tasks.iter().map(|t| t.id).collect()
    };
    enqueue(&app, "r", 3).await;
    assert_counts_agree(&app, "enqueue").await;

    let claimed = claim(&app.pool, "w", 4, LEASE).await;
    assert_counts_agree(&app, "claim").await;
    let fence_of = |id: i64| {
        claimed
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.fence())
            .unwrap_or_else(|| panic!("{id} claimed"))
    };
    let [succeeded, failed, rescued, canceled] = [0, 1, 2, 3].map(|i| claimed[i].id);
    queue::mark_succeeded(&app.pool, TaskId(succeeded), fence_of(succeeded), &json!(1))
        .await
        .expect("succeed");
    let permanent = queue::Failure::Permanent;
    queue::mark_failed_or_retry(
        &app.pool,
        TaskId(failed),
        fence_of(failed),
        "no",
        Duration::ZERO,
        permanent,
    )
    .await
    .expect("fail");
    rescue(&app, rescued).await;
    app.cancel(canceled).await;
    let pending = ids
        .iter()
        .copied()
        .find(|id| !claimed.iter().any(|t| t.id == *id));
    app.cancel(pending.expect("a pending task")).await;
    assert_counts_agree(&app, "success, failure, rescue and cancels").await;

    for id in [failed, canceled] {
        let retried = post(&app, &format!("/tasks/{id}/retry")).await;
        assert_eq!(retried.status(), StatusCode::OK);
    }
    let deleted = app
        .client
        .delete(app.url(&format!("/tasks/{succeeded}")))
        .sent()
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_counts_agree(&app, "retries and a delete").await;

    bulk(&app, "cancel", json!({"queue": "r"})).await;
    assert_counts_agree(&app, "bulk cancel").await;
    bulk(&app, "retry", json!({"queue": "r"})).await;
    bulk(&app, "cancel", json!({"queue": "r"})).await;
    bulk(&app, "delete", json!({"queue": "r", "status": "CANCELED"})).await;
    assert_counts_agree(&app, "bulk retry and delete").await;

    let mut conn = app.pool.acquire().await.expect("conn");
    queue::prune(&mut *conn, TaskStatus::Canceled, Duration::ZERO, 500)
        .await
        .expect("prune");
    queue::prune(&mut *conn, TaskStatus::Failed, Duration::ZERO, 500)
        .await
        .expect("prune");
    assert_counts_agree(&app, "pruning").await;
    let gone = app.client.get(app.url("/queues/r")).sent().await;
    assert_problem(gone, StatusCode::NOT_FOUND).await;

    // A table changed behind DTP's back (a load by SQL) is counted again by `recount`.
    app.plant(
        "update tasks set status = 'SUCCEEDED', completed_at = now() where id = $1",
        failed,
    )
    .await;
    queue::recount(&mut conn).await.expect("recount");
    assert_counts_agree(&app, "a recount").await;
}
