//! Maintenance: what one process at a time does for the whole fleet: enqueueing the ticks of
//! schedules, and pruning finished tasks (retention). Every `dtp` process runs this loop; the one holding a session advisory lock on
//! its own connection does the work. The lock goes with that connection, so when its process
//! dies or its connection breaks, the server releases it and another process takes over at its
//! next try (within [`INTERVAL`]). Nothing is decided in memory: two processes never both hold
//! the lock.

use std::time::{Duration, Instant};

use common::TaskStatus;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::connection::DedicatedConnection;
use crate::cadence::Cadence;
use crate::db::SessionDatabase;
use crate::metrics::DtpMetrics;
use crate::queue::{self, TickOutcome};

/// How often each process adds its per-minute figures to `minute_stats`.
const STATS_EVERY: Duration = Duration::from_secs(5);
/// How long a worker that stopped reporting stays listed (as not seen lately) before its row
/// is deleted; also how long per-minute figures are kept.
const WORKERS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// How often each process tries to lead, and the leader prunes.
const INTERVAL: Duration = Duration::from_secs(1);
/// Due schedules read at a time.
const TICK_BATCH: i64 = 1000;
/// Most ticks, and most bytes of their tasks' requests, enqueued in one transaction: a thousand
/// schedules each sixty ticks behind with large templates would make one statement of gigabytes.
const TICKS_PER_TRANSACTION: usize = 1000;
const TICK_BYTES_PER_TRANSACTION: usize = 16 * 1024 * 1024;
/// Longest a leader ticks in one round before it moves on to pruning; what is still due is
/// ticked in the next round.
const TICK_BUDGET: Duration = Duration::from_secs(2);
/// Most ticks of one schedule a late round enqueues; a longer delay collapses into the latest.
const CATCH_UP: usize = 60;
/// A previous round this recent means a leader was up until a moment ago: a leader that dies
/// is replaced within a second, one whose host vanishes within about 20 s (the session
/// timeouts of its connection, see [`Maintenance::new`]).
const LEADER_GAP: chrono::TimeDelta = chrono::TimeDelta::seconds(30);
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
    retention: RetentionPolicy,
    metrics: DtpMetrics,
}

impl Maintenance {
    /// Maintenance over the queue in `pool`, on a connection of its own named
    /// `dtp-maintenance:{worker_id}` (so an operator sees the leader in `pg_stat_activity`).
    ///
    /// The lead is a session's advisory lock: when the pool goes through a transaction-mode
    /// pooler, `session` is the direct connection maintenance runs on.
    pub fn new(
        pool: &PgPool,
        session: Option<&SessionDatabase>,
        worker_id: &str,
        retention: RetentionPolicy,
    ) -> Self {
        // The lock lives as long as the server keeps this session: a leader whose host
        // vanished must lose it in seconds, not when TCP gives up hours later. The leader
        // sends a statement every round, so it is never idle for long.
        let options = SessionDatabase::or_pool(session, pool)
            .application_name(&format!("dtp-maintenance:{worker_id}"))
            .options([
                ("idle_session_timeout", "10s"),
                ("tcp_keepalives_idle", "5"),
                ("tcp_keepalives_interval", "2"),
                ("tcp_keepalives_count", "3"),
                ("tcp_user_timeout", "10000"),
            ]);
        Maintenance {
            conn: DedicatedConnection::new(options),
            leading_on: None,
            retention,
            metrics: DtpMetrics::default(),
        }
    }

    /// This maintenance loop, counting into `metrics`.
    pub fn with_metrics(self, metrics: DtpMetrics) -> Self {
        Maintenance { metrics, ..self }
    }

