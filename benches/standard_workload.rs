//! The standard workload, for comparing with other queues on the same database in the same run:
//!
//! 1. drain of 20,000 `noop` tasks by one worker with concurrency 10 (from worker start until the
//!    database shows every task finished);
//! 2. pickup latency of an idle worker: 500 tasks created one at a time, 10 ms apart, from just
//!    before the enqueue call to the handler's first line (monotonic clock, one process);
//! 3. bulk enqueue through DTP's API (`POST /tasks/batch`);
//! 4. the drain of (1) with the 20,000 tasks spread over 10 queues, each with `concurrencyLimit`
//!    5: what limits and fair claims across queues cost.
//!
//! Runs against the server `DATABASE_URL` names (default: the local server), in a database of
//! its own that it creates and drops. Prints one `RESULT …` line for (1) to (3), then one for (4).
//!
//! `cargo bench --bench standard_workload`

use std::time::Duration;

use suite::workloads::{self, percentile, percentile_ms};

const DRAIN_TASKS: usize = 20_000;
const DRAIN_CONCURRENCY: usize = 10;
const LATENCY_TASKS: usize = 500;
const LATENCY_GAP: Duration = Duration::from_millis(10);
const ENQUEUE_TASKS: usize = 100_000;
const ENQUEUE_BATCH: usize = 1000;
const ENQUEUE_IN_FLIGHT: usize = 4;
const LIMITED_QUEUES: usize = 10;
const QUEUE_CONCURRENCY_LIMIT: i32 = 5;

fn main() {
    // `cargo bench` passes `--bench`; there is nothing else to parse.
    workloads::block_on(run());
}

async fn run() {
    let (url, server) = workloads::bench_database("bench");
    println!("standard workload on {url}");
    let pool = workloads::queue_pool(&url).await;

    workloads::enqueue_noops(&pool, DRAIN_TASKS).await;
    let drain = workloads::drain(&pool, DRAIN_CONCURRENCY).await;
    let throughput = DRAIN_TASKS as f64 / drain.as_secs_f64();
    println!("drain: {DRAIN_TASKS} noop tasks, concurrency {DRAIN_CONCURRENCY}: {drain:.2?} = {throughput:.0} tasks/s");
    workloads::truncate(&pool).await;

    let mut pickups = workloads::pickup_latencies(&pool, LATENCY_TASKS, LATENCY_GAP).await;
    let (p50, p95, p99) = (
        percentile_ms(&pickups.latencies, 50.0),
        percentile_ms(&pickups.latencies, 95.0),
        percentile_ms(&pickups.latencies, 99.0),
    );
    // What the queue adds once the task is committed: the notification, the claim, the start.
    let after_enqueue: Vec<std::time::Duration> = pickups
        .latencies
        .iter()
        .zip(&pickups.enqueue)
        .map(|(pickup, enqueue)| pickup.saturating_sub(*enqueue))
        .collect();
    println!(
        "pickup after the enqueue call returned: p50 {:.3} ms, p99 {:.3} ms",
        percentile_ms(&after_enqueue, 50.0),
        percentile_ms(&after_enqueue, 99.0)
    );
    println!(
        "pickup latency, {LATENCY_TASKS} tasks {LATENCY_GAP:?} apart: p50 {p50:.3} ms, p95 {p95:.3} ms, p99 {p99:.3} ms \
         (of which the enqueue call, its durable commit: p50 {:.3} ms, p99 {:.3} ms; \
         database processingStartedAt - scheduledFor: p50 {:.3} ms, p99 {:.3} ms)",
        percentile_ms(&pickups.enqueue, 50.0),
        percentile_ms(&pickups.enqueue, 99.0),
        percentile(&mut pickups.db_ms, 50.0),
        percentile(&mut pickups.db_ms, 99.0)
    );
    workloads::truncate(&pool).await;

    let (address, stop) = workloads::spawn_dtp_api(&url).await;
    let enqueue =
        workloads::enqueue_over_http(&address, ENQUEUE_TASKS, ENQUEUE_BATCH, ENQUEUE_IN_FLIGHT)
            .await;
    let enqueue_rate = ENQUEUE_TASKS as f64 / enqueue.as_secs_f64();
    println!(
        "enqueue over HTTP: {ENQUEUE_TASKS} tasks, batches of {ENQUEUE_BATCH}, {ENQUEUE_IN_FLIGHT} in flight: {enqueue:.2?} = {enqueue_rate:.0} tasks/s"
    );
    stop.cancel();
    workloads::truncate(&pool).await;

    let queues: Vec<String> = (0..LIMITED_QUEUES).map(|i| format!("bench-{i}")).collect();
    workloads::limit_queues(&pool, &queues, QUEUE_CONCURRENCY_LIMIT).await;
    workloads::enqueue_noops_across(&pool, DRAIN_TASKS, &queues).await;
    let drain = workloads::drain(&pool, DRAIN_CONCURRENCY).await;
    let limited_throughput = DRAIN_TASKS as f64 / drain.as_secs_f64();
    println!("drain: {DRAIN_TASKS} noop tasks over {LIMITED_QUEUES} queues with concurrencyLimit {QUEUE_CONCURRENCY_LIMIT}, concurrency {DRAIN_CONCURRENCY}: {drain:.2?} = {limited_throughput:.0} tasks/s");
    pool.close().await;

    workloads::drop_bench_database(&server, &url).await;
    println!(
        "RESULT throughput_tasks_s={throughput:.0} latency_p50_ms={p50:.3} latency_p95_ms={p95:.3} latency_p99_ms={p99:.3} enqueue_tasks_s={enqueue_rate:.0}"
    );
    println!(
        "RESULT queues={LIMITED_QUEUES} concurrency_limit={QUEUE_CONCURRENCY_LIMIT} throughput_tasks_s={limited_throughput:.0}"
    );
}
