//! Configuration: command-line flags with environment fallbacks; `taskpilot --help` lists them.

use std::net::SocketAddr;
use std::time::Duration;

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

    /// Largest request body, in bytes; larger is 413.
    #[arg(long, env = "TASKPILOT_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Requests taking longer are answered 408, in ms (keep it above the DTP timeout).
    #[arg(long, env = "TASKPILOT_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
}

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
        Ok(())
    }
}
