//! A PostgreSQL cluster started from the installed binaries when no server is reachable, shared
//! by the test binaries of one run and removed after it.
//!
//! A run is the process that started the test binaries (`cargo test`, `cargo nextest`): its pid
//! names a directory, in a directory of the user's own in `/tmp`, holding the cluster, its port
//! and one file per test process using it. The first test process to arrive starts the cluster and a watchdog,
//! in a process group of its own so that Ctrl-C on the run does not kill it before it cleans
//! up. The watchdog stops the cluster and removes the directory once the run has exited and no
//! test process remains; when the run is not cargo's (a test binary started by hand from a
//! shell, which lives on), also once none has used it for [`IDLE_SECONDS`]. Arriving and stopping take the same file lock,
//! so a test process never joins a cluster that is being stopped.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::install::Installation;

/// How long the cluster outlives its last test process while a run that is not cargo's lives
/// on.
const IDLE_SECONDS: u32 = 30;

/// Stops the cluster once its run is over; see the module's documentation.
const WATCHDOG: &str = r#"
base=$1; lock=$2; parent=$3; idle_limit=$4; shift 4
someone_alive() {
  alive=1
  for f in "$base"/users/*; do
    [ -e "$f" ] || continue
    if kill -0 "${f##*/}" 2>/dev/null; then alive=0; else rm -f "$f"; fi
  done
  return $alive
}
idle=0
while :; do
  sleep 1
  if someone_alive; then idle=0; continue; fi
  idle=$((idle + 1))
  if kill -0 "$parent" 2>/dev/null; then
    if [ "$idle_limit" = 0 ] || [ "$idle" -lt "$idle_limit" ]; then continue; fi
  fi
  exec 9>>"$lock"
  flock 9
  if someone_alive; then exec 9>&-; idle=0; continue; fi
  "$@" >/dev/null 2>&1
  rm -rf "$base"
  rm -f "$lock"
  exit 0
done
"#;

/// The admin URL of the run's cluster, started now if this is the run's first test process.
pub fn join() -> Result<String, String> {
    let installation = Installation::find()?;
    let run = std::os::unix::process::parent_id();
    let base = own_directory()?.join(format!("run-{run}"));
    let lock_path = base.with_extension("lock");
    let _lock = lock(&lock_path)?;
    let port = match running_port(&base)? {
        Some(port) => port,
        None => start(&installation, &base, &lock_path, run)?,
    };
    let users = base.join("users");
    std::fs::create_dir_all(&users).map_err(|e| format!("mkdir {}: {e}", users.display()))?;
    std::fs::write(users.join(std::process::id().to_string()), b"")
        .map_err(|e| format!("cannot register in {}: {e}", users.display()))?;
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

/// `/tmp/taskpilot-tests-<uid>`, made by this user and refused when another made it (it could
/// point this run at a server of theirs). Mode 0711: the server, running as `postgres` when
/// the tests run as root, must reach the cluster inside.
fn own_directory() -> Result<PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let uid = crate::current_uid().ok_or("cannot tell this process's user from /proc/self")?;
    let dir = PathBuf::from(format!("/tmp/taskpilot-tests-{uid}"));
    match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("mkdir {}: {e}", dir.display())),
    }
    let found = std::fs::symlink_metadata(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if !found.is_dir() || found.uid() != uid {
        return Err(format!(
            "{} is not a directory of this user's (uid {uid}); remove it",
            dir.display()
        ));
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
    Ok(dir)
}

/// An exclusive lock on `path`, held until the file is dropped. The watchdog removes the file
/// when it is done, so a lock taken on a file since removed is taken again on the new one.
fn lock(path: &Path) -> Result<File, String> {
    loop {
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        file.lock()
            .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
        let held = file.metadata().map(|m| m.ino()).ok();
        let current = std::fs::metadata(path).map(|m| m.ino()).ok();
        if held.is_some() && held == current {
            return Ok(file);
        }
    }
}

/// The port of the run's cluster while its watchdog lives (`None`: start one). A cluster is
/// never started over one whose watchdog lives, since test processes may be using it; one that
/// does not answer then is an error.
fn running_port(base: &Path) -> Result<Option<u16>, String> {
    let Some(watchdog) = std::fs::read_to_string(base.join("watchdog.pid")).ok() else {
        return Ok(None);
    };
    if !Path::new("/proc").join(watchdog.trim()).exists() {
        return Ok(None);
    }
    let Some(port) = std::fs::read_to_string(base.join("port"))
        .ok()
        .and_then(|port| port.trim().parse::<u16>().ok())
    else {
        return Err(format!(
            "{} has a live watchdog but no port; remove it",
            base.display()
        ));
    };
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Some(port));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Err(format!(
        "the run's cluster in {} does not answer on port {port}; see its log there",
        base.display()
    ))
}

fn start(
    installation: &Installation,
    base: &Path,
    lock_path: &Path,
    run: u32,
) -> Result<u16, String> {
    // A directory left by a run whose watchdog died (or whose pid this run now has): stop what
    // may still run there, start over.
    if base.exists() {
        let _ = installation.stop(&base.join("data"), "immediate");
        std::fs::remove_dir_all(base).map_err(|e| format!("rm {}: {e}", base.display()))?;
    }
    installation.own(base)?;
    let data = base.join("data");
    // The watchdog first: a run interrupted while the cluster starts still has it removed.
    let watchdog = spawn_watchdog(installation, base, lock_path, run, &data)?;
    write(&base.join("watchdog.pid"), &watchdog.to_string())?;
    let port = crate::free_port();
    let started = installation
        .init(&data)
        .and_then(|()| installation.start(&data, base, port))
        .and_then(|()| write(&base.join("port"), &port.to_string()));
    if let Err(e) = started {
        // Undone, so that the next test process of the run tries again and reports its own
        // error instead of finding a cluster that never was.
        let _ = Command::new("kill").arg(watchdog.to_string()).status();
        let _ = installation.stop(&data, "immediate");
        let _ = std::fs::remove_dir_all(base);
        return Err(e);
    }
    let _ = writeln!(
        std::io::stderr(),
        "testkit: started a PostgreSQL cluster for this test run on 127.0.0.1:{port} ({}); \
         it is removed when the run ends",
        base.display()
    );
    Ok(port)
}

fn spawn_watchdog(
    installation: &Installation,
    base: &Path,
    lock_path: &Path,
    run: u32,
    data: &Path,
) -> Result<u32, String> {
    let stop = installation.command("pg_ctl");
    let mut stop_argv: Vec<PathBuf> = vec![PathBuf::from(stop.get_program())];
    stop_argv.extend(stop.get_args().map(PathBuf::from));
    stop_argv.extend(["stop", "-m", "immediate", "-D"].map(PathBuf::from));
    stop_argv.push(data.to_path_buf());
    let child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("sh")
        .arg(base)
        .arg(lock_path)
        .arg(run.to_string())
        .arg(idle_limit(run).to_string())
        .args(&stop_argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the cluster's watchdog: {e}"))?;
    Ok(child.id())
}

/// [`IDLE_SECONDS`], or 0 (none) when the run is cargo's (`cargo test`, `cargo nextest`): between
/// two test binaries cargo may run others that use no database for longer than that.
fn idle_limit(run: u32) -> u32 {
    let name = std::fs::read_to_string(format!("/proc/{run}/comm")).unwrap_or_default();
    if name.trim().starts_with("cargo") {
        0
    } else {
        IDLE_SECONDS
    }
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
