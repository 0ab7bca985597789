//! Upgrading a live fleet: every DTP migration after 0004 applied to a table of
//! `LIVE_MIGRATION_ROWS` (default 5,000,000) tasks, loaded by SQL, while a worker of the release
//! before 0005 drains due tasks from it. Prints how long the migrations took and the longest
//! any claim or completion of that worker waited meanwhile.
//!
//! Runs in a database of its own on the server `DATABASE_URL` names, dropped at the end.
//!
//! `cargo bench --bench live_migration`

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use suite::workloads;

fn main() {
    workloads::block_on(run());
}

async fn run() {
    let rows: i64 = std::env::var("LIVE_MIGRATION_ROWS").map_or(5_000_000, |v| {
        v.parse()
            .unwrap_or_else(|e| panic!("LIVE_MIGRATION_ROWS={v}: {e}"))
    });
    let (url, server) = workloads::bench_database("live_migration");
    let admin = PgPool::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("server: {e}"));
    let name = url.rsplit('/').next().unwrap_or_default().to_owned();
    sqlx::query(&format!("create database {name}"))
        .execute(&admin)
        .await
        .unwrap_or_else(|e| panic!("create database: {e}"));
    let pool = PgPool::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let before_0005 = Migrator {
        migrations: Cow::Owned(
            dtp::db::MIGRATOR
                .iter()
                .filter(|m| m.version <= 4)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    };
    before_0005
        .run(&pool)
        .await
        .unwrap_or_else(|e| panic!("migrations up to 0004: {e}"));
    println!("loading {rows} tasks (all but 200,000 finished)");
    let loaded = Instant::now();
    let mut from = 1;
    while from <= rows {
        let to = (from + 499_999).min(rows);
        sqlx::query(
            "insert into tasks (type, status, max_attempts, attempt_count, scheduled_for, run_at, \
                                completed_at, result) \
             select 'noop', case when g > $3 then 'PENDING' else 'SUCCEEDED' end, 3, \
                    case when g > $3 then 0 else 1 end, now(), now(), \
                    case when g > $3 then null else now() end, \
                    case when g > $3 then null else '1'::jsonb end \
             from generate_series($1::bigint, $2::bigint) g",
        )
        .bind(from)
        .bind(to)
        .bind(rows - 200_000)
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("load: {e}"));
        from = to + 1;
    }
    sqlx::query("vacuum analyze tasks")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("vacuum: {e}"));
    println!("loaded in {:.0?}", loaded.elapsed());

    let stop = Arc::new(AtomicBool::new(false));
    let worker = tokio::spawn(drain_as_before(pool.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let options = PgConnectOptions::from_str(&url).unwrap_or_else(|e| panic!("url: {e}"));
    let started = Instant::now();
    apikit::db::apply_migrations(&options, &dtp::db::MIGRATIONS)
        .await
        .unwrap_or_else(|e| panic!("migrations: {e:#}"));
    let migrated = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let (claims, longest_claim, longest_completion) =
        worker.await.unwrap_or_else(|e| panic!("worker: {e}"));
    pool.close().await;
    workloads::drop_bench_database(&server, &url).await;

    println!(
        "every migration after 0004 over {rows} tasks: {migrated:.1?}, while a worker made \
         {claims} claims"
    );
    println!(
        "RESULT rows={rows} migrations_s={:.1} claims={claims} longest_claim_ms={:.0} \
         longest_completion_ms={:.0}",
        migrated.as_secs_f64(),
        longest_claim.as_secs_f64() * 1000.0,
        longest_completion.as_secs_f64() * 1000.0
    );
}

/// A worker of the release before 0005: claims 10 due tasks, completes them, again, until
/// `stop`; returns its claims and the longest claim and completion.
async fn drain_as_before(pool: PgPool, stop: Arc<AtomicBool>) -> (u64, Duration, Duration) {
    let (mut claims, mut longest_claim, mut longest_completion) =
        (0, Duration::ZERO, Duration::ZERO);
    while !stop.load(Ordering::SeqCst) {
        let sent = Instant::now();
        let ids: Vec<i64> = sqlx::query_scalar(
            "update tasks set status = 'RUNNING', worker_id = 'old', \
                    attempt_count = attempt_count + 1, processing_started_at = now(), \
                    lease_expires_at = now() + interval '30 s', updated_at = now() \
             where id in (select id from tasks where status = 'PENDING' and run_at <= now() \
                          order by priority desc, run_at, id limit 10 for update skip locked) \
             returning id",
        )
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("claim: {e}"));
        longest_claim = longest_claim.max(sent.elapsed());
        claims += 1;
        let sent = Instant::now();
        sqlx::query(
            "update tasks set status = 'SUCCEEDED', completed_at = now(), \
                    lease_expires_at = null, result = '1', updated_at = now() \
             where id = any($1)",
        )
        .bind(&ids)
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("complete: {e}"));
        longest_completion = longest_completion.max(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (claims, longest_claim, longest_completion)
}
