//! The worker: claims due tasks of the types it has handlers for, runs their handlers within a
//! concurrency limit, keeps their leases alive (and stops its handlers when it cannot), and
//! shuts down gracefully. The [`Rescuer`], which every process runs, worker or not, returns the
//! tasks of dead workers to the queue.
//!
//! It owns all timing (polling, leases, backoff, grace periods) and never builds SQL: every
//! statement is a `queue` function. It never propagates errors: it logs them and backs off.

mod ahead;
mod backoff;
mod claim_loop;
mod completer;
mod config;
mod connection;
mod executor;
mod heartbeat;
mod listener;
mod maintenance;
mod rescuer;
mod running;
mod state;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::handlers::HandlerRegistry;
use crate::metrics::DtpMetrics;
use crate::queue;

pub use backoff::Backoff;
use completer::Completer;
pub use config::{default_worker_id, WorkerConfig};
pub use maintenance::{Maintenance, RetentionPolicy, RoundDone};
pub use rescuer::Rescuer;
use state::WorkerState;

/// A worker over one queue database. Several may run in one process or in many.
#[derive(Clone)]
pub struct Worker {
    state: Arc<WorkerState>,
}

impl Worker {
    /// A worker that runs the handlers of `registry` against the queue in `pool`.
    pub fn new(pool: PgPool, registry: HandlerRegistry, config: WorkerConfig) -> Self {
        Self::with_metrics(pool, registry, config, DtpMetrics::default())
    }

    /// [`Worker::new`], counting into `metrics` (registered where the program serves them).
    pub fn with_metrics(
        pool: PgPool,
        registry: HandlerRegistry,
        config: WorkerConfig,
        metrics: DtpMetrics,
    ) -> Self {
        Worker {
            state: Arc::new(WorkerState::new(pool, registry, config, metrics)),
        }
    }

    /// This worker's id.
    pub fn id(&self) -> &str {
        &self.state.config.worker_id
    }

    /// Runs until `shutdown` fires, then stops claiming, lets running handlers finish within the
    /// grace period, and hands what is left back to the queue.
    pub async fn run(self, shutdown: CancellationToken) {
        let state = &self.state;
        let background = CancellationToken::new();
        let (completer, completing) = Completer::start(
            &state.pool,
            state.config.backoff,
            background.clone(),
            state.outcomes_written.clone(),
        );
        state.executions.reopen();
        let slots = i64::try_from(state.slots.available_permits()).unwrap_or(i64::MAX);
        state.metrics.slots_added(slots);
        let tasks = [
            tokio::spawn(listener::run(state.clone(), background.clone())),
            tokio::spawn(heartbeat::run(state.clone(), background.clone())),
            tokio::spawn(heartbeat::watch(state.clone(), background.clone())),
            completing,
        ];
        tracing::info!(worker_id = %self.id(), concurrency = state.config.concurrency, "worker started");
        claim_loop::run(state, &completer, &shutdown).await;
        self.drain().await;
        state.metrics.slots_added(-slots);
        if let Err(e) = queue::worker_stopped(&state.pool, self.id()).await {
            tracing::warn!(error = %e, "could not record that this worker stopped; it will show as not seen lately");
        }
        background.cancel();
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "worker background task failed");
            }
        }
        tracing::info!(worker_id = %self.id(), "worker stopped");
    }

    /// Waits for running tasks up to the grace period, then aborts the rest (their tasks go back
    /// to the queue) and waits for them to record that.
    async fn drain(&self) {
        let state = &self.state;
        state.executions.close();
        let running = state.running.len();
        if running > 0 {
            tracing::info!(running, grace = ?state.config.shutdown_grace, "waiting for running tasks");
        }
        let grace = state.config.shutdown_grace;
        if tokio::time::timeout(grace, state.executions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = state.running.len(),
                "grace period over: handing running tasks back to the queue"
            );
            state.abort_all.cancel();
            // Handlers are aborted by dropping their futures, so this takes one database write
            // per task at most; the bound guards against a database that is gone.
            let handed_back = Duration::from_secs(30);
            if tokio::time::timeout(handed_back, state.executions.wait())
                .await
                .is_err()
            {
                tracing::error!(
                    "tasks not handed back in time; their leases will expire and be rescued"
                );
            }
        }
    }

    /// Makes the due waiting tasks ready, claims up to `concurrency` ready tasks, runs them all
    /// and records their outcomes. Returns how many were claimed (0: nothing was due). For
    /// tests and embedding programs that drive the worker by hand.
    pub async fn run_once(&self) -> Result<usize, sqlx::Error> {
        let state = &self.state;
        let config = &state.config;
        let limit = i64::try_from(config.concurrency.max(1)).unwrap_or(i64::MAX);
        let claim = crate::queue::Claim::new(self.id(), &state.task_types, limit, config.lease);
        let sent = std::time::Instant::now();
        let mut conn = state.pool.acquire().await?;
        while crate::queue::promote_due(&mut *conn).await? >= crate::queue::PROMOTION_BATCH {}
        let claimed = crate::queue::claim_available(&mut conn, &claim)
            .await?
            .tasks;
        drop(conn);
        let count = claimed.len();
        let stop = CancellationToken::new();
        let (completer, completing) = Completer::start(
            &state.pool,
            state.config.backoff,
            stop.clone(),
            state.outcomes_written.clone(),
        );
        let runs: Vec<_> = claimed
            .into_iter()
            .map(|task| {
                let completer = completer.clone();
                tokio::spawn(executor::execute(
                    state.clone(),
                    completer,
                    state
                        .running
                        .hold(task, state.abort_all.child_token(), sent),
                    executor::Started::Once,
                ))
            })
            .collect();
        for run in runs {
            if let Err(e) = run.await {
                tracing::error!(error = %e, "task execution failed");
            }
        }
        stop.cancel();
        if let Err(e) = completing.await {
            tracing::error!(error = %e, "completer failed");
        }
        Ok(count)
    }
}
