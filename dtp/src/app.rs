//! Assembly: `App::build` connects, migrates, binds the listener (port 0 allowed) and wires the
//! API and the worker; `run_until_stopped` serves until the shutdown token fires.

use std::sync::Arc;

use anyhow::Context;
use apikit::HttpServer;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::handlers::{HandlerRegistry, HttpHandler};
use crate::worker::{Maintenance, Rescuer, Worker};

/// A built DTP service, ready to run.
pub struct App {
    server: HttpServer,
    worker: Option<Worker>,
    rescuer: Rescuer,
    maintenance: Maintenance,
    pool: PgPool,
}

impl App {
    /// Builds the service with the built-in handlers, the `http` one following
    /// `DTP_HTTP_ALLOW_PRIVATE`.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let registry = HandlerRegistry::with_builtins()
            .register("http", HttpHandler::new(config.http_allow_private));
        Self::build_with_handlers(config, registry).await
    }

    /// Builds the service with the handlers of `registry` (an embedding program's own).
    pub async fn build_with_handlers(
        config: Config,
        registry: HandlerRegistry,
    ) -> anyhow::Result<App> {
        config.validate()?;
        let pool = crate::db::connect_and_migrate(
            &config.database_url,
            config.db_max_connections,
            config.statement_timeout(),
        )
        .await?;
        let worker_config = config.worker_config();
        // Every process rescues, API only or not: a fleet whose only workers died still has its
        // tasks returned to the queue by whatever process is left.
        let rescuer = Rescuer::new(&pool, &worker_config);
        // Every process offers to do the fleet's maintenance; one at a time does it.
        let maintenance = Maintenance::new(&pool, &worker_config.worker_id, config.retention());
        let worker = config
            .worker
            .then(|| Worker::new(pool.clone(), registry.clone(), worker_config));
        let state = AppState {
            pool: pool.clone(),
            registry,
            config: Arc::new(config.api_config()),
        };
        Ok(App {
            server: HttpServer::bind(config.addr, api::router(state)).await?,
            worker,
            rescuer,
            maintenance,
            pool,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The queue database pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves the API and runs the worker until `shutdown` fires, then shuts both down
    /// gracefully (the worker hands unfinished tasks back to the queue).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = ?self.server.local_addr().ok(), worker = self.worker.is_some(), "dtp listening");
        let worker = self.worker.map(|w| tokio::spawn(w.run(shutdown.clone())));
        let rescuer = tokio::spawn(self.rescuer.run(shutdown.clone()));
        let maintenance = tokio::spawn(self.maintenance.run(shutdown.clone()));
        let served = self
            .server
            .serve_until(shutdown.clone())
            .await
            .context("HTTP server failed");
        shutdown.cancel();
        if let Some(worker) = worker {
            worker.await.context("worker task failed")?;
        }
        rescuer.await.context("rescuer task failed")?;
        maintenance.await.context("maintenance task failed")?;
        self.pool.close().await;
        served
    }
}
