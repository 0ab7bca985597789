//! The standard workload on a big, old table: the drain of 20,000 `noop` tasks with
//! concurrency 10 and the pickup latency of an idle worker, first on an empty table, then on
//! one that already holds `BIG_TABLE_ROWS` (default 5,000,000) finished tasks loaded by SQL;
//! then the time the operator reads take on that table over HTTP (median and slowest of 20):
//! `GET /tasks?status=FAILED&limit=50`, `GET /tasks?queue=queue-7&limit=50`, `GET /queues`, and a
//! create with an idempotency key, new and repeated.
//!
//! Runs in a database of its own on the server `DATABASE_URL` names, dropped at the end unless
//! `BIG_TABLE_KEEP=1` (then it prints its URL, for `EXPLAIN ANALYZE` by hand). Loading takes a
//! few minutes. Prints a `RESULT` line per table.
//!
//! `cargo bench --bench big_table`

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;
use suite::workloads::{self, median_and_max_ms, percentile_ms};

const DRAIN_TASKS: usize = 20_000;
const DRAIN_CONCURRENCY: usize = 10;
const DRAINS: usize = 2;
const LATENCY_TASKS: usize = 500;
const LATENCY_GAP: Duration = Duration::from_millis(10);
const READS: usize = 20;
const STATISTICS_LAG: Duration = Duration::from_secs(11);

fn main() {
    workloads::block_on(run());
}

async fn run() {
    let rows: i64 = match std::env::var("BIG_TABLE_ROWS") {
        Ok(n) => n
            .parse()
            .unwrap_or_else(|e| panic!("BIG_TABLE_ROWS={n}: {e}")),
        Err(_) => 5_000_000,
    };
    let (url, server) = workloads::bench_database("big_table");
    println!("big table on {url}");
    let pool = workloads::queue_pool(&url).await;

    let empty = workload(&pool, "empty table", 0).await;
    workloads::truncate(&pool).await;
    println!("loading {rows} finished tasks");
    workloads::load_finished(&pool, rows).await;
    let loaded: i64 = sqlx::query_scalar("select max(id) from tasks")
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("max id: {e}"));
    let big = workload(&pool, &format!("{rows} finished tasks"), loaded).await;
    let reads = operator_reads(&url).await;
    pool.close().await;

    if std::env::var("BIG_TABLE_KEEP").is_ok_and(|v| v == "1") {
        println!("kept {url}");
    } else {
        workloads::drop_bench_database(&server, &url).await;
    }
    for (table, figures) in [("empty", empty), ("big", big)] {
        println!(
            "RESULT table={table} throughput_tasks_s={:.0} latency_p50_ms={:.3} latency_p99_ms={:.3}",
            figures.throughput, figures.p50, figures.p99
        );
    }
    let reads: Vec<String> = reads
        .iter()
        .map(|(name, median, max)| format!("{name}_ms={median:.2}/{max:.2}"))
        .collect();
    println!("RESULT table=big reads(median/max) {}", reads.join(" "));
}

struct Figures {
    throughput: f64,
    p50: f64,
    p99: f64,
}

/// The drains (the best of [`DRAINS`], since machines drift) and the pickup latencies.
/// Each starts from the table as loaded: the tasks after the id `loaded` (those of the
/// measurement before) are deleted and the table vacuumed, the same way for both tables, so that
/// the two differ only by the finished tasks loaded. (A truncate between the empty table's
/// measurements would also give it indexes that have never been written, which no table in
/// use has: the claim index of a table that ran 40,000 tasks keeps about 240 empty pages after
/// vacuum, which every claim walks.)
async fn workload(pool: &PgPool, table: &str, loaded: i64) -> Figures {
    let mut throughput: f64 = 0.0;
    for _ in 0..DRAINS {
        workloads::enqueue_noops(pool, DRAIN_TASKS).await;
        let before = server_work(pool).await;
        let drain = workloads::drain(pool, DRAIN_CONCURRENCY).await;
        let rate = DRAIN_TASKS as f64 / drain.as_secs_f64();
        println!("{table}: drain of {DRAIN_TASKS} noop tasks, concurrency {DRAIN_CONCURRENCY}: {drain:.2?} = {rate:.0} tasks/s");
        // The server's counters reach the statistics within 10 s of a backend going idle.
        tokio::time::sleep(STATISTICS_LAG).await;
        let after = server_work(pool).await;
        println!(
            "  during it: {:.1} MB of WAL, {} full-page images, {} blocks read from outside shared_buffers, {} found in them",
            (after.wal_bytes - before.wal_bytes) / 1e6,
            after.full_page_images - before.full_page_images,
            after.blocks_read - before.blocks_read,
            after.blocks_hit - before.blocks_hit,
        );
        throughput = throughput.max(rate);
        back_to_loaded(pool, loaded).await;
    }
    let latencies = workloads::pickup_latencies(pool, LATENCY_TASKS, LATENCY_GAP)
        .await
        .latencies;
    let (p50, p99) = (
        percentile_ms(&latencies, 50.0),
        percentile_ms(&latencies, 99.0),
    );
    println!("{table}: pickup latency of {LATENCY_TASKS} tasks {LATENCY_GAP:?} apart: p50 {p50:.3} ms, p99 {p99:.3} ms");
    Figures {
        throughput,
        p50,
        p99,
    }
}

