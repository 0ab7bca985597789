//! The benchmark workloads, shared by the criterion benches and the standard-workload runner:
//! bulk enqueue, draining a queue with one worker, pickup latency of an idle worker, and batch
//! create through DTP's HTTP API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::CreateTask;
use dtp::handlers::{handler_fn, HandlerRegistry};
use dtp::queue::{self, NewTask};
use dtp::worker::{Worker, WorkerConfig};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Runs a benchmark's `main` future on a multi-threaded runtime.
pub fn block_on<F: std::future::Future>(run: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
        .block_on(run)
}

/// A migrated queue database on `url` (created if missing).
pub async fn queue_pool(url: &str) -> PgPool {
    dtp::db::connect_and_migrate(url, None, 40, Duration::from_secs(60), Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("cannot prepare the queue database {url}: {e:#}"))
}

/// Empties the queue (between benchmark iterations).
pub async fn truncate(pool: &PgPool) {
    sqlx::query("truncate task_attempts, tasks, queues, queue_counts, queue_count_changes")
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("truncate failed: {e}"));
}

/// Gives each of `queues` a concurrency limit of `limit`.
pub async fn limit_queues(pool: &PgPool, queues: &[String], limit: i32) {
    let mut conn = pool
        .acquire()
        .await
        .unwrap_or_else(|e| panic!("connection: {e}"));
    let patch = common::QueuePatch {
        concurrency_limit: Some(Some(limit)),
        ..common::QueuePatch::default()
    };
    for queue in queues {
        queue::configure(&mut conn, queue, &patch)
            .await
            .unwrap_or_else(|e| panic!("configure {queue}: {e}"));
    }
}

/// The benchmark setting `name` from the environment, else `default`; a value that does not
/// parse stops the benchmark, naming it.
pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> T
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|e| panic!("{name}={value}: {e}")),
        Err(_) => default,
    }
}

/// Enqueues `count` `noop` tasks through the library's batch call, 1000 per transaction.
pub async fn enqueue_noops(pool: &PgPool, count: usize) {
    enqueue_noops_across(pool, count, &[common::limits::DEFAULT_QUEUE.to_owned()]).await;
}

/// Enqueues `count` `noop` tasks spread evenly over `queues` (in turn), 1000 per transaction.
pub async fn enqueue_noops_across(pool: &PgPool, count: usize, queues: &[String]) {
    let tasks: Vec<NewTask> = queues
        .iter()
        .map(|queue| NewTask {
            max_attempts_requested: true,
            queue: queue.clone(),
            ..NewTask::new("noop", Value::Null)
        })
        .collect();
    let mut left = count;
    while left > 0 {
        let n = left.min(1000);
        let batch: Vec<NewTask> = tasks.iter().cycle().take(n).cloned().collect();
        let mut tx = pool.begin().await.unwrap_or_else(|e| panic!("begin: {e}"));
        queue::enqueue_many(&mut tx, &batch)
            .await
            .unwrap_or_else(|e| panic!("enqueue_many: {e}"));
        tx.commit().await.unwrap_or_else(|e| panic!("commit: {e}"));
        left -= n;
    }
}

/// A worker configuration for benchmarks: `concurrency` slots, the defaults otherwise.
pub fn bench_worker_config(concurrency: usize) -> WorkerConfig {
    WorkerConfig {
        worker_id: format!("bench-worker-{concurrency}"),
        concurrency,
        ..WorkerConfig::default()
    }
}

/// Starts one worker with `concurrency` slots over a queue already filled and measures the time
/// until the database shows no task ready or RUNNING (worker start-up included); tasks waiting
/// for a later time are left.
pub async fn drain(pool: &PgPool, concurrency: usize) -> Duration {
    let started = Instant::now();
    let stop = CancellationToken::new();
    let worker = Worker::new(
        pool.clone(),
        HandlerRegistry::with_builtins(),
        bench_worker_config(concurrency),
    );
    let running = tokio::spawn(worker.run(stop.clone()));
    let elapsed = wait_until_drained(pool).await - started;
    stop.cancel();
    let _ = running.await;
    elapsed
}

/// Waits until the database shows nothing ready or RUNNING; returns when the check that showed
/// it began (its snapshot holds every task finished before then, and its own walk is not the
/// worker's time).
async fn wait_until_drained(pool: &PgPool) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(600);
    // First the newest task, by its primary key; then, once it is done, whether anything is
    // open at all. Each half of that second check walks one partial index and stops at its
    // first live entry, but under a held snapshot it walks every dead entry before it: run
    // every 2 ms, it took the database from the worker being measured. (`exists (… where
    // status in (…))` is planned as a sequential scan over every finished task.)
    let newest_done = "select coalesce((select status not in ('PENDING', 'RUNNING') from tasks \
                       where id = (select max(id) from tasks)), true)";
    let nothing_open = "select (select id from tasks where status = 'PENDING' and not waiting \
                        order by queue, -priority, run_at, id limit 1) is null \
                        and (select id from tasks where status = 'RUNNING' \
                        order by lease_expires_at limit 1) is null";
    let mut checked_at = Instant::now();
    for check in [newest_done, nothing_open] {
        loop {
            checked_at = Instant::now();
            let done: bool = sqlx::query_scalar(check)
                .fetch_one(pool)
                .await
                .unwrap_or(false);
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "queue not drained in 10 minutes");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    checked_at
}

