//! Both services in this process, each on an ephemeral port over a fresh database, with
//! settings fast enough for tests. Tests that need their own handlers build a DTP from
//! [`dtp_config`] themselves.

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{TaskPilotClient, TestDb};

/// A running service with its database; stopped when dropped.
pub struct Service {
    /// `http://127.0.0.1:{port}`.
    pub address: String,
    /// The service's database, for looking behind its API (open after the service stops).
    pub pool: PgPool,
    shutdown: CancellationToken,
    pub db: TestDb,
}

impl Service {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Stops serving (and, for DTP, its worker) now.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// A typed TaskPilot client for this service.
    pub fn api(&self) -> TaskPilotClient {
        TaskPilotClient::new(self.address.clone())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// DTP's settings for tests over `db`: any free port, short polls, leases and backoffs.
pub fn dtp_config(db: &TestDb) -> dtp::Config {
    let mut config = dtp::Config::defaults();
    config.addr = "127.0.0.1:0".parse().expect("valid address");
    config.database_url = db.url.clone();
    config.db_max_connections = 10;
    config.concurrency = 8;
    config.poll_interval_ms = 50;
    config.lease_ms = 1000;
    config.heartbeat_ms = Some(200);
    config.rescue_interval_ms = 200;
    config.backoff_base_ms = 20;
    config.backoff_cap_ms = 100;
    config.shutdown_grace_ms = 500;
    config
}

/// DTP with the built-in handlers and [`dtp_config`] that `tweak` adjusts, its worker running.
pub async fn spawn_dtp_with(tweak: impl FnOnce(&mut dtp::Config)) -> Service {
    let db = TestDb::create().await;
    let mut config = dtp_config(&db);
    tweak(&mut config);
    let app = dtp::App::build(config).await.expect("dtp builds");
    let port = app.port();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    Service::running(port, shutdown, db).await
}

/// TaskPilot pointed at `dtp_url` with a 500 ms DTP timeout, settings that `tweak` adjusts.
pub async fn spawn_taskpilot_with(
    dtp_url: &str,
    tweak: impl FnOnce(&mut taskpilot::Config),
) -> Service {
    let db = TestDb::create().await;
    let mut config = taskpilot::Config::defaults();
    config.addr = "127.0.0.1:0".parse().expect("address");
    config.database_url = db.url.clone();
    config.dtp_url = dtp_url.to_owned();
    config.dtp_timeout_ms = 500;
    config.dtp_connect_timeout_ms = 500;
    tweak(&mut config);
    let app = taskpilot::App::build(config)
        .await
        .expect("taskpilot builds");
    let port = app.port();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    Service::running(port, shutdown, db).await
}

impl Service {
    /// The service's pool closes when it stops; tests look behind it through a pool of their
    /// own, which outlives it.
    async fn running(port: u16, shutdown: CancellationToken, db: TestDb) -> Service {
        Service {
            address: format!("http://127.0.0.1:{port}"),
            pool: db.pool().await,
            shutdown,
            db,
        }
    }
}
