//! How a worker behaves: concurrency, polling, leases, backoff, grace periods.

use std::time::Duration;

use super::Backoff;
use crate::db::SessionDatabase;

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
    /// The direct connection the notification listener, the claim loop and the lease heartbeat
    /// use when the pool goes through a transaction-mode pooler; `None`: the pool's options.
    pub session_database: Option<SessionDatabase>,
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
            session_database: None,
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
