//! The worker: claims due tasks of the types it has handlers for, runs their handlers within a
//! concurrency limit, keeps their leases alive (and stops its handlers when it cannot), and
//! shuts down gracefully. The [`Rescuer`], which every process runs, worker or not, returns the
//! tasks of dead workers to the queue.
//!
//! It owns all timing (polling, leases, backoff, grace periods) and never builds SQL: every
//! statement is a `queue` function. It never propagates errors: it logs them and backs off.

mod backoff;
mod claim_loop;
mod completer;
mod connection;
mod executor;
mod heartbeat;
mod listener;
mod rescuer;
mod running;

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handlers::HandlerRegistry;

pub use backoff::Backoff;
use completer::Completer;
pub use rescuer::Rescuer;
use running::RunningTasks;

/// How a worker behaves. See [`WorkerConfig::default`] for the defaults.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Written on each task it runs; identifies the process in `workerId`.
    pub worker_id: String,
    /// Tasks run at once.
    pub concurrency: usize,
    /// How often to look for due tasks when no notification arrives (delayed tasks, retries,
    /// missed notifications).
    pub poll_interval: Duration,
    /// How long a claim holds a task without renewal before any process may rescue it.
    pub lease: Duration,
    /// How often held leases are renewed; well under `lease`.
    pub heartbeat_interval: Duration,
    /// How often this process looks for expired leases.
    pub rescue_interval: Duration,
    /// Delay policy for retries.
    pub backoff: Backoff,
    /// Execution timeout when neither the task nor its handler type sets one.
    pub default_timeout: Duration,
    /// On shutdown, how long running handlers may take before their tasks are handed back.
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    /// 16 slots, 1 s polling, 15 s lease renewed every 5 s, rescue every 5 s, backoff 1 s
    /// doubling up to 5 min, 5 min execution timeout, 10 s shutdown grace.
    fn default() -> Self {
        WorkerConfig {
            worker_id: default_worker_id(),
            concurrency: 16,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(5),
            rescue_interval: Duration::from_secs(5),
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(300),
            },
            default_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl WorkerConfig {
    /// How long before its lease runs out (on this process's clock) a worker that could not
    /// renew stops the handler: a fifth of the lease. It covers the time the abort takes and
    /// clocks that run at slightly different rates; a heartbeat every third of the lease leaves
    /// room for one failed renewal before it.
    pub fn lease_margin(&self) -> Duration {
        self.lease / 5
    }

    /// How long after a claim or renewal is sent its attempt is surely still this worker's:
    /// the lease less [`lease_margin`](Self::lease_margin).
    pub fn lease_held(&self) -> Duration {
        self.lease - self.lease_margin()
    }
}

/// `dtp-{host}-{pid}`: unique per process on a host, readable in logs and task bodies.
pub fn default_worker_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("dtp-{host}-{}", std::process::id())
}

/// A worker over one queue database. Several may run in one process or in many.
#[derive(Clone)]
pub struct Worker {
    shared: Arc<Shared>,
}

struct Shared {
    pool: PgPool,
    registry: HandlerRegistry,
    /// The registry's types: the only ones this worker claims.
    task_types: Vec<String>,
    config: WorkerConfig,
    running: RunningTasks,
    slots: Arc<Semaphore>,
    /// Every task execution, so that shutdown can wait for them (their slots are given back
    /// before their outcome is written).
    executions: TaskTracker,
    /// Batches successful outcomes while `run` runs; outcomes are written one by one otherwise.
    completer: RwLock<Option<Completer>>,
    /// A notification said new work is due.
    work_available: Notify,
    /// A slot was freed.
    slot_freed: Notify,
    /// Fired when the shutdown grace period is over: every handler still running is aborted and
    /// its task handed back to the queue.
    abort_all: CancellationToken,
}

impl Worker {
    /// A worker that runs the handlers of `registry` against the queue in `pool`.
    pub fn new(pool: PgPool, registry: HandlerRegistry, config: WorkerConfig) -> Self {
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let running = RunningTasks::new(config.lease_held());
        Worker {
            shared: Arc::new(Shared {
                pool,
                task_types: registry.names().into_iter().map(str::to_owned).collect(),
                registry,
                config,
                running,
                slots,
                executions: TaskTracker::new(),
                completer: RwLock::new(None),
                work_available: Notify::new(),
                slot_freed: Notify::new(),
                abort_all: CancellationToken::new(),
            }),
        }
    }

    /// This worker's id.
    pub fn id(&self) -> &str {
        &self.shared.config.worker_id
    }

    /// Runs until `shutdown` fires, then stops claiming, lets running handlers finish within the
    /// grace period, and hands what is left back to the queue.
    pub async fn run(self, shutdown: CancellationToken) {
        let shared = &self.shared;
        let background = CancellationToken::new();
        let (completer, completing) = Completer::start(shared.pool.clone(), background.clone());
        *shared
            .completer
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(completer);
        shared.executions.reopen();
        let tasks = [
            tokio::spawn(listener::run(shared.clone(), background.clone())),
            tokio::spawn(heartbeat::run(shared.clone(), background.clone())),
            tokio::spawn(heartbeat::watch(shared.clone(), background.clone())),
            completing,
        ];
        tracing::info!(worker_id = %self.id(), concurrency = shared.config.concurrency, "worker started");
        claim_loop::run(shared, &shutdown).await;
        self.drain().await;
        background.cancel();
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "worker background task failed");
            }
        }
        *shared
            .completer
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
        tracing::info!(worker_id = %self.id(), "worker stopped");
    }

    /// Waits for running tasks up to the grace period, then aborts the rest (their tasks go back
    /// to the queue) and waits for them to record that.
    async fn drain(&self) {
        let shared = &self.shared;
        shared.executions.close();
        let running = shared.running.len();
        if running > 0 {
            tracing::info!(running, grace = ?shared.config.shutdown_grace, "waiting for running tasks");
        }
        let grace = shared.config.shutdown_grace;
        if tokio::time::timeout(grace, shared.executions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = shared.running.len(),
                "grace period over: handing running tasks back to the queue"
            );
            shared.abort_all.cancel();
            // Handlers are aborted by dropping their futures, so this takes one database write
            // per task at most; the bound guards against a database that is gone.
            let handed_back = Duration::from_secs(30);
            if tokio::time::timeout(handed_back, shared.executions.wait())
                .await
                .is_err()
            {
                tracing::error!(
                    "tasks not handed back in time; their leases will expire and be rescued"
                );
            }
        }
    }

    /// Claims up to `concurrency` due tasks, runs them all and records their outcomes.
    /// Returns how many were claimed (0: nothing was due). For tests and embedding programs
    /// that drive the worker by hand.
    pub async fn run_once(&self) -> Result<usize, sqlx::Error> {
        let shared = &self.shared;
        let config = &shared.config;
        let limit = i64::try_from(config.concurrency.max(1)).unwrap_or(i64::MAX);
        let claim = crate::queue::Claim::new(self.id(), &shared.task_types, limit, config.lease);
        let sent = std::time::Instant::now();
        let claimed = crate::queue::claim_available(&shared.pool, &claim).await?;
        let count = claimed.len();
        let runs: Vec<_> = claimed
            .into_iter()
            .map(|task| tokio::spawn(executor::execute(shared.clone(), task, sent, None)))
            .collect();
        for run in runs {
            if let Err(e) = run.await {
                tracing::error!(error = %e, "task execution failed");
            }
        }
        Ok(count)
    }
}
