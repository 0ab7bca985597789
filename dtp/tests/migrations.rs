//! DTP's migrations applied to a database a live fleet is using: a migration that waits for a
//! lock gives way to claims and tries again, a database that applied the first versions of
//! rewritten migrations is migrated as it is, an index an interrupted build left invalid is
//! built again, and the tasks of a database of the release before are waiting or ready by due
//! time after the ready split.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use testkit::TestDb;

/// DTP's migrations up to `version`: a database as an older release left it.
fn up_to(version: i64) -> Migrator {
    Migrator {
        migrations: Cow::Owned(
            dtp::db::MIGRATOR
                .iter()
                .filter(|m| m.version <= version)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    }
}

async fn database_at(version: i64) -> (TestDb, PgPool) {
    let db = TestDb::create().await;
    let pool = PgPool::connect(&db.url).await.expect("connect");
    up_to(version).run(&pool).await.expect("older migrations");
    (db, pool)
}

async fn migrate(db: &TestDb) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(&db.url).expect("url");
    apikit::db::apply_migrations(&options, &dtp::db::MIGRATIONS).await
}

async fn applied(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("select version from _sqlx_migrations where success order by version")
        .fetch_all(pool)
        .await
        .expect("versions")
}

fn every_version() -> Vec<i64> {
    dtp::db::MIGRATOR.iter().map(|m| m.version).collect()
}

