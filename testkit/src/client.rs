//! Typed HTTP helpers for tests: a TaskPilot client whose helpers assert the expected status, and
//! the problem-JSON assertion both services' tests use.

use std::time::Duration;

use common::{ExecutionView, TaskStatus, WebTask};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

/// Asserts a problem-JSON answer with `status` (content type, `status` and `title` fields), and
/// returns its `detail`.
pub async fn assert_problem(response: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status, "unexpected status");
    assert_eq!(
        header(response.headers(), "content-type"),
        "application/problem+json"
    );
    let problem: common::Problem = response.json().await.expect("problem body");
    assert_eq!(problem.status, status.as_u16());
    assert_eq!(problem.title, status.canonical_reason().unwrap_or_default());
    problem.detail.unwrap_or_default()
}

/// Asserts that `request` is answered `503` problem JSON, and promptly: a service whose database
/// is down says so, it does not hang. `what` names the request in failures.
pub async fn assert_unavailable(request: reqwest::RequestBuilder, what: &str) {
    let started = std::time::Instant::now();
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let elapsed = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
    assert_eq!(
        header(response.headers(), "content-type"),
        "application/problem+json",
        "{what}"
    );
    assert!(elapsed < Duration::from_secs(8), "{what} took {elapsed:?}");
}

/// Sending a request in a test: any failure to get an answer fails the test.
pub trait Sent {
    /// Sends, and expects an answer (of any status).
    fn sent(self) -> impl std::future::Future<Output = reqwest::Response>;
}

impl Sent for reqwest::RequestBuilder {
    async fn sent(self) -> reqwest::Response {
        self.send().await.expect("request sent")
    }
}

/// Asserts a `201 Created` answer; its `Location` header and its body.
pub async fn created<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> (String, T) {
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = header(response.headers(), "location");
    (location, response.json().await.expect("created body"))
}

/// The header `name` as text; empty when missing or not text.
pub fn header(headers: &HeaderMap, name: &str) -> String {
    let value = headers.get(name).and_then(|v| v.to_str().ok());
    value.unwrap_or_default().to_owned()
}

/// A client for one TaskPilot.
#[derive(Debug, Clone)]
pub struct TaskPilotClient {
    /// Base URL, e.g. `http://127.0.0.1:8081`.
    pub base: String,
    /// The HTTP client.
    pub http: reqwest::Client,
}

/// How long `wait_for` polls before giving up (a hang guard, not a timing goal).
const PATIENCE: Duration = Duration::from_secs(60);

impl TaskPilotClient {
    /// A client for TaskPilot at `base`.
    pub fn new(base: impl Into<String>) -> Self {
        TaskPilotClient {
            base: base.into(),
            http: reqwest::Client::new(),
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs JSON.
    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http.post(self.url(path)).json(&body).sent().await
    }

    /// GETs.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).sent().await
    }

    /// PUTs without a body.
    pub async fn put(&self, path: &str) -> reqwest::Response {
        self.http.put(self.url(path)).sent().await
    }

    /// Creates a web task; asserts 201.
    pub async fn create(&self, body: Value) -> WebTask {
        let response = self.post("/api/tasks", body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("web task")
    }

    /// Reads a web task; asserts 200.
    pub async fn web_task(&self, id: i64) -> WebTask {
        let response = self.get(&format!("/api/tasks/{id}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("web task")
    }

    /// Creates a web task; asserts 201. Its id.
    pub async fn create_id(&self, body: Value) -> i64 {
        self.create(body).await.id
    }

    /// Asks to bind and expects a problem answer with `status` that leaves the task unbound;
    /// the problem's detail.
    pub async fn bind_refused(&self, id: i64, status: StatusCode) -> String {
        let detail = assert_problem(self.try_bind(id, serde_json::json!({})).await, status).await;
        assert_eq!(
            self.web_task(id).await.scheduler_task_id,
            None,
            "still unbound"
        );
        detail
    }

    /// Asks to bind, whatever the answer.
    pub async fn try_bind(&self, id: i64, body: Value) -> reqwest::Response {
        self.post(&format!("/api/tasks/{id}/scheduler"), body).await
    }

    /// Binds; asserts 200.
    pub async fn bind(&self, id: i64, body: Value) -> WebTask {
        let response = self.try_bind(id, body).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("web task")
    }

    /// Binds; asserts 200. The DTP task it is bound to.
    pub async fn bind_to_scheduler(&self, id: i64, body: Value) -> i64 {
        let bound = self.bind(id, body).await;
        bound.scheduler_task_id.expect("bound to a DTP task")
    }

    /// Creates `task` and binds it with `bind`; asserts both succeed. The web task's id and the
    /// DTP task's.
    pub async fn submit(&self, task: Value, bind: Value) -> (i64, i64) {
        let id = self.create_id(task).await;
        (id, self.bind_to_scheduler(id, bind).await)
    }

    /// Creates a web task and binds it; asserts both succeed. Returns the web task's id.
    pub async fn create_and_bind(&self, task: Value, bind: Value) -> i64 {
        let id = self.create(task).await.id;
        self.bind(id, bind).await;
        id
    }

    /// Reads the execution view; asserts 200.
    pub async fn execution(&self, id: i64) -> ExecutionView {
        let response = self.get(&format!("/api/tasks/{id}/execution")).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("execution view")
    }

    /// Requests cancel.
    pub async fn cancel(&self, id: i64) -> reqwest::Response {
        self.put(&format!("/api/tasks/{id}/execution/cancel")).await
    }

    /// Creates `task`, binds it with `bind`, and waits until its execution is `status`.
    pub async fn run_until(&self, task: Value, bind: Value, status: TaskStatus) -> ExecutionView {
        let id = self.create_and_bind(task, bind).await;
        self.wait_for(id, status).await
    }

    /// Polls the execution view until `status`.
    pub async fn wait_for(&self, id: i64, status: TaskStatus) -> ExecutionView {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let view = self.execution(id).await;
            if view.status == status {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "web task {id} still {:?} after {PATIENCE:?}, expected {status}",
                view.status
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}
