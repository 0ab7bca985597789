//! TaskPilot, the control plane: users create web tasks, bind them to DTP tasks, read a
//! normalized execution view and cancel. DTP owns execution state; TaskPilot only asks it and
//! translates its answers into stable HTTP semantics (404/409/204, 502/503/504 for faults).

pub mod api;
pub mod app;
pub mod config;
pub mod execution;
pub mod scheduler_client;
pub mod store;

pub use app::App;
pub use config::Config;
