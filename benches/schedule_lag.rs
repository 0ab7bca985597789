//! Schedules at scale: `SCHEDULES` (default 5,000) schedules that tick every second, ticked by
//! one DTP process's maintenance for `SCHEDULE_LAG_SECONDS` (default 20) seconds. Prints how late each tick's
//! task was created after its tick (p50, p99, max), how many ticks came of those due, and
//! how many were skipped.
//!
//! Runs in a database of its own on the server `DATABASE_URL` names, dropped at the end.
//!
//! `cargo bench --bench schedule_lag`

use std::time::Duration;

use suite::workloads;

fn main() {
    workloads::block_on(run());
}

async fn run() {
    let schedules = workloads::setting("SCHEDULES", 5_000);
    let seconds = workloads::setting("SCHEDULE_LAG_SECONDS", 20);
    let (url, server) = workloads::bench_database("schedule_lag");
    let pool = workloads::queue_pool(&url).await;
    sqlx::query(
        "insert into schedules (name, cron, timezone, task, next_run_at) \
         select 'every-second-' || g, '* * * * * *', 'UTC', \
                '{\"type\": \"noop\", \"maxAttempts\": 3}', \
                date_trunc('second', now()) + interval '2 seconds' \
         from generate_series(1, $1) g",
    )
    .bind(schedules)
    .execute(&pool)
    .await
    .unwrap_or_else(|e| panic!("schedules: {e}"));
    let first_tick: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select min(next_run_at) from schedules")
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("first tick: {e}"));
    // One process, API only: its maintenance ticks the schedules.
    let (_address, stop) = workloads::spawn_dtp_api(&url).await;
    let window = Duration::from_secs(u64::try_from(seconds).unwrap_or(20));
    tokio::time::sleep(window + Duration::from_secs(2)).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The ticks from the first to a second before the stop: every schedule had each of them
    // due. Each task's tick is in its idempotency key, `schedule:{name}:{tick}`.
    let last_tick: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "select date_trunc('second', max(created_at)) - interval '1 second' from tasks",
    )
    .fetch_one(&pool)
    .await
    .unwrap_or_else(|e| panic!("last tick: {e}"));
    let mut lags: Vec<f64> = sqlx::query_scalar(
        "select (extract(epoch from created_at - tick) * 1000)::float8 from \
         (select created_at, regexp_replace(idempotency_key, '^schedule:[^:]*:', '')::timestamptz as tick \
          from tasks where idempotency_key like 'schedule:%') t \
         where tick <= $1",
    )
    .bind(last_tick)
    .fetch_all(&pool)
    .await
    .unwrap_or_else(|e| panic!("lags: {e}"));
    let ticks = i64::try_from(lags.len()).unwrap_or(i64::MAX);
    let expected = schedules * ((last_tick - first_tick).num_seconds() + 1);
    pool.close().await;
    workloads::drop_bench_database(&server, &url).await;

    let p50 = workloads::percentile(&mut lags, 50.0);
    let p99 = workloads::percentile(&mut lags, 99.0);
    let max = lags.last().copied().unwrap_or_default();
    println!(
        "{schedules} every-second schedules for {seconds} s: {ticks} ticks of {expected} due \
         from each schedule's first to its last"
    );
    println!(
        "RESULT schedules={schedules} ticks={ticks} due={expected} lag_p50_ms={p50:.0} \
         lag_p99_ms={p99:.0} lag_max_ms={max:.0}"
    );
}
