//! Ready and waiting tasks, and how workers hear of ready ones.
//!
//! A PENDING task is *ready* (due when it was made PENDING, or promoted since) or *waiting*
//! (delayed, or a retry waiting out its backoff; `tasks.waiting`). Only ready tasks are in the
//! claim index `tasks_ready`, ordered as claims take them: by queue, then [`ClaimKey`]. Waiting
//! tasks are promoted in batches once due ([`promote_due`]).
//!
//! Every statement that makes tasks ready announces them at commit ([`announce_ready`]): one
//! notification per queue and priority naming the first of them in claim order. A claimer keeps, per queue,
//! a cursor: the claim key its next claim of that queue starts from. A claim moves it past the
//! tasks it took; an announcement moves it back to the task announced. A claim therefore never
//! walks the index entries of the tasks claimed before, which stay in the index, dead, for as
//! long as any snapshot can see them (a long transaction, a replica's `hot_standby_feedback`)
//! and would otherwise make every claim slower than the last.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use super::CHANNEL_TASKS_READY;

/// Where a task stands in its queue's claim order: higher priority first (the priority is
/// negated), then the longest due, then the oldest. A row of `tasks_ready` after its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClaimKey {
    /// The task's priority, negated.
    pub neg_priority: i32,
    /// When it became due.
    pub run_at: DateTime<Utc>,
    /// Its id.
    pub id: i64,
}

impl ClaimKey {
    /// Before every task: a claim from here walks the queue's part of the index from its start.
    pub const START: ClaimKey = ClaimKey {
        neg_priority: i32::MIN,
        run_at: DateTime::UNIX_EPOCH,
        id: i64::MIN,
    };

    /// The key of a task.
    pub fn of(priority: i32, run_at: DateTime<Utc>, id: i64) -> Self {
        ClaimKey {
            neg_priority: priority.saturating_neg(),
            run_at,
            id,
        }
    }

    /// The first key after this one: a claim that took this task starts there next.
    pub fn after(self) -> Self {
        ClaimKey {
            id: self.id.saturating_add(1),
            ..self
        }
    }
}

/// What a worker heard on [`CHANNEL_TASKS_READY`] (or, from a process of the release before, on
/// [`CHANNEL_TASK_AVAILABLE`](super::CHANNEL_TASK_AVAILABLE)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// Tasks of `queue` are ready, the first of them in claim order at `first` (unknown when a
    /// process of an earlier release sent it: start from the queue's beginning).
    Ready {
        /// The queue.
        queue: String,
        /// The first ready task's key.
        first: Option<ClaimKey>,
    },
    /// Some queue may have ready tasks: look at them all.
    Look,
}

impl Announcement {
    /// Reads a notification's payload: `queue -priority run_at_µs id`, a bare queue name (a
    /// process of an earlier release), or nothing.
    pub fn parse(payload: &str) -> Self {
        let mut parts = payload.split(' ');
        let queue = parts.next().unwrap_or_default();
        if queue.is_empty() {
            return Announcement::Look;
        }
        let rest: Vec<&str> = parts.collect();
        let first = match rest.as_slice() {
            [] => None,
            [neg_priority, micros, id] => {
                let key = (|| {
                    Some(ClaimKey {
                        neg_priority: neg_priority.parse().ok()?,
                        run_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
                        id: id.parse().ok()?,
                    })
                })();
                match key {
                    Some(key) => Some(key),
                    None => return Announcement::Look,
                }
            }
            _ => return Announcement::Look,
        };
        Announcement::Ready {
            queue: queue.to_owned(),
            first,
        }
    }
}

/// A CTE body that announces, at commit, the ready tasks among `changed` (SQL naming a relation
/// with the columns `queue`, `priority`, `run_at`, `id`, `status` and `waiting` as they are
/// now): one notification per queue and priority, naming the first of them in claim order (a
/// claimer keeps where it stood in each priority apart, see
/// [`QueueCursor::resume`](super::QueueCursor)). A statement may pass every row it changed.
pub(super) fn announce_ready(changed: &str) -> String {
    format!(
        "select pg_notify('{CHANNEL_TASKS_READY}', \
                          queue || ' ' || -priority || ' ' \
                          || (extract(epoch from run_at) * 1000000)::bigint || ' ' || id) \
         from (select distinct on (queue, priority) queue, priority, run_at, id from {changed} \
               where status = 'PENDING' and not waiting \
               order by queue, priority, run_at, id) first_ready"
    )
}

/// Most tasks one promotion statement makes ready.
pub const PROMOTION_BATCH: u64 = 1_000;

/// Makes ready up to [`PROMOTION_BATCH`] waiting tasks that are due, the longest due first,
/// skipping rows other transactions hold, and announces them. Returns how many; a full batch
/// says more may be due.
///
/// Walks `tasks_waiting` from its first entry: the entries of tasks promoted before stay there,
/// dead, while a snapshot can see them, so under a held snapshot this costs more with every
/// task promoted. It runs once a poll interval per worker, not once a claim.
pub async fn promote_due(db: impl PgExecutor<'_>) -> Result<u64, sqlx::Error> {
    let announced = announce_ready("promoted");
    let promoted: i64 = sqlx::query_scalar(&format!(
        r#"
        with due as (
            select id from tasks
            where status = 'PENDING' and waiting and run_at <= now()
            order by run_at, id
            limit {PROMOTION_BATCH}
            for update skip locked
        ),
        promoted as (
            update tasks t set waiting = false
            where t.id = any(array(select id from due))
            returning t.queue, t.priority, t.run_at, t.id, t.status, t.waiting
        ),
        announced as ({announced})
        select count(*) from promoted, (select count(*) from announced) a
        "#
    ))
    .fetch_one(db)
    .await?;
    Ok(u64::try_from(promoted).unwrap_or(0))
}

/// The queues with ready tasks, found by skipping through `tasks_ready`'s first column (one
/// index descent per queue, however many tasks each holds). Each descent also walks the dead
/// entries at the front of its queue: claimers read this every few seconds, not per claim.
pub async fn ready_queues(db: impl PgExecutor<'_>) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        with recursive ready(queue) as (
            (select queue from tasks where status = 'PENDING' and not waiting
             order by queue limit 1)
            union all
            select (select t.queue from tasks t
                    where t.status = 'PENDING' and not t.waiting and t.queue > r.queue
                    order by t.queue limit 1)
            from ready r where r.queue is not null
        )
        select queue from ready where queue is not null
        "#,
    )
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_are_read_in_every_form_a_process_sends() {
        let key = ClaimKey::of(
            5,
            DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("a time"),
            42,
        );
        assert_eq!(
            Announcement::parse("emails:eu -5 1700000000123456 42"),
            Announcement::Ready {
                queue: "emails:eu".into(),
                first: Some(key)
            }
        );
        assert_eq!(
            Announcement::parse("default"),
            Announcement::Ready {
                queue: "default".into(),
                first: None
            }
        );
        assert_eq!(Announcement::parse(""), Announcement::Look);
        assert_eq!(Announcement::parse("q x 1 2"), Announcement::Look);
        assert_eq!(Announcement::parse("q 1 2"), Announcement::Look);
    }

    #[test]
    fn claim_keys_order_as_the_claim_index() {
        let t = |s| DateTime::from_timestamp(s, 0).expect("a time");
        let high = ClaimKey::of(10, t(200), 9);
        let low_old = ClaimKey::of(0, t(100), 1);
        let low_new = ClaimKey::of(0, t(200), 2);
        assert!(ClaimKey::START < high && high < low_old && low_old < low_new);
        assert!(low_old < low_old.after() && low_old.after() < low_new);
    }
}
