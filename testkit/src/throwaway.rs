//! A throwaway PostgreSQL cluster the test owns, so that it can crash and restart it: initdb into
//! a temporary directory, start on a free port, `pg_ctl stop -m immediate`, start again.

use std::path::PathBuf;
use std::process::Command;

/// A PostgreSQL cluster of the test's own, removed when dropped.
pub struct ThrowawayPostgres {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl ThrowawayPostgres {
    /// Creates and starts a cluster (as the `postgres` user when running as root).
    pub fn start() -> ThrowawayPostgres {
        let bindir = bindir();
        let dir = std::env::temp_dir().join(format!(
            "taskpilot-pg-{}-{:x}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        if is_root() {
            run(Command::new("chown").arg("postgres:").arg(&dir));
        }
        let cluster = ThrowawayPostgres {
            bindir,
            dir,
            port: free_port(),
        };
        run(cluster
            .as_postgres(cluster.bindir.join("initdb"))
            .args(["-U", "postgres", "-A", "trust", "-D"])
            .arg(cluster.data()));
        cluster.start_again();
        cluster
    }

    /// The admin URL (`postgres` database).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A URL for database `name` on this cluster.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Crashes it: `pg_ctl stop -m immediate` (no checkpoint, clients cut off).
    pub fn stop_immediately(&self) {
        run(self
            .as_postgres(self.bindir.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(self.data()));
    }

    /// Starts it (again), waiting until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.display()
        );
        run(self
            .as_postgres(self.bindir.join("pg_ctl"))
            .args(["start", "-w", "-o", &options, "-l"])
            .arg(self.dir.join("log"))
            .arg("-D")
            .arg(self.data()));
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_postgres(&self, program: PathBuf) -> Command {
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let _ = self
            .as_postgres(self.bindir.join("pg_ctl"))
            .args(["stop", "-m", "fast", "-D"])
            .arg(self.data())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The newest installed PostgreSQL's binaries.
fn bindir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .filter(|dir| dir.join("pg_ctl").exists())
        .unwrap_or_else(|| {
            panic!("no PostgreSQL binaries under /usr/lib/postgresql (apt-get install postgresql)")
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A port nothing listens on right now (the OS picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}
