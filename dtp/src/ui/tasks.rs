//! Tasks: the list with every filter of `GET /tasks` in the URL, one task with its attempts
//! and the actions its state allows, and bulk actions on everything a filter matches.

use axum::extract::{Form, Path, Query, State};
use axum::response::Response;
use axum::Extension;
use chrono::Utc;
use common::{Attempt, BulkAction, BulkFilter, Queue, TaskStatus, TaskView};
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::HashMap;

use super::layout::{self, action, count, csrf_field, state_badge, when, Section};
use super::{Ctx, Failure, Page, Ui};
use crate::api::list::{parse_filter, ListParams};
use crate::api::{operator, ApiError};
use crate::queue::{self, ListFilter, TaskId};

const STATES: [TaskStatus; 5] = [
    TaskStatus::Pending,
    TaskStatus::Running,
    TaskStatus::Succeeded,
    TaskStatus::Failed,
    TaskStatus::Canceled,
];

/// `params` as a query string, with `change` applied.
fn query_with(
    params: &ListParams,
    change: impl FnOnce(&mut ListParams),
) -> Result<String, ApiError> {
    let mut params = params.clone();
    change(&mut params);
    query_of(&params)
}

/// The tasks page.
pub(super) async fn list(
    State(ui): State<Ui>,
    Extension(ctx): Extension<Ctx>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let params = params.without_blanks();
    // The list shows neither payloads nor results, so it never reads them.
    let filter = queue::ListFilter {
        detail: queue::Detail::default(),
        ..parse_filter(params.clone())?
    };
    let page = queue::list(&ui.app.operator_pool, &filter).await?;
    let next_after = page.next_after.map(|id| id.0);
    let tasks: Vec<TaskView> = page.rows.into_iter().map(|t| t.row.into_view()).collect();
    let queues = queue::queues(&ui.app.pool).await?;
    let now = Utc::now();
    let tabs = tabs(&ctx, &params, &filter, &queues)?;
    let list_link = |query: String| format!("{}?{query}", ctx.link("/tasks"));
    let newest = list_link(query_with(&params, |p| p.after = None)?);
    let older = match next_after {
        Some(after) => Some(list_link(query_with(&params, |p| {
            p.after = Some(after.to_string())
        })?)),
        None => None,
    };
    // Everything the filters match, every page; `all=1` says "every task" when there is no filter.
    let bulk_query = query_with(&params, |p| {
        p.after = None;
        p.limit = None;
    })?;
    let every_task = if filter.to_bulk().all { "&all=1" } else { "" };
    let bulk_link = |action: BulkAction| {
        format!(
            "{}?{bulk_query}{every_task}&action={}",
            ctx.link("/tasks/bulk"),
            action_name(action)
        )
    };
    let body = html! {
        (tabs)
        (filter_form(&ctx, &params, &queues))
        section #task-list data-live {
            @if tasks.is_empty() {
                p.empty { "No task matches these filters." }
            } @else {
                div.scroll {
                    table.data #tasks {
                        thead { tr {
                            th.num { "Id" } th { "Type" } th { "Queue" } th { "State" }
                            th.num { "Attempts" } th { "Created" } th { "Last error" }
                        } }
                        tbody {
                            @for t in &tasks {
                                tr data-task=(t.id) {
                                    td.num { a href=(ctx.link(&format!("/tasks/{}", t.id))) { (t.id) } }
                                    td { (t.task_type) }
                                    td { (t.queue) }
                                    td { (state_badge(t.status)) }
                                    td.num { (t.attempt_count) "/" (t.max_attempts) }
                                    td { (when(Some(t.created_at), now)) }
                                    td.error-text { @if let Some(e) = &t.last_error { (clip(e, 120)) } }
                                }
                            }
                        }
                    }
                }
                nav.pager {
                    @if params.after.is_some() { a href=(newest) { "← Newest" } }
                    @if let Some(older) = &older { a href=(older) { "Older →" } }
                }
            }
        }
        @if !ctx.read_only && params.idempotency_key.is_none() {
            section.bulk {
                h2 { "Everything matching these filters" }
                p.muted { "Applies to every page, not only this one; you will see how many tasks first." }
                @for (action, label) in [(BulkAction::Retry, "Retry all…"), (BulkAction::Cancel, "Cancel all…"), (BulkAction::Delete, "Delete all…")] {
                    a.button href=(bulk_link(action)) { (label) }
                    " "
                }
            }
        }
    };
    Ok(layout::page(&ctx, Section::Tasks, "Tasks", body))
}

