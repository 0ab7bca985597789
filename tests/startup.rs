//! Start-up against the database server: both services started before their PostgreSQL is up
//! wait for it and then serve (as in `docker compose up`, where the server may still be
//! initialising), and both refuse a server older than the oldest supported, at once, naming
//! both versions.

use std::time::Duration;

use common::TaskStatus;
use serde_json::json;
use suite::{owned_env, Service, ServiceKind, TaskPilotClient};
use testkit::{address_of, OldServer, TestDb, ThrowawayPostgres};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_started_before_their_database_wait_for_it_then_serve() {
    let Some(postgres) = ThrowawayPostgres::initialized() else {
        return;
    };
    let dtp_port = testkit::free_port();
    let dtp = Service::start_at(
        ServiceKind::Dtp,
        "dtp",
        dtp_port,
        owned_env(&[
            ("DTP_DATABASE_URL", &postgres.database_url("dtp")),
            ("DTP_POLL_INTERVAL_MS", "200"),
        ]),
    );
    let taskpilot = Service::start(
        ServiceKind::TaskPilot,
        "taskpilot",
        owned_env(&[
            ("TASKPILOT_DATABASE_URL", &postgres.database_url("webdb")),
            ("DTP_URL", &format!("http://127.0.0.1:{dtp_port}")),
        ]),
    );
    // Both processes run (and find nothing on the server's port) before the server starts.
    let server = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        tokio::task::block_in_place(|| postgres.start_again());
    };
    let (dtp, taskpilot, ()) = tokio::join!(dtp, taskpilot, server);

    for service in [&dtp, &taskpilot] {
        let log = service.log_text();
        assert!(
            log.contains("the database server is not reachable yet; trying again"),
            "{} logged no retry:\n{log}",
            service.name()
        );
    }
    let api = TaskPilotClient::new(taskpilot.url());
    let view = api
        .run_until(
            json!({"type": "demo", "payload": "after the wait"}),
            json!({}),
            TaskStatus::Succeeded,
        )
        .await;
    assert_eq!(view.attempt_count, 1);
}

/// A server that accepts connections and never answers (a black hole, a wedged proxy) ends
/// start-up with an error once the start-up wait is over: one attempt cannot hang it. The log,
/// written to a pipe, is plain text.
#[tokio::test]
async fn a_server_that_never_answers_ends_start_up_after_its_wait() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("address").port();
    // The first connection is closed at once (a logged retry), the others held unanswered.
    let holding = tokio::spawn(async move {
        let (mut first, mut held) = (true, Vec::new());
        while let Ok((connection, _)) = silent.accept().await {
            if first {
                first = false;
                drop(connection);
            } else {
                held.push(connection);
            }
        }
    });
    let (status, log) = Service::run_to_exit(
        ServiceKind::Dtp,
        owned_env(&[
            (
                "DTP_DATABASE_URL",
                &format!("postgres://postgres@127.0.0.1:{port}/dtp"),
            ),
            ("DTP_DB_STARTUP_TIMEOUT_MS", "2000"),
        ]),
        Duration::from_secs(60),
    )
    .await;
    holding.abort();
    let status = status.expect("dtp still waited on a server that never answers");
    assert!(!status.success(), "dtp exited with {status}:\n{log}");
    assert!(
        log.contains("not reachable yet; trying again")
            && log.contains("cannot reach the database server")
            && log.contains("no answer within"),
        "{log}"
    );
    // Its output went to a pipe, not a terminal: no colour codes, as in `docker logs`.
    assert!(
        !log.contains('\x1b'),
        "ANSI escape codes in a piped log:\n{log:?}"
    );
}

#[tokio::test]
async fn both_services_refuse_a_server_older_than_the_oldest_supported() {
    let db = TestDb::create().await;
    let old = OldServer::start(&address_of(&db.url), "13.11").await;
    for (kind, variable) in [
        (ServiceKind::Dtp, "DTP_DATABASE_URL"),
        (ServiceKind::TaskPilot, "TASKPILOT_DATABASE_URL"),
    ] {
        // A start-up wait far longer than the patience below: refusing must not wait.
        let startup = match kind {
            ServiceKind::Dtp => "DTP_DB_STARTUP_TIMEOUT_MS",
            ServiceKind::TaskPilot => "TASKPILOT_DB_STARTUP_TIMEOUT_MS",
        };
        let (status, log) = Service::run_to_exit(
            kind,
            owned_env(&[(variable, &old.url_for(&db.url)), (startup, "600000")]),
            Duration::from_secs(30),
        )
        .await;
        let status = status.unwrap_or_else(|| panic!("{kind:?} still ran against PostgreSQL 13"));
        assert!(!status.success(), "{kind:?} exited with {status}:\n{log}");
        assert!(
            log.contains("PostgreSQL 13.11") && log.contains("PostgreSQL 14.0"),
            "{kind:?}'s error names neither version:\n{log}"
        );
    }
    // Nothing was created or migrated on the refused server.
    let tables: i64 = sqlx::query_scalar(
        "select count(*) from information_schema.tables where table_schema = 'public'",
    )
    .fetch_one(&db.pool().await)
    .await
    .expect("count tables");
    assert_eq!(tables, 0);
}
