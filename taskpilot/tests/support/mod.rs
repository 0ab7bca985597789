//! Shared helpers: TaskPilot on an ephemeral port over a fresh webdb, pointed at a real DTP
//! (in-process, its own fresh database) or at a stand-in server that misbehaves on purpose.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;
pub use testkit::{assert_problem, TaskPilotClient};
use tokio_util::sync::CancellationToken;

pub use testkit::{spawn_taskpilot_with, Service};

/// DTP in-process with fast test settings and its worker running.
pub async fn spawn_dtp() -> Service {
    spawn_dtp_with(|_| {}).await
}

/// DTP in-process with fast test settings (a 200 ms shutdown grace) that `tweak` adjusts.
pub async fn spawn_dtp_with(tweak: impl FnOnce(&mut dtp::Config)) -> Service {
    testkit::spawn_dtp_with(|config| {
        config.shutdown_grace_ms = 200;
        tweak(config);
    })
    .await
}

/// TaskPilot pointed at `dtp_url`, with a short DTP timeout.
pub async fn spawn_taskpilot(dtp_url: &str) -> Service {
    spawn_taskpilot_with(dtp_url, |_| {}).await
}

/// Both services, TaskPilot talking to DTP over real HTTP.
pub struct System {
    pub taskpilot: Service,
    pub dtp: Service,
    pub client: reqwest::Client,
}

pub async fn spawn_system() -> System {
    let dtp = spawn_dtp().await;
    let taskpilot = spawn_taskpilot(&dtp.address).await;
    System {
        taskpilot,
        dtp,
        client: reqwest::Client::new(),
    }
}

impl System {
    /// A typed client for this TaskPilot.
    pub fn api(&self) -> TaskPilotClient {
        TaskPilotClient::new(self.taskpilot.address.clone())
    }
}

/// Counts DTP's tasks.
pub async fn dtp_task_count(dtp: &Service) -> i64 {
    sqlx::query_scalar("select count(*) from tasks")
        .fetch_one(&dtp.pool)
        .await
        .expect("count")
}

/// How a stand-in DTP misbehaves.
#[derive(Clone)]
pub enum Misbehaviour {
    /// Answers every request with this status and body.
    Answer(StatusCode, &'static str),
    /// Waits this long before answering 200.
    Slow(Duration),
}

/// A local stand-in for DTP that misbehaves on purpose, recording the request ids it saw.
pub struct StandIn {
    pub address: String,
    pub request_ids: Arc<Mutex<Vec<String>>>,
    shutdown: CancellationToken,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn stand_in(misbehaviour: Misbehaviour) -> StandIn {
    let request_ids = Arc::new(Mutex::new(Vec::new()));
    let seen = request_ids.clone();
    let router = axum::Router::new().fallback(move |headers: HeaderMap| {
        let misbehaviour = misbehaviour.clone();
        let seen = seen.clone();
        async move {
            if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
                seen.lock().expect("lock").push(id.to_owned());
            }
            match misbehaviour {
                Misbehaviour::Answer(status, body) => (status, body).into_response(),
                Misbehaviour::Slow(pause) => {
                    tokio::time::sleep(pause).await;
                    axum::Json(json!({})).into_response()
                }
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    StandIn {
        address,
        request_ids,
        shutdown,
    }
}

/// An address where nothing listens.
pub async fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    address
}

/// Binds web task `id` to DTP task `scheduler_task_id` directly in webdb.
pub async fn force_bind(taskpilot: &Service, id: i64, scheduler_task_id: i64) {
    sqlx::query("update web_tasks set scheduler_task_id = $2, status = 'SUBMITTED' where id = $1")
        .bind(id)
        .bind(scheduler_task_id)
        .execute(&taskpilot.pool)
        .await
        .expect("bind");
}