/// The state tabs, each with its count (from the queues' counts: of the filtered queue, or
/// of all), keeping the other filters.
fn tabs(
    ctx: &Ctx,
    params: &ListParams,
    filter: &ListFilter,
    queues: &[Queue],
) -> Result<Markup, ApiError> {
    let counted: Vec<&Queue> = queues
        .iter()
        .filter(|q| filter.queue.as_ref().is_none_or(|name| *name == q.name))
        .collect();
    let of = |state: TaskStatus| -> i64 {
        counted
            .iter()
            .map(|q| match state {
                TaskStatus::Pending => q.counts.pending,
                TaskStatus::Running => q.counts.running,
                TaskStatus::Succeeded => q.counts.succeeded,
                TaskStatus::Failed => q.counts.failed,
                TaskStatus::Canceled => q.counts.canceled,
            })
            .sum()
    };
    let link = |status: Option<TaskStatus>| -> Result<String, ApiError> {
        let query = query_with(params, |p| {
            p.status = status.map(|s| s.as_str().to_owned());
            p.after = None;
        })?;
        Ok(format!("{}?{query}", ctx.link("/tasks")))
    };
    let all = link(None)?;
    let mut states = Vec::new();
    for state in STATES {
        states.push((state, link(Some(state))?));
    }
    Ok(html! {
        nav.tabs #state-tabs data-live aria-label="States" {
            a href=(all) aria-current=[filter.status.is_none().then_some("page")] { "All" }
            @for (state, link) in states {
                a href=(link) data-state=(state.as_str()) aria-current=[(filter.status == Some(state)).then_some("page")] {
                    (title_case(state)) " " span.count { (count(of(state))) }
                }
            }
        }
    })
}

fn filter_form(ctx: &Ctx, params: &ListParams, queues: &[Queue]) -> Markup {
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    html! {
        form.filters #filters method="get" action=(ctx.link("/tasks")) {
            @if let Some(status) = &params.status { input type="hidden" name="status" value=(status); }
            // A browser would send a line break back as CRLF, an error no task has: such an
            // exact-error condition is dropped when the form is sent (the note below says so).
            @if let Some(error) = params.last_error.as_ref().filter(|e| !e.contains(['\n', '\r'])) { input type="hidden" name="lastError" value=(error); }
            @if let Some(key) = &params.idempotency_key { input type="hidden" name="idempotencyKey" value=(key); }
            label { span { "Queue" }
                select name="queue" {
                    option value="" { "All queues" }
                    @for q in queues {
                        option value=(q.name) selected[params.queue.as_ref() == Some(&q.name)] { (q.name) }
                    }
                }
            }
            label { span { "Type" } input type="text" name="type" value=(value(&params.task_type)) placeholder="any"; }
            label { span { "Error contains" } input type="text" name="lastErrorContains" value=(value(&params.last_error_contains)) placeholder="any"; }
            label { span { "Created from (UTC)" } input type="datetime-local" step="1" name="createdAfter" value=(value(&params.created_after)); }
            label { span { "Created before (UTC)" } input type="datetime-local" step="1" name="createdBefore" value=(value(&params.created_before)); }
            div.buttons {
                button.primary type="submit" { "Filter" }
                a.button href=(ctx.link("/tasks")) { "Clear" }
            }
        }
        @if let Some(error) = &params.last_error {
            p.muted {
                "Only tasks whose last error is exactly: " code { (clip(error, 200)) }
                @if error.contains(['\n', '\r']) { " (filtering again drops this condition)" }
            }
        }
    }
}

