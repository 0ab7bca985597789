//! The page shell (header, navigation, notice) and the small pieces every page uses: state
//! badges, times, durations, JSON, action buttons.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::{DateTime, Utc};
use common::TaskStatus;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::Ctx;

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Overview,
    Tasks,
    Queues,
    Failures,
    Schedules,
    Workers,
}

const SECTIONS: [(Section, &str, &str); 6] = [
    (Section::Overview, "/", "Overview"),
    (Section::Tasks, "/tasks", "Tasks"),
    (Section::Queues, "/queues", "Queues"),
    (Section::Failures, "/failures", "Failures"),
    (Section::Schedules, "/schedules", "Schedules"),
    (Section::Workers, "/workers", "Workers"),
];

/// A whole page of the dashboard.
pub(super) fn page(ctx: &Ctx, section: Section, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(ctx, title))
            body {
                header.top {
                    a.brand href=(ctx.link("/")) { span.logo { "◆" } " DTP" }
                    nav {
                        @for (s, path, label) in SECTIONS {
                            a href=(ctx.link(path)) aria-current=[(s == section).then_some("page")] { (label) }
                        }
                    }
                    div.who {
                        @if ctx.read_only { span.badge.neutral title="DTP_UI_READ_ONLY=true" { "read-only" } }
                        span.live #live-status title="The page refreshes itself every 2 s while it is visible" { "live" }
                        @if ctx.auth_on {
                            form method="post" action=(ctx.link("/logout")) {
                                (csrf_field(ctx))
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main {
                    @if let Some((ok, text)) = &ctx.flash {
                        p.flash.ok[*ok].error[!*ok] role="status" { (text) }
                    }
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

/// A page outside the dashboard's navigation: sign-in, errors, refusals.
pub(super) fn bare(ctx: &Ctx, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(ctx, title))
            body.bare {
                main {
                    h1 { span.logo { "◆" } " " (title) }
                    (body)
                }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

/// An error page: what went wrong, and the way back.
pub(super) fn error_page(ctx: &Ctx, status: StatusCode, detail: &str) -> Response {
    let body = html! {
        p { (detail) }
        p { a href=(ctx.link("/")) { "Back to the overview" } }
    };
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        s if s.is_server_error() => "DTP could not answer",
        _ => "Refused",
    };
    (status, bare(ctx, title, body)).into_response()
}

/// What the dashboard answers for a path it does not have.
pub(super) async fn not_found(Extension(ctx): Extension<Ctx>) -> Response {
    error_page(
        &ctx,
        StatusCode::NOT_FOUND,
        "There is no such page in the dashboard.",
    )
}

fn head(ctx: &Ctx, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light dark";
            title { (title) " · DTP" }
            link rel="stylesheet" href=(ctx.link("/assets/ui.css"));
            script src=(ctx.link("/assets/ui.js")) defer {}
        }
    }
}

fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// The hidden CSRF field every form carries.
pub(super) fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

/// A button that POSTs `fields` to `path` (under the dashboard), or nothing in read-only mode.
/// `confirm` asks the browser to confirm first (the script reads `data-confirm`).
pub(super) fn action(
    ctx: &Ctx,
    (path, fields): (&str, &[(&str, &str)]),
    label: &str,
    class: &str,
    confirm: Option<&str>,
) -> Markup {
    html! {
        @if !ctx.read_only {
            form.inline method="post" action=(ctx.link(path)) data-confirm=[confirm] {
                (csrf_field(ctx))
                @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
                button class=(class) type="submit" { (label) }
            }
        }
    }
}

/// A task state as a coloured badge.
pub(super) fn state_badge(status: TaskStatus) -> Markup {
    let class = match status {
        TaskStatus::Pending => "pending",
        TaskStatus::Running => "running",
        TaskStatus::Succeeded => "succeeded",
        TaskStatus::Failed => "failed",
        TaskStatus::Canceled => "canceled",
    };
    html! { span class={"badge " (class)} { (status.as_str()) } }
}

/// A time as UTC text with how long ago it was, in a `<time>` the script can localize.
pub(super) fn when(time: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    match time {
        None => html! { span.muted { "—" } },
        Some(time) => {
            let ago = now.signed_duration_since(time).num_milliseconds();
            let relative = if ago >= 0 {
                format!("{} ago", duration_text(ago))
            } else {
                format!("in {}", duration_text(-ago))
            };
            html! {
                time datetime=(time.to_rfc3339()) title=(time.format("%Y-%m-%d %H:%M:%S%.3f UTC")) { (relative) }
            }
        }
    }
}

/// A duration in ms, as people read it: `850 ms`, `4.2 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`.
pub(super) fn duration_text(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{}.{} s", ms / 1000, (ms % 1000) / 100),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
        3_600_000..86_400_000 => format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000),
        _ => format!("{} d {} h", ms / 86_400_000, (ms % 86_400_000) / 3_600_000),
    }
}

/// A JSON value, pretty-printed, folded under `summary`.
pub(super) fn json_block(summary: &str, value: &serde_json::Value, open: bool) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    html! {
        details.json open[open] {
            summary { (summary) " " span.muted { "(" (text.len()) " bytes)" } }
            pre { code { (text) } }
        }
    }
}

/// A number with thin separators: `1 234 567`.
pub(super) fn count(n: i64) -> Markup {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    let sign = if n < 0 { "-" } else { "" };
    html! { (sign) (PreEscaped(out)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_text(850), "850 ms");
        assert_eq!(duration_text(4_250), "4.2 s");
        assert_eq!(duration_text(185_000), "3 min 5 s");
        assert_eq!(duration_text(7_800_000), "2 h 10 min");
        assert_eq!(duration_text(273_600_000), "3 d 4 h");
        assert_eq!(duration_text(-5), "0 ms");
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count(1_234_567).into_string(), "1\u{2009}234\u{2009}567");
        assert_eq!(count(999).into_string(), "999");
        assert_eq!(count(-1000).into_string(), "-1\u{2009}000");
    }
}
