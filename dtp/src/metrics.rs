//! DTP's metrics: what the API, the worker, the rescuer and the maintenance leader
//! count as they go ([`DtpMetrics`]), and the depth gauges read from the database when scraped
//! ([`DepthGauges`]). `GET /metrics` serves both, beside the HTTP request metrics every
//! service has (`apikit::metrics`).
//!
//! Counters count what this process did; sum them over the fleet. The depth gauges are the
//! queue's, the same from every process. No label carries an id: queue and type names are
//! what operators choose, and each label set is one series.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex as StdMutex, RwLock};
use std::time::{Duration, Instant};

use apikit::metrics::{seconds_family, SecondsFamily, SECONDS_BUCKETS};
use common::AttemptOutcome;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::queue::{self, QueueMinute};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    queue: String,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    queue: String,
    r#type: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueStateLabels {
    queue: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusClassLabels {
    status_class: &'static str,
}

/// An attempt outcome as a label value: the names of an attempt's history, in lower case.
fn outcome_label(outcome: AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Succeeded => "succeeded",
        AttemptOutcome::Failed => "failed",
        AttemptOutcome::Retry => "retry",
        AttemptOutcome::Lost => "lost",
        AttemptOutcome::Canceled => "canceled",
        AttemptOutcome::Timeout => "timeout",
        AttemptOutcome::Released => "released",
    }
}

/// What this process counts as it works. Cloning shares the counts; [`DtpMetrics::default`] is
/// a set no registry shows (for a worker an embedding program builds without metrics).
#[derive(Clone, Debug)]
pub struct DtpMetrics {
    created: Family<TaskLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    queue_wait: SecondsFamily<QueueLabels>,
    run: SecondsFamily<TaskLabels>,
    slots: Family<StateLabels, Gauge>,
    slots_busy: Gauge,
    slots_free: Gauge,
    /// Each queue and type's series, resolved once: the worker counts every attempt in them
    /// without building label sets.
    series: Arc<RwLock<HashMap<String, HashMap<String, TaskSeries>>>>,
    /// What the workers did since it was last added to `minute_stats`.
    pub minutes: MinuteCounts,
    claim_seconds: Histogram,
    claim_batch_size: Histogram,
    rescued: Counter,
    pruned: Counter,
    catch_ups_cut: Counter,
    http_target: Family<StatusClassLabels, Counter>,
}

impl Default for DtpMetrics {
    fn default() -> Self {
        let slots: Family<StateLabels, Gauge> = Family::default();
        DtpMetrics {
            created: Family::default(),
            attempts: Family::default(),
            queue_wait: seconds_family(),
            run: seconds_family(),
            slots_busy: slots.get_or_create_owned(&StateLabels { state: "busy" }),
            slots_free: slots.get_or_create_owned(&StateLabels { state: "free" }),
            slots,
            series: Arc::default(),
            minutes: MinuteCounts::default(),
            claim_seconds: apikit::metrics::seconds_histogram(),
            claim_batch_size: Histogram::new([
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0,
            ]),
            rescued: Counter::default(),
            pruned: Counter::default(),
            catch_ups_cut: Counter::default(),
            http_target: Family::default(),
        }
    }
}

