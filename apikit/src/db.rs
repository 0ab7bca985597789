//! Database plumbing shared by both services: reach the server at start-up (waiting for one that
//! is still starting), refuse one older than [`MIN_SERVER_VERSION`], create the database named
//! in the URL if it is missing, connect a pool, apply the service's migrations; tell "the database is unreachable"
//! (answer 503) from other database errors; decode stored state names strictly.
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
    migrator: &Migrator,
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
    let admin = reach_server(&session, startup_patience).await?;
    create_database_if_missing(admin, &session).await?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .context("connecting to the database")?;
    if session_url.is_some() {
        let mut conn = session
            .connect()
            .await
            .context("connecting to the session database")?;
        migrator
            .run(&mut conn)
            .await
            .context("applying migrations")?;
        let _ = conn.close().await;
    } else {
        migrator.run(&pool).await.context("applying migrations")?;
    }
    Ok(pool)
}

/// A connection to the server's `postgres` database, once the server answers: while it is
/// unreachable or starting up, tries again after growing pauses for `patience`, logging each
/// failure, then gives up with the last error. Any other error (a refused password, TLS
/// required) ends it at once, and so does a server older than [`MIN_SERVER_VERSION`].
pub async fn reach_server(
    options: &PgConnectOptions,
    patience: Duration,
) -> anyhow::Result<PgConnection> {
    let server = format!("{}:{}", options.get_host(), options.get_port());
    let deadline = tokio::time::Instant::now() + patience;
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1u32;
    let admin = loop {
        match options.clone().database("postgres").connect().await {
            Ok(admin) => break admin,
            Err(e) if is_unavailable(&e) && tokio::time::Instant::now() + pause < deadline => {
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
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "connecting to the database server {server} ({attempt} attempt(s) in \
                         {}s)",
                        patience.as_secs()
                    )
                })
            }
        }
    };
    check_server_version(admin.server_version_num(), &server)?;
    Ok(admin)
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
        let _ = admin.close().await;
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
/// 40), too few resources (class 53), or a statement timeout (57014).
pub fn is_transient(error: &sqlx::Error) -> bool {
    is_unavailable(error)
        || matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|code| {
            code.starts_with("40") || code.starts_with("53") || code == "57014"
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
