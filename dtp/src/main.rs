//! The `dtp` binary: read the configuration, start logging, build, run until SIGTERM/SIGINT.

use clap::Parser;
use dtp::{App, Config};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    apikit::init_logging();
    let app = App::build(config).await?;
    let shutdown = CancellationToken::new();
    apikit::cancel_on_signals(shutdown.clone());
    app.run_until_stopped(shutdown).await
}
