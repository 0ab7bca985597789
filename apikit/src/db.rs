//! Database plumbing shared by both services: reach the server at start-up (waiting for one that
//! is still starting), refuse one older than [`MIN_SERVER_VERSION`], create the database named
//! in the URL if it is missing, connect a pool, apply the service's migrations; tell "the
//! database is unreachable" (answer 503) from other database errors; decode stored state names
//! strictly.
//!
//! It knows no service's schema: each passes its own embedded `Migrator`.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// How long a request waits for a pooled connection before the service answers 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The oldest PostgreSQL the services run on (`server_version_num`): the schema and the
/// sessions use `idle_session_timeout`, `plan_cache_mode` and `drop database … with (force)`,
/// and the autovacuum insert thresholds, all new in 13 or 14.
pub const MIN_SERVER_VERSION: u32 = 140_000;

/// The first and the longest pause between start-up connection attempts.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// Creates the database of `url` if missing, connects a pool of `max_connections` whose
/// statements are cut off after `statement_timeout`, and applies `migrator` (under sqlx's
/// advisory lock, so processes starting together are safe).
///
/// `session_url`, when given, is a direct connection to the same database, for when `url`
/// goes through a transaction-mode pooler (PgBouncer): the database is created and migrated
/// through it, since the migration lock is held by a session and a pooler hands each
/// transaction to whichever server connection is free.
///
/// A server that cannot be reached yet is tried again, with growing pauses, for
/// `startup_patience` (zero: once); see [`reach_server`].
pub async fn connect_and_migrate(
    url: &str,
    session_url: Option<&str>,
    max_connections: u32,
    statement_timeout: Duration,
    startup_patience: Duration,
    migrations: &Migrations,
) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .context("invalid database URL")?
        .options([(
            "statement_timeout",
            format!("{}ms", statement_timeout.as_millis()),
        )]);
    let session = match session_url {
        Some(session_url) => {
            PgConnectOptions::from_str(session_url).context("invalid session database URL")?
        }
        None => options.clone(),
    };
    reach_server(&session, startup_patience).await?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .context("connecting to the database")?;
    apply_migrations(&session, migrations).await?;
    Ok(pool)
}

/// Waits until the server of `options` answers, then checks its version and creates the
/// service's database when it is missing. While the server is unreachable, starting up or
/// full, each attempt is logged and tried again after a growing pause, for `patience` in all;
/// one attempt is cut off after [`ATTEMPT_TIMEOUT`] (or what is left of a non-zero `patience`,
/// at least a second), so a server that never answers cannot hang start-up. Any other error (a refused
/// password, TLS the server cannot do, a pooler that knows no such database) ends it at once,
/// and so does a server older than [`MIN_SERVER_VERSION`].
pub async fn reach_server(options: &PgConnectOptions, patience: Duration) -> anyhow::Result<()> {
    let server = format!("{}:{}", options.get_host(), options.get_port());
    let start = tokio::time::Instant::now();
    // A wait too long for the clock is no deadline at all.
    let deadline = start.checked_add(patience);
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1u32;
    loop {
        let left = deadline.map_or(ATTEMPT_TIMEOUT, |deadline| {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        });
        // The last attempt of a wait still gets a second, and one with no wait at all (try
        // once) the whole attempt's time.
        let limit = if patience.is_zero() {
            ATTEMPT_TIMEOUT
        } else {
            left.clamp(Duration::from_secs(1), ATTEMPT_TIMEOUT)
        };
        let outcome = match tokio::time::timeout(limit, first_contact(options, &server)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Contact::NotUp(format!(
                "no answer within {}s",
                limit.as_secs()
            ))),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(Contact::Refused(e)) => return Err(e),
            Err(Contact::NotUp(e))
                if deadline
                    .is_none_or(|deadline| tokio::time::Instant::now() + pause < deadline) =>
            {
                tracing::warn!(
                    %server,
                    attempt,
                    error = %e,
                    retry_in_ms = pause.as_millis() as u64,
                    "the database server is not reachable yet; trying again"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
                attempt += 1;
            }
            Err(Contact::NotUp(e)) => anyhow::bail!(
                "cannot reach the database server {server}: {e} ({attempt} attempt(s) in {} ms)",
                start.elapsed().as_millis()
            ),
        }
    }
}

/// How long one start-up connection attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a start-up attempt failed.
enum Contact {
    /// The server cannot be reached yet: worth trying again.
    NotUp(String),
    /// It answered, and no retry will change its answer.
    Refused(anyhow::Error),
}

