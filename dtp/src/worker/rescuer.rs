//! The rescuer: every `dtp` process, worker or API only, looks for RUNNING tasks whose lease
//! expired (their worker died, hung, or lost the network) and counts the lost attempt as failed
//! with "worker lost".
//!
//! An expired lease proves its worker gone only if that worker could have renewed it. While the
//! database is down nobody can, so the rescuer waits until it has been connected for one full
//! lease before it rescues anything: a restart (or crash recovery, or failover) breaks every
//! connection, so whatever ran across the outage gets a whole lease to renew after it. The
//! statement adds the same wait counted from the server's start (`queue::lock_expired`), for
//! connections that survive a restart (a pooler in between).

use std::time::{Duration, Instant};

use sqlx::{Connection, PgPool};
use tokio_util::sync::CancellationToken;

use super::connection::DedicatedConnection;
use super::{Backoff, WorkerConfig};
use crate::metrics::DtpMetrics;
use crate::queue;

/// Tasks rescued per transaction; a larger backlog takes several rounds.
const RESCUE_BATCH: i64 = 100;

/// Rescues expired leases; see the module documentation.
pub struct Rescuer {
    conn: DedicatedConnection,
    lease: Duration,
    interval: Duration,
    backoff: Backoff,
    metrics: DtpMetrics,
}

impl Rescuer {
    /// A rescuer over the queue in `pool` (on a connection of its own), with the lease, rescue
    /// interval and backoff of `config`.
    pub fn new(pool: &PgPool, config: &WorkerConfig) -> Self {
        Rescuer {
            conn: DedicatedConnection::for_pool(pool),
            lease: config.lease,
            interval: config.rescue_interval,
            backoff: config.backoff,
            metrics: DtpMetrics::default(),
        }
    }

    /// This rescuer, counting into `metrics`.
    pub fn with_metrics(self, metrics: DtpMetrics) -> Self {
        Rescuer { metrics, ..self }
    }

    /// Rescues every rescue interval until `stop` fires.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if let Err(e) = self.rescue_if_connected_for_a_lease().await {
                        tracing::warn!(error = %e, "rescue failed; will try again");
                    }
                }
                _ = stop.cancelled() => break,
            }
        }
        self.conn.close().await;
    }

    /// Rescues every expired lease once this rescuer has been connected for a full lease
    /// (waiting for that if needed); returns how many tasks were rescued. For tests and
    /// programs that drive the queue by hand.
    pub async fn rescue_once(&mut self) -> Result<usize, sqlx::Error> {
        self.connect().await?;
        if let Some(since) = self.conn.connected_since() {
            tokio::time::sleep(self.lease.saturating_sub(since.elapsed())).await;
        }
        self.rescue_if_connected_for_a_lease().await
    }

    async fn connect(&mut self) -> Result<(), sqlx::Error> {
        if self.conn.connected_since().is_none() {
            self.conn.run(async |db| db.ping().await).await?;
        }
        Ok(())
    }

    async fn rescue_if_connected_for_a_lease(&mut self) -> Result<usize, sqlx::Error> {
        self.connect().await?;
        let connected_for = self
            .conn
            .connected_since()
            .map_or(Duration::ZERO, |since| Instant::now() - since);
        if connected_for < self.lease {
            return Ok(0);
        }
        let mut total = 0;
        loop {
            let rescued = self.rescue_batch().await?;
            total += rescued;
            if rescued < usize::try_from(RESCUE_BATCH).unwrap_or(usize::MAX) {
                return Ok(total);
            }
        }
    }

    async fn rescue_batch(&mut self) -> Result<usize, sqlx::Error> {
        let (lease, backoff, metrics) = (self.lease, self.backoff, &self.metrics);
        self.conn
            .run(async |db| {
                let mut tx = db.begin().await?;
                let expired = queue::lock_expired(&mut tx, RESCUE_BATCH, lease).await?;
                if expired.is_empty() {
                    return Ok(0);
                }
                let lost: Vec<_> = expired
                    .into_iter()
                    .map(|task| {
                        let delay = backoff.delay(task.attempt_count);
                        (task, delay)
                    })
                    .collect();
                let changed = queue::fail_expired(&mut tx, &lost).await?;
                tx.commit().await?;
                for (id, status) in &changed {
                    let Some((task, _)) = lost.iter().find(|(t, _)| t.task_id() == *id) else {
                        continue;
                    };
                    let lost_by = task.worker_id.as_deref().unwrap_or("?");
                    tracing::warn!(task_id = %id, from = "RUNNING", to = %status, lost_by, "lease expired: worker lost");
                    metrics.lease_rescued(&task.queue, &task.task_type);
                }
                Ok(changed.len())
            })
            .await
    }
}
