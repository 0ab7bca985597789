//! Worker throughput: N `noop` tasks enqueued in bulk, then one worker drains them; timed from
//! worker start until the database shows every task finished. Concurrency 1, 10 and 50.
//!
//! `cargo bench --bench worker_throughput` (PostgreSQL by the test harness rule).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use suite::workloads;
use testkit::TestDb;

const TASKS: usize = 5000;

fn worker_throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    let db = runtime.block_on(TestDb::create());
    let pool = runtime.block_on(workloads::queue_pool(&db.url));
    let mut group = c.benchmark_group("worker_throughput");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(TASKS as u64));
    for concurrency in [1, 10, 50] {
        group.bench_with_input(
            BenchmarkId::new("drain_noop", concurrency),
            &concurrency,
            |b, &concurrency| {
                b.to_async(&runtime).iter_custom(|iterations| {
                    let pool = pool.clone();
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iterations {
                            workloads::truncate(&pool).await;
                            workloads::enqueue_noops(&pool, TASKS).await;
                            total += workloads::drain(&pool, concurrency).await;
                        }
                        total
                    }
                });
            },
        );
    }
    group.finish();
    runtime.block_on(pool.close());
}

criterion_group!(benches, worker_throughput);
criterion_main!(benches);
