//! Maintenance: what one process at a time does for the whole fleet: enqueueing the ticks of
//! schedules, and pruning finished tasks (retention). Every `dtp` process runs this loop; the one holding a session advisory lock on
//! its own connection does the work. The lock goes with that connection, so when its process
//! dies or its connection breaks, the server releases it and another process takes over at its
//! next try (within [`INTERVAL`]). Nothing is decided in memory: two processes never both hold
//! the lock.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::TaskStatus;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::connection::DedicatedConnection;
use crate::cadence::Cadence;
use crate::queue;

/// How often each process tries to lead, and the leader prunes.
const INTERVAL: Duration = Duration::from_secs(1);
/// Due schedules ticked per round; more wait for the next round.
const TICK_BATCH: i64 = 100;
/// Most ticks of one schedule a late round enqueues; a longer delay collapses into the latest.
const CATCH_UP: usize = 60;
/// Tasks deleted per statement: each batch holds its row locks for one short statement.
const PRUNE_BATCH: i64 = 500;
/// Longest a leader prunes in one round before it lets a round pass (other work, other
/// statements on the database): a large backlog is worked off over several rounds.
const PRUNE_BUDGET: Duration = Duration::from_secs(2);
/// The session advisory lock of the leader: "DTPM", 1.
const LEADER_LOCK: (i32, i32) = (0x4454_504D, 1);

/// How long finished tasks are kept, per state; `None` keeps them forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    /// SUCCEEDED tasks.
    pub succeeded: Option<Duration>,
    /// FAILED tasks.
    pub failed: Option<Duration>,
    /// CANCELED tasks.
    pub canceled: Option<Duration>,
}

impl RetentionPolicy {
    fn periods(&self) -> [(TaskStatus, Option<Duration>); 3] {
        [
            (TaskStatus::Succeeded, self.succeeded),
            (TaskStatus::Failed, self.failed),
            (TaskStatus::Canceled, self.canceled),
        ]
    }
}

/// What a round of the leader did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundDone {
    /// Schedule ticks enqueued.
    pub ticks: u64,
    /// Finished tasks deleted.
    pub pruned: u64,
}

/// The maintenance loop of one process; see the module documentation.
pub struct Maintenance {
    conn: DedicatedConnection,
    /// When the connection this process took the lock on was opened: it leads while that
    /// connection lives.
    leading_on: Option<Instant>,
    /// Since when (database clock) this process has led.
    leading_since: Option<DateTime<Utc>>,
    retention: RetentionPolicy,
}

impl Maintenance {
    /// Maintenance over the queue in `pool`, on a connection of its own named
    /// `dtp-maintenance:{worker_id}` (so an operator sees the leader in `pg_stat_activity`).
    pub fn new(pool: &PgPool, worker_id: &str, retention: RetentionPolicy) -> Self {
        let options = pool
            .connect_options()
            .as_ref()
            .clone()
            .application_name(&format!("dtp-maintenance:{worker_id}"));
        Maintenance {
            conn: DedicatedConnection::new(options),
            leading_on: None,
            leading_since: None,
            retention,
        }
    }

