//! Choosing the PostgreSQL server tests run against, once per test binary.

use std::sync::OnceLock;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use testcontainers::runners::AsyncRunner;
use testcontainers::ContainerAsync;
use testcontainers_modules::postgres::Postgres;
use tokio::sync::OnceCell;

/// The local server tried last.
const LOCAL_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

static SERVER_URL: OnceCell<String> = OnceCell::const_new();
/// The id of the container this binary started, removed at process exit.
static CONTAINER_ID: OnceLock<String> = OnceLock::new();

/// The admin URL of the test server, chosen on first use: `DATABASE_URL`, else Testcontainers
/// when Docker is reachable, else the local server. Panics with one clear message when none is
/// usable.
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
    match reachable(LOCAL_SERVER).await {
        Ok(()) => LOCAL_SERVER.to_owned(),
        Err(local_error) => panic!(
            "no PostgreSQL for the tests. Tried, in order:\n  \
             1. DATABASE_URL: not set;\n  \
             2. Testcontainers: {docker_error};\n  \
             3. the local server {LOCAL_SERVER}: {local_error}.\n\
             Set DATABASE_URL, start Docker, or start a local PostgreSQL (bash .ci/run does)."
        ),
    }
}

async fn reachable(url: &str) -> Result<(), String> {
    let connect = PgConnection::connect(url);
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
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
    let container: ContainerAsync<Postgres> = Postgres::default()
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let host = container.get_host().await.map_err(|e| e.to_string())?;
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .map_err(|e| e.to_string())?;
    let _ = CONTAINER_ID.set(container.id().to_owned());
    // Statics are never dropped, so the container outlives this future on purpose; the exit
    // hook below removes it.
    std::mem::forget(container);
    Ok(format!(
        "postgres://postgres:postgres@{host}:{port}/postgres"
    ))
}

#[ctor::dtor]
fn remove_container() {
    if let Some(id) = CONTAINER_ID.get() {
        let _ = std::process::Command::new("docker")
            .args(["rm", "--force", "--volumes", id])
            .output();
    }
}
