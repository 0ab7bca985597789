//! Schedules (next and last run, pause and resume) and the workers seen lately.

use std::time::Duration;

use axum::extract::{Form, State};
use axum::response::Response;
use axum::Extension;
use chrono::Utc;
use common::SchedulePatch;
use maud::html;

use super::layout::{self, action, when, Section};
use super::{Ctx, Failure, Page, Ui};
use crate::api::{operator, ApiError};
use crate::queue;

/// Workers seen within this long are listed.
const SEEN_WITHIN: Duration = Duration::from_secs(10 * 60);

/// The schedules page.
pub(super) async fn schedules(State(ui): State<Ui>, Extension(ctx): Extension<Ctx>) -> Page {
    let schedules = queue::schedules(&ui.app.pool).await?;
    let now = Utc::now();
    let body = html! {
        section #schedule-list data-live {
            @if schedules.is_empty() {
                p.empty { "No schedules. Create one with " code { "dtp schedules create" } " or " code { "POST /schedules" } "." }
            } @else {
                div.scroll {
                    table.data #schedules {
                        thead { tr { th { "Name" } th { "Cron" } th { "Task" } th { "Next run" } th { "Last run" } th { "" } } }
                        tbody {
                            @for s in &schedules {
                                tr data-schedule=(s.name) {
                                    td { strong { (s.name) } }
                                    td { code { (s.cron) } " " span.muted { (s.timezone) } }
                                    td { (s.task.task_type) " in " (s.task.queue.clone().unwrap_or_else(|| common::limits::DEFAULT_QUEUE.into())) }
                                    td { @if s.paused { span.badge.neutral { "paused" } } @else { (when(s.next_run_at, now)) } }
                                    td { (when(s.last_run_at, now)) }
                                    td {
                                        @if s.paused { (action(&ctx, ("/schedules/action", &[("name", s.name.as_str()), ("action", "resume")]), "Resume", "primary", None)) }
                                        @else { (action(&ctx, ("/schedules/action", &[("name", s.name.as_str()), ("action", "pause")]), "Pause", "", None)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&ctx, Section::Schedules, "Schedules", body))
}

/// A schedule's action form (the name in the form: see the queues' form).
#[derive(serde::Deserialize)]
pub(super) struct ScheduleAction {
    name: String,
    action: String,
}

/// Pause or resume a schedule, then back to the schedules.
pub(super) async fn schedule_act(
    State(ui): State<Ui>,
    Extension(ctx): Extension<Ctx>,
    Form(ScheduleAction { name, action }): Form<ScheduleAction>,
) -> Result<Response, Failure> {
    let paused = match action.as_str() {
        "pause" => true,
        "resume" => false,
        _ => {
            return Err(ApiError::BadRequest(format!(
                "a schedule's action is pause or resume, got {action:?}"
            ))
            .into())
        }
    };
    let patch = SchedulePatch {
        paused: Some(paused),
        ..SchedulePatch::default()
    };
    Ok(
        match operator::change_schedule(&ui.app, &name, patch).await {
            Ok(s) => ctx.redirect(
                "/schedules",
                true,
                &format!(
                    "Schedule {}: {}.",
                    s.name,
                    if s.paused { "paused" } else { "resumed" }
                ),
            ),
            Err(refused @ ApiError::NotFound(_)) => {
                ctx.redirect("/schedules", false, &refused.to_string())
            }
            Err(other) => return Err(other.into()),
        },
    )
}

/// The workers seen in the last ten minutes.
pub(super) async fn workers(State(ui): State<Ui>, Extension(ctx): Extension<Ctx>) -> Page {
    let workers = queue::workers(&ui.app.pool, SEEN_WITHIN).await?;
    let now = Utc::now();
    let body = html! {
        section #worker-list data-live {
            @if workers.is_empty() {
                p.empty { "No worker reported in the last ten minutes." }
            } @else {
                div.scroll {
                    table.data #workers {
                        thead { tr { th { "Worker" } th { "Host" } th { "Slots busy" } th { "Last heartbeat" } th { "Started" } th { "Types" } } }
                        tbody {
                            @for w in workers.into_iter().map(queue::WorkerRow::into_view) {
                                tr data-worker=(w.id) {
                                    td { code { (w.id) } @if w.stopped_at.is_some() { " " span.badge.neutral { "stopped" } } }
                                    td { (w.host) }
                                    td { meter min="0" max=(w.concurrency) value=(w.busy) {} " " (w.busy) " / " (w.concurrency) }
                                    td { (when(Some(w.last_seen_at), now)) }
                                    td { (when(Some(w.started_at), now)) }
                                    td.muted { (w.types.join(", ")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&ctx, Section::Workers, "Workers", body))
}
