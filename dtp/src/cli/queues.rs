//! `dtp queues …`.

use clap::Subcommand;
use common::{Queue, QueueList};
use reqwest::Method;
use serde_json::{Map, Value};

use super::output::{or_dash, print, record, table};
use super::{CliError, Client, Exit};

#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// Every queue with its settings and counts.
    List,
    /// Stops claims from a queue (running tasks finish).
    Pause {
        /// Queue name.
        name: String,
    },
    /// Lets a paused queue's tasks be claimed again.
    Resume {
        /// Queue name.
        name: String,
    },
    /// Counts every queue's finished tasks again from the tasks (after changing the table by
    /// SQL); writes that change counts wait meanwhile.
    Recount,
    /// Sets a queue's limits: a number, or `none` to remove the limit.
    Set {
        /// Queue name.
        name: String,
        /// Most tasks of the queue RUNNING at once, across every worker.
        #[arg(long)]
        concurrency: Option<String>,
        /// Most tasks of the queue started per second, across every worker.
        #[arg(long)]
        rate: Option<String>,
    },
}

pub async fn run(client: &Client, json: bool, command: QueuesCommand) -> Result<Exit, CliError> {
    match command {
        QueuesCommand::List => {
            let list: QueueList = client.get("/queues", &[]).await?;
            print(json, &list, queue_table);
            Ok(Exit::Done)
        }
        QueuesCommand::Recount => {
            let list: QueueList = client
                .send(Method::POST, "/counts/recount", None::<&()>)
                .await?;
            print(json, &list, queue_table);
            Ok(Exit::Done)
        }
        QueuesCommand::Pause { name } => {
            let path = format!("/queues/{}/pause", segment(&name)?);
            let queue: Queue = client.send(Method::POST, &path, None::<&()>).await?;
            print(json, &queue, queue_record);
            Ok(Exit::Done)
        }
        QueuesCommand::Resume { name } => {
            let path = format!("/queues/{}/resume", segment(&name)?);
            let queue: Queue = client.send(Method::POST, &path, None::<&()>).await?;
            print(json, &queue, queue_record);
            Ok(Exit::Done)
        }
        QueuesCommand::Set {
            name,
            concurrency,
            rate,
        } => {
            let mut patch = Map::new();
            if let Some(value) = concurrency {
                patch.insert("concurrencyLimit".into(), limit("--concurrency", &value)?);
            }
            if let Some(value) = rate {
                patch.insert("rateLimitPerSecond".into(), limit("--rate", &value)?);
            }
            if patch.is_empty() {
                return Err(CliError::Input(
                    "name a limit to set: --concurrency and/or --rate (a number, or none)".into(),
                ));
            }
            let path = format!("/queues/{}", segment(&name)?);
            let queue: Queue = client
                .send(Method::PATCH, &path, Some(&Value::Object(patch)))
                .await?;
            print(json, &queue, queue_record);
            Ok(Exit::Done)
        }
    }
}

/// A limit's value: `none` removes it, a number sets it (DTP checks its range).
fn limit(flag: &str, value: &str) -> Result<Value, CliError> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(Value::Null);
    }
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .and_then(|v| {
            // Whole numbers go as integers (the concurrency limit is one).
            if v.fract() == 0.0 && v.abs() < 1e15 {
                value.parse::<i64>().ok().map(Value::from)
            } else {
                serde_json::Number::from_f64(v).map(Value::Number)
            }
        })
        .ok_or_else(|| CliError::Input(format!("{flag} must be a number or none, got {value:?}")))
}

/// A queue name as one URL path segment; names are refused here only if they would leave it.
fn segment(name: &str) -> Result<&str, CliError> {
    if name.is_empty() || name.contains(['/', '?', '#', '%']) {
        return Err(CliError::Input(format!("{name:?} is not a queue name")));
    }
    Ok(name)
}

fn queue_table(list: &QueueList) -> comfy_table::Table {
    let mut rows = table(&[
        "queue",
        "paused",
        "limit",
        "rate/s",
        "pending",
        "running",
        "succeeded",
        "failed",
        "canceled",
        "oldest due",
    ]);
    for q in &list.queues {
        let c = &q.counts;
        rows.add_row(vec![
            q.name.clone(),
            q.paused.to_string(),
            or_dash(q.concurrency_limit),
            or_dash(q.rate_limit_per_second),
            c.pending.to_string(),
            c.running.to_string(),
            c.succeeded.to_string(),
            c.failed.to_string(),
            c.canceled.to_string(),
            or_dash(q.oldest_pending_age_ms.map(|ms| format!("{ms} ms"))),
        ]);
    }
    rows
}

fn queue_record(q: &Queue) -> comfy_table::Table {
    record(vec![
        ("queue", q.name.clone()),
        ("paused", q.paused.to_string()),
        ("concurrency limit", or_dash(q.concurrency_limit)),
        ("rate limit per second", or_dash(q.rate_limit_per_second)),
        ("pending", q.counts.pending.to_string()),
        ("running", q.counts.running.to_string()),
    ])
}
