//! The installed PostgreSQL binaries, and running them as a user the server accepts: the
//! invoking user, or `postgres` through `runuser` when root (the server refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::Command;

/// What to install when no PostgreSQL binaries are found.
pub const INSTALL_HINT: &str =
    "install PostgreSQL 14 or later (Debian: apt-get install postgresql), start Docker, \
     or set DATABASE_URL";

/// The installed PostgreSQL server binaries.
#[derive(Debug, Clone)]
pub struct Installation {
    bindir: PathBuf,
}

impl Installation {
    /// The binaries found through, in order: `pg_config --bindir`, the newest of
    /// `/usr/lib/postgresql/*/bin` (Debian keeps the server binaries off the `PATH`), the `PATH`.
    pub fn find() -> Result<Installation, String> {
        let from_pg_config = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
        let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
            .unwrap_or_default();
        // Newest major first: "9.6" < "15" compared as numbers.
        debian.sort_by_key(|dir| {
            dir.parent()
                .and_then(Path::file_name)
                .and_then(|name| name.to_str())
                .and_then(|name| name.split('.').next()?.parse::<u32>().ok())
                .unwrap_or(0)
        });
        debian.reverse();
        let on_path = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .unwrap_or_default();
        from_pg_config
            .into_iter()
            .chain(debian)
            .chain(on_path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
            .map(|bindir| Installation { bindir })
            .ok_or_else(|| {
                "no PostgreSQL server binaries (initdb, pg_ctl) found through pg_config, \
                 under /usr/lib/postgresql or on the PATH"
                    .to_owned()
            })
    }

    /// `program` of this installation, run as a user the server accepts.
    pub fn command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// Makes `dir` (new) usable by the user the server runs as.
    pub fn own(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        if is_root() {
            run(Command::new("chown").arg("postgres:").arg(dir))?;
        }
        Ok(())
    }

    /// `initdb` into `data` (trust authentication, superuser `postgres`).
    pub fn init(&self, data: &Path) -> Result<(), String> {
        run(self
            .command("initdb")
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-D"])
            .arg(data))
    }

    /// Starts the cluster in `data` on 127.0.0.1:`port`, its socket and log in `run_dir`, and
    /// waits until it accepts connections.
    pub fn start(&self, data: &Path, run_dir: &Path, port: u16) -> Result<(), String> {
        // fsync off: a test cluster is thrown away, never recovered.
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off",
            run_dir.display()
        );
        run(self
            .command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-o", &options, "-l"])
            .arg(run_dir.join("log"))
            .arg("-D")
            .arg(data))
    }

    /// Stops the cluster in `data` (`mode`: fast or immediate).
    pub fn stop(&self, data: &Path, mode: &str) -> Result<(), String> {
        run(self
            .command("pg_ctl")
            .args(["stop", "-w", "-m", mode, "-D"])
            .arg(data))
    }
}

/// Runs `command`, returning its output as the error when it fails.
pub fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The user this process runs as (`None` when `/proc` cannot be read).
pub fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|me| me.uid()).ok()
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    current_uid() == Some(0)
}