impl DtpMetrics {
    /// Registers every metric under its `dtp_` name.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dtp_tasks_created",
            "Tasks created (by the API or a schedule), by queue and type; a replayed idempotency key creates none",
            self.created.clone(),
        );
        registry.register(
            "dtp_task_attempts",
            "Attempts ended, by queue, type and outcome (succeeded, retry, failed, timeout, lost, canceled, released)",
            self.attempts.clone(),
        );
        registry.register(
            "dtp_task_queue_wait_seconds",
            "Time from a task being due to its attempt starting, by queue",
            self.queue_wait.clone(),
        );
        registry.register(
            "dtp_task_run_seconds",
            "Time a handler ran, for attempts that returned (succeeded, failed or timed out), by queue and type",
            self.run.clone(),
        );
        registry.register(
            "dtp_worker_slots",
            "The worker's concurrency slots, busy (running a handler) or free",
            self.slots.clone(),
        );
        registry.register(
            "dtp_claim_seconds",
            "Time a claim statement took, from sending to its answer",
            self.claim_seconds.clone(),
        );
        registry.register(
            "dtp_claim_batch_size",
            "Tasks taken by each claim that took any",
            self.claim_batch_size.clone(),
        );
        registry.register(
            "dtp_leases_rescued",
            "Attempts whose lease expired, rescued by this process",
            self.rescued.clone(),
        );
        registry.register(
            "dtp_tasks_pruned",
            "Finished tasks deleted by retention",
            self.pruned.clone(),
        );
        registry.register(
            "dtp_schedule_catch_ups_cut",
            "Times a schedule fell more than 60 ticks behind and the earlier ticks were skipped",
            self.catch_ups_cut.clone(),
        );
        registry.register(
            "dtp_http_target_requests",
            "Requests the http handler sent, by the class of the target's answer (2xx..5xx, or error when none came)",
            self.http_target.clone(),
        );
    }

    /// A task was created.
    pub fn task_created(&self, queue: &str, task_type: &str) {
        self.created
            .get_or_create(&task_labels(queue, task_type))
            .inc();
    }

    /// An attempt ended with `outcome`.
    pub fn attempt_ended(&self, queue: &str, task_type: &str, outcome: AttemptOutcome) {
        self.attempts_ended(queue, task_type, outcome, 1);
    }

    /// `count` attempts ended with `outcome` (counted in the queue and type's series, as the
    /// worker counts its own).
    pub fn attempts_ended(
        &self,
        queue: &str,
        task_type: &str,
        outcome: AttemptOutcome,
        count: u64,
    ) {
        self.task_series(queue, task_type)
            .attempts_ended(outcome, count);
    }

    /// The series of `queue` and `task_type`'s attempts (all seven outcomes start at zero).
    pub fn task_series(&self, queue: &str, task_type: &str) -> TaskSeries {
        let cached = self.series.read().ok().and_then(|series| {
            series
                .get(queue)
                .and_then(|types| types.get(task_type))
                .cloned()
        });
        if let Some(series) = cached {
            return series;
        }
        let labels = task_labels(queue, task_type);
        let attempt = |outcome| AttemptLabels {
            queue: queue.to_owned(),
            r#type: task_type.to_owned(),
            outcome: outcome_label(outcome),
        };
        let series = TaskSeries {
            queue_wait: self.queue_wait.get_or_create_owned(&QueueLabels {
                queue: queue.to_owned(),
            }),
            run: self.run.get_or_create_owned(&labels),
            attempts: OUTCOMES.map(|outcome| self.attempts.get_or_create_owned(&attempt(outcome))),
            queue: Arc::from(queue),
            minutes: self.minutes.clone(),
        };
        if let Ok(mut cache) = self.series.write() {
            cache
                .entry(queue.to_owned())
                .or_default()
                .insert(task_type.to_owned(), series.clone());
        }
        series
    }

    /// A claim statement took `took` and returned `taken` tasks.
    pub fn claimed(&self, took: Duration, taken: usize) {
        self.claim_seconds.observe(took.as_secs_f64());
        if taken > 0 {
            // A usize of tasks is far below 2^53: exact as a float.
            #[allow(clippy::cast_precision_loss)]
            self.claim_batch_size.observe(taken as f64);
        }
    }

    /// A worker with `slots` slots started (`slots` > 0) or stopped (`slots` < 0).
    pub fn slots_added(&self, slots: i64) {
        self.slots_free.inc_by(slots);
    }

    /// A slot was taken (`true`) or given back (`false`).
    pub fn slot_taken(&self, taken: bool) {
        let (from, to) = if taken {
            (&self.slots_free, &self.slots_busy)
        } else {
            (&self.slots_busy, &self.slots_free)
        };
        from.dec();
        to.inc();
    }

    /// An expired lease of `queue`/`task_type` was rescued.
    pub fn lease_rescued(&self, queue: &str, task_type: &str) {
        self.rescued.inc();
        self.attempt_ended(queue, task_type, AttemptOutcome::Lost);
    }

    /// A schedule fell too far behind: its earliest missed ticks were skipped.
    pub fn schedule_ticks_skipped(&self) {
        self.catch_ups_cut.inc();
    }

    /// Retention deleted `count` tasks.
    pub fn tasks_pruned(&self, count: u64) {
        self.pruned.inc_by(count);
    }

    /// The http handler's request got `status` back, or no answer (`None`).
    pub fn http_target_answered(&self, status: Option<u16>) {
        let status_class = match status {
            Some(100..=199) => "1xx",
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(500..=599) => "5xx",
            Some(_) | None => "error",
        };
        self.http_target
            .get_or_create(&StatusClassLabels { status_class })
            .inc();
    }
}

/// Every attempt outcome, in [`TaskSeries::attempts`]' order.
const OUTCOMES: [AttemptOutcome; 7] = [
    AttemptOutcome::Succeeded,
    AttemptOutcome::Retry,
    AttemptOutcome::Failed,
    AttemptOutcome::Timeout,
    AttemptOutcome::Lost,
    AttemptOutcome::Canceled,
    AttemptOutcome::Released,
];