/// A claim as a worker of the release before 0005 made it: 5 due tasks RUNNING.
async fn claim_as_before(pool: &PgPool) {
    sqlx::query(
        "update tasks set status = 'RUNNING', worker_id = 'old', attempt_count = 1, \
                processing_started_at = now(), lease_expires_at = now() + interval '30 s' \
         where id in (select id from tasks where status = 'PENDING' order by id limit 5 \
                      for update skip locked)",
    )
    .execute(pool)
    .await
    .expect("claim");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_waiting_for_a_lock_gives_way_to_claims_and_tries_again() {
    let (db, pool) = database_at(4).await;
    sqlx::query(
        "insert into tasks (type, max_attempts, scheduled_for, run_at) \
         select 'noop', 3, now(), now() from generate_series(1, 5000)",
    )
    .execute(&pool)
    .await
    .expect("tasks");
    // A report reading the table in a transaction that stays open: an `alter table` waits for
    // it, and every claim queued behind a waiting `alter table` would wait as long.
    let mut report = PgPool::connect(&db.url)
        .await
        .expect("connect")
        .begin()
        .await
        .expect("begin");
    sqlx::query("select count(*) from tasks")
        .execute(&mut *report)
        .await
        .expect("read");

    let migrating = tokio::spawn({
        let url = db.url.clone();
        async move {
            let options = PgConnectOptions::from_str(&url).expect("url");
            apikit::db::apply_migrations(&options, &dtp::db::MIGRATIONS).await
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (released, claims) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let claimer = tokio::spawn({
        let (pool, released, claims) = (pool.clone(), released.clone(), claims.clone());
        async move {
            while !released.load(Ordering::SeqCst) {
                claim_as_before(&pool).await;
                if !released.load(Ordering::SeqCst) {
                    claims.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let claims_while_held = claims.load(Ordering::SeqCst);
    released.store(true, Ordering::SeqCst);
    report.commit().await.expect("commit");
    claimer.await.expect("claimer");
    migrating.await.expect("joined").expect("migrated");

    assert!(
        claims_while_held >= 3,
        "{claims_while_held} claims went through while the migration waited"
    );
    assert_eq!(applied(&pool).await, every_version());
}

#[tokio::test]
async fn a_database_that_applied_the_first_versions_of_rewritten_migrations_is_migrated() {
    let (db, pool) = database_at(22).await;
    for (version, old) in dtp::db::MIGRATIONS.rewritten {
        sqlx::query("update _sqlx_migrations set checksum = decode($2, 'hex') where version = $1")
            .bind(version)
            .bind(old)
            .execute(&pool)
            .await
            .expect("first version");
    }

    migrate(&db).await.expect("migrated");

    let stale: i64 = sqlx::query_scalar(
        "select count(*) from _sqlx_migrations m, unnest($1::bigint[], $2::text[]) o(v, sum) \
         where m.version = o.v and encode(m.checksum, 'hex') = o.sum",
    )
    .bind(
        dtp::db::MIGRATIONS
            .rewritten
            .iter()
            .map(|(v, _)| *v)
            .collect::<Vec<_>>(),
    )
    .bind(
        dtp::db::MIGRATIONS
            .rewritten
            .iter()
            .map(|(_, sum)| *sum)
            .collect::<Vec<_>>(),
    )
    .fetch_one(&pool)
    .await
    .expect("checksums");
    assert_eq!(stale, 0, "the first versions' checksums were replaced");
    assert_eq!(applied(&pool).await, every_version());
}

#[tokio::test]
async fn an_index_an_interrupted_build_left_invalid_is_built_again() {
    let (db, pool) = database_at(14).await;
    sqlx::query(
        "insert into tasks (type, queue, max_attempts, scheduled_for, run_at) \
         select 'noop', 'emails', 3, now(), now() from generate_series(1, 2)",
    )
    .execute(&pool)
    .await
    .expect("tasks");
    // A concurrent build that failed half way leaves its index behind, invalid.
    let failed = sqlx::query("create unique index concurrently tasks_queue_id on tasks (queue)")
        .execute(&pool)
        .await;
    assert!(failed.is_err(), "the build should fail on the duplicate");

    migrate(&db).await.expect("migrated");

    let (valid, definition): (bool, String) = sqlx::query_as(
        "select i.indisvalid, pg_get_indexdef(i.indexrelid) from pg_index i \
         join pg_class c on c.oid = i.indexrelid where c.relname = 'tasks_queue_id'",
    )
    .fetch_one(&pool)
    .await
    .expect("index");
    assert!(valid, "{definition}");
    assert!(definition.contains("(queue, id DESC)"), "{definition}");
    assert_eq!(applied(&pool).await, every_version());
}

#[tokio::test]
async fn a_database_of_the_release_before_keeps_its_tasks_waiting_or_ready_by_due_time() {
    let (db, pool) = database_at(22).await;
    let due: Vec<i64> = sqlx::query_scalar(
        "insert into tasks (type, max_attempts, scheduled_for, run_at) \
         select 'noop', 3, now(), now() from generate_series(1, 3) returning id",
    )
    .fetch_all(&pool)
    .await
    .expect("due tasks");
    let later: Vec<i64> = sqlx::query_scalar(
        "insert into tasks (type, max_attempts, scheduled_for, run_at) \
         select 'noop', 3, now() + interval '1 hour', now() + interval '1 hour' \
         from generate_series(1, 2) returning id",
    )
    .fetch_all(&pool)
    .await
    .expect("later tasks");

    migrate(&db).await.expect("migrated");
    let waiting = |id: i64| {
        sqlx::query_scalar::<_, bool>("select waiting from tasks where id = $1")
            .bind(id)
            .fetch_one(&pool)
    };
    for id in &later {
        assert!(waiting(*id).await.expect("task"), "task {id} waits");
    }
    // A process of the release before, still running, writes a task for later without the
    // column: it is not claimed before it is due.
    let old_writer: i64 = sqlx::query_scalar(
        "insert into tasks (type, max_attempts, scheduled_for, run_at) \
         values ('noop', 3, now() + interval '1 hour', now() + interval '1 hour') returning id",
    )
    .fetch_one(&pool)
    .await
    .expect("old writer");
    assert!(!waiting(old_writer).await.expect("task"));

    let types = vec![String::from("noop")];
    let mut conn = pool.acquire().await.expect("connection");
    let claim = dtp::queue::Claim::new("w", &types, 10, Duration::from_secs(30));
    let first = dtp::queue::claim_available(&mut conn, &claim)
        .await
        .expect("claim");
    let mut took: Vec<i64> = first.tasks.iter().map(|t| t.id).collect();
    took.sort_unstable();
    assert_eq!(took, due);
    let mut again = claim;
    again.queues = Some(&first.frontier);
    let second = dtp::queue::claim_available(&mut conn, &again)
        .await
        .expect("claim");
    assert!(
        second.tasks.is_empty() && second.frontier.is_empty(),
        "{second:?}"
    );
}
