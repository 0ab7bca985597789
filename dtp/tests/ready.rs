//! Ready and waiting tasks: a claim walks a queue from a cursor, every statement that makes
//! tasks ready announces the first of them in claim order, tasks not due wait outside the claim
//! until promoted. (A database of the release before through the split: `migrations.rs`.)

mod support;

use std::time::Duration;

use chrono::Utc;
use dtp::queue::{self, Announcement, ClaimKey, Failure, QueueCursor, TaskId, CHANNEL_TASKS_READY};
use serde_json::Value;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use support::{test_types, QueueDb};

const LEASE: Duration = Duration::from_secs(30);

/// Claims up to `limit` from `queue` starting at `from`; the tasks and the cursor left.
async fn claim_from(
    pool: &PgPool,
    queue: &str,
    from: ClaimKey,
    limit: i64,
) -> (Vec<i64>, Option<QueueCursor>) {
    let cursor = QueueCursor {
        from,
        ..QueueCursor::start(queue.to_owned())
    };
    claim_with(pool, cursor, limit).await
}

/// Claims up to `limit` from the queue of `cursor`; the tasks and the cursor left.
async fn claim_with(
    pool: &PgPool,
    cursor: QueueCursor,
    limit: i64,
) -> (Vec<i64>, Option<QueueCursor>) {
    let types = test_types();
    let cursors = [cursor];
    let mut claim = queue::Claim::new("w", &types, limit, LEASE);
    claim.queues = Some(&cursors);
    let mut conn = pool.acquire().await.expect("connection");
    let claimed = queue::claim_available(&mut conn, &claim)
        .await
        .expect("claim");
    let mut ids: Vec<i64> = claimed.tasks.iter().map(|t| t.id).collect();
    ids.sort_unstable();
    (ids, claimed.frontier.into_iter().next())
}

async fn listening(pool: &PgPool) -> PgListener {
    let mut listener = PgListener::connect_with(pool).await.expect("listener");
    listener.listen(CHANNEL_TASKS_READY).await.expect("listen");
    listener
}

/// The announcements received within a short wait, in order.
async fn announcements(listener: &mut PgListener) -> Vec<Announcement> {
    let mut heard = Vec::new();
    while let Ok(Ok(Some(notification))) =
        tokio::time::timeout(Duration::from_millis(300), listener.try_recv()).await
    {
        heard.push(Announcement::parse(notification.payload()));
    }
    heard
}