/// One queue and type's attempt series (see [`DtpMetrics::task_series`]); cloning shares them.
#[derive(Clone, Debug)]
pub struct TaskSeries {
    queue_wait: Histogram,
    run: Histogram,
    attempts: [Counter; 7],
    queue: Arc<str>,
    minutes: MinuteCounts,
}

impl TaskSeries {
    /// An attempt started `waited` after its task was due.
    pub fn attempt_started(&self, waited: Duration) {
        let seconds = waited.as_secs_f64();
        self.queue_wait.observe(seconds);
        self.minutes
            .count(&self.queue, |m| m.wait_buckets[bucket_of(seconds)] += 1);
    }

    /// A handler returned after `ran`.
    pub fn handler_returned(&self, ran: Duration) {
        let seconds = ran.as_secs_f64();
        self.run.observe(seconds);
        self.minutes
            .count(&self.queue, |m| m.run_buckets[bucket_of(seconds)] += 1);
    }

    /// An attempt ended with `outcome`.
    pub fn attempt_ended(&self, outcome: AttemptOutcome) {
        self.attempts_ended(outcome, 1);
    }

    /// `count` attempts ended with `outcome`.
    pub fn attempts_ended(&self, outcome: AttemptOutcome, count: u64) {
        let index = OUTCOMES.iter().position(|o| *o == outcome);
        if let Some(counter) = index.and_then(|i| self.attempts.get(i)) {
            counter.inc_by(count);
        }
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let figure: Option<fn(&mut QueueMinute) -> &mut i64> = match outcome {
            AttemptOutcome::Succeeded => Some(|m| &mut m.succeeded),
            AttemptOutcome::Failed | AttemptOutcome::Timeout => Some(|m| &mut m.failed),
            AttemptOutcome::Retry => Some(|m| &mut m.retried),
            _ => None,
        };
        if let Some(figure) = figure {
            self.minutes.count(&self.queue, |m| *figure(m) += count);
        }
    }
}

/// Buckets of the per-minute figures: those of the histograms, then one for longer.
pub const MINUTE_BUCKETS: usize = SECONDS_BUCKETS.len() + 1;

/// The bucket `seconds` falls in.
fn bucket_of(seconds: f64) -> usize {
    SECONDS_BUCKETS
        .iter()
        .position(|bound| seconds <= *bound)
        .unwrap_or(SECONDS_BUCKETS.len())
}

/// What this process's workers did since it last added to `minute_stats`, per queue; the
/// maintenance loop adds it every few seconds (see `queue::add_minute_stats`).
#[derive(Clone, Debug, Default)]
pub struct MinuteCounts(Arc<StdMutex<HashMap<Arc<str>, QueueMinute>>>);

impl MinuteCounts {
    fn count(&self, queue: &Arc<str>, change: impl FnOnce(&mut QueueMinute)) {
        if let Ok(mut counts) = self.0.lock() {
            let minute = counts.entry(queue.clone()).or_insert_with(|| QueueMinute {
                wait_buckets: vec![0; MINUTE_BUCKETS],
                run_buckets: vec![0; MINUTE_BUCKETS],
                ..QueueMinute::default()
            });
            change(minute);
        }
    }

    /// What was counted, by queue, which is then no longer held here.
    pub fn take(&self) -> Vec<(String, QueueMinute)> {
        self.0.lock().map_or_else(
            |_| Vec::new(),
            |mut counts| {
                counts
                    .drain()
                    .map(|(queue, minute)| (queue.to_string(), minute))
                    .collect()
            },
        )
    }

    /// Holds `taken` again (its write failed), added to what was counted since.
    pub fn put_back(&self, taken: Vec<(String, QueueMinute)>) {
        for (queue, back) in taken {
            self.count(&Arc::from(queue), |m| {
                m.succeeded += back.succeeded;
                m.failed += back.failed;
                m.retried += back.retried;
                for (sum, add) in m.wait_buckets.iter_mut().zip(&back.wait_buckets) {
                    *sum += add;
                }
                for (sum, add) in m.run_buckets.iter_mut().zip(&back.run_buckets) {
                    *sum += add;
                }
            });
        }
    }
}

fn task_labels(queue: &str, task_type: &str) -> TaskLabels {
    TaskLabels {
        queue: queue.to_owned(),
        r#type: task_type.to_owned(),
    }
}

/// How often, at most, the depth gauges are read from the database, whatever the scrape rate.
const DEPTH_READ_EVERY: Duration = Duration::from_secs(1);
/// Longest a scrape waits for the depth before answering with the last values.
const DEPTH_READ_PATIENCE: Duration = Duration::from_secs(2);

