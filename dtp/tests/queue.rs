//! Queue statements against a real PostgreSQL, called directly (no service in front): claim
//! order, skip-locked, fencing, schema invariants, the plans of operator queries.

mod support;

use std::time::Duration;

use common::TaskStatus;
use dtp::queue::{self, TaskId};
use serde_json::json;
use support::{claim, forget_claim, QueueDb};

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn claim_takes_higher_priority_first_then_the_longest_due() {
    let app = QueueDb::new().await;
    let low = app.enqueue(-5).await;
    let older = app.enqueue(0).await;
    let newer = app.enqueue(0).await;
    let urgent = app.enqueue(10).await;

    let mut order = Vec::new();
    while let Some(task) = claim(&app.pool, "w", 1, LEASE).await.pop() {
        order.push(task.id);
    }

    assert_eq!(order, vec![urgent, older, newer, low]);
}

#[tokio::test]
async fn claim_takes_at_most_the_free_slots() {
    let app = QueueDb::new().await;
    for _ in 0..5 {
        app.enqueue(0).await;
    }

    let claimed = claim(&app.pool, "w", 3, LEASE).await;

    assert_eq!(claimed.len(), 3);
    assert!(claimed.iter().all(|t| t.attempt_count == 1));
}

#[tokio::test]
async fn claim_skips_rows_locked_by_another_worker() {
    let app = QueueDb::new().await;
    let first = app.enqueue(0).await;
    let second = app.enqueue(0).await;
    let mut other = app.pool.begin().await.expect("tx");
    sqlx::query("select id from tasks where id = $1 for update")
        .bind(first)
        .execute(&mut *other)
        .await
        .expect("lock");

    let claimed = claim(&app.pool, "w", 2, LEASE).await;
    other.rollback().await.expect("rollback");

    let ids: Vec<i64> = claimed.iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![second]);
}

#[tokio::test]
async fn no_transition_leaves_a_terminal_state() {
    let app = QueueDb::new().await;
    let id = app.enqueue(0).await;
    let attempt = claim(&app.pool, "w", 1, LEASE).await[0].fence();
    app.cancel(id).await;
    let task = TaskId(id);

    let succeeded = queue::mark_succeeded(&app.pool, task, attempt, &json!(1))
        .await
        .expect("query");
    let failed = queue::mark_failed_or_retry(
        &app.pool,
        task,
        attempt,
        "x",
        Duration::ZERO,
        queue::Failure::Permanent,
    )
    .await
    .expect("query");
    let released = queue::release(&app.pool, task, attempt)
        .await
        .expect("query");
    let claimed = claim(&app.pool, "w", 1, LEASE).await;

    assert!(!succeeded && failed.is_none() && !released && claimed.is_empty());
    assert_eq!(app.status(id).await, TaskStatus::Canceled);
}

/// Whether the schema refuses `update`, given a pending task's id as `$1`.
async fn schema_refuses(update: &str) -> bool {
    let app = QueueDb::new().await;
    let id = app.enqueue(0).await;
    let outcome = sqlx::query(update).bind(id).execute(&app.pool).await;
    outcome.is_err()
}

#[tokio::test]
async fn the_schema_refuses_a_running_task_without_a_lease() {
    let refused =
        schema_refuses("update tasks set status = 'RUNNING', worker_id = 'w' where id = $1").await;

    assert!(refused);
}

#[tokio::test]
async fn the_schema_refuses_a_terminal_state_without_completed_at() {
    let refused = schema_refuses("update tasks set status = 'SUCCEEDED' where id = $1").await;

    assert!(refused);
}

#[tokio::test]
async fn lease_renewal_only_extends_leases_still_held_at_that_attempt() {
    let app = QueueDb::new().await;
    let held = app.enqueue(0).await;
    let canceled = app.enqueue(0).await;
    let claimed = claim(&app.pool, "w", 2, LEASE).await;
    assert_eq!(claimed.len(), 2);
    let fence_of = |id| {
        claimed
            .iter()
            .find(|t| t.id == id)
            .expect("claimed")
            .fence()
    };
    let (held_fence, canceled_fence) = (fence_of(held), fence_of(canceled));
    app.cancel(canceled).await;
    let later_attempt = queue::Fence {
        attempt: 7,
        ..held_fence
    };

    let renewed = queue::renew_leases(
        &app.pool,
        &[
            (TaskId(held), held_fence),
            (TaskId(canceled), canceled_fence),
            (TaskId(held), later_attempt),
        ],
        LEASE,
    )
    .await
    .expect("renew");

    assert_eq!(renewed.renewed, vec![(TaskId(held), held_fence)]);
    assert!(renewed.busy.is_empty());
}

