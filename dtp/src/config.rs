//! Configuration: command-line flags with environment fallbacks; `dtp --help` lists them all.

use common::limits::MAX_ATTEMPTS;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use apikit::auth::{ApiTokens, Secret};
use apikit::EdgeConfig;
use clap::Parser;

use crate::api::ApiConfig;
use crate::db::SessionDatabase;
use crate::worker::{default_worker_id, Backoff, RetentionPolicy, WorkerConfig};

/// DTP, the execution plane: HTTP API plus workers over one PostgreSQL queue.
#[derive(Debug, Clone, Parser)]
#[command(name = "dtp", version, about)]
pub struct Config {
    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "DTP_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,

    /// The queue database; created if missing, migrated at start-up.
    #[arg(
        long,
        env = "DTP_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/dtp"
    )]
    pub database_url: String,

    /// A direct connection to the same database, when DTP_DATABASE_URL goes through a
    /// transaction-mode pooler (PgBouncer): the notification listener, the claim loop, the
    /// lease heartbeat, the maintenance lead's lock and migrations need a session of their own
    /// and use it.
    #[arg(long, env = "DTP_LISTEN_DATABASE_URL")]
    pub listen_database_url: Option<SessionDatabase>,

    /// Connections in the database pool (a worker keeps two more of its own: claims and
    /// completions).
    #[arg(long, env = "DTP_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,

    /// Connections for operators' reads and bulk actions (task lists and their filters, the
    /// dashboard's lists, failure groups, minute stats), a pool of their own: a filter no index
    /// serves cannot take the connections that creates, the worker and readiness need.
    #[arg(long, env = "DTP_OPERATOR_DB_CONNECTIONS", default_value_t = 4)]
    pub operator_db_connections: u32,

    /// Longest one statement of an operator's read or bulk action may run, in ms; a request
    /// cut off by it is answered 504.
    #[arg(
        long,
        env = "DTP_OPERATOR_STATEMENT_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub operator_statement_timeout_ms: u64,

    /// Run the worker in this process (`false`: API only).
    #[arg(long, env = "DTP_WORKER", default_value_t = true, action = clap::ArgAction::Set)]
    pub worker: bool,

    /// Tasks this process runs at once.
    #[arg(long, env = "DTP_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,

    /// Worker id written on the tasks it runs [default: dtp-{hostname}-{pid}].
    #[arg(long, env = "DTP_WORKER_ID")]
    pub worker_id: Option<String>,

    /// Polling interval for delayed tasks, retries and missed notifications, in ms.
    #[arg(long, env = "DTP_POLL_INTERVAL_MS", default_value_t = 1000)]
    pub poll_interval_ms: u64,

    /// Lease length in ms: a task whose worker stops renewing is rescued this long after.
    #[arg(long, env = "DTP_LEASE_MS", default_value_t = 15_000)]
    pub lease_ms: u64,

    /// How often leases are renewed, in ms [default: a third of the lease].
    #[arg(long, env = "DTP_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,

    /// How often this process rescues tasks with expired leases, in ms.
    #[arg(long, env = "DTP_RESCUE_INTERVAL_MS", default_value_t = 5000)]
    pub rescue_interval_ms: u64,

    /// Retry backoff: ceiling of the first retry's delay, in ms (doubles per attempt).
    #[arg(long, env = "DTP_BACKOFF_BASE_MS", default_value_t = 1000)]
    pub backoff_base_ms: u64,

    /// Retry backoff: longest delay, in ms.
    #[arg(long, env = "DTP_BACKOFF_CAP_MS", default_value_t = 300_000)]
    pub backoff_cap_ms: u64,

    /// `maxAttempts` of a task that names none (1..=100).
    #[arg(long, env = "DTP_DEFAULT_MAX_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(
              i64::from(*MAX_ATTEMPTS.start())..=i64::from(*MAX_ATTEMPTS.end())))]
    pub default_max_attempts: i32,

    /// Execution timeout when neither the task nor its type sets one, in ms.
    #[arg(long, env = "DTP_TASK_TIMEOUT_MS", default_value_t = 300_000)]
    pub task_timeout_ms: u64,

    /// On SIGTERM/SIGINT, how long running handlers may finish before their tasks go back to
    /// the queue, in ms.
    #[arg(long, env = "DTP_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,

    /// Largest request body, in bytes; larger is 413.
    #[arg(long, env = "DTP_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Requests taking longer are answered 408, in ms.
    #[arg(long, env = "DTP_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// Longest any SQL statement may run, in ms.
    #[arg(long, env = "DTP_STATEMENT_TIMEOUT_MS", default_value_t = 30_000)]
    pub statement_timeout_ms: u64,

    /// How long start-up keeps trying to reach a database server that is not up yet, with
    /// growing pauses, before exiting with an error, in ms (0: try once).
    #[arg(long, env = "DTP_DB_STARTUP_TIMEOUT_MS", default_value_t = 60_000)]
    pub db_startup_timeout_ms: u64,

    /// Bearer token required on the API (not on /healthz and /readyz) [default: none, no
    /// authentication, and a warning at start-up].
    #[arg(long, env = "DTP_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<Secret>,

    /// Bearer token required on GET /metrics [default: none, open like /healthz].
    #[arg(long, env = "DTP_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,

    /// Show the dashboard (`/ui`) without any action, and refuse every action sent to it.
    #[arg(long, env = "DTP_UI_READ_ONLY", default_value_t = false, action = clap::ArgAction::Set)]
    pub ui_read_only: bool,

    /// Let the `http` handler call loopback, link-local and private addresses (refused by
    /// default, so that tasks cannot reach the internal network).
    #[arg(long, env = "DTP_HTTP_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub http_allow_private: bool,

    /// How long SUCCEEDED tasks are kept after they finished (`90s`, `15m`, `24h`, `7d`; `0`
    /// keeps them forever).
    #[arg(long, env = "DTP_RETENTION_SUCCEEDED", default_value = "24h")]
    pub retention_succeeded: Retention,

    /// How long FAILED tasks are kept after they finished.
    #[arg(long, env = "DTP_RETENTION_FAILED", default_value = "7d")]
    pub retention_failed: Retention,

    /// How long CANCELED tasks are kept after they were canceled.
    #[arg(long, env = "DTP_RETENTION_CANCELED", default_value = "7d")]
    pub retention_canceled: Retention,
}

