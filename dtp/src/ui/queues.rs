//! Queues (state badge, pause and resume, limits) and failures grouped by their error.

use axum::extract::{Form, Query, State};
use axum::response::Response;
use axum::Extension;
use common::{BulkFilter, Queue, QueuePatch, TaskStatus};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, action, count, csrf_field, Section};
use super::tasks::clip;
use super::{Ctx, Failure, Page, Ui};
use crate::api::{operator, ApiError};
use crate::queue;

/// Past this wait, a queue's oldest due task counts as backed up.
const BACKLOGGED_AFTER_MS: i64 = 5_000;

/// Paused, idle (nothing to do), processing, or backlogged (a due task waited over 5 s).
pub(super) fn queue_badge(q: &Queue) -> Markup {
    let (class, text) = if q.paused {
        ("neutral", "paused")
    } else if q.counts.pending == 0 && q.counts.running == 0 {
        ("idle", "idle")
    } else if q
        .oldest_pending_age_ms
        .is_some_and(|ms| ms > BACKLOGGED_AFTER_MS)
    {
        ("backlogged", "backlogged")
    } else {
        ("processing", "processing")
    };
    html! { span class={"badge " (class)} data-badge=(text) { (text) } }
}

/// The queues page.
pub(super) async fn list(State(ui): State<Ui>, Extension(ctx): Extension<Ctx>) -> Page {
    let queues = queue::queues(&ui.app.pool).await?;
    let body = html! {
        section #queue-list data-live {
            @if queues.is_empty() { p.empty { "No queues yet." } }
            div.queue-cards {
                @for q in &queues { (queue_card(&ctx, q)) }
            }
        }
    };
    Ok(layout::page(&ctx, Section::Queues, "Queues", body))
}

fn queue_card(ctx: &Ctx, q: &Queue) -> Markup {
    // The name travels in the form, not the path: `.` and `..` are queue names a browser
    // would resolve away in a path.
    let act = |action: &'static str| [("name", q.name.as_str()), ("action", action)];
    let (pause, resume) = (act("pause"), act("resume"));
    html! {
        article.queue data-queue=(q.name) {
            header {
                h2 { a href=(ctx.link(&format!("/tasks?queue={}", q.name))) { (q.name) } }
                (queue_badge(q))
            }
            dl.facts {
                div { dt { "Pending" } dd { (count(q.counts.pending)) } }
                div { dt { "Running" } dd { (count(q.counts.running)) } }
                div { dt { "Failed" } dd { (count(q.counts.failed)) } }
                div { dt { "Oldest pending" } dd { (q.oldest_pending_age_ms.map(layout::duration_text).unwrap_or_else(|| "—".into())) } }
                div { dt { "Concurrency limit" } dd { (q.concurrency_limit.map(|l| l.to_string()).unwrap_or_else(|| "none".into())) } }
                div { dt { "Rate limit" } dd { (q.rate_limit_per_second.map(|r| format!("{r}/s")).unwrap_or_else(|| "none".into())) } }
            }
            @if !ctx.read_only {
                div.actions {
                    @if q.paused { (action(ctx, ("/queues/action", &resume), "Resume", "primary", None)) }
                    @else { (action(ctx, ("/queues/action", &pause), "Pause", "", Some("Pause this queue? Running tasks finish; no new ones start."))) }
                }
                form.limits method="post" action=(ctx.link("/queues/action")) {
                    (csrf_field(ctx))
                    input type="hidden" name="name" value=(q.name);
                    input type="hidden" name="action" value="limits";
                    label { span { "Concurrency" } input type="number" name="concurrencyLimit" min="1" max="1000000" step="1" placeholder="none" value=[q.concurrency_limit]; }
                    label { span { "Per second" } input type="number" name="rateLimitPerSecond" min="0.001" step="any" placeholder="none" value=[q.rate_limit_per_second]; }
                    button type="submit" { "Set limits" }
                }
            }
        }
    }
}

/// A queue's action form: pause, resume, or limits (an empty field removes the limit).
#[derive(Deserialize)]
pub(super) struct QueueAction {
    name: String,
    action: String,
    #[serde(default, rename = "concurrencyLimit")]
    concurrency_limit: String,
    #[serde(default, rename = "rateLimitPerSecond")]
    rate_limit_per_second: String,
}