/// One attempt: a connection to the service's database, or, when that database does not exist
/// yet, to the server's `postgres` database to create it; the server's version checked first.
async fn first_contact(options: &PgConnectOptions, server: &str) -> Result<(), Contact> {
    let classify = |e: sqlx::Error, what: &str| {
        if is_not_up(&e) {
            Contact::NotUp(e.to_string())
        } else {
            Contact::Refused(anyhow::Error::new(e).context(format!("{what} on {server}")))
        }
    };
    match options.connect().await {
        Ok(conn) => {
            let checked = check_server_version(conn.server_version_num(), server);
            let _ = conn.close().await;
            checked.map_err(Contact::Refused)
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            let admin = options
                .clone()
                .database("postgres")
                .connect()
                .await
                .map_err(|e| classify(e, "connecting to the `postgres` database to create ours"))?;
            check_server_version(admin.server_version_num(), server).map_err(Contact::Refused)?;
            create_database_if_missing(admin, options)
                .await
                .map_err(Contact::Refused)
        }
        Err(e) => Err(classify(e, "connecting to the database")),
    }
}

/// Whether a connection attempt failed because the server is not up (yet): nothing answers,
/// the connection broke (also mid-handshake, which sqlx reports as a protocol error: a proxy in
/// front of a server not listening yet, such as Docker's, accepts and then closes), it is
/// starting up or shutting down, or it has no free connection.
fn is_not_up(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            matches!(
                code.as_ref(),
                "57P01" | "57P02" | "57P03" | "08001" | "08006" | "53300"
            )
        }),
        _ => false,
    }
}

/// Refuses a server older than [`MIN_SERVER_VERSION`], naming both versions. A server that
/// reports no version (not PostgreSQL) is refused too.
pub fn check_server_version(reported: Option<u32>, server: &str) -> anyhow::Result<()> {
    match reported {
        Some(version) if version >= MIN_SERVER_VERSION => Ok(()),
        Some(version) => anyhow::bail!(
            "the database server {server} runs PostgreSQL {}, older than the oldest supported, \
             PostgreSQL {}: upgrade the server",
            version_name(version),
            version_name(MIN_SERVER_VERSION)
        ),
        None => anyhow::bail!(
            "the database server {server} reported no server_version; PostgreSQL {} or later is \
             required",
            version_name(MIN_SERVER_VERSION)
        ),
    }
}

/// `server_version_num` as people write it: 130011 → "13.11", 90624 → "9.6.24".
fn version_name(version: u32) -> String {
    if version >= 100_000 {
        format!("{}.{}", version / 10_000, version % 10_000)
    } else {
        format!(
            "{}.{}.{}",
            version / 10_000,
            version / 100 % 100,
            version % 100
        )
    }
}

async fn create_database_if_missing(
    mut admin: PgConnection,
    options: &PgConnectOptions,
) -> anyhow::Result<()> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if exists {
        return Ok(());
    }
    let create = format!("create database \"{}\"", name.replace('"', "\"\""));
    match sqlx::query(&create).execute(&mut admin).await {
        Ok(_) => {
            tracing::info!(database = %name, "database created");
            Ok(())
        }
        // Another process created it between our check and our create.
        Err(sqlx::Error::Database(e))
            if matches!(e.code().as_deref(), Some("42P04") | Some("23505")) =>
        {
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("creating database {name}")),
    }
}

/// A second pool to the database of `pool`, of at most `max_connections`, whose statements are
/// cut off after `statement_timeout`: for work that must not take the connections everything
/// else needs (an operator's reads, whose filters no index may serve). It connects on first
/// use, and a request that finds all its connections busy waits as long as the main pool's.
pub fn side_pool(pool: &PgPool, max_connections: u32, statement_timeout: Duration) -> PgPool {
    // The later `-c statement_timeout` of the startup options wins over the pool's own.
    let options = pool.connect_options().as_ref().clone().options([(
        "statement_timeout",
        format!("{}ms", statement_timeout.as_millis()),
    )]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(options)
}

/// Whether `error` means "the database cannot be reached right now" (answer 503, retry later) as
/// opposed to a failing statement (a bug: 500).
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // class 08 connection exceptions; 57P01..03 admin/crash shutdown, cannot connect now
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// Whether `error` is PostgreSQL refusing a value (SQLSTATE class 22, data exception: a NUL in
/// text or JSON, an out-of-range number): the client sent it, so it is a 4xx, not a 500.
pub fn is_invalid_data(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|code| code.starts_with("22")))
}

