//! Soak: enqueues and drains continuously for `SOAK_MINUTES` (default 10) at
//! `SOAK_LOAD` (default 0.7) of the maximum throughput, measured first over 20 s with the
//! enqueue running beside the worker (`sustained_maximum`), or at `SOAK_RATE` tasks a second
//! (to compare two configurations at one load), with every retention period set to `SOAK_RETENTION_S` seconds (default 60), so the
//! maintenance leader prunes all along. One worker, concurrency 10, as the standard workload.
//!
//! Prints, for each minute: tasks started, throughput, pickup latency p50/p99 (from just before
//! the enqueue call to the handler's first line, monotonic clock) and the tasks table: rows,
//! heap bytes, index bytes, dead rows and autovacuum runs so far. The `RESULT` line compares the
//! last minute with the first. It says whether the server runs autovacuum: without it nothing
//! reclaims the dead rows of a queue table, and the soak measures that.
//!
//! Runs in a database of its own on the server `DATABASE_URL` names, dropped at the end.
//!
//! `cargo bench --bench soak`

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dtp::handlers::{handler_fn, HandlerRegistry};
use dtp::queue::{self, Enqueued, NewTask};
use dtp::worker::{Maintenance, RetentionPolicy, Worker};
use serde_json::Value;
use sqlx::PgPool;
use suite::workloads::{self, percentile_ms};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const PROBE: Duration = Duration::from_secs(20);
const PROBE_WARM_UP: Duration = Duration::from_secs(3);
const PROBE_BACKLOG: usize = 2_000;
const CONCURRENCY: usize = 10;
const ENQUEUE_EVERY: Duration = Duration::from_millis(10);
const MINUTE: Duration = Duration::from_secs(60);

fn main() {
    workloads::block_on(run());
}

/// What the enqueuer and the handler tell the collector.
enum Event {
    Enqueued(Vec<i64>, Instant),
    Started(i64, Instant),
}

/// One minute's figures.
struct Minute {
    started: usize,
    p50: f64,
    p99: f64,
    rows: i64,
    heap: i64,
    indexes: i64,
    dead: i64,
    vacuums: i64,
}

async fn run() {
    let minutes: u32 = workloads::setting("SOAK_MINUTES", 10);
    let load: f64 = workloads::setting("SOAK_LOAD", 0.7);
    let retention = Duration::from_secs(workloads::setting("SOAK_RETENTION_S", 60));
    let (url, server) = workloads::bench_database("soak");
    println!("soak on {url}");
    let pool = workloads::queue_pool(&url).await;

    let max = sustained_maximum(&pool).await;
    workloads::truncate(&pool).await;
    let rate = workloads::setting("SOAK_RATE", max * load);
    let autovacuum: String = sqlx::query_scalar("select current_setting('autovacuum')")
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("settings: {e}"));
    println!(
        "autovacuum: {autovacuum} (the server's setting; the tasks table's own are as migrated)"
    );
    println!(
        "maximum {max:.0} tasks/s; soaking at {rate:.0} tasks/s for {minutes} min, retention {retention:?}"
    );

    let (events, collected) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let handler_events = events.clone();
    let registry = HandlerRegistry::empty().register(
        "soak",
        handler_fn(move |ctx| {
            let _ = handler_events.send(Event::Started(ctx.id.0, Instant::now()));
            async { Ok(Value::Null) }
        }),
    );
    let config = workloads::bench_worker_config(CONCURRENCY);
    let maintenance = Maintenance::new(
        &pool,
        None,
        &config.worker_id,
        RetentionPolicy {
            succeeded: Some(retention),
            failed: Some(retention),
            canceled: Some(retention),
        },
    );
    let worker = Worker::new(pool.clone(), registry, config);
    let running = tokio::spawn(worker.run(stop.clone()));
    let maintaining = tokio::spawn(maintenance.run(stop.clone()));
    let enqueuing = tokio::spawn(enqueue_at(pool.clone(), rate, events, stop.clone()));

    let figures = collect(&pool, collected, minutes).await;
    stop.cancel();
    let _ = tokio::join!(running, maintaining, enqueuing);
    pool.close().await;
    workloads::drop_bench_database(&server, &url).await;

    let (Some(first), Some(last)) = (figures.first(), figures.last()) else {
        return;
    };
    let per_s = |m: &Minute| m.started as f64 / MINUTE.as_secs_f64();
    println!(
        "RESULT minutes={minutes} rate_tasks_s={rate:.0} first_throughput_tasks_s={:.0} last_throughput_tasks_s={:.0} \
         first_p50_ms={:.3} last_p50_ms={:.3} first_p99_ms={:.3} last_p99_ms={:.3} \
         first_table_mb={:.1} last_table_mb={:.1}",
        per_s(first),
        per_s(last),
        first.p50,
        last.p50,
        first.p99,
        last.p99,
        (first.heap + first.indexes) as f64 / 1e6,
        (last.heap + last.indexes) as f64 / 1e6,
    );
}

