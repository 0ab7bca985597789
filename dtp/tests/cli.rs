//! The `dtp` binary's client subcommands against a real DTP over HTTP: each one's success, its
//! `--json`, and the exit codes scripts rely on (1 refused, 2 usage, 3 unreachable, and
//! `tasks wait`'s 0/4/5/6), with errors as one line.

mod support;

use common::{QueueList, TaskPage, TaskStatus, TaskView};
use serde_json::{json, Value};
use support::{api_only_with, spawn_app, wait_for_status, TestApp};

/// What a run of the binary left: exit code, stdout, stderr.
struct Ran {
    code: i32,
    out: String,
    err: String,
}

async fn dtp(app: &TestApp, args: &[&str]) -> Ran {
    dtp_at(&app.address, args).await
}

async fn dtp_at(url: &str, args: &[&str]) -> Ran {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_dtp"))
        .args(args)
        .env("DTP_URL", url)
        .env_remove("DTP_API_TOKEN")
        .output()
        .await
        .expect("dtp runs");
    Ran {
        code: output.status.code().expect("exit code"),
        out: String::from_utf8_lossy(&output.stdout).into_owned(),
        err: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn json_of<T: serde::de::DeserializeOwned>(ran: &Ran) -> T {
    assert_eq!(ran.code, 0, "stderr: {}", ran.err);
    serde_json::from_str(&ran.out).unwrap_or_else(|e| panic!("{e}: {}", ran.out))
}

#[tokio::test]
async fn tasks_create_get_list_cancel_retry_and_attempts_work_and_refusals_exit_1() {
    let app = api_only_with(|_| {}).await;
    let created = dtp(
        &app,
        &[
            "tasks",
            "create",
            "--type",
            "noop",
            "--queue",
            "mail",
            "--payload",
            r#"{"n":1}"#,
            "--json",
        ],
    )
    .await;
    let task: TaskView = json_of(&created);
    assert_eq!(
        (task.queue.as_str(), task.payload.clone()),
        ("mail", json!({"n": 1}))
    );
    let id = task.id.to_string();

    let got: TaskView = json_of(&dtp(&app, &["tasks", "get", &id, "--json"]).await);
    assert_eq!(got.id, task.id);
    let table = dtp(&app, &["tasks", "list", "--queue", "mail"]).await;
    assert_eq!(table.code, 0);
    assert!(
        table.out.contains("mail") && table.out.contains("PENDING"),
        "{}",
        table.out
    );
    let page: TaskPage =
        json_of(&dtp(&app, &["tasks", "list", "--status", "PENDING", "--json"]).await);
    assert_eq!(page.tasks.len(), 1);

    let canceled: TaskView = json_of(&dtp(&app, &["tasks", "cancel", &id, "--json"]).await);
    assert_eq!(canceled.status, TaskStatus::Canceled);
    let retried: TaskView = json_of(&dtp(&app, &["tasks", "retry", &id, "--json"]).await);
    assert_eq!(retried.status, TaskStatus::Pending);
    let attempts: Value = json_of(&dtp(&app, &["tasks", "attempts", &id, "--json"]).await);
    assert!(attempts["attempts"].is_array());

    let unknown = dtp(&app, &["tasks", "get", "999999"]).await;
    assert_eq!(unknown.code, 1);
    assert_eq!(unknown.err.lines().count(), 1, "one line: {}", unknown.err);
    assert!(unknown.err.starts_with("dtp: 404"), "{}", unknown.err);
    let bad_type = dtp(&app, &["tasks", "create", "--type", "no-such-type"]).await;
    assert_eq!(bad_type.code, 1);
    assert!(
        bad_type.err.contains("unknown task type"),
        "{}",
        bad_type.err
    );
    let bad_payload = dtp(
        &app,
        &["tasks", "create", "--type", "noop", "--payload", "{"],
    )
    .await;
    assert_eq!(bad_payload.code, 1);
    assert_eq!(app.count_tasks().await, 1, "refusals created nothing");
}

#[tokio::test]
async fn tasks_wait_exits_with_the_outcome() {
    let app = spawn_app().await;
    let ok = app.create_id(json!({"type": "noop"})).await.to_string();
    let failing = json!({"type": "demo-fail", "maxAttempts": 1});
    let failed = app.create_id(failing).await.to_string();
    let slow = app.create_id(json!({"type": "probe-slow"})).await;
    wait_for_status(&app.pool, slow, TaskStatus::Running).await;

    assert_eq!(dtp(&app, &["tasks", "wait", &ok]).await.code, 0);
    assert_eq!(dtp(&app, &["tasks", "wait", &failed]).await.code, 4);
    let slow = slow.to_string();
    let still = dtp(&app, &["tasks", "wait", &slow, "--timeout", "0.3"]).await;
    assert_eq!(still.code, 6);
    assert_eq!(dtp(&app, &["tasks", "cancel", &slow]).await.code, 0);
    assert_eq!(dtp(&app, &["tasks", "wait", &slow]).await.code, 5);
}

#[tokio::test]
async fn tasks_import_creates_every_line_and_a_bad_file_creates_nothing() {
    let app = api_only_with(|_| {}).await;
    let dir = std::env::temp_dir().join(format!("dtp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = dir.join("good.jsonl");
    let lines: Vec<String> = (0..2500)
        .map(|i| json!({"type": "noop", "queue": "imported", "payload": {"n": i}}).to_string())
        .collect();
    std::fs::write(&good, lines.join("\n") + "\n\n").expect("write");
    let imported = dtp(
        &app,
        &["tasks", "import", good.to_str().expect("path"), "--json"],
    )
    .await;
    let summary: Value = json_of(&imported);
    assert_eq!(summary["created"], 2500);
    assert_eq!(app.count_tasks().await, 2500);

    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"type\": \"noop\"}\n[\"noop\"]\n").expect("write");
    let refused = dtp(&app, &["tasks", "import", bad.to_str().expect("path")]).await;
    assert_eq!(refused.code, 1);
    assert!(refused.err.contains("bad.jsonl:2"), "{}", refused.err);
    let unknown = dir.join("unknown.jsonl");
    std::fs::write(
        &unknown,
        "{\"type\": \"noop\"}\n\n{\"type\": \"no-such\"}\n",
    )
    .expect("write");
    let refused = dtp(&app, &["tasks", "import", unknown.to_str().expect("path")]).await;
    assert_eq!(refused.code, 1);
    assert!(
        refused.err.contains("line 3: unknown task type"),
        "{}",
        refused.err
    );
    let missing = dtp(&app, &["tasks", "import", "/no/such/file.jsonl"]).await;
    assert_eq!(missing.code, 1);
    assert_eq!(app.count_tasks().await, 2500, "nothing more was created");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn tasks_import_stops_at_a_refused_batch_and_a_rerun_creates_no_task_twice() {
    let app = api_only_with(|_| {}).await;
    let dir = std::env::temp_dir().join(format!("dtp-cli-rerun-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("tasks.jsonl");
    let path = file.to_str().expect("path");
    // 2 KiB lines: a batch of 1,000 would be twice DTP's body limit.
    let line = |i: usize, task_type: &str| {
        json!({"type": task_type, "payload": {"n": i, "pad": "p".repeat(2048)}}).to_string()
    };
    let write = |bad: Option<usize>| {
        let lines: Vec<String> = (1..=1500)
            .map(|i| line(i, if Some(i) == bad { "no-such" } else { "noop" }))
            .collect();
        std::fs::write(&file, lines.join("\n") + "\n").expect("write");
    };

    write(Some(900));
    let refused = dtp(&app, &["tasks", "import", path]).await;
    let created_before_the_refusal = app.count_tasks().await;
    write(None);
    let fixed = dtp(&app, &["tasks", "import", path, "--json"]).await;
    let again = dtp(&app, &["tasks", "import", path, "--json"]).await;

    assert_eq!(refused.code, 1);
    assert!(
        refused.err.contains("line 900: unknown task type"),
        "{}",
        refused.err
    );
    let first_unsent = refused
        .err
        .split("nothing from line ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("no first line not created in {}", refused.err));
    assert!(first_unsent <= 900);
    assert_eq!(
        created_before_the_refusal,
        first_unsent - 1,
        "every line before the refused batch, none after it"
    );
    let fixed: Value = json_of(&fixed);
    let again: Value = json_of(&again);
    assert_eq!(fixed["created"], 1500 - (first_unsent - 1));
    assert_eq!(again["created"], 0);
    assert_eq!(app.count_tasks().await, 1500);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn queues_and_schedules_subcommands_change_what_the_api_shows() {
    let app = api_only_with(|_| {}).await;
    assert_eq!(dtp(&app, &["queues", "pause", "mail"]).await.code, 0);
    let set = dtp(
        &app,
        &[
            "queues",
            "set",
            "mail",
            "--concurrency",
            "3",
            "--rate",
            "2.5",
        ],
    )
    .await;
    assert_eq!(set.code, 0, "{}", set.err);
    let list: QueueList = json_of(&dtp(&app, &["queues", "list", "--json"]).await);
    let mail = list
        .queues
        .iter()
        .find(|q| q.name == "mail")
        .expect("mail listed");
    assert!(mail.paused);
    assert_eq!(
        (mail.concurrency_limit, mail.rate_limit_per_second),
        (Some(3), Some(2.5))
    );
    assert_eq!(dtp(&app, &["queues", "resume", "mail"]).await.code, 0);
    let cleared = dtp(&app, &["queues", "set", "mail", "--concurrency", "none"]).await;
    assert_eq!(cleared.code, 0);
    assert_eq!(
        dtp(&app, &["queues", "set", "mail", "--rate", "fast"])
            .await
            .code,
        1
    );
    assert_eq!(dtp(&app, &["queues", "set", "mail"]).await.code, 1);
    assert_eq!(
        dtp(&app, &["queues", "set", "mail", "--concurrency=-4"])
            .await
            .code,
        1
    );

    let task = r#"{"type": "noop", "queue": "nightly"}"#;
    let args = [
        "schedules",
        "create",
        "nightly",
        "--cron",
        "0 3 * * *",
        "--task",
        task,
    ];
    assert_eq!(dtp(&app, &args).await.code, 0);
    let listed: Value = json_of(&dtp(&app, &["schedules", "list", "--json"]).await);
    assert_eq!(listed["schedules"][0]["name"], "nightly");
    let bad_cron = [
        "schedules",
        "create",
        "x",
        "--cron",
        "61 * * * *",
        "--task",
        task,
    ];
    assert_eq!(dtp(&app, &bad_cron).await.code, 1);
    assert_eq!(dtp(&app, &["schedules", "delete", "nightly"]).await.code, 0);
    assert_eq!(dtp(&app, &["schedules", "delete", "nightly"]).await.code, 1);
}

#[tokio::test]
async fn usage_errors_exit_2_and_an_unreachable_dtp_exits_3() {
    let app = api_only_with(|_| {}).await;
    assert_eq!(dtp(&app, &["tasks", "frobnicate"]).await.code, 2);
    assert_eq!(dtp(&app, &["tasks", "get", "not-a-number"]).await.code, 2);
    let closed = format!("http://127.0.0.1:{}", testkit::free_port());
    let unreachable = dtp_at(&closed, &["tasks", "list"]).await;
    assert_eq!(unreachable.code, 3);
    assert!(
        unreachable.err.contains("cannot be reached"),
        "{}",
        unreachable.err
    );
    assert_eq!(dtp_at("not a url", &["queues", "list"]).await.code, 1);
}

#[tokio::test]
async fn a_token_is_sent_and_a_missing_one_is_refused() {
    let app = api_only_with(|c| c.api_token = Some("cli-secret".parse().expect("token"))).await;
    let refused = dtp(&app, &["queues", "list"]).await;
    assert_eq!(refused.code, 1);
    assert!(refused.err.contains("401"), "{}", refused.err);
    let allowed = dtp(&app, &["queues", "list", "--token", "cli-secret"]).await;
    assert_eq!(allowed.code, 0, "{}", allowed.err);
}

#[tokio::test]
async fn migrate_migrates_a_new_database_and_says_so() {
    let db = testkit::TestDb::create().await;
    let ran = dtp_at("http://unused", &["migrate", "--database-url", &db.url]).await;
    assert_eq!(ran.code, 0, "{}", ran.err);
    assert!(ran.out.starts_with("migrated "), "{}", ran.out);
    let pool = db.pool().await;
    let tables: i64 = sqlx::query_scalar(
        "select count(*) from information_schema.tables where table_name in ('tasks', 'queues', 'schedules')",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(tables, 3);
    let unreachable = dtp_at(
        "http://unused",
        &[
            "migrate",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/none",
        ],
    )
    .await;
    assert_eq!(unreachable.code, 3);
}

#[tokio::test]
async fn top_draws_frames_of_counts_and_rates_then_stops_after_its_iterations() {
    let app = spawn_app().await;
    for _ in 0..5 {
        app.create(json!({"type": "noop", "queue": "mail"})).await;
    }
    let drawn = dtp(&app, &["top", "--iterations", "2", "--interval-ms", "200"]).await;
    assert_eq!(drawn.code, 0, "{}", drawn.err);
    assert_eq!(drawn.out.matches("dtp top:").count(), 2, "two frames");
    assert!(
        drawn.out.contains("succeeded/s") && drawn.out.contains("mail"),
        "{}",
        drawn.out
    );

    let frames = dtp(
        &app,
        &["top", "--iterations", "2", "--interval-ms", "200", "--json"],
    )
    .await;
    assert_eq!(frames.code, 0);
    let frames: Vec<Value> = frames
        .out
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON frame per line"))
        .collect();
    assert_eq!(frames.len(), 2);
    let mail = |frame: &Value| {
        frame["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .find(|q| q["queue"] == "mail")
            .cloned()
            .expect("mail")
    };
    assert!(
        mail(&frames[0])["succeededPerSecond"].is_null(),
        "no rate on the first frame"
    );
    assert!(mail(&frames[1])["succeededPerSecond"].is_number());

    let closed = format!("http://127.0.0.1:{}", testkit::free_port());
    assert_eq!(dtp_at(&closed, &["top", "--iterations", "1"]).await.code, 3);
}

#[tokio::test]
async fn workers_list_shows_the_running_worker() {
    let app = spawn_app().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let listed: Value = json_of(&dtp(&app, &["workers", "list", "--json"]).await);
        if listed["workers"].as_array().is_some_and(|w| !w.is_empty()) {
            assert_eq!(listed["workers"][0]["concurrency"], 8);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no worker listed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let table = dtp(&app, &["workers", "list"]).await;
    assert!(
        table.out.contains("busy") && table.out.contains("slots"),
        "{}",
        table.out
    );
}

#[tokio::test]
async fn queues_recount_counts_a_table_changed_by_sql_again() {
    let app = api_only_with(|_| {}).await;
    sqlx::query(
        "insert into tasks (type, payload, queue, status, attempt_count, max_attempts, scheduled_for, run_at, \
         completed_at) select 'noop', '{}', 'loaded', 'SUCCEEDED', 1, 3, now(), now(), now() \
         from generate_series(1, 7)",
    )
    .execute(&app.pool)
    .await
    .expect("load by SQL");
    let succeeded = |list: &QueueList| {
        list.queues
            .iter()
            .find(|q| q.name == "loaded")
            .map_or(0, |q| q.counts.succeeded)
    };
    let before: QueueList = json_of(&dtp(&app, &["queues", "list", "--json"]).await);
    assert_eq!(succeeded(&before), 0, "rows written by SQL are not counted");
    let recounted = dtp(&app, &["queues", "recount"]).await;
    assert_eq!(recounted.code, 0, "{}", recounted.err);
    let after: QueueList = json_of(&dtp(&app, &["queues", "list", "--json"]).await);
    assert_eq!(succeeded(&after), 7);
}
