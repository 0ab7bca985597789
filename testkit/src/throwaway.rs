//! A throwaway PostgreSQL cluster the test owns, so that it can crash and restart it: initdb into
//! a temporary directory, start on a free port, `pg_ctl stop -m immediate`, start again.

use std::path::PathBuf;

use crate::install::Installation;

/// A PostgreSQL cluster of the test's own, removed when dropped.
pub struct ThrowawayPostgres {
    installation: Installation,
    dir: PathBuf,
    port: u16,
}

impl ThrowawayPostgres {
    /// Creates and starts a cluster from the installed binaries (as the `postgres` user when
    /// running as root); `None` (the test returns) when there are none outside CI.
    pub fn start() -> Option<ThrowawayPostgres> {
        let cluster = ThrowawayPostgres::initialized()?;
        cluster.start_again();
        Some(cluster)
    }

    /// Creates a cluster without starting it: its URLs lead nowhere until
    /// [`ThrowawayPostgres::start_again`]. `None` as for [`ThrowawayPostgres::start`].
    pub fn initialized() -> Option<ThrowawayPostgres> {
        let installation = crate::tool_or_skip(Installation::find(), "postgresql")?;
        // Not $TMPDIR when root: the server runs as `postgres`, which must reach the directory.
        let temp = if crate::install::is_root() {
            std::path::PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = temp.join(format!(
            "taskpilot-pg-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let cluster = ThrowawayPostgres {
            installation,
            dir,
            port: free_port(),
        };
        cluster
            .installation
            .own(&cluster.dir)
            .and_then(|()| cluster.installation.init(&cluster.data()))
            .unwrap_or_else(|e| panic!("{e}"));
        Some(cluster)
    }

    /// The admin URL (`postgres` database).
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// A URL for database `name` on this cluster.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Crashes it: `pg_ctl stop -m immediate` (no checkpoint, clients cut off).
    pub fn stop_immediately(&self) {
        self.installation
            .stop(&self.data(), "immediate")
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts it (again), waiting until it accepts connections.
    pub fn start_again(&self) {
        self.installation
            .start(&self.data(), &self.dir, self.port)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let _ = self.installation.stop(&self.data(), "fast");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on right now (the OS picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}
