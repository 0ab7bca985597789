//! Maintenance: what one process at a time does for the whole fleet: pruning finished tasks
//! (retention). Every `dtp` process runs this loop; the one holding a session advisory lock on
//! its own connection does the work. The lock goes with that connection, so when its process
//! dies or its connection breaks, the server releases it and another process takes over at its
//! next try (within [`INTERVAL`]). Nothing is decided in memory: two processes never both hold
//! the lock.

use std::time::{Duration, Instant};

use common::TaskStatus;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::connection::DedicatedConnection;
use crate::queue;

/// How often each process tries to lead, and the leader prunes.
const INTERVAL: Duration = Duration::from_secs(1);
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

/// The maintenance loop of one process; see the module documentation.
pub struct Maintenance {
    conn: DedicatedConnection,
    /// When the connection this process took the lock on was opened: it leads while that
    /// connection lives.
    leading_on: Option<Instant>,
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

    /// One round: take the lead if nobody holds it, and if this process leads, prune. Returns
    /// how many tasks were deleted, or `None` when another process leads. For tests and
    /// programs that drive maintenance by hand.
    pub async fn round(&mut self) -> Result<Option<u64>, sqlx::Error> {
        if !self.lead().await? {
            return Ok(None);
        }
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
        Ok(Some(deleted))
    }

    /// Whether this process leads now, taking the lead if it is free.
    async fn lead(&mut self) -> Result<bool, sqlx::Error> {
        let connected = self.conn.connected_since();
        if self.leading_on.is_some() && self.leading_on == connected {
            return Ok(true);
        }
        if self.leading_on.take().is_some() {
            tracing::warn!("maintenance lead lost with its connection");
        }
        let (class, key) = LEADER_LOCK;
        let took: bool = self
            .conn
            .run(async |db| {
                sqlx::query_scalar("select pg_try_advisory_lock($1, $2)")
                    .bind(class)
                    .bind(key)
                    .fetch_one(db)
                    .await
            })
            .await?;
        if took {
            self.leading_on = self.conn.connected_since();
            tracing::info!("this process leads maintenance (retention)");
        }
        Ok(took)
    }
}
