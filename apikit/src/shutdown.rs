//! Graceful shutdown: one `CancellationToken` fired by SIGINT or SIGTERM, shared by the server
//! and (in DTP) the worker.

use tokio_util::sync::CancellationToken;

/// Fires `token` on SIGINT (ctrl-c) or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    term.recv().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received: shutting down"),
            _ = terminate => tracing::info!("SIGTERM received: shutting down"),
        }
        token.cancel();
    });
}
