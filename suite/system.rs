//! The whole system: one or more `dtp` processes sharing one queue database, and a `taskpilot`
//! pointed at the first of them, each database fresh.

use sqlx::PgPool;
use testkit::{TaskPilotClient, TestDb};

use crate::process::{owned_env, Service, ServiceKind};

/// Settings that make leases, rescue, retries and polling fast enough for tests.
const FAST_DTP: [(&str, &str); 10] = [
    // Tests call back into themselves on loopback through the `http` handler.
    ("DTP_HTTP_ALLOW_PRIVATE", "true"),
    ("DTP_CONCURRENCY", "8"),
    ("DTP_POLL_INTERVAL_MS", "100"),
    ("DTP_LEASE_MS", "2000"),
    ("DTP_HEARTBEAT_MS", "500"),
    ("DTP_RESCUE_INTERVAL_MS", "300"),
    ("DTP_BACKOFF_BASE_MS", "50"),
    ("DTP_BACKOFF_CAP_MS", "200"),
    ("DTP_SHUTDOWN_GRACE_MS", "1000"),
    ("DTP_DB_MAX_CONNECTIONS", "10"),
];

/// Both services as real processes.
pub struct System {
    /// `dtp[0]` is the one TaskPilot talks to.
    pub dtp: Vec<Service>,
    /// The control plane.
    pub taskpilot: Service,
    /// A pool on DTP's database, for looking behind the API.
    pub dtp_pool: PgPool,
    /// A typed client for TaskPilot.
    pub api: TaskPilotClient,
    dtp_url: String,
    // Dropped last, after the processes.
    _databases: Option<(TestDb, TestDb)>,
}

impl System {
    /// One `dtp` (API and worker) and one `taskpilot`.
    pub async fn start() -> System {
        Self::start_with(1, false).await
    }

    /// `dtp_processes` processes over one queue; with `first_api_only`, the first (the one
    /// TaskPilot talks to) runs no worker, so the others do all the work.
    pub async fn start_with(dtp_processes: usize, first_api_only: bool) -> System {
        Self::start_with_env(dtp_processes, first_api_only, &[]).await
    }

    /// Like [`System::start_with`], every `dtp` process with the settings `extra` besides.
    pub async fn start_with_env(
        dtp_processes: usize,
        first_api_only: bool,
        extra: &[(&str, &str)],
    ) -> System {
        let dtp_db = TestDb::create().await;
        let web_db = TestDb::create().await;
        let (dtp_url, web_url) = (dtp_db.url.clone(), web_db.url.clone());
        let mut system =
            Self::start_on_with(&dtp_url, &web_url, dtp_processes, first_api_only, extra).await;
        system._databases = Some((dtp_db, web_db));
        system
    }

    /// Like [`System::start_with`], over the databases at `dtp_url` and `web_url` (which the
    /// services create if missing).
    pub async fn start_on(
        dtp_url: &str,
        web_url: &str,
        dtp_processes: usize,
        first_api_only: bool,
    ) -> System {
        Self::start_on_with(dtp_url, web_url, dtp_processes, first_api_only, &[]).await
    }

