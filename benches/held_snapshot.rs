//! The claim while vacuum is held back: rounds of `HELD_SNAPSHOT_TASKS` (default 40,000) `noop`
//! tasks, each enqueued and then drained by one worker with concurrency 10, followed by the
//! pickup latency of 200 tasks 10 ms apart. First `CLEAN_ROUNDS` (2) rounds with nothing held,
//! then `HELD_SNAPSHOT_ROUNDS` (10) while another session keeps a REPEATABLE READ snapshot open
//! (a long report, an `idle in transaction` session, a replica with `hot_standby_feedback`), so
//! that no dead row version of `tasks` can be removed. Prints each round's throughput, pickup
//! p50/p99, the table's dead tuples and sizes, and a `RESULT` line comparing the last held
//! round with the clean ones.
//!
//! Runs in a database of its own on the server `DATABASE_URL` names, dropped at the end.
//!
//! `cargo bench --bench held_snapshot`

use std::time::Duration;

use sqlx::{Connection, PgPool};
use suite::workloads::{self, percentile_ms};

const CONCURRENCY: usize = 10;
const PICKUPS: usize = 200;
const PICKUP_GAP: Duration = Duration::from_millis(10);

fn main() {
    workloads::block_on(run());
}

struct Round {
    throughput: f64,
    p50: f64,
    p99: f64,
}

async fn run() {
    let tasks = workloads::setting("HELD_SNAPSHOT_TASKS", 40_000);
    let clean_rounds = workloads::setting("CLEAN_ROUNDS", 2);
    let held_rounds = workloads::setting("HELD_SNAPSHOT_ROUNDS", 10);
    let (url, server) = workloads::bench_database("held_snapshot");
    let pool = workloads::queue_pool(&url).await;

    let mut clean = Vec::new();
    for i in 1..=clean_rounds {
        clean.push(round(&pool, tasks, &format!("clean {i}")).await);
    }
    // Another session's snapshot, held open through every following round.
    let mut holder = sqlx::PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    sqlx::query("begin isolation level repeatable read")
        .execute(&mut holder)
        .await
        .unwrap_or_else(|e| panic!("begin: {e}"));
    sqlx::query("select count(*) from tasks")
        .execute(&mut holder)
        .await
        .unwrap_or_else(|e| panic!("snapshot: {e}"));
    let mut held = Vec::new();
    for i in 1..=held_rounds {
        held.push(round(&pool, tasks, &format!("held {i}")).await);
    }
    sqlx::query("rollback")
        .execute(&mut holder)
        .await
        .unwrap_or_else(|e| panic!("rollback: {e}"));
    pool.close().await;
    workloads::drop_bench_database(&server, &url).await;

    let mean = |rounds: &[Round], f: fn(&Round) -> f64| {
        rounds.iter().map(f).sum::<f64>() / rounds.len().max(1) as f64
    };
    let (clean_rate, clean_p50) = (mean(&clean, |r| r.throughput), mean(&clean, |r| r.p50));
    if let Some(last) = held.last() {
        println!(
            "RESULT tasks_per_round={tasks} held_rounds={held_rounds} clean_tasks_s={clean_rate:.0} \
             last_held_tasks_s={:.0} ratio={:.2} clean_p50_ms={clean_p50:.3} last_held_p50_ms={:.3} \
             p50_ratio={:.2} last_held_p99_ms={:.3}",
            last.throughput,
            last.throughput / clean_rate,
            last.p50,
            last.p50 / clean_p50,
            last.p99
        );
    }
}

/// One round: enqueue, drain, pickups; prints its line.
async fn round(pool: &PgPool, tasks: usize, label: &str) -> Round {
    workloads::enqueue_noops(pool, tasks).await;
    let drain = workloads::drain(pool, CONCURRENCY).await;
    let throughput = tasks as f64 / drain.as_secs_f64();
    let latencies = workloads::pickup_latencies(pool, PICKUPS, PICKUP_GAP)
        .await
        .latencies;
    let (p50, p99) = (
        percentile_ms(&latencies, 50.0),
        percentile_ms(&latencies, 99.0),
    );
    // The statistics reach the counters within a second of a backend going idle.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (dead, table, claim_index): (i64, i64, i64) = sqlx::query_as(
        "select coalesce((select n_dead_tup from pg_stat_user_tables where relname = 'tasks'), 0), \
                pg_total_relation_size('tasks'), pg_relation_size('tasks_ready')",
    )
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("sizes: {e}"));
    println!(
        "{label}: {tasks} tasks drained at {throughput:.0} tasks/s, pickup p50 {p50:.3} ms p99 \
         {p99:.3} ms; {dead} dead tuples, tasks {:.1} MB (claim index {:.1} MB)",
        table as f64 / 1e6,
        claim_index as f64 / 1e6
    );
    Round {
        throughput,
        p50,
        p99,
    }
}