    /// Runs a round every [`INTERVAL`] until `stop` fires.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if let Err(e) = self.round().await {
                        tracing::warn!(error = %e, "maintenance failed; will try again");
                    }
                }
                _ = stop.cancelled() => break,
            }
        }
        self.conn.close().await;
    }

    /// One round: take the lead if nobody holds it, and if this process leads, enqueue the
    /// ticks that have come and prune. `None` when another process leads. For tests and
    /// programs that drive maintenance by hand.
    pub async fn round(&mut self) -> Result<Option<RoundDone>, sqlx::Error> {
        if !self.lead().await? {
            return Ok(None);
        }
        let ticks = self.tick().await?;
        let pruned = self.prune().await?;
        Ok(Some(RoundDone { ticks, pruned }))
    }

    /// Enqueues the ticks that have come: every one of them while this process has led since
    /// before the first (a round that came late), only the latest when it has not (every
    /// process was down, or the lead just passed to this one), and moves each schedule on to
    /// its next tick after now.
    async fn tick(&mut self) -> Result<u64, sqlx::Error> {
        let due = self
            .conn
            .run(async |db| queue::due_schedules(db, TICK_BATCH).await)
            .await?;
        let mut ticks = 0;
        for schedule in due {
            let cadence = match Cadence::parse(&schedule.cron, &schedule.timezone) {
                Ok(cadence) => cadence,
                Err(reason) => {
                    tracing::error!(schedule = %schedule.name, reason, "stored schedule no longer parses; skipped");
                    continue;
                }
            };
            let caught_up_by_us = self
                .leading_since
                .is_some_and(|since| since <= schedule.next_run_at);
            let due_ticks = if caught_up_by_us {
                cadence.ticks_between(schedule.next_run_at, schedule.now, CATCH_UP)
            } else {
                cadence
                    .latest_at_or_before(schedule.now)
                    .filter(|tick| *tick >= schedule.next_run_at)
                    .into_iter()
                    .collect()
            };
            let mut expected = schedule.next_run_at;
            for (i, tick) in due_ticks.iter().enumerate() {
                let next = match due_ticks.get(i + 1) {
                    Some(following) => Some(*following),
                    None => cadence.next_after(schedule.now),
                };
                let enqueued = self
                    .conn
                    .run(async |db| {
                        match queue::enqueue_tick(db, &schedule, expected, *tick, next).await {
                            Ok(created) => Ok(Ok(created)),
                            Err(queue::Error::Database(e)) => Err(e),
                            Err(refused) => Ok(Err(refused)),
                        }
                    })
                    .await?;
                match enqueued {
                    Ok(Some(task_id)) => {
                        ticks += 1;
                        tracing::info!(schedule = %schedule.name, %tick, task_id, next_run_at = ?next, "schedule ticked");
                    }
                    Ok(None) => break,
                    Err(refused) => {
                        tracing::error!(schedule = %schedule.name, %tick, error = %refused, "schedule tick refused");
                        break;
                    }
                }
                match next {
                    Some(next) => expected = next,
                    None => break,
                }
            }
        }
        Ok(ticks)
    }

    async fn prune(&mut self) -> Result<u64, sqlx::Error> {
        let started = Instant::now();
        let mut deleted = 0;
        for (status, period) in self.retention.periods() {
            let Some(period) = period else { continue };
            loop {
                let pruned = self
                    .conn
                    .run(async |db| queue::prune(db, status, period, PRUNE_BATCH).await)
                    .await?;
                deleted += pruned;
                if pruned < u64::try_from(PRUNE_BATCH).unwrap_or(u64::MAX)
                    || started.elapsed() > PRUNE_BUDGET
                {
                    break;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "finished tasks past their retention deleted");
        }
        Ok(deleted)
    }

    /// Whether this process leads now, taking the lead if it is free.
    async fn lead(&mut self) -> Result<bool, sqlx::Error> {
        let connected = self.conn.connected_since();
        if self.leading_on.is_some() && self.leading_on == connected {
            return Ok(true);
        }
        if self.leading_on.take().is_some() {
            self.leading_since = None;
            tracing::warn!("maintenance lead lost with its connection");
        }
        let (class, key) = LEADER_LOCK;
        let (took, now): (bool, DateTime<Utc>) = self
            .conn
            .run(async |db| {
                sqlx::query_as("select pg_try_advisory_lock($1, $2), now()")
                    .bind(class)
                    .bind(key)
                    .fetch_one(db)
                    .await
            })
            .await?;
        if took {
            self.leading_on = self.conn.connected_since();
            self.leading_since = Some(now);
            tracing::info!("this process leads maintenance (schedules, retention)");
        }
        Ok(took)
    }
}
