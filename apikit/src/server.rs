//! A bound HTTP server: both services' `App`s build their router, bind it here (port 0 allowed,
//! the real port reported), and serve it until their shutdown token fires. And the whole of
//! both binaries' `main`.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A router on a bound listener, not serving yet.
pub struct HttpServer {
    listener: TcpListener,
    router: Router,
}

impl HttpServer {
    /// Binds `addr`; the error names it.
    pub async fn bind(addr: SocketAddr, router: Router) -> std::io::Result<HttpServer> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("binding {addr}: {e}")))?;
        Ok(HttpServer { listener, router })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The port actually bound (useful with port 0); 0 if the socket cannot say.
    pub fn port(&self) -> u16 {
        self.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` fires, then finishes the requests in flight.
    pub async fn serve_until(self, shutdown: CancellationToken) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }
}

/// A service binary's `main`: parse the configuration (flags, then environment), then
/// [`run_service`].
pub async fn run_binary<C, A, Built, Ran>(
    build: impl FnOnce(C) -> Built,
    run: impl FnOnce(A, CancellationToken) -> Ran,
) -> anyhow::Result<()>
where
    C: clap::Parser,
    Built: std::future::Future<Output = anyhow::Result<A>>,
    Ran: std::future::Future<Output = anyhow::Result<()>>,
{
    let service = <C as clap::CommandFactory>::command().get_name().to_owned();
    run_service(&service, C::parse(), build, run).await
}

/// Serves `config` as `service`: start logging (and span export), `build` the app, and `run` it
/// until SIGTERM or SIGINT.
pub async fn run_service<C, A, Built, Ran>(
    service: &str,
    config: C,
    build: impl FnOnce(C) -> Built,
    run: impl FnOnce(A, CancellationToken) -> Ran,
) -> anyhow::Result<()>
where
    Built: std::future::Future<Output = anyhow::Result<A>>,
    Ran: std::future::Future<Output = anyhow::Result<()>>,
{
    let _telemetry = crate::init_telemetry(service)?;
    let app = build(config).await?;
    let shutdown = CancellationToken::new();
    crate::cancel_on_signals(shutdown.clone());
    run(app, shutdown).await
}