/// Whether `error` is the server itself saying it is not running: the connection was refused
/// (nothing listens on its port) or it is starting up or recovering (SQLSTATE 57P03, but not
/// "shutting down"). Either way every session it had is gone, so no other process can be acting
/// through it now.
///
/// A firewall that rejects (rather than drops) packets also makes a connection refused; see the
/// docs/guarantees.md for what that means for leases.
pub fn is_server_down(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        // Not "shutting down": a smart shutdown refuses new sessions but lets the old ones,
        // other processes' among them, go on working.
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("57P03") && !db.message().contains("shutting down")
        }
        _ => false,
    }
}

/// Whether a statement that failed with `error` may succeed if simply run again: the database
/// was unreachable or busy (see [`is_unavailable`]), a serialization failure or deadlock (class
/// 40), too few resources (class 53), a lock not granted in time (55P03), or a statement
/// timeout (57014).
pub fn is_transient(error: &sqlx::Error) -> bool {
    is_unavailable(error)
        || matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|code| {
            code.starts_with("40") || code.starts_with("53") || code == "55P03" || code == "57014"
        }))
}

/// Decodes a text column that holds one of a closed set of names (a state) into its value,
/// matching the stored name exactly. Anything else is a decode error, surfaced loudly (a `500`
/// logged in full, a worker's failed statement): a value the code does not know is never
/// read as another.
pub fn decode_known<T: Copy>(
    value: sqlx::postgres::PgValueRef<'_>,
    known: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<T, sqlx::error::BoxDynError> {
    let stored = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
    known
        .iter()
        .copied()
        .find(|candidate| name(*candidate) == stored)
        .ok_or_else(|| format!("unknown stored value {stored:?}").into())
}

/// A service's migrations, and what applying them to a live fleet must know of their history.
pub struct Migrations {
    /// The migrations, embedded at build time.
    pub migrator: &'static Migrator,
    /// Migrations rewritten since fleets applied them (to build indexes concurrently, say), with
    /// the checksum they were applied under (hex SHA-384): the schema either version leaves is
    /// the same, so a database that applied the old one is taken as having applied the new.
    pub rewritten: &'static [(i64, &'static str)],
    /// The indexes the migrations build concurrently. A build that fails (a lock not granted,
    /// the process killed) leaves its index invalid, which `create index concurrently if not
    /// exists` would then skip: such an index, of these names only, is dropped before the next
    /// try.
    pub concurrent_indexes: &'static [&'static str],
}

/// How long a migration in a transaction waits for a lock before it gives up and is tried again
/// later. While an `alter table` waits for its table's exclusive lock, every statement that
/// touches the table queues behind it: this bounds how long a live fleet's claims and renewals
/// wait.
const MIGRATION_LOCK_WAIT: &str = "500ms";
/// Tries of the migrations, with growing pauses (500 ms doubling to 5 s): about ten minutes of
/// a lock held elsewhere before start-up fails, saying so.
const MIGRATION_TRIES: u32 = 125;
/// The session advisory lock that lets one process at a time apply migrations (the invalid
/// index clean-up included). Arbitrary, fixed: "TPMI".
const MIGRATION_LOCK: i64 = 0x5450_4d49;