/// What [`pickup_latencies`] measured, one entry per task.
pub struct Pickups {
    /// From just before the enqueue call to the first line of the handler.
    pub latencies: Vec<Duration>,
    /// From just before the enqueue call to its return: the durable create, which the pickup
    /// cannot beat (the task is visible to no worker before its commit).
    pub enqueue: Vec<Duration>,
    /// The database's `processingStartedAt - scheduledFor`, in ms.
    pub db_ms: Vec<f64>,
}

/// Pickup latencies of an idle worker: `count` tasks created one at a time, `gap` apart, each
/// measured on a monotonic clock.
pub async fn pickup_latencies(pool: &PgPool, count: usize, gap: Duration) -> Pickups {
    let (started_tx, mut started_rx) = mpsc::unbounded_channel::<(i64, Instant)>();
    let started_tx = Arc::new(started_tx);
    let registry = HandlerRegistry::empty().register(
        "probe",
        handler_fn(move |ctx| {
            let at = Instant::now();
            let started_tx = started_tx.clone();
            async move {
                let _ = started_tx.send((ctx.id.0, at));
                Ok(Value::Null)
            }
        }),
    );
    let stop = CancellationToken::new();
    let worker = Worker::new(pool.clone(), registry, bench_worker_config(10));
    let running = tokio::spawn(worker.run(stop.clone()));
    // Let the worker connect its listener and go idle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies = Vec::with_capacity(count);
    let mut enqueue = Vec::with_capacity(count);
    let mut conn = pool
        .acquire()
        .await
        .unwrap_or_else(|e| panic!("acquire: {e}"));
    let task = NewTask {
        max_attempts: 1,
        max_attempts_requested: true,
        ..NewTask::new("probe", json!({}))
    };
    for _ in 0..count {
        let before = Instant::now();
        let created = queue::enqueue(&mut conn, &task)
            .await
            .unwrap_or_else(|e| panic!("enqueue: {e}"));
        enqueue.push(before.elapsed());
        let id = match created {
            queue::Enqueued::Created(row) | queue::Enqueued::Existing(row) => row.id,
        };
        let started = loop {
            let (started_id, at) = tokio::time::timeout(Duration::from_secs(10), started_rx.recv())
                .await
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("task {id} was not picked up within 10 s"));
            if started_id == id {
                break at;
            }
        };
        latencies.push(started.duration_since(before));
        tokio::time::sleep(gap).await;
    }
    stop.cancel();
    let _ = running.await;
    let db_ms: Vec<f64> = sqlx::query_scalar(
        "select extract(epoch from processing_started_at - scheduled_for)::float8 * 1000 \
         from tasks where type = 'probe' and processing_started_at is not null",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    Pickups {
        latencies,
        enqueue,
        db_ms,
    }
}

/// Creates `total` `noop` tasks through `POST /tasks/batch` of DTP at `base_url`, `batch` per
/// request, `in_flight` requests at a time. Returns the elapsed time.
pub async fn enqueue_over_http(
    base_url: &str,
    total: usize,
    batch: usize,
    in_flight: usize,
) -> Duration {
    let client = reqwest::Client::new();
    let body: Vec<CreateTask> = (0..batch)
        .map(|_| CreateTask::new("noop", Value::Null))
        .collect();
    let body = Arc::new(serde_json::to_vec(&body).unwrap_or_default());
    let requests = total.div_ceil(batch);
    let url = format!("{base_url}/tasks/batch");
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let senders: Vec<_> = (0..in_flight.max(1))
        .map(|_| {
            let (client, url, body, next) =
                (client.clone(), url.clone(), body.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.as_ref().clone())
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("batch create failed: {e}"));
                    assert_eq!(
                        response.status().as_u16(),
                        201,
                        "batch create answered {}",
                        response.status()
                    );
                    let _ = response.bytes().await;
                }
            })
        })
        .collect();
    for sender in senders {
        let _ = sender.await;
    }
    started.elapsed()
}

/// The `p`-th percentile (0..=100) of `samples` in milliseconds, nearest rank.
pub fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    percentile(&mut ms, p)
}

