//! `GET /tasks`: a page of tasks, newest first, by the filters given.

use apikit::openapi::DatabaseDown;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use common::limits::QueueName;
use common::{Problem, TaskPage, TaskStatus};
use serde::Deserialize;

use super::{ApiError, AppState};

pub(super) fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/tasks", axum::routing::get(list))
}
use crate::queue::{self, Detail, ListFilter, TaskId};

/// Page size when `limit` is absent, and its ceiling.
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

/// `GET /tasks` query; every value arrives as text so that bad values get a clear 400.
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    pub(crate) status: Option<String>,
    #[serde(rename = "type")]
    pub(crate) task_type: Option<String>,
    pub(crate) queue: Option<String>,
    #[serde(rename = "lastErrorContains")]
    pub(crate) last_error_contains: Option<String>,
    #[serde(rename = "lastError")]
    pub(crate) last_error: Option<String>,
    #[serde(rename = "createdAfter")]
    pub(crate) created_after: Option<String>,
    #[serde(rename = "createdBefore")]
    pub(crate) created_before: Option<String>,
    pub(crate) limit: Option<String>,
    pub(crate) after: Option<String>,
    #[serde(rename = "idempotencyKey")]
    pub(crate) idempotency_key: Option<String>,
    pub(crate) include: Option<String>,
}

impl ListParams {
    /// The same, with empty values absent: a filter form sends its empty fields. (Only empty:
    /// a value of spaces is a condition, one that matches what it says.)
    pub(crate) fn without_blanks(self) -> ListParams {
        let keep = |v: Option<String>| v.filter(|v| !v.is_empty());
        ListParams {
            status: keep(self.status),
            task_type: keep(self.task_type),
            queue: keep(self.queue),
            last_error_contains: keep(self.last_error_contains),
            last_error: keep(self.last_error),
            created_after: keep(self.created_after),
            created_before: keep(self.created_before),
            limit: keep(self.limit),
            after: keep(self.after),
            idempotency_key: keep(self.idempotency_key),
            include: keep(self.include),
        }
    }
}

/// A page of tasks, newest first.
#[utoipa::path(get, path = "/tasks", tag = "tasks",
    params(
        ("status" = Option<TaskStatus>, Query, description = "Only tasks in this state"),
        ("type" = Option<String>, Query, description = "Only tasks of this type"),
        ("queue" = Option<String>, Query, description = "Only tasks in this queue"),
        ("lastErrorContains" = Option<String>, Query, description = "Only tasks whose last error contains this text"),
        ("lastError" = Option<String>, Query, description = "Only tasks whose last error is exactly this text"),
        ("createdAfter" = Option<String>, Query, description = "Only tasks created at or after this time (RFC 3339; without an offset, UTC)"),
        ("createdBefore" = Option<String>, Query, description = "Only tasks created before this time (RFC 3339; without an offset, UTC)"),
        ("limit" = Option<i64>, Query, description = "Page size, 1..=500 (default 50)", minimum = 1, maximum = 500),
        ("after" = Option<i64>, Query, description = "Only tasks older than this id", minimum = 1),
        ("idempotencyKey" = Option<String>, Query, description = "Only the task created with this key"),
        ("include" = Option<String>, Query, description = "`payload`, `result` or `payload,result`: the tasks carry these, and the page holds at most 4 MiB of them (it may end before `limit`, with `nextAfter` set). Without it they are absent."),
    ),
    responses(
        (status = 200, description = "A page", body = TaskPage),
        (status = 400, description = "Bad filter", body = Problem, content_type = "application/problem+json"),
        DatabaseDown,
    ))]
pub(super) async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let filter = parse_filter(params)?;
    let page = queue::list(&state.operator_pool, &filter).await?;
    let mut body = String::from(r#"{"tasks":["#);
    for (i, task) in page.rows.into_iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        push_task(&mut body, task, filter.detail)?;
    }
    let next_after = page.next_after.map(|id| id.0);
    body.push_str(&format!(
        r#"],"nextAfter":{}}}"#,
        serde_json::to_string(&next_after).map_err(|e| ApiError::Internal(e.into()))?
    ));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Writes `task` as JSON to `body`: its payload and result, as stored and never parsed, only
/// when `detail` asks for them (`result` is `null` when it has none).
fn push_task(body: &mut String, task: queue::ListedTask, detail: Detail) -> Result<(), ApiError> {
    // The row's payload and result are null here: each is the text `"name":null` exactly once,
    // which no string value can hold (its quotes would be escaped).
    let mut object =
        serde_json::to_string(&task.row.into_view()).map_err(|e| ApiError::Internal(e.into()))?;
    for (asked, name, text) in [
        (detail.payload, "payload", task.payload_text),
        (detail.result, "result", task.result_text),
    ] {
        let null = format!(r#""{name}":null"#);
        let Some(at) = object.find(&null) else {
            return Err(ApiError::Internal(anyhow::anyhow!("a task without {name}")));
        };
        if asked {
            let value = text.as_deref().unwrap_or("null");
            object.replace_range(at..at + null.len(), &format!(r#""{name}":{value}"#));
        } else if object[at + null.len()..].starts_with(',') {
            object.replace_range(at..=at + null.len(), "");
        } else {
            object.replace_range(at - 1..at + null.len(), "");
        }
    }
    body.push_str(&object);
    Ok(())
}

/// `include`: a comma-separated list of `payload` and `result`.
fn parse_detail(raw: Option<&str>) -> Result<Detail, ApiError> {
    let mut detail = Detail::default();
    for part in raw.unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
        match part.trim() {
            "payload" => detail.payload = true,
            "result" => detail.result = true,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "include lists payload and result, got {other:?}"
                )))
            }
        }
    }
    Ok(detail)
}

pub(crate) fn parse_filter(params: ListParams) -> Result<ListFilter, ApiError> {
    let texts = [
        params.task_type.as_ref(),
        params.queue.as_ref(),
        params.last_error_contains.as_ref(),
        params.last_error.as_ref(),
        params.idempotency_key.as_ref(),
    ];
    if texts.iter().flatten().any(|t| t.contains('\0')) {
        return Err(ApiError::BadRequest(
            "filters cannot contain NUL characters".into(),
        ));
    }
    if let Some(queue) = params.queue.as_deref() {
        QueueName::parse("queue", queue).map_err(ApiError::BadRequest)?;
    }
    let status = params
        .status
        .map(|s| s.parse::<TaskStatus>())
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let limit = apikit::parse_bounded_int(params.limit.as_deref(), "limit", 1, MAX_PAGE)
        .map_err(ApiError::BadRequest)?
        .unwrap_or(DEFAULT_PAGE);
    let after = apikit::parse_bounded_int(params.after.as_deref(), "after", 1, i64::MAX)
        .map_err(ApiError::BadRequest)?
        .map(TaskId);
    let created_after = parse_time(params.created_after.as_deref(), "createdAfter")?;
    let created_before = parse_time(params.created_before.as_deref(), "createdBefore")?;
    let detail = parse_detail(params.include.as_deref())?;
    Ok(ListFilter {
        detail,
        status,
        last_error: params.last_error,
        created_after,
        created_before,
        task_type: params.task_type,
        queue: params.queue,
        last_error_contains: params.last_error_contains,
        idempotency_key: params.idempotency_key,
        after,
        limit,
    })
}

/// A time filter ([`common::timestamp::parse`]); empty is absent.
pub(crate) fn parse_time(raw: Option<&str>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.filter(|r| !r.trim().is_empty())
        .map(|r| {
            common::timestamp::parse(r).map_err(|e| ApiError::BadRequest(format!("{name} {e}")))
        })
        .transpose()
}