async fn key_of(pool: &PgPool, id: i64) -> ClaimKey {
    let (priority, run_at): (i32, chrono::DateTime<Utc>) =
        sqlx::query_as("select priority, run_at from tasks where id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("task");
    ClaimKey::of(priority, run_at, id)
}

async fn waiting(pool: &PgPool, id: i64) -> bool {
    sqlx::query_scalar("select waiting from tasks where id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("task")
}

fn ready(queue: &str, first: ClaimKey) -> Announcement {
    Announcement::Ready {
        queue: queue.to_owned(),
        first: Some(first),
    }
}

#[tokio::test]
async fn a_task_announced_before_a_claims_cursor_is_claimed_from_the_announced_key() {
    let db = QueueDb::new().await;
    let mut listener = listening(&db.pool).await;
    let (a, b, c) = (
        db.enqueue(0).await,
        db.enqueue(0).await,
        db.enqueue(0).await,
    );
    assert_eq!(
        announcements(&mut listener).await,
        [
            ready("default", key_of(&db.pool, a).await),
            ready("default", key_of(&db.pool, b).await),
            ready("default", key_of(&db.pool, c).await),
        ]
    );

    let (took, left) = claim_from(&db.pool, "default", ClaimKey::START, 1).await;
    assert_eq!(took, [a]);
    let left = left.expect("the queue has more");
    assert_eq!(left.from, key_of(&db.pool, a).await.after());

    // A task of higher priority sorts before the cursor: the claim would walk past it. Its
    // announcement names it, and a claim from there takes it first.
    let urgent = db.enqueue(5).await;
    let heard = announcements(&mut listener).await;
    let urgent_key = key_of(&db.pool, urgent).await;
    assert_eq!(heard, [ready("default", urgent_key)]);
    let mut moved = left.clone();
    moved.announced(urgent_key);
    assert_eq!((moved.from, moved.resume), (urgent_key, Some(left.from)));
    let (took, left) = claim_with(&db.pool, moved, 1).await;
    assert_eq!(took, [urgent]);
    // The higher priority has nothing more: the walk stops before the lower priority's start,
    // where the entries of the tasks claimed before lie, and the cursor comes back.
    let (took, left) = claim_with(&db.pool, left.expect("more"), 5).await;
    assert!(took.is_empty(), "{took:?}");
    let left = left.expect("the queue has more");
    assert_eq!(
        (left.from, left.resume),
        (key_of(&db.pool, a).await.after(), None)
    );
    let (took, _) = claim_with(&db.pool, left, 5).await;
    assert_eq!(took, [b, c], "the rest, after the urgent task");

    // Empty now: the claim drops the queue from what it claims from.
    let (took, left) = claim_from(&db.pool, "default", ClaimKey::START, 5).await;
    assert!(took.is_empty() && left.is_none(), "{took:?} {left:?}");
}

#[tokio::test]
async fn a_task_not_due_waits_outside_the_claim_until_promoted() {
    let db = QueueDb::new().await;
    let mut listener = listening(&db.pool).await;
    let task = queue::NewTask {
        run_at: Some(Utc::now() + chrono::Duration::milliseconds(800)),
        ..queue::NewTask::new("noop", Value::Null)
    };
    let mut conn = db.pool.acquire().await.expect("connection");
    let queue::Enqueued::Created(row) = queue::enqueue(&mut conn, &task).await.expect("enqueue")
    else {
        panic!("no key, yet the task existed");
    };
    drop(conn);
    assert!(waiting(&db.pool, row.id).await);
    assert_eq!(
        announcements(&mut listener).await,
        [],
        "nothing is ready yet"
    );
    assert_eq!(queue::promote_due(&db.pool).await.expect("promote"), 0);

    tokio::time::sleep(Duration::from_millis(900)).await;
    // Due, but waiting: no claim sees it, even from the queue's start.
    let (took, _) = claim_from(&db.pool, "default", ClaimKey::START, 5).await;
    assert!(took.is_empty(), "{took:?}");
    assert_eq!(
        queue::ready_queues(&db.pool).await.expect("queues"),
        Vec::<String>::new()
    );

    assert_eq!(queue::promote_due(&db.pool).await.expect("promote"), 1);
    assert!(!waiting(&db.pool, row.id).await);
    assert_eq!(
        announcements(&mut listener).await,
        [ready("default", key_of(&db.pool, row.id).await)]
    );
    let (took, _) = claim_from(&db.pool, "default", ClaimKey::START, 5).await;
    assert_eq!(took, [row.id]);
}

#[tokio::test]
async fn every_way_back_to_pending_waits_until_due_and_announces_what_is_ready() {
    let db = QueueDb::new().await;
    let id = db.enqueue(0).await;
    let mut listener = listening(&db.pool).await;

    // A retry after a backoff waits, unannounced.
    let failed = claim_and_fail(&db.pool, id, Duration::from_secs(60), Failure::Retryable).await;
    assert_eq!(failed.status(), common::TaskStatus::Pending);
    assert!(waiting(&db.pool, id).await);
    assert_eq!(announcements(&mut listener).await, []);

    // Run now: ready and announced.
    let mut conn = db.pool.acquire().await.expect("connection");
    queue::run_now(&mut conn, TaskId(id))
        .await
        .expect("run now");
    assert_ready_and_announced(&db.pool, &mut listener, id).await;

    // A retry with no backoff: ready and announced.
    claim_and_fail(&db.pool, id, Duration::ZERO, Failure::Retryable).await;
    assert_ready_and_announced(&db.pool, &mut listener, id).await;

    // Handed back unstarted: ready and announced.
    let fence = support::claim(&db.pool, "w", 1, LEASE).await[0].fence();
    queue::release_unstarted(&db.pool, &[(TaskId(id), fence)])
        .await
        .expect("hand back");
    assert_ready_and_announced(&db.pool, &mut listener, id).await;

    // Failed for good, then retried by an operator: ready and announced.
    claim_and_fail(&db.pool, id, Duration::ZERO, Failure::Permanent).await;
    assert_eq!(announcements(&mut listener).await, []);
    queue::retry(&mut conn, TaskId(id), LEASE)
        .await
        .expect("retry");
    assert_ready_and_announced(&db.pool, &mut listener, id).await;
}

/// Claims task `id` (the only ready one) and records its attempt as failed, to be retried
/// after `delay`.
async fn claim_and_fail(
    pool: &PgPool,
    id: i64,
    delay: Duration,
    failure: Failure,
) -> queue::FailedAttempt {
    let fence = support::claim(pool, "w", 1, LEASE).await[0].fence();
    queue::mark_failed_or_retry(pool, TaskId(id), fence, "boom", delay, failure)
        .await
        .expect("fail")
        .expect("fenced")
}

/// Task `id` is ready, and was announced as the first ready task of its priority.
async fn assert_ready_and_announced(pool: &PgPool, listener: &mut PgListener, id: i64) {
    assert!(!waiting(pool, id).await, "task {id} waits");
    assert_eq!(
        announcements(listener).await,
        [ready("default", key_of(pool, id).await)]
    );
}

#[tokio::test]
async fn a_claim_locks_no_row_it_does_not_take() {
    let db = QueueDb::new().await;
    let mut conn = db.pool.acquire().await.expect("connection");
    for queue in ["q0", "q1", "q2"] {
        for _ in 0..2 {
            let task = queue::NewTask {
                queue: queue.to_owned(),
                ..queue::NewTask::new("noop", Value::Null)
            };
            queue::enqueue(&mut conn, &task).await.expect("enqueue");
        }
    }
    let types = test_types();
    let cursors: Vec<QueueCursor> = ["q0", "q1", "q2"]
        .map(|q| QueueCursor::start(q.to_owned()))
        .to_vec();
    let mut claim = queue::Claim::new("w", &types, 1, LEASE);
    claim.queues = Some(&cursors);
    let mut tx = db.pool.begin().await.expect("begin");
    let claimed = queue::claim_available(&mut tx, &claim)
        .await
        .expect("claim");
    assert_eq!(claimed.tasks.len(), 1);

    // Another claimer, meanwhile, finds every other row free: a row locked and left would be
    // skipped, and that claimer's cursor would move past it.
    let free: i64 = sqlx::query_scalar(
        "select count(*) from (select id from tasks where status = 'PENDING' \
                               for update skip locked) free",
    )
    .fetch_one(&db.pool)
    .await
    .expect("free rows");
    assert_eq!(free, 5);
    tx.rollback().await.expect("rollback");
}

#[tokio::test]
async fn one_statement_making_tasks_of_two_priorities_ready_announces_the_first_of_each() {
    let db = QueueDb::new().await;
    let mut listener = listening(&db.pool).await;
    let tasks: Vec<queue::NewTask> = [0, 5, 0, 5]
        .map(|priority| queue::NewTask {
            priority,
            ..queue::NewTask::new("noop", Value::Null)
        })
        .to_vec();
    let mut tx = db.pool.begin().await.expect("begin");
    let created = queue::enqueue_many(&mut tx, &tasks).await.expect("batch");
    tx.commit().await.expect("commit");
    let ids: Vec<i64> = created
        .iter()
        .map(|c| match c {
            queue::Enqueued::Created(row) | queue::Enqueued::Existing(row) => row.id,
        })
        .collect();
    let mut heard = announcements(&mut listener).await;
    heard.sort_by_key(|a| format!("{a:?}"));
    let mut expected = vec![
        ready("default", key_of(&db.pool, ids[0]).await),
        ready("default", key_of(&db.pool, ids[1]).await),
    ];
    expected.sort_by_key(|a| format!("{a:?}"));
    // A claimer whose cursor stood in priority 0 past the first task would otherwise resume
    // there after priority 5, behind it.
    assert_eq!(heard, expected);
}
