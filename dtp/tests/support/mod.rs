//! Shared test helpers: a DTP service on an ephemeral port over a fresh database.
#![allow(dead_code, unused_imports)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::Sent;

use common::{TaskStatus, TaskView};
use dtp::handlers::{handler_fn, HandlerError, HandlerRegistry};
use dtp::{App, Config};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
pub use testkit::assert_problem;
use testkit::TestDb;
use tokio_util::sync::CancellationToken;

/// A running service plus what tests need to talk to it and look behind it.
pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub probes: Probes,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub db: TestDb,
}

/// Each stopped run: its task and when it stopped.
pub type Aborts = Arc<Mutex<Vec<(i64, chrono::DateTime<chrono::Utc>)>>>;

/// Counters the test handlers write, so tests can see what ran.
#[derive(Clone, Default)]
pub struct Probes {
    /// Runs per task id of the `count` handler.
    pub runs: Arc<Mutex<HashMap<i64, u32>>>,
    /// Task ids whose `probe-slow` handler was stopped before it finished.
    pub aborted: Aborts,
}

impl Probes {
    pub fn runs_of(&self, id: i64) -> u32 {
        self.runs
            .lock()
            .expect("probe lock")
            .get(&id)
            .copied()
            .unwrap_or(0)
    }

    pub fn was_aborted(&self, id: i64) -> bool {
        self.aborted_at(id).is_some()
    }

    /// When (wall clock, the same host's as the database's in tests) the first run of `id` that
    /// was stopped stopped.
    pub fn aborted_at(&self, id: i64) -> Option<chrono::DateTime<chrono::Utc>> {
        self.aborted
            .lock()
            .expect("probe lock")
            .iter()
            .find(|(task, _)| *task == id)
            .map(|(_, at)| *at)
    }
}

/// Records an abort when dropped before `finished` is set.
struct AbortProbe {
    id: i64,
    finished: bool,
    aborted: Aborts,
}

impl Drop for AbortProbe {
    fn drop(&mut self) {
        if !self.finished {
            let now = chrono::Utc::now();
            self.aborted
                .lock()
                .expect("probe lock")
                .push((self.id, now));
        }
    }
}

/// The built-ins plus test handlers: `count` (counts runs per task, sleeps `payload.ms`),
/// `probe-slow` (sleeps `payload.ms`, records being aborted), `nul-result` and `nul-error` (a
/// result and an error holding NUL characters, which PostgreSQL cannot store) and `panic`.
pub fn test_registry(probes: &Probes) -> HandlerRegistry {
    let runs = probes.runs.clone();
    let aborted = probes.aborted.clone();
    HandlerRegistry::with_builtins()
        .register(
            "count",
            handler_fn(move |ctx| {
                let runs = runs.clone();
                async move {
                    *runs
                        .lock()
                        .expect("probe lock")
                        .entry(ctx.id.0)
                        .or_insert(0) += 1;
                    let ms = ctx.payload.get("ms").and_then(Value::as_u64).unwrap_or(0);
                    if ms > 0 {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    Ok(json!({ "attempt": ctx.attempt }))
                }
            }),
        )
        .register(
            "probe-slow",
            handler_fn(move |ctx| {
                let aborted = aborted.clone();
                async move {
                    let mut probe = AbortProbe {
                        id: ctx.id.0,
                        finished: false,
                        aborted,
                    };
                    let ms = ctx
                        .payload
                        .get("ms")
                        .and_then(Value::as_u64)
                        .unwrap_or(60_000);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    probe.finished = true;
                    Ok::<_, HandlerError>(json!("finished"))
                }
            }),
        )
        .register(
            "nul-result",
            handler_fn(|_ctx| async move { Ok(json!({"text": "a\u{0}b", "k\u{0}ey": ["\u{0}"]})) }),
        )
        .register(
            "nul-error",
            handler_fn(|_ctx| async move {
                Err::<Value, _>(HandlerError::Permanent("bad\u{0}byte".into()))
            }),
        )
        .register(
            "panic",
            handler_fn(|_ctx| async move {
                if true {
                    panic!("handler bug");
                }
                Ok(Value::Null)
            }),
        )
}

/// The fast settings of a worker named `id`, adjusted by `tweak`.
pub fn worker_config(
    app: &TestApp,
    id: &str,
    tweak: impl FnOnce(&mut Config),
) -> dtp::worker::WorkerConfig {
    let mut config = testkit::dtp_config(&app.db);
    config.worker_id = Some(id.to_owned());
    tweak(&mut config);
    config.worker_config()
}

/// A worker over `app`'s database with `app`'s test handlers and fast settings.
pub fn worker_for(app: &TestApp, id: &str, tweak: impl FnOnce(&mut Config)) -> dtp::worker::Worker {
    dtp::worker::Worker::new(
        app.pool.clone(),
        test_registry(&app.probes),
        worker_config(app, id, tweak),
    )
}

/// A service with the worker running and fast settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The API and the rescuer, no worker (tasks stay where the test puts them), with settings
/// that `tweak` adjusts.
pub async fn api_only_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(|config| {
        config.worker = false;
        tweak(config);
    })
    .await
}