/// The longest retention period: 100 years (longer falls out of PostgreSQL's date range).
const MAX_RETENTION_SECONDS: u64 = 100 * 365 * 86_400;

/// A retention period: a whole number of seconds, minutes, hours or days (`90s`, `15m`, `24h`,
/// `7d`), or `0` to keep forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

impl FromStr for Retention {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "0" {
            return Ok(Retention(None));
        }
        let invalid = || {
            format!(
                "{text:?} is not a retention period: write 90s, 15m, 24h, 7d, or 0 to keep forever"
            )
        };
        let mut chars = text.chars();
        let unit_seconds = match chars.next_back() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            _ => return Err(invalid()),
        };
        let count: u64 = chars.as_str().parse().map_err(|_| invalid())?;
        let seconds = count
            .checked_mul(unit_seconds)
            .filter(|seconds| *seconds <= MAX_RETENTION_SECONDS)
            .ok_or_else(|| format!("{text:?} is longer than 100 years: write 0 to keep forever"))?;
        if seconds == 0 {
            return Ok(Retention(None));
        }
        Ok(Retention(Some(Duration::from_secs(seconds))))
    }
}

/// The longest start-up wait for the database server that can be configured: a day.
pub const MAX_DB_STARTUP_TIMEOUT_MS: u64 = 86_400_000;

impl Config {
    /// The defaults, as if no flag or variable were given.
    pub fn defaults() -> Self {
        Config::parse_from(["dtp"])
    }

