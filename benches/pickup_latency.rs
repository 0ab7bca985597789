//! Pickup latency of an idle worker: tasks created one at a time, 10 ms apart; each measured on a
//! monotonic clock from just before the enqueue call to the first line of its handler, in one
//! process. Prints p50/p95/p99, with the database's `processingStartedAt - scheduledFor` beside
//! it; criterion reports the mean per pickup.
//!
//! `cargo bench --bench pickup_latency` (PostgreSQL by the test harness rule).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use suite::workloads::{self, percentile, percentile_ms};
use testkit::TestDb;

const GAP: Duration = Duration::from_millis(10);

fn pickup_latency(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    let db = runtime.block_on(TestDb::create());
    let pool = runtime.block_on(workloads::queue_pool(&db.url));
    let all = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let all_db = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut group = c.benchmark_group("pickup_latency");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("enqueue_to_handler_start", |b| {
        b.to_async(&runtime).iter_custom(|iterations| {
            let (pool, all, all_db) = (pool.clone(), all.clone(), all_db.clone());
            async move {
                let count = usize::try_from(iterations).unwrap_or(usize::MAX);
                workloads::truncate(&pool).await;
                let pickups = workloads::pickup_latencies(&pool, count, GAP).await;
                let total = pickups.latencies.iter().sum();
                all.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(pickups.latencies);
                all_db
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(pickups.db_ms);
                total
            }
        });
    });
    group.finish();
    let samples = all.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut db_ms = all_db.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!(
        "pickup latency over {} tasks: p50 {:.3} ms, p95 {:.3} ms, p99 {:.3} ms; \
         database processingStartedAt - scheduledFor: p50 {:.3} ms, p95 {:.3} ms, p99 {:.3} ms",
        samples.len(),
        percentile_ms(&samples, 50.0),
        percentile_ms(&samples, 95.0),
        percentile_ms(&samples, 99.0),
        percentile(&mut db_ms, 50.0),
        percentile(&mut db_ms, 95.0),
        percentile(&mut db_ms, 99.0),
    );
    runtime.block_on(pool.close());
}

criterion_group!(benches, pickup_latency);
criterion_main!(benches);