/// A service whose settings `tweak` adjusts.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::create().await;
    let mut config = testkit::dtp_config(&db);
    tweak(&mut config);
    let probes = Probes::default();
    let app = App::build_with_handlers(config, test_registry(&probes))
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let pool = app.pool().clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        address,
        pool,
        client: reqwest::Client::new(),
        probes,
        shutdown,
        server: Some(server),
        db,
    }
}

/// A second `dtp` process over `app`'s database (API only unless `tweak` says otherwise); it
/// stops when the returned token is canceled or dropped with the test. Returns its base URL.
pub async fn spawn_peer(
    app: &TestApp,
    tweak: impl FnOnce(&mut Config),
) -> (String, tokio_util::sync::DropGuard) {
    let mut config = testkit::dtp_config(&app.db);
    config.worker = false;
    tweak(&mut config);
    let peer = App::build_with_handlers(config, test_registry(&app.probes))
        .await
        .expect("peer builds");
    let address = format!("http://127.0.0.1:{}", peer.port());
    let shutdown = CancellationToken::new();
    tokio::spawn(peer.run_until_stopped(shutdown.clone()));
    (address, shutdown.drop_guard())
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_task(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/tasks"))
            .json(&body)
            .sent()
            .await
    }

    pub async fn post_batch(&self, batch: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/tasks/batch"))
            .json(batch)
            .sent()
            .await
    }

    /// Creates a task and asserts 201.
    pub async fn create(&self, body: Value) -> TaskView {
        let response = self.post_task(body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("task body")
    }

    /// Creates a task through the API, asserting 201; its id.
    pub async fn create_id(&self, body: Value) -> i64 {
        self.create(body).await.id
    }

    /// GETs `path` and asserts 200; the body.
    pub async fn get_ok<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let response = self.client.get(self.url(path)).sent().await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("JSON body")
    }

    /// Reads a task and asserts 200.
    pub async fn get_task(&self, id: i64) -> TaskView {
        self.get_ok(&format!("/tasks/{id}")).await
    }

    pub async fn cancel(&self, id: i64) -> reqwest::Response {
        self.client
            .put(self.url(&format!("/tasks/{id}/cancel")))
            .sent()
            .await
    }

    /// Polls until the task reaches `status`; panics after a generous bound (a hang, not a
    /// timing goal).
    pub async fn wait_for(&self, id: i64, status: TaskStatus) -> TaskView {
        wait_for_status(&self.pool, id, status).await;
        self.get_task(id).await
    }

    pub async fn count_tasks(&self) -> i64 {
        count_tasks(&self.pool).await
    }

    /// Runs `sql` with task `id` as `$1`, behind the API's back: to plant a state the API
    /// cannot produce.
    pub async fn plant(&self, sql: &str, id: i64) {
        let planted = sqlx::query(sql).bind(id).execute(&self.pool).await;
        planted.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Asserts that the queue holds no task: what was refused wrote nothing.
    pub async fn assert_no_tasks(&self) {
        assert_eq!(self.count_tasks().await, 0, "nothing written");
    }

    /// Stops the service gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Upper bound for anything a test waits on.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub async fn wait_for_status(pool: &PgPool, id: i64, status: TaskStatus) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let current: String = sqlx::query_scalar("select status from tasks where id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("task exists");
        if current == status.as_str() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {id} still {current} after {PATIENCE:?}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no task is PENDING or RUNNING.
pub async fn wait_until_all_terminal(pool: &PgPool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let open: i64 =
            sqlx::query_scalar("select count(*) from tasks where status in ('PENDING', 'RUNNING')")
                .fetch_one(pool)
                .await
                .expect("count");
        if open == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} tasks still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn count_tasks(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from tasks")
        .fetch_one(pool)
        .await
        .expect("count")
}

/// Puts a RUNNING task back as it was before its claim, as a database crash does to a claim
/// whose commit had not reached the disk yet (claims commit without waiting for the flush).
pub async fn forget_claim(conn: &mut sqlx::PgConnection, id: i64) {
    sqlx::query(
        "update tasks set status = 'PENDING', attempt_count = attempt_count - 1, \
         worker_id = null, lease_expires_at = null, processing_started_at = null \
         where id = $1 and status = 'RUNNING'",
    )
    .bind(id)
    .execute(conn)
    .await
    .expect("forget claim");
}

/// Every type the test handlers know, as a claim takes them.
pub fn test_types() -> Vec<String> {
    test_registry(&Probes::default())
        .names()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Claims as a worker with the test handlers would (any type they know).
pub async fn claim(
    pool: &PgPool,
    worker_id: &str,
    limit: i64,
    lease: Duration,
) -> Vec<dtp::queue::ClaimedTask> {
    let types = test_types();
    let claim = dtp::queue::Claim::new(worker_id, &types, limit, lease);
    let mut conn = pool.acquire().await.expect("connection");
    dtp::queue::claim_available(&mut conn, &claim)
        .await
        .expect("claim")
        .tasks
}

/// A migrated queue database with no service in front of it, for tests of the queue's own
/// statements: tasks go in and change state through `queue` functions only.
pub struct QueueDb {
    pub pool: PgPool,
    _db: TestDb,
}

impl QueueDb {
    pub async fn new() -> QueueDb {
        let db = TestDb::create().await;
        let pool =
            dtp::db::connect_and_migrate(&db.url, None, 5, Duration::from_secs(30), Duration::ZERO)
                .await
                .expect("queue database");
        QueueDb { pool, _db: db }
    }

    /// Enqueues a `noop` task with `priority`, due now; its id.
    pub async fn enqueue(&self, priority: i32) -> i64 {
        let task = dtp::queue::NewTask {
            priority,
            ..dtp::queue::NewTask::new("noop", Value::Null)
        };
        let mut conn = self.pool.acquire().await.expect("connection");
        match dtp::queue::enqueue(&mut conn, &task)
            .await
            .expect("enqueue")
        {
            dtp::queue::Enqueued::Created(row) => row.id,
            dtp::queue::Enqueued::Existing(row) => panic!("no key, yet task {} existed", row.id),
        }
    }

    /// Cancels task `id`.
    pub async fn cancel(&self, id: i64) {
        let id = dtp::queue::TaskId(id);
        let mut conn = self.pool.acquire().await.expect("connection");
        dtp::queue::cancel(&mut conn, id).await.expect("cancel");
    }

    /// Task `id`'s state.
    pub async fn status(&self, id: i64) -> TaskStatus {
        let id = dtp::queue::TaskId(id);
        let row = dtp::queue::get(&self.pool, id).await.expect("task");
        row.into_view().status
    }
}