    /// Refuses settings that cannot work (a lease renewed no faster than it expires, zero
    /// intervals), so that a typo fails at start-up instead of losing leases at run time.
    pub fn validate(&self) -> anyhow::Result<()> {
        let worker = self.worker_config();
        anyhow::ensure!(self.lease_ms > 0, "DTP_LEASE_MS must be positive");
        anyhow::ensure!(
            worker.heartbeat_interval < worker.lease_held() && !worker.heartbeat_interval.is_zero(),
            "DTP_HEARTBEAT_MS ({:?}) must be positive and shorter than four fifths of \
             DTP_LEASE_MS ({:?}): a worker stops its handlers when a renewal is that late",
            worker.heartbeat_interval,
            worker.lease
        );
        anyhow::ensure!(
            self.poll_interval_ms > 0 && self.rescue_interval_ms > 0,
            "DTP_POLL_INTERVAL_MS and DTP_RESCUE_INTERVAL_MS must be positive"
        );
        anyhow::ensure!(
            self.backoff_base_ms <= self.backoff_cap_ms,
            "DTP_BACKOFF_BASE_MS must not exceed DTP_BACKOFF_CAP_MS"
        );
        anyhow::ensure!(
            self.db_max_connections >= 2,
            "DTP_DB_MAX_CONNECTIONS must be at least 2"
        );
        anyhow::ensure!(
            self.operator_db_connections >= 1 && self.operator_statement_timeout_ms >= 1,
            "DTP_OPERATOR_DB_CONNECTIONS and DTP_OPERATOR_STATEMENT_TIMEOUT_MS must be positive"
        );
        anyhow::ensure!(
            self.db_startup_timeout_ms <= MAX_DB_STARTUP_TIMEOUT_MS,
            "DTP_DB_STARTUP_TIMEOUT_MS must be at most {MAX_DB_STARTUP_TIMEOUT_MS} (a day)"
        );
        Ok(())
    }

    /// The statement timeout of the operators' pool.
    pub fn operator_statement_timeout(&self) -> Duration {
        Duration::from_millis(self.operator_statement_timeout_ms)
    }

    /// The statement timeout of every database connection.
    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    /// How long start-up waits for the database server.
    pub fn db_startup_timeout(&self) -> Duration {
        Duration::from_millis(self.db_startup_timeout_ms)
    }

    /// The worker's settings.
    pub fn worker_config(&self) -> WorkerConfig {
        let lease = Duration::from_millis(self.lease_ms);
        WorkerConfig {
            session_database: self
                .listen_database_url
                .clone()
                .map(|session| session.with_statement_timeout(self.statement_timeout())),
            worker_id: self.worker_id.clone().unwrap_or_else(default_worker_id),
            concurrency: self.concurrency.max(1),
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            lease,
            heartbeat_interval: self
                .heartbeat_ms
                .map(Duration::from_millis)
                .unwrap_or(lease / 3),
            rescue_interval: Duration::from_millis(self.rescue_interval_ms),
            backoff: Backoff {
                base: Duration::from_millis(self.backoff_base_ms),
                cap: Duration::from_millis(self.backoff_cap_ms),
            },
            default_timeout: Duration::from_millis(self.task_timeout_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
        }
    }

    /// How long finished tasks are kept. A task canceled while it ran holds its place under
    /// its queue's concurrency limit for a lease after the cancel, so CANCELED tasks are kept
    /// at least that long.
    pub fn retention(&self) -> RetentionPolicy {
        let lease = Duration::from_millis(self.lease_ms);
        RetentionPolicy {
            succeeded: self.retention_succeeded.0,
            failed: self.retention_failed.0,
            canceled: self.retention_canceled.0.map(|period| period.max(lease)),
        }
    }

    /// The API's settings.
    pub fn api_config(&self) -> ApiConfig {
        ApiConfig {
            default_max_attempts: self.default_max_attempts,
            lease: Duration::from_millis(self.lease_ms),
            edge: EdgeConfig {
                max_body_bytes: self.max_body_bytes,
                request_timeout: Duration::from_millis(self.request_timeout_ms),
                tokens: ApiTokens::new(self.api_token.iter().cloned().collect()),
            },
            metrics_token: self.metrics_token.clone(),
            http_metrics: apikit::metrics::HttpMetrics::default(),
            ui: crate::api::UiOptions {
                read_only: self.ui_read_only,
            },
        }
    }
}
