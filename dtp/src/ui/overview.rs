//! The overview: every queue's counts by state and oldest wait, and the last hour's
//! throughput and latency as charts.

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use common::{Queue, StatsMinute};
use maud::html;

use super::charts::{line_chart, Series};
use super::layout::{self, count, Section};
use super::queues::queue_badge;
use super::{Ctx, Page, Ui};
use crate::api::operator;
use crate::queue;

/// The overview page.
pub(super) async fn page(State(ui): State<Ui>, Extension(ctx): Extension<Ctx>) -> Page {
    let queues = queue::queues(&ui.app.pool).await?;
    let stats = operator::stats(&ui.app, 60, None).await?.minutes;
    Ok(render(&ctx, &queues, &stats))
}

fn render(ctx: &Ctx, queues: &[Queue], stats: &[StatsMinute]) -> Response {
    let total = |f: fn(&Queue) -> i64| queues.iter().map(f).sum::<i64>();
    let tasks = |queue: &str, state: &str| {
        ctx.link(&format!(
            "/tasks?{}",
            serde_urlencoded::to_string([("queue", queue), ("status", state)]).unwrap_or_default()
        ))
    };
    let per_minute = |f: fn(&StatsMinute) -> i64| -> Vec<Option<f64>> {
        #[allow(clippy::cast_precision_loss)]
        stats.iter().map(|m| Some(f(m) as f64)).collect()
    };
    let latency = |f: fn(&StatsMinute) -> Option<f64>| stats.iter().map(f).collect::<Vec<_>>();
    let body = html! {
        section.cards #totals data-live {
            div.card { span.label { "Pending" } span.figure { (count(total(|q| q.counts.pending))) } }
            div.card { span.label { "Running" } span.figure { (count(total(|q| q.counts.running))) } }
            div.card { span.label { "Succeeded" } span.figure { (count(total(|q| q.counts.succeeded))) } }
            div.card { span.label { "Failed" } span.figure { (count(total(|q| q.counts.failed))) } }
            div.card { span.label { "Canceled" } span.figure { (count(total(|q| q.counts.canceled))) } }
        }
        section #charts data-live {
            div.charts {
                (line_chart("Throughput per minute", "", "60 min ago", &[
                    Series { label: "succeeded", class: "s1", points: per_minute(|m| m.succeeded) },
                    Series { label: "failed", class: "s2", points: per_minute(|m| m.failed) },
                    Series { label: "retried", class: "s3", points: per_minute(|m| m.retried) },
                ]))
                (line_chart("Queue wait", "ms", "60 min ago", &[
                    Series { label: "p50", class: "s1", points: latency(|m| m.queue_wait_p50_ms) },
                    Series { label: "p95", class: "s4", points: latency(|m| m.queue_wait_p95_ms) },
                ]))
                (line_chart("Run time", "ms", "60 min ago", &[
                    Series { label: "p50", class: "s1", points: latency(|m| m.run_p50_ms) },
                    Series { label: "p95", class: "s4", points: latency(|m| m.run_p95_ms) },
                ]))
            }
        }
        section #queues data-live {
            h2 { "Queues" }
            @if queues.is_empty() {
                p.empty { "No queues yet: a queue appears with its first task or its settings." }
            } @else {
                div.scroll {
                    table.data #queue-counts {
                        thead { tr {
                            th { "Queue" } th { "" }
                            th.num { "Pending" } th.num { "Running" } th.num { "Succeeded" }
                            th.num { "Failed" } th.num { "Canceled" } th.num { "Oldest pending" }
                        } }
                        tbody {
                            @for q in queues {
                                tr data-queue=(q.name) {
                                    td { a href=(ctx.link(&format!("/tasks?{}", serde_urlencoded::to_string([("queue", &q.name)]).unwrap_or_default()))) { (q.name) } }
                                    td { (queue_badge(q)) }
                                    td.num data-state="PENDING" { a href=(tasks(&q.name, "PENDING")) { (count(q.counts.pending)) } }
                                    td.num data-state="RUNNING" { a href=(tasks(&q.name, "RUNNING")) { (count(q.counts.running)) } }
                                    td.num data-state="SUCCEEDED" { a href=(tasks(&q.name, "SUCCEEDED")) { (count(q.counts.succeeded)) } }
                                    td.num data-state="FAILED" { a href=(tasks(&q.name, "FAILED")) { (count(q.counts.failed)) } }
                                    td.num data-state="CANCELED" { a href=(tasks(&q.name, "CANCELED")) { (count(q.counts.canceled)) } }
                                    td.num { @match q.oldest_pending_age_ms { Some(ms) => (layout::duration_text(ms)), None => span.muted { "—" } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page(ctx, Section::Overview, "Overview", body)
}
