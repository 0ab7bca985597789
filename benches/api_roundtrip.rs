//! API round trips over real HTTP on loopback: DTP create, and TaskPilot create → bind →
//! execution view (both services in this process, each on its own fresh database).
//!
//! `cargo bench --bench api_roundtrip` (PostgreSQL by the test harness rule).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use testkit::{TaskPilotClient, TestDb};
use tokio_util::sync::CancellationToken;

struct Services {
    dtp: String,
    taskpilot: TaskPilotClient,
    stop: CancellationToken,
    _dbs: (TestDb, TestDb),
}

async fn start() -> Services {
    let (dtp_db, web_db) = (TestDb::create().await, TestDb::create().await);
    let stop = CancellationToken::new();
    let mut dtp_config = dtp::Config::defaults();
    dtp_config.addr = "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"));
    dtp_config.database_url = dtp_db.url.clone();
    let dtp = dtp::App::build(dtp_config)
        .await
        .unwrap_or_else(|e| panic!("dtp: {e:#}"));
    let dtp_url = format!("http://127.0.0.1:{}", dtp.port());
    tokio::spawn(dtp.run_until_stopped(stop.clone()));
    let mut tp_config = taskpilot::Config::defaults();
    tp_config.addr = "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"));
    tp_config.database_url = web_db.url.clone();
    tp_config.dtp_url = dtp_url.clone();
    let tp = taskpilot::App::build(tp_config)
        .await
        .unwrap_or_else(|e| panic!("taskpilot: {e:#}"));
    let taskpilot = TaskPilotClient::new(format!("http://127.0.0.1:{}", tp.port()));
    tokio::spawn(tp.run_until_stopped(stop.clone()));
    Services {
        dtp: dtp_url,
        taskpilot,
        stop,
        _dbs: (dtp_db, web_db),
    }
}

fn api_roundtrip(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    let services = runtime.block_on(start());
    let client = reqwest::Client::new();
    let mut group = c.benchmark_group("api_roundtrip");
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("dtp_create", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = client
                .post(format!("{}/tasks", services.dtp))
                .json(&json!({"type": "noop"}))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(response.status().as_u16(), 201);
        });
    });
    group.bench_function("taskpilot_create_bind_execution", |b| {
        b.to_async(&runtime).iter(|| async {
            let api = &services.taskpilot;
            let id = api
                .create_and_bind(json!({"type": "noop"}), json!({}))
                .await;
            api.execution(id).await;
        });
    });
    group.finish();
    services.stop.cancel();
}

criterion_group!(benches, api_roundtrip);
criterion_main!(benches);
