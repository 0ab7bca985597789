//! One service process: started with its environment, waited for until ready, logged to a
//! file, stopped (SIGTERM), killed (SIGKILL) or restarted on the same port.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `pairs` as a process environment, for [`Service::start`].
pub fn owned_env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Which binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// The execution plane.
    Dtp,
    /// The control plane.
    TaskPilot,
}

impl ServiceKind {
    fn binary(self) -> &'static str {
        match self {
            ServiceKind::Dtp => "dtp",
            ServiceKind::TaskPilot => "taskpilot",
        }
    }

    fn addr_variable(self) -> &'static str {
        match self {
            ServiceKind::Dtp => "DTP_ADDR",
            ServiceKind::TaskPilot => "TASKPILOT_ADDR",
        }
    }
}

/// A running (or stopped) service process.
pub struct Service {
    kind: ServiceKind,
    name: String,
    port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
    restarts: u32,
}

/// How long a service may take to answer `/healthz` after starting.
const START_PATIENCE: Duration = Duration::from_secs(30);

impl Service {
    /// Starts `kind` on a free port with `env`, and waits until it answers `/healthz`.
    pub async fn start(kind: ServiceKind, name: &str, env: Vec<(String, String)>) -> Service {
        Service::start_at(kind, name, testkit::free_port(), env).await
    }

    /// Starts `kind` on `port` with `env`, and waits until it answers `/healthz`.
    pub async fn start_at(
        kind: ServiceKind,
        name: &str,
        port: u16,
        env: Vec<(String, String)>,
    ) -> Service {
        let mut service = Service {
            kind,
            name: name.to_owned(),
            port,
            env,
            child: None,
            log: log_dir().join(format!("{name}-{:08x}.log", rand_suffix())),
            restarts: 0,
        };
        service.spawn().await;
        service
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The name it was started as (also its DTP worker id in [`crate::System`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the process dies at once, without any cleanup.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a graceful exit (SIGKILL after `patience`), without blocking the
    /// runtime (the test may be serving requests the process is finishing).
    pub async fn terminate(&mut self, patience: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = tokio::time::Instant::now() + patience;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts it again on the same port with the same environment.
    pub async fn restart(&mut self) {
        self.kill();
        self.restarts += 1;
        self.spawn().await;
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `kind` with `env` until it exits by itself, for at most `patience`: its exit status
    /// (`None` when it was still running and was killed) and its log.
    pub async fn run_to_exit(
        kind: ServiceKind,
        env: Vec<(String, String)>,
        patience: Duration,
    ) -> (Option<std::process::ExitStatus>, String) {
        // No NO_COLOR: a process whose output is not a terminal must write plain text itself.
        let output = tokio::process::Command::new(binary_path(kind.binary()))
            .envs(env)
            .env(kind.addr_variable(), "127.0.0.1:0")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(patience, output).await {
            Ok(Ok(output)) => (
                Some(output.status),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            ),
            Ok(Err(e)) => panic!("cannot run {}: {e}", kind.binary()),
            Err(_) => (None, String::new()),
        }
    }

    async fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open log {}: {e}", self.log.display()));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone log handle: {e}"));
        let child = Command::new(binary_path(self.kind.binary()))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                self.kind.addr_variable(),
                format!("127.0.0.1:{}", self.port),
            )
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        self.child = Some(child);
        self.wait_until_healthy().await;
    }

    async fn wait_until_healthy(&mut self) {
        let client = reqwest::Client::new();
        let url = format!("{}/healthz", self.url());
        let deadline = tokio::time::Instant::now() + START_PATIENCE;
        loop {
            if let Ok(response) = client.get(&url).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "{} exited with {status} before it was ready; its log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} not ready after {START_PATIENCE:?}; its log:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- log of {} ({}) -----\n{}",
                self.name,
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// The built binary `name`: in `$SUITE_BIN_DIR` when set (to run the suite against release
/// builds, `SUITE_BIN_DIR=target/release`), else next to this test executable's directory
/// (`target/<profile>/`).
fn binary_path(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("SUITE_BIN_DIR") {
        let path = PathBuf::from(dir).join(name);
        assert!(path.is_file(), "SUITE_BIN_DIR has no {}", path.display());
        return path;
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no current exe: {e}"));
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test executable path {}", exe.display()));
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run the tests with `cargo test --workspace` (which builds it) or `cargo build -p {name}` first",
        path.display()
    );
    path
}

/// The processes' logs, in a directory of this user's (another user's run may have made one).
fn log_dir() -> PathBuf {
    let uid = testkit::current_uid().unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("taskpilot-e2e-logs-{uid}"));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id()
}