/// Applies `migrations` through a connection of its own (`options`, without a statement
/// timeout: an index built concurrently over a big table takes minutes), one process at a time
/// (a session advisory lock, waited for as long as another process migrates). A migration in
/// a transaction that did not get a lock in [`MIGRATION_LOCK_WAIT`] is undone and tried again
/// after a pause; what committed before it stays.
pub async fn apply_migrations(
    options: &PgConnectOptions,
    migrations: &Migrations,
) -> anyhow::Result<()> {
    let options = options.clone().options([("statement_timeout", "0")]);
    let mut pause = Duration::from_millis(500);
    let mut tries = 0;
    loop {
        tries += 1;
        let mut conn = options
            .connect()
            .await
            .context("connecting to apply migrations")?;
        let applied = migrate_once(&mut conn, migrations).await;
        let _ = conn.close().await;
        match applied {
            Err(e) if tries < MIGRATION_TRIES && waited_for_lock(&e) => {
                tracing::warn!(error = %e, pause = ?pause, "a migration did not get its lock in time (a long transaction holds the table?); trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
            Err(e) => return Err(anyhow::Error::new(e).context("applying migrations")),
            Ok(()) => return Ok(()),
        }
    }
}

async fn migrate_once(
    conn: &mut PgConnection,
    migrations: &Migrations,
) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::query("select pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let invalid: Vec<String> = sqlx::query_scalar(
        "select format('%I.%I', n.nspname, c.relname) from pg_index i \
         join pg_class c on c.oid = i.indexrelid join pg_namespace n on n.oid = c.relnamespace \
         where not i.indisvalid and n.nspname = current_schema() and c.relname = any($1)",
    )
    .bind(migrations.concurrent_indexes)
    .fetch_all(&mut *conn)
    .await?;
    for index in invalid {
        tracing::warn!(%index, "dropping an index an interrupted build left invalid; it is built again");
        sqlx::query(&format!("drop index concurrently if exists {index}"))
            .execute(&mut *conn)
            .await?;
    }
    let recorded: bool = sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null")
        .fetch_one(&mut *conn)
        .await?;
    if recorded {
        for (version, old) in migrations.rewritten {
            let Some(new) = migrations.migrator.iter().find(|m| m.version == *version) else {
                continue;
            };
            sqlx::query(
                "update _sqlx_migrations set checksum = $3 \
                 where version = $1 and encode(checksum, 'hex') = $2",
            )
            .bind(version)
            .bind(old)
            .bind(new.checksum.as_ref())
            .execute(&mut *conn)
            .await?;
        }
    }
    apply_pending(conn, migrations.migrator).await
}

/// What sqlx's `Migrator::run` does, with a lock timeout per migration: a migration in a
/// transaction (an `alter table` among them) waits [`MIGRATION_LOCK_WAIT`] for its locks at
/// most, while one outside a transaction (an index built concurrently, which blocks no write)
/// waits as long as it takes for the transactions older than its build to end.
async fn apply_pending(
    conn: &mut PgConnection,
    migrator: &Migrator,
) -> Result<(), sqlx::migrate::MigrateError> {
    use sqlx::migrate::{Migrate, MigrateError};
    conn.ensure_migrations_table().await?;
    if let Some(version) = conn.dirty_version().await? {
        return Err(MigrateError::Dirty(version));
    }
    let applied: std::collections::HashMap<i64, Vec<u8>> = conn
        .list_applied_migrations()
        .await?
        .into_iter()
        .map(|m| (m.version, m.checksum.into_owned()))
        .collect();
    if let Some(unknown) = applied
        .keys()
        .find(|version| !migrator.iter().any(|m| m.version == **version))
    {
        return Err(MigrateError::VersionMissing(*unknown));
    }
    for migration in migrator.iter() {
        if migration.migration_type.is_down_migration() {
            continue;
        }
        match applied.get(&migration.version) {
            Some(checksum) if *checksum != *migration.checksum => {
                return Err(MigrateError::VersionMismatch(migration.version));
            }
            Some(_) => {}
            None => {
                let wait = if migration.no_tx {
                    "0"
                } else {
                    MIGRATION_LOCK_WAIT
                };
                sqlx::query("select set_config('lock_timeout', $1, false)")
                    .bind(wait)
                    .execute(&mut *conn)
                    .await?;
                conn.apply(migration).await?;
            }
        }
    }
    Ok(())
}

/// Whether a migration failed for want of a lock in [`MIGRATION_LOCK_WAIT`].
fn waited_for_lock(error: &sqlx::migrate::MigrateError) -> bool {
    use sqlx::migrate::MigrateError;
    let database = match error {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => e,
        _ => return false,
    };
    matches!(database, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_older_than_the_minimum_is_refused_with_both_versions() {
        let refused = check_server_version(Some(130_011), "db:5432").expect_err("13 refused");
        let message = refused.to_string();
        assert!(message.contains("PostgreSQL 13.11"), "{message}");
        assert!(message.contains("PostgreSQL 14.0"), "{message}");
        assert!(message.contains("db:5432"), "{message}");
        assert!(check_server_version(Some(90_624), "db")
            .expect_err("9.6 refused")
            .to_string()
            .contains("9.6.24"));
        assert!(check_server_version(None, "db").is_err());
    }

    #[test]
    fn the_minimum_and_newer_servers_are_accepted() {
        for version in [140_000, 150_019, 170_002, 180_000] {
            check_server_version(Some(version), "db").expect("supported");
        }
    }
}