/// One task: its fields, latency timeline, payload and result, attempts and actions.
pub(super) async fn detail(
    State(ui): State<Ui>,
    Extension(ctx): Extension<Ctx>,
    Path(raw): Path<String>,
) -> Page {
    let id = task_id(&raw)?;
    let task = queue::get(&ui.app.pool, id).await?.into_view();
    let attempts = {
        let mut conn = ui.app.pool.acquire().await?;
        queue::attempts(&mut conn, id).await?
    };
    let now = Utc::now();
    let wait = task
        .processing_started_at
        .map(|s| (s - task.scheduled_for).num_milliseconds());
    let run = match (task.processing_started_at, task.completed_at) {
        (Some(s), Some(e)) => Some((e - s).num_milliseconds()),
        (Some(s), None) if task.status == TaskStatus::Running => Some((now - s).num_milliseconds()),
        _ => None,
    };
    let body = html! {
        section #task data-live {
            div.task-head {
                (state_badge(task.status))
                span { (task.task_type) " in " a href=(ctx.link(&format!("/tasks?queue={}", task.queue))) { (task.queue) } }
                span.muted { "attempt " (task.attempt_count) " of " (task.max_attempts) " · priority " (task.priority) }
            }
            (actions(&ctx, &task))
            dl.timeline {
                div { dt { "Created" } dd { (when(Some(task.created_at), now)) } }
                div { dt { "Due" } dd { (when(Some(task.scheduled_for), now)) } }
                div { dt { "Queue wait" } dd { @match wait { Some(ms) => (layout::duration_text(ms)), None => span.muted { "not started" } } } }
                div { dt { "Started" } dd { (when(task.processing_started_at, now)) } }
                div { dt { "Run" } dd { @match run { Some(ms) => (layout::duration_text(ms)), None => span.muted { "—" } } } }
                div { dt { "Finished" } dd { (when(task.completed_at, now)) } }
                @if task.next_attempt_at.is_some() {
                    div { dt { "Next attempt" } dd { (when(task.next_attempt_at, now)) } }
                }
            }
            @if let Some(error) = &task.last_error {
                div.callout.error { strong { "Last error" } pre { (error) } }
            }
            (layout::json_block("Payload", &task.payload, true))
            @if let Some(result) = &task.result { (layout::json_block("Result", result, true)) }
            h2 { "Attempts" }
            @if attempts.is_empty() {
                p.empty { "No attempt has started yet." }
            } @else {
                div.scroll { (attempts_table(&attempts, now)) }
            }
            dl.facts {
                div { dt { "Worker" } dd { (task.worker_id.clone().unwrap_or_else(|| "—".into())) } }
                div { dt { "Timeout" } dd { (task.timeout_ms.map(layout::duration_text).unwrap_or_else(|| "none".into())) } }
                div { dt { "Idempotency key" } dd { (task.idempotency_key.clone().unwrap_or_else(|| "—".into())) } }
                div { dt { "Updated" } dd { (when(Some(task.updated_at), now)) } }
            }
        }
    };
    Ok(layout::page(
        &ctx,
        Section::Tasks,
        &format!("Task {}", task.id),
        body,
    ))
}

fn attempts_table(attempts: &[Attempt], now: chrono::DateTime<Utc>) -> Markup {
    html! {
        table.data #attempts {
            thead { tr { th.num { "#" } th { "Worker" } th { "Started" } th.num { "Duration" } th { "Outcome" } th { "Error" } } }
            tbody {
                @for a in attempts {
                    tr {
                        td.num { (a.attempt) }
                        td { (a.worker_id.clone().unwrap_or_else(|| "—".into())) }
                        td { (when(a.started_at, now)) }
                        td.num { (a.duration_ms.map(layout::duration_text).unwrap_or_else(|| "running".into())) }
                        td { @match a.outcome { Some(o) => span class={"badge outcome " (format!("{o:?}").to_lowercase())} { (format!("{o:?}").to_lowercase()) }, None => span.badge.running { "running" } } }
                        td.error-text { @if let Some(e) = &a.error { (clip(e, 300)) } }
                    }
                }
            }
        }
    }
}

/// The buttons the task's state allows.
fn actions(ctx: &Ctx, task: &TaskView) -> Markup {
    let path = |action: &str| format!("/tasks/{}/{action}", task.id);
    let open = matches!(task.status, TaskStatus::Pending | TaskStatus::Running);
    let retryable = matches!(task.status, TaskStatus::Failed | TaskStatus::Canceled);
    html! {
        div.actions #task-actions {
            @if open { (action(ctx, (&path("cancel"), &[]), "Cancel", "danger", Some("Cancel this task?"))) }
            @if task.status == TaskStatus::Pending { (action(ctx, (&path("run-now"), &[]), "Run now", "", None)) }
            @if retryable { (action(ctx, (&path("retry"), &[]), "Retry", "primary", None)) }
            @if !open { (action(ctx, (&path("delete"), &[]), "Delete", "danger", Some("Delete this task for good?"))) }
        }
    }
}

