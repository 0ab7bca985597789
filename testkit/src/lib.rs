//! The test harness: a fresh PostgreSQL database for every test.
//!
//! The server comes from, in order:
//! 1. `DATABASE_URL`, when it is set (any database on the server; tests create their own);
//! 2. a Testcontainers PostgreSQL, when a Docker engine is reachable (one container per test
//!    binary, removed when the binary exits);
//! 3. the local server at `postgres://postgres@127.0.0.1:5432/postgres`;
//! 4. a cluster started from the installed PostgreSQL binaries, shared by the test binaries of
//!    one run and removed after it.
//!
//! Each [`TestDb`] is a new database named `tp_test_…`, dropped when the value is dropped.
//! [`TaskPilotClient`] and [`assert_problem`] are the typed HTTP helpers tests share;
//! [`FaultyProxy`] puts network faults between a process and the database;
//! [`answering_peer`] is a server that answers what no polite server would;
//! [`spawn_dtp_with`] and [`spawn_taskpilot_with`] run the services in the test's process;
//! [`ThrowawayPostgres`] is a whole cluster of the test's own, for tests that crash it;
//! [`OldServer`] is the test server saying it is an older PostgreSQL;
//! [`metrics`] reads a service's `/metrics`.

mod client;
mod install;
pub mod latency;
pub mod metrics;
mod old_server;
mod peer;
mod proxy;
pub mod scenarios;
mod server;
mod services;
mod shared_cluster;
mod throwaway;
mod tools;

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

pub use client::{assert_problem, assert_unavailable, created, header, Sent, TaskPilotClient};
pub use install::{current_uid, is_root};
pub use old_server::OldServer;
pub use peer::{answering_peer, BodyEnd};
pub use proxy::{address_of, FaultyProxy};
pub use server::{server_url, POSTGRES_IMAGE};
pub use services::{dtp_config, spawn_dtp_with, spawn_taskpilot_with, Service};
pub use throwaway::{free_port, ThrowawayPostgres};
pub use tools::{find_program, tool_or_skip};

/// A fresh, empty database on the test server; dropped with the value.
#[derive(Debug)]
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// A URL that connects to it.
    pub url: String,
    admin_url: String,
}

impl TestDb {
    /// Creates a new database with a unique name.
    pub async fn create() -> TestDb {
        let admin_url = server_url().await;
        let name = format!("tp_test_{:016x}", rand::random::<u64>());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server {admin_url}: {e}"));
        sqlx::query(&format!("create database {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let url = with_database(&admin_url, &name);
        TestDb {
            name,
            url,
            admin_url,
        }
    }

    /// A URL for another database name on the same server (for services that create their own).
    pub fn sibling_url(&self, name: &str) -> String {
        with_database(&self.admin_url, name)
    }

    /// A small pool on this database.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop cannot be async, and the test's runtime may be shutting down: use a thread with a
        // runtime of its own. `with (force)` ends connections a test left open.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(&format!("drop database if exists {name} with (force)"))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("testkit: could not drop test database {}", self.name);
        }
    }
}

/// `url` with its database replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|i| start + i))
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Polls `done` every 50 ms until it holds; panics after two minutes (a hang, not a timing
/// goal), naming `what` it waited for.
pub async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_replaced_and_query_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
    }
}
