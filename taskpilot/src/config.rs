//! Configuration: command-line flags with environment fallbacks; `taskpilot --help` lists them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use apikit::auth::{ApiTokens, Secret};
use clap::Parser;

/// TaskPilot, the control plane: web tasks bound to DTP tasks.
#[derive(Debug, Clone, Parser)]
#[command(name = "taskpilot", version, about)]
pub struct Config {
    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "TASKPILOT_ADDR", default_value = "0.0.0.0:8081")]
    pub addr: SocketAddr,

    /// The web task database; created if missing, migrated at start-up.
    #[arg(
        long,
        env = "TASKPILOT_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/webdb"
    )]
    pub database_url: String,

    /// Connections in the database pool.
    #[arg(long, env = "TASKPILOT_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,

    /// Where DTP's API is.
    #[arg(long, env = "DTP_URL", default_value = "http://127.0.0.1:8080")]
    pub dtp_url: String,

    /// Connect timeout for calls to DTP, in ms.
    #[arg(long, env = "TASKPILOT_DTP_CONNECT_TIMEOUT_MS", default_value_t = 1000)]
    pub dtp_connect_timeout_ms: u64,

    /// Whole-request timeout for calls to DTP, in ms; past it the answer is 504.
    #[arg(long, env = "TASKPILOT_DTP_TIMEOUT_MS", default_value_t = 5000)]
    pub dtp_timeout_ms: u64,

    /// Largest payload a web task may have, in bytes of JSON as stored: bind sends it to DTP
    /// with up to 1 KiB besides, which DTP_MAX_BODY_BYTES must allow (both default to 1 MiB).
    #[arg(long, env = "TASKPILOT_MAX_PAYLOAD_BYTES", default_value_t = 1024 * 1024 - 1024)]
    pub max_payload_bytes: usize,

    /// Largest request body, in bytes; larger is 413.
    #[arg(long, env = "TASKPILOT_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Requests taking longer are answered 408, in ms (keep it above the DTP timeout).
    #[arg(long, env = "TASKPILOT_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// Longest any SQL statement may run, in ms.
    #[arg(long, env = "TASKPILOT_STATEMENT_TIMEOUT_MS", default_value_t = 30_000)]
    pub statement_timeout_ms: u64,

    /// How long start-up keeps trying to reach a database server that is not up yet, with
    /// growing pauses, before exiting with an error, in ms (0: try once).
    #[arg(
        long,
        env = "TASKPILOT_DB_STARTUP_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub db_startup_timeout_ms: u64,

    /// Bearer tokens accepted on the API (not on /healthz and /readyz), comma-separated
    /// [default: none; with no token here or in the file, no authentication and a warning].
    #[arg(
        long,
        env = "TASKPILOT_API_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub api_tokens: Vec<Secret>,

    /// A file of accepted bearer tokens, one per line, added to TASKPILOT_API_TOKENS.
    #[arg(long, env = "TASKPILOT_API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,

    /// Bearer token required on GET /metrics [default: none, open like /healthz].
    #[arg(long, env = "TASKPILOT_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,

    /// The bearer token TaskPilot presents to DTP (DTP's own DTP_API_TOKEN).
    #[arg(long, env = "DTP_API_TOKEN", hide_env_values = true)]
    pub dtp_api_token: Option<Secret>,
}

/// The longest start-up wait for the database server that can be configured: a day.
pub const MAX_DB_STARTUP_TIMEOUT_MS: u64 = 86_400_000;

impl Config {
    /// The defaults, as if no flag or variable were given.
    pub fn defaults() -> Self {
        Config::parse_from(["taskpilot"])
    }

    /// Connect timeout for DTP calls.
    pub fn dtp_connect_timeout(&self) -> Duration {
        Duration::from_millis(self.dtp_connect_timeout_ms)
    }

    /// Request timeout for DTP calls.
    pub fn dtp_timeout(&self) -> Duration {
        Duration::from_millis(self.dtp_timeout_ms)
    }

    /// The statement timeout of every database connection.
    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    /// How long start-up waits for the database server.
    pub fn db_startup_timeout(&self) -> Duration {
        Duration::from_millis(self.db_startup_timeout_ms)
    }

    /// The accepted API tokens (`None`: authentication off), read from the variable and the file.
    pub fn api_tokens(&self) -> anyhow::Result<Option<ApiTokens>> {
        let mut tokens = self.api_tokens.clone();
        if let Some(path) = &self.api_tokens_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading TASKPILOT_API_TOKENS_FILE {}", path.display()))?;
            tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(Secret::new),
            );
        }
        Ok(ApiTokens::new(tokens))
    }

    /// Refuses settings that cannot work, so a typo fails at start-up.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.dtp_timeout_ms > 0 && self.dtp_connect_timeout_ms > 0,
            "DTP timeouts must be positive"
        );
        anyhow::ensure!(
            self.request_timeout_ms > self.dtp_timeout_ms,
            "TASKPILOT_REQUEST_TIMEOUT_MS must exceed TASKPILOT_DTP_TIMEOUT_MS, or DTP timeouts would surface as 408 instead of 504"
        );
        reqwest::Url::parse(&self.dtp_url)
            .map_err(|e| anyhow::anyhow!("DTP_URL {:?} is invalid: {e}", self.dtp_url))?;
        anyhow::ensure!(
            self.db_startup_timeout_ms <= MAX_DB_STARTUP_TIMEOUT_MS,
            "TASKPILOT_DB_STARTUP_TIMEOUT_MS must be at most {MAX_DB_STARTUP_TIMEOUT_MS} (a day)"
        );
        Ok(())
    }
}