    /// Like [`System::start_on`], every `dtp` process with the settings `extra` besides (they
    /// win over the defaults: `DTP_DATABASE_URL` among them reaches the queue another way,
    /// while [`System::dtp_pool`] still uses `dtp_url`).
    pub async fn start_on_with(
        dtp_url: &str,
        web_url: &str,
        dtp_processes: usize,
        first_api_only: bool,
        extra: &[(&str, &str)],
    ) -> System {
        let mut dtp = Vec::new();
        for i in 0..dtp_processes.max(1) {
            let name = format!("dtp-{i}");
            let mut env = vec![
                ("DTP_DATABASE_URL".to_owned(), dtp_url.to_owned()),
                ("DTP_WORKER_ID".to_owned(), name.clone()),
            ];
            env.extend(owned_env(&FAST_DTP));
            env.extend(owned_env(extra));
            if i == 0 && first_api_only {
                env.push(("DTP_WORKER".to_owned(), "false".to_owned()));
            }
            dtp.push(Service::start(ServiceKind::Dtp, &name, env).await);
        }
        let taskpilot = Service::start(
            ServiceKind::TaskPilot,
            "taskpilot",
            vec![
                ("TASKPILOT_DATABASE_URL".to_owned(), web_url.to_owned()),
                ("DTP_URL".to_owned(), dtp[0].url()),
                ("TASKPILOT_DTP_TIMEOUT_MS".to_owned(), "2000".to_owned()),
            ],
        )
        .await;
        let dtp_pool = PgPool::connect(dtp_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {dtp_url}: {e}"));
        let api = TaskPilotClient::new(taskpilot.url());
        System {
            dtp,
            taskpilot,
            dtp_pool,
            api,
            dtp_url: dtp_url.to_owned(),
            _databases: None,
        }
    }

    /// Starts one more `dtp` process over the same queue, worker only, named `name`, with `extra`
    /// environment (e.g. a faked clock).
    pub async fn add_worker(&mut self, name: &str, extra: Vec<(String, String)>) -> usize {
        let dtp_url = self.dtp_url.clone();
        let mut env = vec![
            ("DTP_DATABASE_URL".to_owned(), dtp_url),
            ("DTP_WORKER_ID".to_owned(), name.to_owned()),
        ];
        env.extend(owned_env(&FAST_DTP));
        env.extend(extra);
        self.dtp
            .push(Service::start(ServiceKind::Dtp, name, env).await);
        self.dtp.len() - 1
    }

    /// The worker id of the `dtp` process that leads maintenance (holds the advisory lock of
    /// `worker::maintenance`, whose connection is named `dtp-maintenance:{worker id}`).
    pub async fn maintenance_leader(&self) -> Option<String> {
        let name: Option<String> = sqlx::query_scalar(
            "select a.application_name from pg_locks l join pg_stat_activity a on a.pid = l.pid \
             where l.locktype = 'advisory' and l.granted and l.classid = 1146376269 \
               and l.objid = 1 and l.objsubid = 2 and l.database = \
                   (select oid from pg_database where datname = current_database())",
        )
        .fetch_optional(&self.dtp_pool)
        .await
        .unwrap_or_else(|e| panic!("maintenance leader: {e}"));
        name.and_then(|n| n.strip_prefix("dtp-maintenance:").map(str::to_owned))
    }

    /// Waits until a process leads maintenance, SIGKILLs it, and returns its index in `dtp`.
    pub async fn kill_maintenance_leader(&mut self) -> usize {
        let mut leader = None;
        crate::wait_until("a process leads maintenance", async || {
            leader = self.maintenance_leader().await;
            leader.is_some()
        })
        .await;
        let leader = leader.unwrap_or_default();
        let index = self
            .dtp
            .iter()
            .position(|p| p.name() == leader)
            .unwrap_or_else(|| {
                panic!("the leader {leader:?} is not one of this system's processes")
            });
        self.dtp[index].kill();
        index
    }

    /// How many tasks satisfy `condition` (SQL over `tasks`, e.g. `status = 'SUCCEEDED'`).
    pub async fn count_tasks(&self, condition: &str) -> i64 {
        let sql = format!("select count(*) from tasks where {condition}");
        sqlx::query_scalar(&sql)
            .fetch_one(&self.dtp_pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// [`System::count_tasks`] for a test that stops the database: `None` while it does not
    /// answer.
    pub async fn try_count_tasks(&self, condition: &str) -> Option<i64> {
        sqlx::query_scalar(&format!("select count(*) from tasks where {condition}"))
            .fetch_one(&self.dtp_pool)
            .await
            .ok()
    }

    /// A task's status, attempts and last error; `None` while the database does not answer.
    pub async fn outcome_of(&self, id: i64) -> Option<(String, i32, Option<String>)> {
        sqlx::query_as("select status, attempt_count, last_error from tasks where id = $1")
            .bind(id)
            .fetch_one(&self.dtp_pool)
            .await
            .ok()
    }

    /// Creates a task through the API of `dtp[0]` and returns it (asserting `201`).
    pub async fn create_dtp_task(&self, body: serde_json::Value) -> common::TaskView {
        let response = reqwest::Client::new()
            .post(format!("{}/tasks", self.dtp[0].url()))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DTP unreachable: {e}"));
        assert_eq!(response.status().as_u16(), 201, "create {body}");
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("DTP's task body: {e}"))
    }

    /// The DTP task's `worker_id`, once a worker has claimed it.
    pub async fn worker_of(&self, scheduler_task_id: i64) -> Option<String> {
        sqlx::query_scalar("select worker_id from tasks where id = $1")
            .bind(scheduler_task_id)
            .fetch_one(&self.dtp_pool)
            .await
            .unwrap_or_else(|e| panic!("cannot read task {scheduler_task_id}: {e}"))
    }

    /// SIGKILLs the dtp process that holds DTP task `scheduler_task_id`; its index in `dtp`.
    pub async fn kill_holder_of(&mut self, scheduler_task_id: i64) -> usize {
        let holder = self.worker_of(scheduler_task_id).await.expect("claimed");
        let victim = self.dtp.iter().position(|p| p.name() == holder);
        let victim = victim.unwrap_or_else(|| panic!("{holder} is not one of ours"));
        self.dtp[victim].kill();
        victim
    }
}
