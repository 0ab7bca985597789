//! DTP, the Distributed Task Platform: the execution plane of TaskPilot.
//!
//! A PostgreSQL queue table, workers that claim with `FOR UPDATE SKIP LOCKED`, retries with
//! backoff, leases that let any process rescue a dead worker's tasks, and cancel. The crate is a
//! binary (`dtp`) and a library: an embedding program registers its own handlers and runs the
//! API and the worker in its own process.
//!
//! ```no_run
//! use dtp::handlers::{handler_fn, HandlerError, HandlerRegistry};
//! use dtp::{App, Config};
//! use serde_json::json;
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn embed() -> anyhow::Result<()> {
//! let registry = HandlerRegistry::with_builtins().register(
//!     "resize-image",
//!     handler_fn(|ctx| async move {
//!         let url = ctx.payload["url"].as_str()
//!             .ok_or_else(|| HandlerError::Permanent("payload.url is required".into()))?;
//!         Ok(json!({ "resized": url }))
//!     }),
//! );
//! let app = App::build_with_handlers(Config::defaults(), registry).await?;
//! let shutdown = CancellationToken::new();
//! apikit::cancel_on_signals(shutdown.clone());
//! app.run_until_stopped(shutdown).await
//! # }
//! ```

pub mod api;
pub mod app;
pub mod cadence;
pub mod cli;
pub mod config;
pub mod db;
pub mod handlers;
pub mod metrics;
pub mod queue;
pub mod ui;
pub mod worker;

pub use app::App;
pub use config::Config;
