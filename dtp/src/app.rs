//! Assembly: `App::build` connects, migrates, binds the listener (port 0 allowed) and wires the
//! API and the worker; `run_until_stopped` serves until the shutdown token fires.

use std::sync::Arc;

use anyhow::Context;
use apikit::metrics::{Exposition, HttpMetrics};
use apikit::HttpServer;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::handlers::{HandlerRegistry, HttpHandler};
use crate::metrics::{DepthGauges, DtpMetrics};
use crate::worker::{Maintenance, Rescuer, Worker};

/// What answers `GET /metrics`: this process's counts, its requests' and the queue's depth
/// (read first, at most once a second).
pub fn exposition(pool: &PgPool, metrics: &DtpMetrics, http: &HttpMetrics) -> Exposition {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    http.register(&mut registry, "dtp");
    let depth = DepthGauges::new(pool.clone(), &mut registry);
    let registry = Arc::new(registry);
    Arc::new(move || {
        let (depth, registry) = (depth.clone(), registry.clone());
        Box::pin(async move {
            depth.refresh().await;
            apikit::metrics::encode(&registry)
        })
    })
}

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
        let metrics = DtpMetrics::default();
        let http = HttpHandler::new(config.http_allow_private).with_metrics(metrics.clone());
        let registry = HandlerRegistry::with_builtins().register("http", http);
        Self::assemble(config, registry, metrics).await
    }

    /// Builds the service with the handlers of `registry` (an embedding program's own).
    pub async fn build_with_handlers(
        config: Config,
        registry: HandlerRegistry,
    ) -> anyhow::Result<App> {
        Self::assemble(config, registry, DtpMetrics::default()).await
    }

    async fn assemble(
        config: Config,
        registry: HandlerRegistry,
        metrics: DtpMetrics,
    ) -> anyhow::Result<App> {
        config.validate()?;
        let pool = crate::db::connect_and_migrate(
            &config.database_url,
            config.listen_database_url.as_ref(),
            config.db_max_connections,
            config.statement_timeout(),
            config.db_startup_timeout(),
        )
        .await?;
        let worker_config = config.worker_config();
        let session = worker_config.session_database.as_ref();
        if let Some(session) = session {
            session.check_against(&pool).await?;
        }
        // Every process rescues, API only or not: a fleet whose only workers died still has its
        // tasks returned to the queue by whatever process is left.
        let rescuer = Rescuer::new(&pool, &worker_config).with_metrics(metrics.clone());
        // Every process offers to do the fleet's maintenance; one at a time does it.
        let maintenance =
            Maintenance::new(&pool, session, &worker_config.worker_id, config.retention())
                .with_metrics(metrics.clone());
        let worker = config.worker.then(|| {
            Worker::with_metrics(
                pool.clone(),
                registry.clone(),
                worker_config,
                metrics.clone(),
            )
        });
        let api_config = config.api_config();
        let exposition = exposition(&pool, &metrics, &api_config.http_metrics);
        let operator_pool = apikit::db::side_pool(
            &pool,
            config.operator_db_connections,
            config.operator_statement_timeout(),
        );
        let state = AppState {
            pool: pool.clone(),
            operator_pool,
            registry,
            config: Arc::new(api_config),
            metrics,
        };
        Ok(App {
            server: HttpServer::bind(config.addr, router(state, exposition)).await?,
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

/// Everything the service answers over HTTP: the API, health routes, `/metrics` (answered by
/// `metrics`), the dashboard at `/ui` (behind its own sign-in), problem-JSON fallbacks, limits,
/// request ids and request logging.
pub fn router(state: AppState, metrics: apikit::metrics::Exposition) -> axum::Router {
    let (config, pool) = (state.config.clone(), state.pool.clone());
    let dashboard = crate::ui::router(state.clone(), config.ui);
    let tasks = api::routes().with_state(state);
    let open = apikit::metrics::metrics_router(metrics, config.metrics_token.clone())
        .nest("/ui", dashboard)
        .route(
            "/ui/",
            axum::routing::get(|| async { axum::response::Redirect::permanent("/ui") }),
        );
    apikit::edge_router("dtp", &config.edge, tasks, open, pool, &config.http_metrics)
}
