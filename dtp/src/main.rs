//! The `dtp` binary: read the configuration, start logging, build, run until SIGTERM/SIGINT.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    apikit::run_binary(dtp::App::build, dtp::App::run_until_stopped).await
}
