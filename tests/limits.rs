//! What one client's requests may take from the process that serves everyone: measured on the
//! real binary, from outside.

use serde_json::Value;
use suite::{owned_env, Service, ServiceKind};
use testkit::TestDb;

/// The process's resident set now and at its peak (`VmRSS`, `VmHWM`), in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    };
    (kib("VmRSS:") * 1024, kib("VmHWM:") * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_pages_over_megabyte_payloads_hold_a_bounded_amount_of_memory() {
    let db = TestDb::create().await;
    let dtp = Service::start(
        ServiceKind::Dtp,
        "dtp-limits",
        owned_env(&[("DTP_DATABASE_URL", &db.url), ("DTP_WORKER", "false")]),
    )
    .await;
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    // 300 tasks of 900 KB each, loaded by SQL.
    sqlx::query(
        "insert into tasks (type, payload, scheduled_for, run_at, max_attempts) \
         select 'demo', to_jsonb(repeat(chr(97 + g % 26), 900000)), now(), now(), 3 \
         from generate_series(1, 300) g",
    )
    .execute(&pool)
    .await
    .expect("load");
    let pid = dtp.pid().expect("running");
    let (before, _) = memory_of(pid);
    let client = reqwest::Client::new();

    let base = dtp.url();
    let pages = |query: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        (0..8).map(move |_| {
            let (client, url) = (client.clone(), format!("{base}/tasks?{query}"));
            tokio::spawn(async move {
                let response = client.get(url).send().await.expect("answered");
                assert_eq!(response.status(), 200);
                response.json::<Value>().await.expect("page")
            })
        })
    };
    let mut plain = Vec::new();
    let mut detailed = Vec::new();
    for page in pages("limit=500").chain(pages("limit=500&include=payload,result")) {
        let page = page.await.expect("joined");
        let tasks = page["tasks"].as_array().expect("tasks").clone();
        if tasks.iter().any(|t| t.get("payload").is_some()) {
            detailed.push((tasks, page["nextAfter"].clone()));
        } else {
            plain.push(tasks);
        }
    }
    let (_, peak) = memory_of(pid);

    let grew_mb = peak.saturating_sub(before) / (1024 * 1024);
    eprintln!(
        "dtp grew from {} MB to a peak of {} MB",
        before >> 20,
        peak >> 20
    );
    assert!(grew_mb <= 256, "the process grew by {grew_mb} MB");
    assert_eq!(plain.len(), 8);
    for tasks in plain {
        assert_eq!(tasks.len(), 300);
        assert!(tasks.iter().all(|t| t.get("result").is_none()));
    }
    assert_eq!(detailed.len(), 8);
    for (tasks, next_after) in detailed {
        // 4 MiB of payloads: four of 900 KB, and the cursor after the fourth.
        assert_eq!(tasks.len(), 4);
        assert_eq!(next_after, tasks[3]["id"]);
        assert_eq!(tasks[0]["payload"].as_str().map(str::len), Some(900_000));
    }
}
