//! The queue database: created if missing and migrated at start-up; and the direct connection
//! for what needs a session of its own when the pool goes through a transaction-mode pooler.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use apikit::db::Migrations;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};

/// DTP's migrations, embedded at build time from `migrations/dtp`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations/dtp");

/// DTP's migrations as a live fleet applies them (see [`apikit::db::apply_migrations`]).
pub static MIGRATIONS: Migrations = Migrations {
    migrator: &MIGRATOR,
    // 0005-0007 built indexes and checked every row in a transaction, and 0011 waited 5 s for
    // its lock: rewritten to build concurrently and wait half a second. The checksums of their
    // first versions:
    rewritten: &[
        (5, "bf1d231d4898419d2188651cbb74b4cd48fb245b425b0a6b0dc066d2ae817932bd10d332ff92170f349e191ca2f29c61"),
        (6, "20486470c63f569ba6cdef2fd8cab9fed542f478d527a8e2433dbdecc2329c51867fe7026383456257525bbf7c3eb41f"),
        (7, "4a2c3a866175fa2657a60579712a2e03c14351fad5c1260c4ab1da22b2e0ba5973a25733e35d8b788c91c2b1f491af8b"),
        (11, "a8d7d1d25137e163ce2dce4f642c41350468fbcddc5de9dd19b3b9cf7d7fa9918f583ce36ef3828072816e379b44daa3"),
    ],
    concurrent_indexes: &[
        "tasks_finished",
        "tasks_queue_id",
        "tasks_claimable_by_queue",
        "tasks_running_lease_by_queue",
        "tasks_canceled_started",
    ],
};

/// Creates the database of `url` if missing, connects and applies DTP's migrations (through
/// `session` when given, waiting `startup_patience` for a server not up yet: see
/// [`apikit::db::connect_and_migrate`]).
pub async fn connect_and_migrate(
    url: &str,
    session: Option<&SessionDatabase>,
    max_connections: u32,
    statement_timeout: Duration,
    startup_patience: Duration,
) -> anyhow::Result<PgPool> {
    let session_url = session.map(|session| session.url.as_str());
    apikit::db::connect_and_migrate(
        url,
        session_url,
        max_connections,
        statement_timeout,
        startup_patience,
        &MIGRATIONS,
    )
    .await
}

/// A direct connection to the queue database, for when the pool goes through a
/// transaction-mode pooler (PgBouncer), which hands each transaction to whichever server
/// connection is free: what needs a session of its own goes here instead. That is the
/// notification listener (a LISTEN lives in its session, and a pooler would pass its
/// notifications to another client), the claim loop (its settings are its session's), the
/// lease heartbeat (it must tell a server that is down from one it cannot reach, and a pooler
/// answers for both alike), the maintenance lead's advisory lock, and migrations.
#[derive(Clone)]
pub struct SessionDatabase {
    url: String,
    options: PgConnectOptions,
}

impl FromStr for SessionDatabase {
    type Err = sqlx::Error;

    /// Parses the direct connection's URL.
    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Ok(SessionDatabase {
            url: url.to_owned(),
            options: PgConnectOptions::from_str(url)?,
        })
    }
}

impl SessionDatabase {
    /// Its connection options.
    pub fn options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// The same connection, its statements cut off after `timeout` (as the pool's are).
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.options = self
            .options
            .options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
        self
    }

    /// Checks that the pool and this connection reach the same database of the same server
    /// (a mistake here would run migrations on one and lose every notification), and warns
    /// when the pool's statements have no timeout: a transaction-mode pooler does not pass on
    /// the one DTP asks for at connect time.
    pub async fn check_against(&self, pool: &PgPool) -> anyhow::Result<()> {
        const WHICH: &str = "select current_database()::text, pg_postmaster_start_time()::text, \
                             current_setting('statement_timeout')";
        let mut direct = self
            .options
            .connect()
            .await
            .context("connecting to DTP_LISTEN_DATABASE_URL")?;
        let (direct_db, direct_start, _): (String, String, String) =
            sqlx::query_as(WHICH).fetch_one(&mut direct).await?;
        let _ = direct.close().await;
        let (pooled_db, pooled_start, timeout): (String, String, String) =
            sqlx::query_as(WHICH).fetch_one(pool).await?;
        anyhow::ensure!(
            (&direct_db, &direct_start) == (&pooled_db, &pooled_start),
            "DTP_LISTEN_DATABASE_URL reaches database {direct_db:?} of a server started at \
             {direct_start}, DTP_DATABASE_URL database {pooled_db:?} of a server started at \
             {pooled_start}: they must reach the same database"
        );
        if timeout == "0" {
            tracing::warn!("statements through DTP_DATABASE_URL have no statement_timeout (a transaction-mode pooler drops the one DTP sets at connect time): set it on the role, e.g. ALTER ROLE dtp SET statement_timeout = '30s'");
        }
        Ok(())
    }

    /// The connection options for a session of its own: the direct connection's when given,
    /// else the pool's.
    pub fn or_pool(session: Option<&SessionDatabase>, pool: &PgPool) -> PgConnectOptions {
        match session {
            Some(session) => session.options.clone(),
            None => pool.connect_options().as_ref().clone(),
        }
    }
}

impl fmt::Debug for SessionDatabase {
    /// Without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionDatabase")
            .field("host", &self.options.get_host())
            .field("port", &self.options.get_port())
            .field("database", &self.options.get_database())
            .finish()
    }
}
