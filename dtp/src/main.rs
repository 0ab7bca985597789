//! The `dtp` binary: without a subcommand, read the configuration, start logging, build, and
//! serve until SIGTERM/SIGINT; with one, a client of a running DTP (see `dtp::cli`).

use std::process::ExitCode;

use clap::Parser;
use dtp::cli::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Some(command) => Ok(dtp::cli::run(command).await.into()),
        None => {
            apikit::run_service(
                "dtp",
                cli.serve,
                dtp::App::build,
                dtp::App::run_until_stopped,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