/// The queue's depth as gauges: tasks per queue and state, and the age of each queue's oldest
/// due PENDING task. Read from the database when a scrape finds them older than a second, by
/// one scrape at a time (the others answer with the last values meanwhile).
#[derive(Clone, Debug)]
pub struct DepthGauges {
    pool: PgPool,
    tasks: Family<QueueStateLabels, Gauge>,
    oldest_pending: Family<QueueLabels, Gauge<f64, AtomicU64>>,
    reads: Counter,
    read_failures: Counter,
    last_read_at: Gauge<f64, AtomicU64>,
    last_read: Arc<Mutex<LastRead>>,
}

/// When the depth was last read, and the series it set (to remove those of queues gone since,
/// without a moment where a concurrent scrape would see no series at all).
#[derive(Debug, Default)]
struct LastRead {
    at: Option<Instant>,
    tasks: HashSet<QueueStateLabels>,
    queues: HashSet<QueueLabels>,
}

impl DepthGauges {
    /// Gauges over the queue in `pool`, registered in `registry`.
    pub fn new(pool: PgPool, registry: &mut Registry) -> Self {
        let gauges = DepthGauges {
            pool,
            tasks: Family::default(),
            oldest_pending: Family::default(),
            reads: Counter::default(),
            read_failures: Counter::default(),
            last_read_at: Gauge::default(),
            last_read: Arc::new(Mutex::new(LastRead::default())),
        };
        registry.register(
            "dtp_tasks",
            "Tasks per queue and state, read from the database at most once a second",
            gauges.tasks.clone(),
        );
        registry.register(
            "dtp_queue_oldest_pending_age_seconds",
            "Age of each queue's oldest due PENDING task (0 when none is due)",
            gauges.oldest_pending.clone(),
        );
        registry.register(
            "dtp_depth_reads",
            "Reads of the depth gauges from the database (at most one a second)",
            gauges.reads.clone(),
        );
        registry.register(
            "dtp_depth_read_failures",
            "Reads of the depth gauges that failed or took over 2 s; the gauges keep the last values read",
            gauges.read_failures.clone(),
        );
        registry.register(
            "dtp_depth_last_read_timestamp_seconds",
            "When the depth gauges were last read from the database (Unix time; 0: never)",
            gauges.last_read_at.clone(),
        );
        gauges
    }

    /// Reads the depth again unless it was read less than a second ago, or another scrape is
    /// reading it now (this one then answers with the last values). A read that fails or takes
    /// longer than [`DEPTH_READ_PATIENCE`] is counted and logged; the gauges keep their last
    /// values (`dtp_depth_last_read_timestamp_seconds` says how old) and the scrape goes on, so
    /// that the process's own counters are still seen, and soon, while the database is down.
    pub async fn refresh(&self) {
        let Ok(mut last) = self.last_read.try_lock() else {
            return;
        };
        if last.at.is_some_and(|at| at.elapsed() < DEPTH_READ_EVERY) {
            return;
        }
        // Counted as the read starts, so that a failed or slow read also waits its second.
        last.at = Some(Instant::now());
        self.reads.inc();
        let read = tokio::time::timeout(DEPTH_READ_PATIENCE, queue::queues(&self.pool)).await;
        let queues = match read {
            Ok(Ok(queues)) => queues,
            Ok(Err(e)) => {
                self.read_failures.inc();
                tracing::warn!(error = %e, "metrics: reading the queue depth failed; the gauges keep their last values");
                return;
            }
            Err(_) => {
                self.read_failures.inc();
                tracing::warn!(patience = ?DEPTH_READ_PATIENCE, "metrics: reading the queue depth took too long; the gauges keep their last values");
                return;
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_read_at.set(now);
        let (mut tasks, mut names) = (HashSet::new(), HashSet::new());
        for q in queues {
            let c = &q.counts;
            let by_state = [
                ("PENDING", c.pending),
                ("RUNNING", c.running),
                ("SUCCEEDED", c.succeeded),
                ("FAILED", c.failed),
                ("CANCELED", c.canceled),
            ];
            for (state, count) in by_state {
                let labels = QueueStateLabels {
                    queue: q.name.clone(),
                    state,
                };
                self.tasks.get_or_create(&labels).set(count);
                tasks.insert(labels);
            }
            // Milliseconds of age are far below 2^53: exact as a float.
            #[allow(clippy::cast_precision_loss)]
            let age = q.oldest_pending_age_ms.unwrap_or(0).max(0) as f64 / 1000.0;
            let labels = QueueLabels { queue: q.name };
            self.oldest_pending.get_or_create(&labels).set(age);
            names.insert(labels);
        }
        for gone in last.tasks.difference(&tasks) {
            self.tasks.remove(gone);
        }
        for gone in last.queues.difference(&names) {
            self.oldest_pending.remove(gone);
        }
        (last.tasks, last.queues) = (tasks, names);
    }
}
