//! A real PgBouncer in transaction mode in front of the test server, started as a child process
//! on a free port and killed when dropped.
//!
//! The binary is `$PGBOUNCER`, else `pgbouncer` on the `PATH` or in `/usr/sbin` (Debian's
//! package), else one `scripts/pgbouncer` built in `~/.cache/taskpilot`. It must be 1.21 or
//! later: before that PgBouncer passed named prepared statements to whichever server connection
//! was free, and sqlx, like most drivers, prepares every statement it runs (`.ci/run` builds Debian trixie's 1.24 source package where the system's
//! is older).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

/// The oldest PgBouncer that keeps prepared statements apart in transaction mode
/// (`max_prepared_statements`).
const OLDEST: (u32, u32) = (1, 21);
/// How long PgBouncer may take to accept connections.
const START_PATIENCE: Duration = Duration::from_secs(10);

pub struct PgBouncer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl PgBouncer {
    /// A PgBouncer new enough for DTP; `None` (the test returns) when there is none outside CI.
    pub fn installed() -> Option<PathBuf> {
        testkit::tool_or_skip(binary(), "pgbouncer")
    }

    /// Starts `binary` (from [`PgBouncer::installed`]) in transaction mode in front of the
    /// server of `server_url`, keeping at most `server_connections` connections to it per
    /// database and user.
    pub async fn start(binary: &Path, server_url: &str, server_connections: u32) -> PgBouncer {
        let server = PgConnectOptions::from_str(server_url)
            .unwrap_or_else(|e| panic!("invalid server URL {server_url}: {e}"));
        let port = testkit::free_port();
        let dir = std::env::temp_dir().join(format!("taskpilot-pgbouncer-{port}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let config = dir.join("pgbouncer.ini");
        // `auth_type = any` with the user in the database line: the test server trusts local
        // connections. sqlx sends `extra_float_digits` and `options` (DTP's statement timeout)
        // at startup, which PgBouncer refuses unless told to ignore them: a pooled connection
        // has no session of its own to keep them (see docs/operations.md, PgBouncer).
        let ini = format!(
            "[databases]\n\
             * = host={host} port={server_port} user={user}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = any\n\
             pool_mode = transaction\n\
             max_prepared_statements = 200\n\
             ignore_startup_parameters = extra_float_digits, options\n\
             default_pool_size = {server_connections}\n\
             max_client_conn = 1000\n\
             server_reset_query =\n",
            host = server.get_host(),
            server_port = server.get_port(),
            user = server.get_username(),
        );
        std::fs::write(&config, ini).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
        let log = dir.join("pgbouncer.log");
        let log_file =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let mut command = Command::new(binary);
        if testkit::is_root() {
            // PgBouncer refuses to run as root.
            command.args(["-u", "nobody"]);
        }
        let child = command
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let bouncer = PgBouncer { child, port, log };
        bouncer.wait_until_accepting().await;
        bouncer
    }

    /// `url` (a database on the server behind it) reached through PgBouncer.
    pub fn url_for(&self, url: &str) -> String {
        let options = PgConnectOptions::from_str(url)
            .unwrap_or_else(|e| panic!("invalid database URL {url}: {e}"));
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            options.get_username(),
            self.port,
            options.get_database().unwrap_or("postgres")
        )
    }

    /// What PgBouncer logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_until_accepting(&self) {
        let deadline = tokio::time::Instant::now() + START_PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "PgBouncer did not start:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PGBOUNCER") {
        let path = PathBuf::from(path);
        return if new_enough(&path) {
            Ok(path)
        } else {
            Err(format!(
                "PGBOUNCER={} is not PgBouncer {}.{} or later (found {:?})",
                path.display(),
                OLDEST.0,
                OLDEST.1,
                version(&path)
            ))
        };
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    // Where scripts/pgbouncer builds one: the user's cache, one directory per version.
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|cache| cache.join("taskpilot"));
    let mut built: Vec<PathBuf> = cache
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| {
            dir.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("pgbouncer-"))
        })
        .collect();
    // Newest version first.
    built.sort();
    built.reverse();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .chain(built)
        .map(|dir| dir.join("pgbouncer"))
        .find(|candidate| candidate.is_file() && new_enough(candidate))
        .ok_or_else(|| {
            format!(
                "no PgBouncer {}.{} or later found (set PGBOUNCER, or run scripts/pgbouncer, \
                 which installs or builds one)",
                OLDEST.0, OLDEST.1
            )
        })
}

/// Its version, from `--version` ("PgBouncer 1.24.1").
fn version(binary: &Path) -> Option<(u32, u32)> {
    let output = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn new_enough(binary: &Path) -> bool {
    version(binary).is_some_and(|version| version >= OLDEST)
}
