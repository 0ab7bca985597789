//! Choosing the PostgreSQL server tests run against, once per test binary.

use std::sync::OnceLock;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use testcontainers::runners::AsyncRunner;
use testcontainers::ContainerAsync;
use testcontainers::ImageExt;
use testcontainers_modules::postgres::Postgres;
use tokio::sync::OnceCell;

/// The local server tried after Docker.
const LOCAL_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The PostgreSQL image Testcontainers starts: the major version `docker-compose.yml` runs,
/// pinned (a test checks that the two agree).
pub const POSTGRES_IMAGE: (&str, &str) = ("postgres", "15.10-bookworm");

static SERVER_URL: OnceCell<String> = OnceCell::const_new();
/// The id of the container this binary started, removed at process exit.
static CONTAINER_ID: OnceLock<String> = OnceLock::new();

/// The admin URL of the test server, chosen on first use, in order: `DATABASE_URL`;
/// Testcontainers when Docker is reachable; the local server; a cluster of this test run's own,
/// started from the installed PostgreSQL binaries. Panics with one message naming what to
/// install when none is usable.
pub async fn server_url() -> String {
    SERVER_URL.get_or_init(choose_server).await.clone()
}

async fn choose_server() -> String {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return match reachable(&url).await {
            Ok(()) => url,
            Err(e) => panic!("DATABASE_URL={url} is set but unreachable: {e}"),
        };
    }
    let docker_error = if docker_reachable() {
        match start_container().await {
            Ok(url) => return url,
            Err(e) => format!("Testcontainers failed: {e}"),
        }
    } else {
        "no Docker engine is reachable (no DOCKER_HOST, no /var/run/docker.sock)".to_owned()
    };
    let local_error = match reachable(LOCAL_SERVER).await {
        Ok(()) => return LOCAL_SERVER.to_owned(),
        Err(e) => e,
    };
    let cluster = tokio::task::spawn_blocking(crate::shared_cluster::join)
        .await
        .unwrap_or_else(|e| Err(format!("starting it panicked: {e}")));
    match cluster {
        Ok(url) => url,
        Err(cluster_error) => panic!(
            "no PostgreSQL for the tests. Tried, in order:\n  \
             1. DATABASE_URL: not set;\n  \
             2. Testcontainers: {docker_error};\n  \
             3. the local server {LOCAL_SERVER}: {local_error};\n  \
             4. a cluster of the run's own: {cluster_error}.\n\
             To fix: {}.",
            crate::install::INSTALL_HINT
        ),
    }
}

/// Whether `url` connects, to a PostgreSQL the services support.
async fn reachable(url: &str) -> Result<(), String> {
    let connect = PgConnection::connect(url);
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(conn)) => {
            let version = conn.server_version_num();
            let _ = conn.close().await;
            apikit::db::check_server_version(version, url).map_err(|e| e.to_string())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

fn docker_reachable() -> bool {
    std::env::var_os("DOCKER_HOST").is_some()
        || std::path::Path::new("/var/run/docker.sock").exists()
}

async fn start_container() -> Result<String, String> {
    let (name, tag) = POSTGRES_IMAGE;
    let container: ContainerAsync<Postgres> = Postgres::default()
        .with_name(name)
        .with_tag(tag)
        // As many as the shared cluster and CI allow: tests run many pools at once.
        .with_cmd(["postgres", "-c", "max_connections=300"])
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let host = container.get_host().await.map_err(|e| e.to_string())?;
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .map_err(|e| e.to_string())?;
    let url = format!("postgres://postgres:postgres@{host}:{port}/postgres");
    // A container whose port this process cannot reach (a remote engine, another network
    // namespace) is no server for the tests: remove it and try the next source.
    if let Err(e) = reachable(&url).await {
        let _ = container.rm().await;
        return Err(format!("started, but {url} is unreachable: {e}"));
    }
    let _ = CONTAINER_ID.set(container.id().to_owned());
    // Statics are never dropped, so the container outlives this future on purpose; the exit
    // hook below removes it, and Testcontainers' watchdog does on SIGINT and SIGTERM.
    std::mem::forget(container);
    Ok(url)
}

#[ctor::dtor]
fn remove_container() {
    if let Some(id) = CONTAINER_ID.get() {
        let _ = std::process::Command::new("docker")
            .args(["rm", "--force", "--volumes", id])
            .output();
    }
}

#[cfg(test)]
mod tests {
    use super::POSTGRES_IMAGE;

    fn repository_file(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn the_tests_run_the_postgres_image_the_compose_file_runs() {
        let (name, tag) = POSTGRES_IMAGE;
        let compose = repository_file("docker-compose.yml");
        assert!(
            compose.contains(&format!("image: {name}:{tag}\n")),
            "docker-compose.yml does not run {name}:{tag}"
        );
    }

    #[test]
    fn the_image_builds_with_the_workspace_rust_version() {
        let manifest = repository_file("Cargo.toml");
        let version = manifest
            .lines()
            .find_map(|line| line.strip_prefix("rust-version = \""))
            .and_then(|rest| rest.strip_suffix('"'))
            .expect("Cargo.toml sets rust-version");
        let dockerfile = repository_file("Dockerfile");
        assert!(
            dockerfile.contains(&format!("FROM rust:{version}.0-slim-bookworm AS build")),
            "the Dockerfile's build image is not Rust {version}"
        );
    }
}
