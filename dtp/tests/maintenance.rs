//! Maintenance: retention deletes finished tasks per state after their period, and
//! one process at a time does it, chosen through the database.

mod support;

use std::time::Duration;

use common::TaskStatus;
use dtp::config::Retention;
use dtp::queue::{self, TaskId};
use dtp::worker::{Maintenance, RetentionPolicy};
use serde_json::json;
use support::{claim, QueueDb};

const LEASE: Duration = Duration::from_secs(30);
const HOUR: Duration = Duration::from_secs(3600);

/// A task that ended in `status`, `age` ago (the queue's only due task while it runs).
async fn finished(db: &QueueDb, status: TaskStatus, age: Duration) -> i64 {
    let id = db.enqueue(0).await;
    if status == TaskStatus::Canceled {
        db.cancel(id).await;
    } else {
        let fence = claim(&db.pool, "w", 1, LEASE).await[0].fence();
        if status == TaskStatus::Succeeded {
            queue::mark_succeeded(&db.pool, TaskId(id), fence, &json!(1))
                .await
                .expect("succeed");
        } else {
            let failure = queue::Failure::Permanent;
            queue::mark_failed_or_retry(&db.pool, TaskId(id), fence, "x", LEASE, failure)
                .await
                .expect("fail");
        }
    }
    sqlx::query("update tasks set completed_at = now() - $2 * interval '1 second' where id = $1")
        .bind(id)
        .bind(i64::try_from(age.as_secs()).expect("fits"))
        .execute(&db.pool)
        .await
        .expect("age the task");
    assert_eq!(db.status(id).await, status);
    id
}

/// How many tasks a round pruned; `None` when another process leads.
async fn pruned(maintenance: &mut Maintenance) -> Option<u64> {
    let done = maintenance.round().await.expect("round");
    done.map(|done| done.pruned)
}

async fn remaining(db: &QueueDb) -> Vec<i64> {
    sqlx::query_scalar("select id from tasks order by id")
        .fetch_all(&db.pool)
        .await
        .expect("ids")
}

#[tokio::test]
async fn each_state_is_kept_for_its_own_period_and_zero_keeps_forever() {
    let db = QueueDb::new().await;
    let old_success = finished(&db, TaskStatus::Succeeded, 2 * HOUR).await;
    let young_success = finished(&db, TaskStatus::Succeeded, HOUR / 2).await;
    let old_failure = finished(&db, TaskStatus::Failed, 1000 * HOUR).await;
    let old_cancel = finished(&db, TaskStatus::Canceled, 2 * HOUR).await;
    let pending = db.enqueue(0).await;

    let retention = RetentionPolicy {
        succeeded: Some(HOUR),
        failed: None,
        canceled: Some(HOUR),
    };
    let mut maintenance = Maintenance::new(&db.pool, None, "m", retention);
    assert_eq!(pruned(&mut maintenance).await, Some(2));

    assert_eq!(remaining(&db).await, [young_success, old_failure, pending]);
    let attempts: i64 =
        sqlx::query_scalar("select count(*) from task_attempts where task_id = any($1)")
            .bind(vec![old_success, old_cancel])
            .fetch_one(&db.pool)
            .await
            .expect("attempts");
    assert_eq!(attempts, 0, "their attempts went with them");
    assert_eq!(
        pruned(&mut maintenance).await,
        Some(0),
        "nothing left to prune"
    );
}

#[tokio::test]
async fn a_large_backlog_is_pruned_in_batches() {
    let db = QueueDb::new().await;
    for _ in 0..1200 {
        db.enqueue(0).await;
    }
    sqlx::query("update tasks set status = 'CANCELED', completed_at = now() - interval '2 hours'")
        .execute(&db.pool)
        .await
        .expect("cancel all, long ago");
    let retention = RetentionPolicy {
        canceled: Some(HOUR),
        ..RetentionPolicy::default()
    };
    let mut conn = db.pool.acquire().await.expect("connection");
    queue::recount(&mut conn)
        .await
        .expect("count what the plant wrote");
    let mut maintenance = Maintenance::new(&db.pool, None, "m", retention);
    assert_eq!(pruned(&mut maintenance).await, Some(1200));
    assert!(remaining(&db).await.is_empty());
    assert_eq!(
        count_rows(&db).await,
        [],
        "the counts of a queue with no finished task left are folded away"
    );
}