/// The most tasks a second the worker starts while they are being enqueued beside it: for
/// [`PROBE`], the enqueuer keeps [`PROBE_BACKLOG`] tasks waiting, so the worker never waits for
/// work and the enqueue's cost on these cores is counted (a drain of a queue filled beforehand
/// goes faster than any rate that can be sustained).
async fn sustained_maximum(pool: &PgPool) -> f64 {
    let started = Arc::new(AtomicUsize::new(0));
    let counted = started.clone();
    let registry = HandlerRegistry::empty().register(
        "soak",
        handler_fn(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
            async { Ok(Value::Null) }
        }),
    );
    let stop = CancellationToken::new();
    let worker = Worker::new(
        pool.clone(),
        registry,
        workloads::bench_worker_config(CONCURRENCY),
    );
    let running = tokio::spawn(worker.run(stop.clone()));
    let mut conn = pool
        .acquire()
        .await
        .unwrap_or_else(|e| panic!("connection: {e}"));
    let batch = vec![soak_task(); 200];
    let mut enqueued = 0;
    let began = Instant::now();
    let mut window: Option<(Instant, usize)> = None;
    while began.elapsed() < PROBE_WARM_UP + PROBE {
        if window.is_none() && began.elapsed() >= PROBE_WARM_UP {
            window = Some((Instant::now(), started.load(Ordering::Relaxed)));
        }
        if enqueued - started.load(Ordering::Relaxed) < PROBE_BACKLOG {
            queue::enqueue_many(&mut conn, &batch)
                .await
                .unwrap_or_else(|e| panic!("enqueue: {e}"));
            enqueued += batch.len();
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let (from, before) = window.unwrap_or((began, 0));
    let rate = (started.load(Ordering::Relaxed) - before) as f64 / from.elapsed().as_secs_f64();
    stop.cancel();
    let _ = running.await;
    rate
}

fn soak_task() -> NewTask {
    NewTask {
        max_attempts_requested: true,
        ..NewTask::new("soak", Value::Null)
    }
}

/// Enqueues `rate` `soak` tasks a second, a batch every [`ENQUEUE_EVERY`], until `stop`.
async fn enqueue_at(
    pool: PgPool,
    rate: f64,
    events: mpsc::UnboundedSender<Event>,
    stop: CancellationToken,
) {
    let task = soak_task();
    let mut conn = pool
        .acquire()
        .await
        .unwrap_or_else(|e| panic!("connection: {e}"));
    let mut ticks = tokio::time::interval(ENQUEUE_EVERY);
    let per_tick = rate * ENQUEUE_EVERY.as_secs_f64();
    let mut owed = 0.0;
    while !stop.is_cancelled() {
        ticks.tick().await;
        owed += per_tick;
        let n = owed.floor() as usize;
        if n == 0 {
            continue;
        }
        owed -= n as f64;
        let batch = vec![task.clone(); n];
        let before = Instant::now();
        let enqueued = queue::enqueue_many(&mut conn, &batch)
            .await
            .unwrap_or_else(|e| panic!("enqueue: {e}"));
        let ids = enqueued
            .into_iter()
            .map(|e| match e {
                Enqueued::Created(row) | Enqueued::Existing(row) => row.id,
            })
            .collect();
        let _ = events.send(Event::Enqueued(ids, before));
    }
}

/// Matches starts with enqueues and prints each minute's figures, for `minutes`.
async fn collect(
    pool: &PgPool,
    mut events: mpsc::UnboundedReceiver<Event>,
    minutes: u32,
) -> Vec<Minute> {
    let mut enqueued: HashMap<i64, Instant> = HashMap::new();
    let mut started_first: HashMap<i64, Instant> = HashMap::new();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut figures = Vec::new();
    let mut minute = tokio::time::interval_at(tokio::time::Instant::now() + MINUTE, MINUTE);
    println!(
        "minute  started  tasks/s  p50 ms  p99 ms      rows   heap MB  index MB  dead rows  autovacuums"
    );
    while figures.len() < minutes as usize {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Enqueued(ids, at)) => {
                    for id in ids {
                        match started_first.remove(&id) {
                            Some(started) => latencies.push(started.duration_since(at)),
                            None => { enqueued.insert(id, at); }
                        }
                    }
                }
                Some(Event::Started(id, at)) => match enqueued.remove(&id) {
                    Some(before) => latencies.push(at.duration_since(before)),
                    None => { started_first.insert(id, at); }
                },
                None => break,
            },
            _ = minute.tick() => {
                let (rows, heap, indexes, dead, vacuums): (i64, i64, i64, i64, i64) =
                    sqlx::query_as(
                        "select (select count(*) from tasks), pg_table_size('tasks'), \
                         pg_indexes_size('tasks'), n_dead_tup, autovacuum_count \
                         from pg_stat_user_tables where relname = 'tasks'",
                    )
                .fetch_one(pool)
                .await
                .unwrap_or_else(|e| panic!("table size: {e}"));
                let figure = Minute {
                    started: latencies.len(),
                    p50: percentile_ms(&latencies, 50.0),
                    p99: percentile_ms(&latencies, 99.0),
                    rows,
                    heap,
                    indexes,
                    dead,
                    vacuums,
                };
                println!(
                    "{:>6}  {:>7}  {:>7.0}  {:>6.3}  {:>6.3}  {:>8}  {:>8.1}  {:>8.1}  {:>9}  {:>11}",
                    figures.len() + 1,
                    figure.started,
                    figure.started as f64 / MINUTE.as_secs_f64(),
                    figure.p50,
                    figure.p99,
                    figure.rows,
                    figure.heap as f64 / 1e6,
                    figure.indexes as f64 / 1e6,
                    figure.dead,
                    figure.vacuums,
                );
                figures.push(figure);
                latencies.clear();
            }
        }
    }
    figures
}