#[tokio::test]
async fn renewal_calls_a_deleted_task_lost_not_busy() {
    let app = QueueDb::new().await;
    let id = app.enqueue(0).await;
    let claimed = claim(&app.pool, "w", 1, LEASE).await.remove(0);
    app.cancel(id).await;
    sqlx::query("delete from tasks where id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .expect("delete");

    let renewed = queue::renew_leases(&app.pool, &[(TaskId(id), claimed.fence())], LEASE)
        .await
        .expect("renew");

    assert!(
        renewed.renewed.is_empty() && renewed.busy.is_empty(),
        "{renewed:?}"
    );
}

#[tokio::test]
async fn renewal_skips_a_task_another_transaction_is_writing_and_does_not_call_it_lost() {
    let app = QueueDb::new().await;
    let (free, locked) = (app.enqueue(0).await, app.enqueue(0).await);
    let claimed = claim(&app.pool, "w", 2, LEASE).await;
    let held: Vec<_> = claimed.iter().map(|t| (TaskId(t.id), t.fence())).collect();
    let mut writer = app.pool.begin().await.expect("transaction");
    sqlx::query("select 1 from tasks where id = $1 for update")
        .bind(locked)
        .execute(&mut *writer)
        .await
        .expect("lock");

    // Waiting here for the writer is what deadlocked the renewal against the completer.
    let renewed = queue::renew_leases(&app.pool, &held, LEASE)
        .await
        .expect("renew");
    writer.rollback().await.expect("rollback");

    let free_fence = held.iter().find(|(id, _)| id.0 == free).expect("held").1;
    assert_eq!(renewed.renewed, vec![(TaskId(free), free_fence)]);
    assert_eq!(renewed.busy, vec![TaskId(locked)]);
}

#[tokio::test]
async fn a_claim_lost_in_a_database_crash_cannot_write_over_the_next_claim_of_its_attempt() {
    let app = QueueDb::new().await;
    let id = app.enqueue(0).await;
    let task = TaskId(id);
    let lost = claim(&app.pool, "w", 1, LEASE).await.remove(0);
    let mut conn = app.pool.acquire().await.expect("connection");
    forget_claim(&mut conn, id).await;
    let next = claim(&app.pool, "w", 1, LEASE).await.remove(0);
    assert_eq!(
        lost.attempt_count, next.attempt_count,
        "the attempt number is reused"
    );

    let stale = lost.fence();
    let renewed = queue::renew_leases(&app.pool, &[(task, stale)], LEASE)
        .await
        .expect("renew");
    let succeeded = queue::mark_succeeded(&app.pool, task, stale, &json!("stale"))
        .await
        .expect("query");
    let failed = queue::mark_failed_or_retry(
        &app.pool,
        task,
        stale,
        "x",
        Duration::ZERO,
        queue::Failure::Permanent,
    )
    .await
    .expect("query");
    let released = queue::release(&app.pool, task, stale).await.expect("query");
    assert!(
        renewed.renewed.is_empty()
            && renewed.busy.is_empty()
            && !succeeded
            && failed.is_none()
            && !released
    );
    assert_eq!(app.status(id).await, TaskStatus::Running);

    let current = queue::mark_succeeded(&app.pool, task, next.fence(), &json!("current"))
        .await
        .expect("query");
    assert!(current);
    assert_eq!(app.status(id).await, TaskStatus::Succeeded);
}

#[tokio::test]
async fn listing_by_a_rare_status_or_an_idempotency_key_reads_an_index_not_the_whole_table() {
    let app = QueueDb::new().await;
    // 100,000 finished tasks, one in 2,000 FAILED, loaded by SQL.
    sqlx::query(
        "insert into tasks (type, status, max_attempts, attempt_count, scheduled_for, run_at, \
                            completed_at, idempotency_key) \
         select 'noop', case when g % 2000 = 0 then 'FAILED' else 'SUCCEEDED' end, 1, 1, \
                now(), now(), now(), 'key-' || g \
         from generate_series(1, 100000) g",
    )
    .execute(&app.pool)
    .await
    .expect("load");
    sqlx::query("analyze tasks")
        .execute(&app.pool)
        .await
        .expect("analyze");
    let by_status = |status| queue::ListFilter {
        status: Some(status),
        limit: 50,
        ..Default::default()
    };
    let by_queue = queue::ListFilter {
        queue: Some("emails".into()),
        limit: 50,
        ..Default::default()
    };
    let by_key = queue::ListFilter {
        idempotency_key: Some("key-4242".into()),
        limit: 50,
        ..Default::default()
    };

    for (filter, index) in [
        (by_status(TaskStatus::Failed), "tasks_failed"),
        (by_status(TaskStatus::Canceled), "tasks_canceled"),
        (by_key, "tasks_idempotency_key"),
        (by_queue, "tasks_queue_id"),
    ] {
        let plan = queue::explain_list(&app.pool, &filter)
            .await
            .expect("explain")
            .join("\n");
        // The page's ids come from `index`; the primary key then reads only those rows.
        let walks_primary_key = plan.contains("tasks_pkey");
        assert!(
            plan.contains(index) && !plan.contains("Seq Scan") && !walks_primary_key,
            "{filter:?} should read {index}:\n{plan}"
        );
    }
}

/// The heap page each task's current row version is on.
async fn pages(pool: &sqlx::PgPool) -> std::collections::HashMap<i64, i64> {
    sqlx::query_as::<_, (i64, i64)>("select id, (ctid::text::point)[0]::bigint from tasks")
        .fetch_all(pool)
        .await
        .expect("pages")
        .into_iter()
        .collect()
}

#[tokio::test]
async fn a_claim_writes_each_task_s_new_version_on_the_page_it_was_on() {
    let app = QueueDb::new().await;
    let tasks: Vec<queue::NewTask> = (0..300)
        .map(|_| queue::NewTask::new("noop", json!({"n": 1})))
        .collect();
    let mut conn = app.pool.acquire().await.expect("connection");
    queue::enqueue_many(&mut conn, &tasks)
        .await
        .expect("enqueue");
    let before = pages(&app.pool).await;
    assert!(
        before
            .values()
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 2,
        "the tasks fill several pages"
    );

    let claimed = claim(&app.pool, "w", 3, LEASE).await;

    // A page filled to the brim has no room for a new version: it would go to another page,
    // one a big table may no longer hold in memory.
    assert_eq!(claimed.len(), 3);
    let after = pages(&app.pool).await;
    for task in &claimed {
        assert_eq!(
            after[&task.id], before[&task.id],
            "task {} moved to another page at its claim",
            task.id
        );
    }
}