/// The `p`-th percentile (0..=100) of `values`, nearest rank; sorts `values`.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// Starts DTP's API (no worker) in this process over the queue at `url`; returns its base URL
/// and the token that stops it.
pub async fn spawn_dtp_api(url: &str) -> (String, CancellationToken) {
    let mut config = dtp::Config::defaults();
    config.addr = "127.0.0.1:0"
        .parse()
        .unwrap_or_else(|e| panic!("address: {e}"));
    config.database_url = url.to_owned();
    config.worker = false;
    config.db_max_connections = 20;
    config.max_body_bytes = 16 * 1024 * 1024;
    let app = dtp::App::build(config)
        .await
        .unwrap_or_else(|e| panic!("dtp API: {e:#}"));
    let address = format!("http://127.0.0.1:{}", app.port());
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    (address, stop)
}

/// Adds `rows` finished tasks by SQL, not through the API, shaped like the history of a busy
/// queue: 90 % SUCCEEDED with a result, 7 % FAILED with one of 13 errors, 3 % CANCELED; 70 % in
/// the default queue, the rest over `queue-7` to `queue-9`; one in ten with an idempotency key
/// (`load-{n}`); finished over the 19 hours before the last one (inside every default
/// retention period, so nothing is pruned while a benchmark runs). Then counts them
/// ([`queue::recount`]) and vacuums and analyzes the table, as autovacuum would have by then.
pub async fn load_finished(pool: &PgPool, rows: i64) {
    const CHUNK: i64 = 500_000;
    let started = Instant::now();
    let mut from = 1;
    while from <= rows {
        let to = (from + CHUNK - 1).min(rows);
        sqlx::query(
            r#"
            insert into tasks (type, payload, queue, status, attempt_count, max_attempts,
                               scheduled_for, run_at, processing_started_at, attempt_started_at,
                               completed_at, last_error, result, worker_id, idempotency_key,
                               created_at, updated_at)
            select 'noop', '{"n": 1}', q.queue, s.status, 1, 1, t.at, t.at, t.at, t.at,
                   t.at + interval '5 milliseconds',
                   case when s.status = 'FAILED' then 'error ' || (g % 13) end,
                   case when s.status = 'SUCCEEDED' then '{"ok": true}'::jsonb end,
                   'loader', case when g % 10 = 0 then 'load-' || g end, t.at, t.at
            from generate_series($1::bigint, $2::bigint) g,
                 lateral (select now() - interval '20 hours'
                                 + (g::float8 / $3) * interval '19 hours' as at) t,
                 lateral (select case when g % 10 < 7 then 'default'
                                      else 'queue-' || (g % 10) end as queue) q,
                 lateral (select case when g % 100 < 90 then 'SUCCEEDED'
                                      when g % 100 < 97 then 'FAILED'
                                      else 'CANCELED' end as status) s
            "#,
        )
        .bind(from)
        .bind(to)
        .bind(rows as f64)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("load: {e}"));
        from = to + 1;
        println!("  loaded {to} finished tasks ({:.0?})", started.elapsed());
    }
    let mut conn = pool
        .acquire()
        .await
        .unwrap_or_else(|e| panic!("connection: {e}"));
    queue::recount(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("recount: {e}"));
    sqlx::query("vacuum analyze tasks")
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("vacuum: {e}"));
    println!(
        "  counted, vacuumed and analyzed ({:.0?})",
        started.elapsed()
    );
}

/// The median and the slowest of `samples`, in ms.
pub fn median_and_max_ms(samples: &[Duration]) -> (f64, f64) {
    let max = samples.iter().max().copied().unwrap_or_default();
    (percentile_ms(samples, 50.0), max.as_secs_f64() * 1000.0)
}

/// A database of its own for one benchmark run on the server `DATABASE_URL` names (default:
/// the local server): its URL, and the server's, for [`drop_bench_database`].
pub fn bench_database(label: &str) -> (String, String) {
    let server = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("tp_{label}_{}", std::process::id());
    let url = replace_database(&server, &name);
    (url, server)
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let cut = base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(base.len());
    match query {
        Some(q) => format!("{}/{name}?{q}", &base[..cut]),
        None => format!("{}/{name}", &base[..cut]),
    }
}

/// Drops the database at `url` (made by [`bench_database`]) through `server`.
pub async fn drop_bench_database(server: &str, url: &str) {
    let name = url
        .split('?')
        .next()
        .and_then(|base| base.rsplit('/').next())
        .unwrap_or_default();
    // Give API servers' pools a moment to close their connections.
    tokio::time::sleep(Duration::from_millis(200)).await;
    match sqlx::PgPool::connect(server).await {
        Ok(admin) => {
            let drop = format!("drop database if exists {name} with (force)");
            if let Err(e) = sqlx::query(&drop).execute(&admin).await {
                eprintln!("could not drop {name}: {e}");
            }
            admin.close().await;
        }
        Err(e) => eprintln!("could not connect to drop {name}: {e}"),
    }
}
