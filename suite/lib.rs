//! The system under test: the real `dtp` and `taskpilot` binaries started as child processes on
//! free ports, each over a fresh database, talking real HTTP. Used by the end-to-end tests in
//! `tests/` and the benchmarks in `benches/` (whose workloads live in [`workloads`]).
//!
//! The binaries are the ones `cargo test --workspace` (or `cargo build`) just built next to the
//! test executable; their logs are kept in files and printed when a test fails.

mod pgbouncer;
mod process;
mod system;
pub mod workloads;

pub use pgbouncer::PgBouncer;
pub use process::{owned_env, Service, ServiceKind};
pub use system::System;
pub use testkit::{assert_problem, wait_until, TaskPilotClient};