    /// Runs a round every [`INTERVAL`] until `stop` fires.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stats_added = Instant::now();
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if let Err(e) = self.round().await {
                        tracing::warn!(error = %e, "maintenance failed; will try again");
                    }
                    if stats_added.elapsed() >= STATS_EVERY {
                        stats_added = Instant::now();
                        self.add_minute_stats().await;
                    }
                }
                _ = stop.cancelled() => break,
            }
        }
        self.add_minute_stats().await;
        self.conn.close().await;
    }

    /// Adds what this process's workers did to the current minute of `minute_stats` (every
    /// process, leader or not); kept for the next time if the write fails.
    pub async fn add_minute_stats(&mut self) {
        let counted = self.metrics.minutes.take();
        if counted.is_empty() {
            return;
        }
        let added = self
            .conn
            .run(async |db| queue::add_minute_stats(db, &counted).await)
            .await;
        if let Err(e) = added {
            tracing::debug!(error = %e, "per-minute figures not written; kept for the next time");
            self.metrics.minutes.put_back(counted);
        }
    }

    /// One round: take the lead if nobody holds it, and if this process leads, enqueue the
    /// ticks that have come and prune. `None` when another process leads. For tests and
    /// programs that drive maintenance by hand.
    pub async fn round(&mut self) -> Result<Option<RoundDone>, sqlx::Error> {
        if !self.lead().await? {
            return Ok(None);
        }
        // Pruning goes on even if ticking failed: one does not wait on the other.
        let ticks = self.tick().await;
        let pruned = self.prune().await?;
        Ok(Some(RoundDone {
            ticks: ticks?,
            pruned,
        }))
    }

    /// Enqueues the ticks that have come: every one of them (up to [`CATCH_UP`]) while some
    /// leader ran rounds until a moment ago (a round came late, or the lead changed hands),
    /// only the latest when none did (every process was down), and moves each schedule on to
    /// its next tick after now. Schedules are ticked [`TICK_BATCH`] at a time, each batch in
    /// one transaction, until none is due or [`TICK_BUDGET`] is spent.
    async fn tick(&mut self) -> Result<u64, sqlx::Error> {
        let started = Instant::now();
        let (now, previous_round) = self
            .conn
            .run(async |db| queue::record_round(db).await)
            .await?;
        let led_until_now = previous_round.is_some_and(|at| now - at <= LEADER_GAP);
        let mut ticks = 0;
        loop {
            let due = self
                .conn
                .run(async |db| queue::due_schedules(db, TICK_BATCH).await)
                .await?;
            let moves: Vec<queue::ScheduleMove<'_>> = due
                .iter()
                .filter_map(|schedule| self.move_of(schedule, led_until_now))
                .collect();
            let mut outcomes = Vec::new();
            let mut batches = tick_batches(&moves);
            while let Some(batch) = batches.pop() {
                match self
                    .conn
                    .run(async |db| queue::enqueue_ticks(db, batch).await)
                    .await
                {
                    Ok(done) => outcomes.extend(done),
                    // One schedule's ticks may be what fails (a template too large to write
                    // that often): alone, each of the others still ticks.
                    Err(e) if batch.len() > 1 => {
                        tracing::warn!(error = %e, schedules = batch.len(), "a batch of ticks failed; ticking its schedules one by one");
                        batches.extend(batch.chunks(1));
                    }
                    Err(e) => {
                        tracing::error!(schedule = %batch[0].due.name, error = %e, "the schedule's ticks could not be enqueued; tried again next round");
                    }
                }
            }
            let progressed = !outcomes.is_empty();
            for (schedule, tick, outcome) in outcomes {
                match outcome {
                    TickOutcome::Enqueued {
                        task_id,
                        queue,
                        task_type,
                    } => {
                        ticks += 1;
                        self.metrics.task_created(&queue, &task_type);
                        tracing::debug!(%schedule, %tick, task_id, "schedule ticked");
                    }
                    TickOutcome::AlreadyEnqueued(task_id) => {
                        tracing::warn!(%schedule, %tick, task_id, "the tick already had its task; moved on");
                    }
                    TickOutcome::Unreadable(reason) => {
                        tracing::error!(%schedule, %tick, reason, "the schedule's task no longer reads as a create request; tick skipped");
                    }
                    TickOutcome::Changed => {}
                }
            }
            let full = i64::try_from(due.len()).unwrap_or(i64::MAX) == TICK_BATCH;
            // A batch that moved nothing (schedules that no longer parse, say) is not read again
            // and again for the rest of the budget.
            if !full || !progressed || started.elapsed() > TICK_BUDGET {
                break;
            }
        }
        Ok(ticks)
    }

    /// The ticks of `schedule` to enqueue now and the tick it moves on to (see [`Self::tick`]);
    /// `None` when it has none. Ticks missed beyond [`CATCH_UP`] are skipped, and said so.
    fn move_of<'a>(
        &self,
        schedule: &'a queue::DueSchedule,
        led_until_now: bool,
    ) -> Option<queue::ScheduleMove<'a>> {
        let cadence = match Cadence::parse(&schedule.cron, &schedule.timezone) {
            Ok(cadence) => cadence,
            Err(reason) => {
                tracing::error!(schedule = %schedule.name, reason, "stored schedule no longer parses; skipped");
                return None;
            }
        };
        let ticks = if led_until_now {
            // One more than are kept, to know whether any were skipped.
            let mut ticks = cadence.ticks_between(schedule.next_run_at, schedule.now, CATCH_UP + 1);
            if ticks.len() > CATCH_UP {
                ticks.remove(0);
                let skipped_until = ticks.first().copied();
                self.metrics.schedule_ticks_skipped();
                tracing::warn!(
                    schedule = %schedule.name,
                    missed_from = %schedule.next_run_at,
                    ?skipped_until,
                    kept = CATCH_UP,
                    "the schedule fell more than {CATCH_UP} ticks behind; the earlier ones were skipped"
                );
            }
            ticks
        } else {
            cadence
                .latest_at_or_before(schedule.now)
                .filter(|tick| *tick >= schedule.next_run_at)
                .into_iter()
                .collect()
        };
        if ticks.is_empty() {
            return None;
        }
        Some(queue::ScheduleMove {
            due: schedule,
            ticks,
            next: cadence.next_after(schedule.now),
        })
    }

    async fn prune(&mut self) -> Result<u64, sqlx::Error> {
        // Folded first as well, so that a pruning step that keeps failing does not leave the
        // count changes to pile up.
        self.conn
            .run(async |db| queue::fold_counts(db).await)
            .await?;
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
                self.metrics.tasks_pruned(pruned);
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
        // Workers not seen for a day are gone for good, and so are a day's old minutes.
        self.conn
            .run(async |db| queue::prune_workers(db, WORKERS_KEPT).await)
            .await?;
        self.conn
            .run(async |db| queue::prune_minute_stats(db, WORKERS_KEPT).await)
            .await?;
        // The counts the pruning and every connection wrote, folded to one row per queue and
        // state (rows for queues with no finished task left are deleted).
        self.conn
            .run(async |db| queue::fold_counts(db).await)
            .await?;
        Ok(deleted)
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
            tracing::info!("this process leads maintenance (schedules, retention)");
        }
        Ok(took)
    }
}

/// `moves` cut into batches of at most [`TICKS_PER_TRANSACTION`] ticks and
/// [`TICK_BYTES_PER_TRANSACTION`] bytes of requests (a schedule's ticks stay together).
fn tick_batches<'m, 'a>(
    moves: &'m [queue::ScheduleMove<'a>],
) -> Vec<&'m [queue::ScheduleMove<'a>]> {
    let mut batches = Vec::new();
    let (mut start, mut ticks, mut bytes) = (0, 0, 0_usize);
    for (i, change) in moves.iter().enumerate() {
        let template = usize::try_from(change.due.template_bytes).unwrap_or(usize::MAX);
        let (more_ticks, more_bytes) = (
            change.ticks.len(),
            change.ticks.len().saturating_mul(template),
        );
        if i > start
            && (ticks + more_ticks > TICKS_PER_TRANSACTION
                || bytes.saturating_add(more_bytes) > TICK_BYTES_PER_TRANSACTION)
        {
            batches.push(&moves[start..i]);
            (start, ticks, bytes) = (i, 0, 0);
        }
        ticks += more_ticks;
        bytes = bytes.saturating_add(more_bytes);
    }
    if start < moves.len() {
        batches.push(&moves[start..]);
    }
    batches
}