async fn count_rows(db: &QueueDb) -> Vec<(String, String, i16, i64)> {
    sqlx::query_as("select queue, status, shard, tasks from queue_counts order by 1, 2, 3")
        .fetch_all(&db.pool)
        .await
        .expect("counts")
}

#[tokio::test]
async fn a_round_folds_the_count_shards_into_one_row_per_queue_and_state() {
    let db = QueueDb::new().await;
    sqlx::query(
        "insert into queue_counts (queue, status, shard, tasks) values \
         ('q', 'SUCCEEDED', 3, 2), ('q', 'SUCCEEDED', 7, -2), ('q', 'FAILED', 0, 1), \
         ('q', 'FAILED', 5, 4), ('r', 'CANCELED', 9, 6)",
    )
    .execute(&db.pool)
    .await
    .expect("shards");
    let mut maintenance = Maintenance::new(&db.pool, None, "m", RetentionPolicy::default());
    assert_eq!(pruned(&mut maintenance).await, Some(0));
    let folded = [
        ("q".to_owned(), "FAILED".to_owned(), 0, 5),
        ("r".to_owned(), "CANCELED".to_owned(), 0, 6),
    ];
    assert_eq!(count_rows(&db).await, folded, "sums kept, zero rows gone");
}

#[tokio::test]
async fn one_process_leads_and_another_takes_over_when_its_connection_ends() {
    let db = QueueDb::new().await;
    let retention = RetentionPolicy {
        succeeded: Some(HOUR),
        ..RetentionPolicy::default()
    };
    let mut first = Maintenance::new(&db.pool, None, "first", retention);
    let mut second = Maintenance::new(&db.pool, None, "second", retention);
    assert_eq!(pruned(&mut first).await, Some(0), "the first to ask leads");
    assert_eq!(pruned(&mut second).await, None, "the other waits");
    assert_eq!(pruned(&mut first).await, Some(0), "and the leader stays");

    drop(first);
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    while pruned(&mut second).await.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "nobody took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn retention_periods_are_read_as_the_spec_writes_them() {
    let read = |text: &str| text.parse::<Retention>().map(|r| r.0);
    assert_eq!(read("90s"), Ok(Some(Duration::from_secs(90))));
    assert_eq!(read("15m"), Ok(Some(Duration::from_secs(900))));
    assert_eq!(read("24h"), Ok(Some(Duration::from_secs(86_400))));
    assert_eq!(read("7d"), Ok(Some(Duration::from_secs(604_800))));
    assert_eq!(read("0"), Ok(None));
    assert_eq!(read("0s"), Ok(None));
    for bad in [
        "7д",
        "5µ",
        "36501d",
        "",
        "7",
        "d",
        "7w",
        "-1d",
        "1.5h",
        "7 d",
        "99999999999999999999d",
    ] {
        assert!(read(bad).is_err(), "{bad:?} refused");
    }
}

#[tokio::test]
async fn one_round_ticks_thousands_of_due_schedules_each_once() {
    let db = QueueDb::new().await;
    // 3,000 every-second schedules, due now, loaded by SQL.
    sqlx::query(
        "insert into schedules (name, cron, timezone, task, next_run_at) \
         select 'every-second-' || g, '* * * * * *', 'UTC', \
                '{\"type\": \"noop\", \"maxAttempts\": 3}', date_trunc('second', now()) \
         from generate_series(1, 3000) g",
    )
    .execute(&db.pool)
    .await
    .expect("load");
    let mut maintenance = Maintenance::new(&db.pool, None, "m", RetentionPolicy::default());

    let ticked = maintenance
        .round()
        .await
        .expect("round")
        .expect("leads")
        .ticks;

    // A round that outlasts a second also ticks the next second of the first schedules.
    let (tasks, keys, never_ticked, still_due): (i64, i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from tasks), \
                (select count(distinct idempotency_key) from tasks), \
                (select count(*) from schedules where last_run_at is null), \
                (select count(*) from schedules where next_run_at <= last_run_at)",
    )
    .fetch_one(&db.pool)
    .await
    .expect("counts");
    assert!(ticked >= 3000, "{ticked} ticks");
    assert_eq!(
        (tasks, keys),
        (ticked as i64, ticked as i64),
        "one task per tick"
    );
    assert_eq!(never_ticked, 0, "every schedule ticked");
    assert_eq!(still_due, 0, "every schedule moved past the tick it ran");
}
