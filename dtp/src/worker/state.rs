//! What the parts of one running worker share: the queue, the handlers, the settings, the
//! attempts in flight and the signals between the claim loop and the executors. Built once, by
//! [`Worker::new`](super::Worker::new); the parts read it and never replace any of it.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ahead::ClaimedAhead;
use super::running::RunningTasks;
use super::WorkerConfig;
use crate::handlers::HandlerRegistry;
use crate::metrics::DtpMetrics;
use crate::queue::ClaimKey;

pub(super) struct WorkerState {
    pub(super) pool: PgPool,
    pub(super) registry: HandlerRegistry,
    /// The registry's types: the only ones this worker claims.
    pub(super) task_types: Vec<String>,
    pub(super) config: WorkerConfig,
    /// The attempts this worker runs, with their leases (executor, heartbeat, listener).
    pub(super) running: RunningTasks,
    /// One permit per task that may run at once; the claim loop claims only what it can hold.
    pub(super) slots: Arc<Semaphore>,
    /// Every task execution, so that shutdown can wait for them (their slots are given back
    /// before their outcome is written).
    pub(super) executions: TaskTracker,
    /// A notification said new work is due.
    pub(super) work_available: Notify,
    /// A notification said a queue's settings changed, or that some queue has work (or the
    /// listener may have missed some): the claim loop reads the settings again and looks at
    /// every queue from its start.
    pub(super) look_at_every_queue: AtomicBool,
    /// What notifications said is ready, not yet seen by the claim loop: per queue and
    /// (negated) priority, the first ready task in claim order.
    pub(super) announced: Mutex<HashMap<(String, i32), ClaimKey>>,
    /// The completer wrote a batch of successes: a limited queue may have room again.
    pub(super) outcomes_written: Arc<Notify>,
    /// A slot was freed.
    pub(super) slot_freed: Notify,
    /// Tasks claimed ahead of free slots, which slots take as their tasks finish.
    pub(super) ahead: ClaimedAhead,
    /// Fired when the shutdown grace period is over: every handler still running is aborted and
    /// its task handed back to the queue.
    pub(super) abort_all: CancellationToken,
    /// What the worker counts.
    pub(super) metrics: DtpMetrics,
}

impl WorkerState {
    pub(super) fn new(
        pool: PgPool,
        registry: HandlerRegistry,
        config: WorkerConfig,
        metrics: DtpMetrics,
    ) -> Self {
        WorkerState {
            pool,
            task_types: registry.names().into_iter().map(str::to_owned).collect(),
            registry,
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            running: RunningTasks::new(config.lease_held()),
            config,
            executions: TaskTracker::new(),
            work_available: Notify::new(),
            look_at_every_queue: AtomicBool::new(true),
            announced: Mutex::new(HashMap::new()),
            outcomes_written: Arc::new(Notify::new()),
            slot_freed: Notify::new(),
            ahead: ClaimedAhead::new(),
            abort_all: CancellationToken::new(),
            metrics,
        }
    }
}
