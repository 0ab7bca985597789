//! Assembly: `App::build` connects, migrates, binds the listener (port 0 allowed) and wires the
//! API to the DTP client; `run_until_stopped` serves until the shutdown token fires.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use apikit::metrics::{Exposition, HttpMetrics};
use apikit::HttpServer;
use prometheus_client::registry::Registry;
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::scheduler_client::{DtpCallMetrics, SchedulerClient};

/// TaskPilot's migrations, embedded at build time from `migrations/webdb`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations/webdb");

/// The web task database's migrations as the service applies them.
static MIGRATIONS: apikit::db::Migrations = apikit::db::Migrations {
    migrator: &MIGRATOR,
    rewritten: &[],
    concurrent_indexes: &[],
};

/// A built TaskPilot service, ready to run.
pub struct App {
    server: HttpServer,
    pool: PgPool,
}

impl App {
    /// Connects to webdb (creating and migrating it), binds, and wires the DTP client.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        config.validate()?;
        let tokens = config.api_tokens()?;
        let pool = apikit::db::connect_and_migrate(
            &config.database_url,
            None,
            config.db_max_connections,
            config.statement_timeout(),
            config.db_startup_timeout(),
            &MIGRATIONS,
        )
        .await?;
        let (calls, http) = (DtpCallMetrics::default(), HttpMetrics::default());
        let mut registry = Registry::default();
        http.register(&mut registry, "taskpilot");
        calls.register(&mut registry);
        let registry = Arc::new(registry);
        let exposition: Exposition = Arc::new(move || {
            let registry = registry.clone();
            Box::pin(async move { apikit::metrics::encode(&registry) })
        });
        let scheduler = SchedulerClient::new(
            &config.dtp_url,
            config.dtp_connect_timeout(),
            config.dtp_timeout(),
            config.dtp_api_token.clone(),
        )?
        .with_metrics(calls);
        let state = AppState {
            pool: pool.clone(),
            scheduler,
            config: Arc::new(apikit::EdgeConfig {
                max_body_bytes: config.max_body_bytes,
                request_timeout: Duration::from_millis(config.request_timeout_ms),
                tokens,
            }),
            max_payload_bytes: config.max_payload_bytes,
        };
        let metrics = api::MetricsEdge {
            token: config.metrics_token.clone(),
            http,
            exposition,
        };
        tracing::info!(dtp_url = %config.dtp_url, "taskpilot configured");
        Ok(App {
            server: HttpServer::bind(config.addr, api::router(state, metrics)).await?,
            pool,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The webdb pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until `shutdown` fires, then finishes the requests in flight.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = ?self.server.local_addr().ok(), "taskpilot listening");
        let served = self
            .server
            .serve_until(shutdown)
            .await
            .context("HTTP server failed");
        self.pool.close().await;
        served
    }
}