/// An action on one task, then back to it (or to the list, after a delete).
pub(super) async fn act(
    State(ui): State<Ui>,
    Extension(ctx): Extension<Ctx>,
    Path((raw, action)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let id = task_id(&raw)?;
    let here = format!("/tasks/{id}");
    let done = match action.as_str() {
        "cancel" => operator::cancel(&ui.app, id).await.map(|_| "Canceled."),
        "retry" => operator::retry(&ui.app, id)
            .await
            .map(|_| "Retried: the task is pending again."),
        "run-now" => operator::run_now(&ui.app, id)
            .await
            .map(|_| "The task is due now."),
        "delete" => operator::delete(&ui.app, id).await.map(|()| "Deleted."),
        _ => return Err(ApiError::NotFound(format!("no action {action:?} on tasks")).into()),
    };
    Ok(match done {
        Ok(notice) if action == "delete" => {
            ctx.redirect("/tasks", true, &format!("Task {id}: {notice}"))
        }
        Ok(notice) => ctx.redirect(&here, true, notice),
        Err(refused @ (ApiError::Conflict(_) | ApiError::NotFound(_))) => {
            ctx.redirect(&here, false, &refused.to_string())
        }
        Err(other) => return Err(other.into()),
    })
}

/// The confirmation page's query: `?action=`, `all=1` when there is no filter, and the list's
/// filters.
#[derive(Deserialize)]
pub(super) struct BulkQuery {
    action: String,
    #[serde(flatten)]
    params: HashMap<String, String>,
}

/// The confirmed form. The filter travels as one query string (`filter`): a browser rewrites
/// the line breaks of each form field as CRLF, which would change an error text with a line
/// break into one no task has; percent-encoded, it has none.
#[derive(Deserialize)]
pub(super) struct BulkForm {
    action: String,
    filter: String,
    /// How many tasks the operator confirmed the action on.
    expected: u64,
    /// When they were counted (the database's time, RFC 3339).
    at: String,
}

fn bulk_action(name: &str) -> Result<BulkAction, ApiError> {
    match name {
        "retry" => Ok(BulkAction::Retry),
        "cancel" => Ok(BulkAction::Cancel),
        "delete" => Ok(BulkAction::Delete),
        other => Err(ApiError::BadRequest(format!(
            "action must be retry, cancel or delete, got {other:?}"
        ))),
    }
}

fn action_name(action: BulkAction) -> &'static str {
    match action {
        BulkAction::Retry => "retry",
        BulkAction::Cancel => "cancel",
        BulkAction::Delete => "delete",
    }
}

/// The filter of a bulk action: the list's parameters (no page, no idempotency key, which is
/// not a bulk condition), read as the list reads them. Without any condition it needs `all=1`,
/// as the API needs `"all": true`: a form that lost its fields must not become "every task".
fn bulk_filter(mut fields: HashMap<String, String>) -> Result<(ListParams, BulkFilter), ApiError> {
    let all = fields.remove("all").is_some_and(|v| v == "1");
    for refused in ["after", "limit", "idempotencyKey"] {
        if fields.contains_key(refused) {
            return Err(ApiError::BadRequest(format!(
                "{refused} is not a condition of a bulk action"
            )));
        }
    }
    let encoded = query_of(&fields)?;
    let params: ListParams = serde_urlencoded::from_str(&encoded)
        .map_err(|e| ApiError::BadRequest(format!("bad filter: {e}")))?;
    let params = params.without_blanks();
    let filter = parse_filter(params.clone())?.to_bulk();
    if filter.all && !all {
        return Err(ApiError::BadRequest(
            "a bulk action without a filter needs all=1: it applies to every task".into(),
        ));
    }
    Ok((params, filter))
}

/// `value` as a query string; failing (it cannot, for these types) is an error, never "".
fn query_of(value: &impl serde::Serialize) -> Result<String, ApiError> {
    serde_urlencoded::to_string(value)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("encoding a filter: {e}")))
}

