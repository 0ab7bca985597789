//! The queue database: created if missing and migrated at start-up; and the direct connection
//! for what needs a session of its own when the pool goes through a transaction-mode pooler.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

/// DTP's migrations, embedded at build time from `migrations/dtp`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations/dtp");

/// Creates the database of `url` if missing, connects and applies DTP's migrations (through
/// `session` when given, see [`apikit::db::connect_and_migrate`]).
pub async fn connect_and_migrate(
    url: &str,
    session: Option<&SessionDatabase>,
    max_connections: u32,
    statement_timeout: Duration,
) -> anyhow::Result<PgPool> {
    let session_url = session.map(|session| session.url.as_str());
    apikit::db::connect_and_migrate(
        url,
        session_url,
        max_connections,
        statement_timeout,
        &MIGRATOR,
    )
    .await
}

/// A direct connection to the queue database, for when the pool goes through a
/// transaction-mode pooler (PgBouncer), which hands each transaction to whichever server
/// connection is free: what needs a session of its own goes here instead. That is the
/// notification listener (a LISTEN lives in its session, and a pooler would pass its
/// notifications to another client), the maintenance lead's advisory lock, and migrations.
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
