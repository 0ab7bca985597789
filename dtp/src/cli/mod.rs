//! The `dtp` binary's client subcommands: `dtp` alone serves; `dtp tasks …`,
//! `dtp queues …`, `dtp schedules …`, `dtp top` talk to a running DTP over its HTTP API (`--url`,
//! `--token`, env `DTP_URL`, `DTP_API_TOKEN`), printing tables for people or, with `--json`, the
//! API's JSON for scripts; `dtp migrate` migrates a queue database and exits.
//!
//! Exit codes (scripts rely on them, see [`Exit`]): 0 done; 1 DTP refused the request (its
//! problem detail is the one line printed) or the input is bad; 2 the command line is wrong;
//! 3 DTP could not be reached, failed or timed out; `tasks wait` adds 4 (the task FAILED),
//! 5 (CANCELED) and 6 (still running when `--timeout` ran out).

mod client;
mod output;
mod queues;
mod schedules;
mod tasks;
mod top;
mod workers;

use std::process::ExitCode;

use apikit::auth::Secret;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
pub use client::{CliError, Client};

/// DTP, the execution plane: HTTP API plus workers over one PostgreSQL queue. Without a
/// subcommand it serves; with one it is a client of a running DTP.
#[derive(Debug, Parser)]
#[command(name = "dtp", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A client subcommand; none serves.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The service's settings.
    #[command(flatten)]
    pub serve: Config,
}

/// The client subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tasks: list, get, create, cancel, retry, attempts, wait, import.
    Tasks {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: tasks::TasksCommand,
    },
    /// Queues: list, pause, resume, set limits.
    Queues {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: queues::QueuesCommand,
    },
    /// Schedules: list, create, delete.
    Schedules {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: schedules::SchedulesCommand,
    },
    /// Workers: list those seen lately.
    Workers {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: workers::WorkersCommand,
    },
    /// Every queue's counts and rates, redrawn every second until Ctrl-C.
    Top {
        #[command(flatten)]
        remote: Remote,
        #[command(flatten)]
        args: top::TopArgs,
    },
    /// Creates (if missing) and migrates a queue database, then exits.
    Migrate {
        /// The queue database.
        #[arg(
            long,
            env = "DTP_DATABASE_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/dtp"
        )]
        database_url: String,
        /// A direct connection to the same database when `--database-url` goes through a
        /// transaction-mode pooler: migrations run through it (their lock is a session's).
        #[arg(long, env = "DTP_LISTEN_DATABASE_URL")]
        listen_database_url: Option<crate::db::SessionDatabase>,
    },
}

/// Where the DTP is and how to talk to it.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// DTP's base URL.
    #[arg(
        long,
        env = "DTP_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Bearer token, if DTP requires one.
    #[arg(long, env = "DTP_API_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<Secret>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// How a client subcommand ended, as the process's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Done = 0,
    /// 1: DTP refused the request, or the input is bad.
    Refused = 1,
    /// 3: DTP could not be reached, failed, or did not answer in time.
    Unavailable = 3,
    /// 4: `tasks wait`: the task FAILED.
    TaskFailed = 4,
    /// 5: `tasks wait`: the task was CANCELED.
    TaskCanceled = 5,
    /// 6: `tasks wait`: the task had not finished when `--timeout` ran out.
    StillRunning = 6,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// Runs a client subcommand; what it prints goes to stdout, errors (one line) to stderr.
pub async fn run(command: Command) -> Exit {
    let outcome = match command {
        Command::Tasks { remote, command } => match Client::new(&remote) {
            Ok(client) => tasks::run(&client, remote.json, command).await,
            Err(e) => Err(e),
        },
        Command::Queues { remote, command } => match Client::new(&remote) {
            Ok(client) => queues::run(&client, remote.json, command).await,
            Err(e) => Err(e),
        },
        Command::Schedules { remote, command } => match Client::new(&remote) {
            Ok(client) => schedules::run(&client, remote.json, command).await,
            Err(e) => Err(e),
        },
        Command::Workers { remote, command } => match Client::new(&remote) {
            Ok(client) => workers::run(&client, remote.json, command).await,
            Err(e) => Err(e),
        },
        Command::Top { remote, args } => match Client::new(&remote) {
            Ok(client) => top::run(&client, &remote.url, remote.json, args).await,
            Err(e) => Err(e),
        },
        Command::Migrate {
            database_url,
            listen_database_url,
        } => migrate(&database_url, listen_database_url.as_ref()).await,
    };
    match outcome {
        Ok(exit) => exit,
        Err(error) => {
            eprintln!("dtp: {error}");
            error.exit()
        }
    }
}

async fn migrate(
    database_url: &str,
    session: Option<&crate::db::SessionDatabase>,
) -> Result<Exit, CliError> {
    let timeout = std::time::Duration::from_secs(30);
    let pool = crate::db::connect_and_migrate(
        database_url,
        session,
        1,
        timeout,
        std::time::Duration::ZERO,
    )
    .await
    .map_err(|e| CliError::Unavailable(format!("{e:#}")))?;
    pool.close().await;
    println!("migrated {}", redact_password(database_url));
    Ok(Exit::Done)
}

/// `url` without its password, for printing.
fn redact_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