/// What the server did, as its statistics count it: WAL written (cluster-wide), and the
/// blocks this database's backends read from outside `shared_buffers` and found in them.
#[derive(sqlx::FromRow)]
struct ServerWork {
    wal_bytes: f64,
    full_page_images: i64,
    blocks_read: i64,
    blocks_hit: i64,
}

async fn server_work(pool: &PgPool) -> ServerWork {
    sqlx::query_as(
        "select w.wal_bytes::float8 as wal_bytes, w.wal_fpi as full_page_images, \
                d.blks_read as blocks_read, d.blks_hit as blocks_hit \
         from pg_stat_wal w, pg_stat_database d where d.datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("statistics: {e}"))
}

async fn back_to_loaded(pool: &PgPool, loaded: i64) {
    sqlx::query("delete from tasks where id > $1")
        .bind(loaded)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("delete: {e}"));
    sqlx::query("vacuum tasks")
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("vacuum: {e}"));
    let mut conn = pool
        .acquire()
        .await
        .unwrap_or_else(|e| panic!("connection: {e}"));
    dtp::queue::recount(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("recount: {e}"));
}

/// Each operator read, [`READS`] times over HTTP: its name, median and slowest, in ms.
async fn operator_reads(url: &str) -> Vec<(&'static str, f64, f64)> {
    let (address, stop) = workloads::spawn_dtp_api(url).await;
    let client = reqwest::Client::new();
    let mut figures = Vec::new();
    let gets = [
        ("failed_list", "/tasks?status=FAILED&limit=50"),
        ("queue_list", "/tasks?queue=queue-7&limit=50"),
        ("queues", "/queues"),
    ];
    for (name, path) in gets {
        let mut samples = Vec::with_capacity(READS);
        for _ in 0..READS {
            samples.push(timed(client.get(format!("{address}{path}"))).await);
        }
        report(name, &samples, &mut figures);
    }
    for (name, repeat) in [
        ("idempotent_create_new", false),
        ("idempotent_create_repeat", true),
    ] {
        let mut samples = Vec::with_capacity(READS);
        for i in 0..READS {
            let key = if repeat {
                "bench-key".to_owned()
            } else {
                format!("bench-key-{i}")
            };
            let body =
                json!({"type": "noop", "idempotencyKey": key, "runAt": "2100-01-01T00:00:00Z"});
            samples.push(timed(client.post(format!("{address}/tasks")).json(&body)).await);
        }
        report(name, &samples, &mut figures);
    }
    stop.cancel();
    figures
}

/// How long `request` takes to answer with success and its whole body.
async fn timed(request: reqwest::RequestBuilder) -> Duration {
    let started = Instant::now();
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("request: {e}"));
    let status = response.status();
    let body = response
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("answer: {e}"));
    assert!(status.is_success(), "{status}: {body:?}");
    started.elapsed()
}

fn report(name: &'static str, samples: &[Duration], figures: &mut Vec<(&'static str, f64, f64)>) {
    let (median, max) = median_and_max_ms(samples);
    println!(
        "{name}: median {median:.2} ms, slowest {max:.2} ms of {}",
        samples.len()
    );
    figures.push((name, median, max));
}
