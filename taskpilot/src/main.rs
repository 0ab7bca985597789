//! The `taskpilot` binary: read the configuration, start logging, build, run until
//! SIGTERM/SIGINT.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    apikit::run_binary(taskpilot::App::build, taskpilot::App::run_until_stopped).await
}