/// Pause, resume or set the limits of a queue, then back to the queues.
pub(super) async fn act(
    State(ui): State<Ui>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<QueueAction>,
) -> Result<Response, Failure> {
    let patch = match form.action.as_str() {
        "pause" => QueuePatch {
            paused: Some(true),
            ..QueuePatch::default()
        },
        "resume" => QueuePatch {
            paused: Some(false),
            ..QueuePatch::default()
        },
        "limits" => match limits_patch(&form) {
            Ok(patch) => patch,
            Err(detail) => return Ok(ctx.redirect("/queues", false, &detail)),
        },
        other => {
            let refused = format!("a queue's action is pause, resume or limits, got {other:?}");
            return Err(ApiError::BadRequest(refused).into());
        }
    };
    Ok(
        match operator::configure_queue(&ui.app, &form.name, &patch).await {
            Ok(q) => {
                let state = if q.paused { "paused" } else { "running" };
                ctx.redirect(
                    "/queues",
                    true,
                    &format!("Queue {}: {state}, limits saved.", q.name),
                )
            }
            Err(ApiError::Invalid(detail)) => ctx.redirect("/queues", false, &detail),
            Err(other) => return Err(other.into()),
        },
    )
}

fn limits_patch(limits: &QueueAction) -> Result<QueuePatch, String> {
    let concurrency = match limits.concurrency_limit.trim() {
        "" => None,
        text => Some(
            text.parse::<i32>()
                .map_err(|_| format!("concurrency limit must be a whole number, got {text:?}"))?,
        ),
    };
    let rate = match limits.rate_limit_per_second.trim() {
        "" => None,
        text => Some(
            text.parse::<f64>()
                .map_err(|_| format!("rate limit must be a number, got {text:?}"))?,
        ),
    };
    Ok(QueuePatch {
        concurrency_limit: Some(concurrency),
        rate_limit_per_second: Some(rate),
        paused: None,
    })
}

#[derive(Deserialize)]
pub(super) struct FailuresQuery {
    #[serde(default)]
    queue: Option<String>,
}

/// FAILED tasks grouped by queue and error, largest group first, each with its actions.
pub(super) async fn failures(
    State(ui): State<Ui>,
    Extension(ctx): Extension<Ctx>,
    Query(query): Query<FailuresQuery>,
) -> Page {
    let queue_name = query.queue.filter(|q| !q.is_empty());
    if let Some(Err(refused)) = queue_name
        .as_deref()
        .map(|q| common::limits::QueueName::parse("queue", q))
    {
        return Err(ApiError::BadRequest(refused).into());
    }
    let groups = queue::failure_groups(&ui.app.operator_pool, queue_name.as_deref(), 100).await?;
    let now = chrono::Utc::now();
    let body = html! {
        section #failure-groups data-live {
            @if groups.is_empty() { p.empty { "No failed tasks." } }
            @for g in &groups {
                article.failure data-queue=(g.queue) {
                    header {
                        span.figure { (count(g.tasks)) }
                        span { " failed in " strong { (g.queue) } ", last " (layout::when(g.last_failed_at, now)) }
                    }
                    pre.error-text { (g.error.as_deref().map(|e| clip(e, 600)).unwrap_or_else(|| "(no error recorded)".into())) }
                    // No action on a group without an error text: it would filter on nothing.
                    @if let Some(error) = g.error.as_ref().filter(|e| !e.is_empty()) {
                        @let filter = BulkFilter { status: Some(TaskStatus::Failed), queue: Some(g.queue.clone()), last_error: Some(error.clone()), ..BulkFilter::default() };
                        @let query = group_query(&filter)?;
                        div.actions {
                            a.button href=(format!("{}?{query}", ctx.link("/tasks"))) { "Show tasks" }
                            @if !ctx.read_only {
                                a.button.primary href=(format!("{}?{query}&action=retry", ctx.link("/tasks/bulk"))) { "Retry all…" }
                                a.button.danger href=(format!("{}?{query}&action=delete", ctx.link("/tasks/bulk"))) { "Delete all…" }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&ctx, Section::Failures, "Failures", body))
}

fn group_query(filter: &BulkFilter) -> Result<String, ApiError> {
    let mut pairs = vec![("status", "FAILED".to_owned())];
    if let Some(q) = &filter.queue {
        pairs.push(("queue", q.clone()));
    }
    if let Some(e) = &filter.last_error {
        pairs.push(("lastError", e.clone()));
    }
    serde_urlencoded::to_string(pairs)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("encoding a filter: {e}")))
}