/// The confirmation of a bulk action: what it applies to, and how many tasks that is now. The
/// form carries that count and the time it was taken: the action then applies only to tasks
/// that qualified then, and does nothing if that is more than the count (see `queue::bulk`).
pub(super) async fn bulk_confirm(
    State(ui): State<Ui>,
    Extension(ctx): Extension<Ctx>,
    Query(query): Query<BulkQuery>,
) -> Page {
    let action = bulk_action(&query.action)?;
    let fields = query.params;
    let (params, filter) = bulk_filter(fields.clone())?;
    let back = format!("{}?{}", ctx.link("/tasks"), query_of(&params)?);
    let (matched, confirmed) = operator::count_for_confirmation(&ui.app, &filter, action).await?;
    let applicable = confirmed.tasks;
    let applies = match action {
        BulkAction::Retry => "FAILED or CANCELED: they become PENDING again",
        BulkAction::Cancel => "PENDING or RUNNING: they are canceled, running handlers stopped",
        BulkAction::Delete => "SUCCEEDED, FAILED or CANCELED: they are deleted for good",
    };
    let verb = title_case_str(action_name(action));
    let at = confirmed
        .at
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let body = html! {
        section.confirm {
            p.big { (verb) " " strong #matched data-count=(applicable) { (count(i64::try_from(applicable).unwrap_or(i64::MAX))) } " task" @if applicable != 1 { "s" } "?" }
            p #applies data-matched=(matched) { "Of the " (count(matched)) " tasks matching " (describe(&filter)) ", these are the ones " (applies) ". The others are left alone." }
            p.muted { "Tasks created or finished after this count are not included; if more tasks qualify by the time you confirm, nothing is done and you are asked again." }
            @if !ctx.read_only {
                form method="post" action=(ctx.link("/tasks/bulk")) {
                    (csrf_field(&ctx))
                    input type="hidden" name="action" value=(action_name(action));
                    input type="hidden" name="filter" value=(query_of(&fields)?);
                    input type="hidden" name="expected" value=(applicable);
                    input type="hidden" name="at" value=(at);
                    button.danger type="submit" disabled[applicable == 0] { (verb) " " (applicable) }
                    " "
                    a.button href=(back) { "Back" }
                }
            }
        }
    };
    Ok(layout::page(
        &ctx,
        Section::Tasks,
        &format!("{verb} all matching"),
        body,
    ))
}

/// Runs a confirmed bulk action and goes back to the list with what it did.
pub(super) async fn bulk(
    State(ui): State<Ui>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<BulkForm>,
) -> Result<Response, Failure> {
    let action = bulk_action(&form.action)?;
    let fields: HashMap<String, String> = serde_urlencoded::from_str(&form.filter)
        .map_err(|e| ApiError::BadRequest(format!("bad filter: {e}")))?;
    let (params, filter) = bulk_filter(fields)?;
    let at =
        common::timestamp::parse(&form.at).map_err(|e| ApiError::BadRequest(format!("at {e}")))?;
    let confirmed = crate::queue::Confirmed {
        tasks: form.expected,
        at,
    };
    let back = format!("/tasks?{}", query_of(&params)?);
    let outcome = match operator::bulk(&ui.app, action, &filter, Some(confirmed)).await {
        Ok(outcome) => outcome,
        Err(grew @ ApiError::Conflict(_)) => {
            return Ok(ctx.redirect(&back, false, &grew.to_string()))
        }
        Err(other) => return Err(other.into()),
    };
    let done = match action {
        BulkAction::Retry => "Retried",
        BulkAction::Cancel => "Canceled",
        BulkAction::Delete => "Deleted",
    };
    let notice = format!(
        "{done} {} of {} matching tasks.",
        outcome.changed, outcome.matched
    );
    Ok(ctx.redirect(&back, true, &notice))
}

/// The filter in words.
fn describe(filter: &BulkFilter) -> Markup {
    if filter.all {
        return html! { strong { "any filter (every task)" } };
    }
    let time = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let mut parts: Vec<Markup> = Vec::new();
    if let Some(s) = filter.status {
        parts.push(html! { "state " strong { (s.as_str()) } });
    }
    if let Some(q) = &filter.queue {
        parts.push(html! { "queue " strong { (q) } });
    }
    if let Some(t) = &filter.task_type {
        parts.push(html! { "type " strong { (t) } });
    }
    if let Some(e) = &filter.last_error_contains {
        parts.push(html! { "an error containing " code { (clip(e, 80)) } });
    }
    if let Some(e) = &filter.last_error {
        parts.push(html! { "the error " code { (clip(e, 80)) } });
    }
    if let Some(t) = filter.created_after {
        parts.push(html! { "created from " strong { (time(t)) } });
    }
    if let Some(t) = filter.created_before {
        parts.push(html! { "created before " strong { (time(t)) } });
    }
    html! {
        @for (i, part) in parts.iter().enumerate() {
            @if i > 0 { ", " }
            (part)
        }
    }
}

fn task_id(raw: &str) -> Result<TaskId, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(TaskId)
        .ok_or_else(|| {
            ApiError::BadRequest(format!("a task id is a positive integer, got {raw:?}"))
        })
}

/// At most `most` characters of `text`, with an ellipsis when cut.
pub(super) fn clip(text: &str, most: usize) -> String {
    match text.char_indices().nth(most) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn title_case(state: TaskStatus) -> String {
    title_case_str(&state.as_str().to_lowercase())
}

fn title_case_str(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
