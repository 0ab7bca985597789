//! The system under test: the real `dtp` and `taskpilot` binaries started as child processes on
//! free ports, each over a fresh database, talking real HTTP. Used by the end-to-end tests in
//! `tests/` and the benchmarks in `benches/` (whose workloads live in [`workloads`]).
//!
//! The binaries are the ones `cargo test --workspace` (or `cargo build`) just built next to the
//! test executable; their logs are kept in files and printed when a test fails.

mod process;
mod system;
pub mod workloads;

pub use process::{Service, ServiceKind};
pub use system::System;
pub use testkit::{assert_problem, TaskPilotClient};

/// Polls `done` every 50 ms until it holds; panics after two minutes (a hang, not a timing
/// goal), naming `what` it waited for.
pub async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
