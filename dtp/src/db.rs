//! Database start-up: create the database if it is missing, connect, migrate.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// How long a request waits for a pooled connection before answering 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates the database of `url` if missing, connects a pool of `max_connections` and applies
/// DTP's migrations (under sqlx's advisory lock, so processes starting together are safe).
pub async fn connect_and_migrate(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url).context("invalid database URL")?;
    create_database_if_missing(&options).await?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .context("connecting to the queue database")?;
    sqlx::migrate!("../migrations/dtp")
        .run(&pool)
        .await
        .context("applying migrations/dtp")?;
    Ok(pool)
}

async fn create_database_if_missing(options: &PgConnectOptions) -> anyhow::Result<()> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("connecting to the server's `postgres` database to check for ours")?;
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
