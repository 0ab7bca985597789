//! The queue database: created if missing and migrated at start-up.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::PgPool;

/// DTP's migrations, embedded at build time from `migrations/dtp`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations/dtp");

/// Creates the database of `url` if missing, connects and applies DTP's migrations.
pub async fn connect_and_migrate(
    url: &str,
    max_connections: u32,
    statement_timeout: Duration,
) -> anyhow::Result<PgPool> {
    apikit::db::connect_and_migrate(url, max_connections, statement_timeout, &MIGRATOR).await
}
