//! The claim beside work that is not due. Drains of `IDLE_QUEUES_TASKS` (default 20,000) due
//! `noop` tasks in `default` by one worker with concurrency 10:
//!
//! - plain, on an empty table;
//! - beside 100,000 (`IDLE_QUEUES`) queues each holding one task due in 2030;
//! - beside 1,000,000 (`DELAYED_TASKS`) tasks of priority 1000 in `default`, due in 2030;
//!
//! each followed by a plain drain again, so that every line is compared with plain drains of
//! the same minutes. The tasks not due are written by SQL as DTP writes them. Prints one line a
//! drain and a `RESULT` line with each case's rate over the plain drains' mean.
//!
//! Runs in a database of its own on the server `DATABASE_URL` names, dropped at the end.
//!
//! `cargo bench --bench idle_queues`

use sqlx::PgPool;
use suite::workloads;

const CONCURRENCY: usize = 10;

fn main() {
    workloads::block_on(run());
}

async fn run() {
    let tasks = workloads::setting("IDLE_QUEUES_TASKS", 20_000);
    let idle_queues = workloads::setting("IDLE_QUEUES", 100_000);
    let delayed = workloads::setting("DELAYED_TASKS", 1_000_000);
    let (url, server) = workloads::bench_database("idle_queues");
    let pool = workloads::queue_pool(&url).await;

    let mut plain = vec![drain(&pool, tasks, "plain").await];
    workloads::truncate(&pool).await;
    not_due(&pool, idle_queues, "'idle-' || g", 0).await;
    let beside_queues = drain(&pool, tasks, &format!("beside {idle_queues} idle queues")).await;
    workloads::truncate(&pool).await;
    plain.push(drain(&pool, tasks, "plain").await);
    workloads::truncate(&pool).await;
    not_due(&pool, delayed, "'default'", 1000).await;
    let beside_delayed = drain(
        &pool,
        tasks,
        &format!("beside {delayed} delayed priority-1000 tasks"),
    )
    .await;
    workloads::truncate(&pool).await;
    plain.push(drain(&pool, tasks, "plain").await);
    pool.close().await;
    workloads::drop_bench_database(&server, &url).await;

    let plain_rate = plain.iter().sum::<f64>() / plain.len() as f64;
    println!(
        "RESULT tasks={tasks} plain_tasks_s={plain_rate:.0} \
         idle_queues={idle_queues} beside_idle_queues_tasks_s={beside_queues:.0} ratio={:.2} \
         delayed_tasks={delayed} beside_delayed_tasks_s={beside_delayed:.0} ratio={:.2}",
        beside_queues / plain_rate,
        beside_delayed / plain_rate
    );
}

/// `count` tasks due on 2030-01-01 in the queue `queue` (SQL over `g`, 1 to `count`), waiting as
/// DTP writes a task created with a later `runAt`.
async fn not_due(pool: &PgPool, count: usize, queue: &str, priority: i32) {
    sqlx::query(&format!(
        "insert into tasks (type, queue, priority, max_attempts, scheduled_for, run_at, waiting) \
         select 'noop', {queue}, $1, 1, '2030-01-01Z', '2030-01-01Z', true \
         from generate_series(1, $2::bigint) g"
    ))
    .bind(priority)
    .bind(i64::try_from(count).unwrap_or(i64::MAX))
    .execute(pool)
    .await
    .unwrap_or_else(|e| panic!("tasks not due: {e}"));
    sqlx::query("analyze tasks")
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("analyze: {e}"));
}

/// Enqueues `tasks` due now and drains them; prints and returns the rate.
async fn drain(pool: &PgPool, tasks: usize, label: &str) -> f64 {
    workloads::enqueue_noops(pool, tasks).await;
    let took = workloads::drain(pool, CONCURRENCY).await;
    let rate = tasks as f64 / took.as_secs_f64();
    println!("{label}: {tasks} tasks drained in {took:.2?} = {rate:.0} tasks/s");
    rate
}
