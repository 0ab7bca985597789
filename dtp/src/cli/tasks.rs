//! `dtp tasks …`.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Subcommand;
use common::{AttemptList, BatchCreated, CreateTask, TaskPage, TaskStatus, TaskView};
use reqwest::Method;
use serde_json::Value;

use super::output::{clip, or_dash, print, record, table};
use super::{CliError, Client, Exit};

/// Tasks per request of `tasks import` (the API's batch limit).
const IMPORT_BATCH: usize = 1000;
/// Bytes of lines per request of `tasks import`, well under DTP's default body limit (1 MiB);
/// a longer line goes alone.
const IMPORT_BATCH_BYTES: usize = 512 * 1024;

/// The idempotency key `tasks import` gives line `number` of the file at `path` when the line
/// names none: the same file imported again creates no task twice, and another file, or the
/// line changed, is another task.
fn line_key(path: &str, number: usize, line: &str) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for part in [path.as_bytes(), &number.to_le_bytes(), line.as_bytes()] {
        hash.update(part.len().to_le_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("import-{hex}")
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// A page of tasks, newest first, filtered by state, type, queue and error text.
    List {
        /// Only tasks in this state (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED).
        #[arg(long)]
        status: Option<String>,
        /// Only tasks of this type.
        #[arg(long = "type")]
        task_type: Option<String>,
        /// Only tasks in this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only tasks whose last error contains this text.
        #[arg(long)]
        error: Option<String>,
        /// Page size (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only tasks older than this id (the `nextAfter` of the page before).
        #[arg(long)]
        after: Option<i64>,
    },
    /// One task.
    Get {
        /// Task id.
        id: i64,
    },
    /// Creates a task.
    Create {
        /// Its type (a handler DTP knows).
        #[arg(long = "type")]
        task_type: String,
        /// Its payload, as JSON.
        #[arg(long, default_value = "null")]
        payload: String,
        /// Its queue.
        #[arg(long)]
        queue: Option<String>,
        /// Higher runs first.
        #[arg(long)]
        priority: Option<i32>,
        /// Attempts allowed.
        #[arg(long)]
        max_attempts: Option<i32>,
        /// Not before this time (RFC 3339).
        #[arg(long, value_parser = common::timestamp::parse)]
        run_at: Option<DateTime<Utc>>,
        /// A key that makes a repeat of this request return the same task.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Cancels a PENDING or RUNNING task.
    Cancel {
        /// Task id.
        id: i64,
    },
    /// Makes a FAILED or CANCELED task PENDING again.
    Retry {
        /// Task id.
        id: i64,
    },
    /// A task's attempts, oldest first.
    Attempts {
        /// Task id.
        id: i64,
    },
    /// Waits until a task is finished; the exit code says how it ended (0 SUCCEEDED,
    /// 4 FAILED, 5 CANCELED, 6 still running when the timeout ran out).
    Wait {
        /// Task id.
        id: i64,
        /// Longest wait, in seconds (none: until it ends).
        #[arg(long)]
        timeout: Option<f64>,
        /// Pause between looks, in milliseconds.
        #[arg(long, default_value_t = 250)]
        interval_ms: u64,
    },
    /// Creates the tasks of a file of create requests, one JSON object a line, in batches
    /// (a progress bar on stderr); stops at the first batch DTP refuses, naming the line, and
    /// sends nothing after it. A line without an `idempotencyKey` gets one made of the file's
    /// path, the line's number and its text: run again, the import creates no task twice.
    Import {
        /// The file (`-` for standard input).
        file: PathBuf,
    },
}

pub async fn run(client: &Client, json: bool, command: TasksCommand) -> Result<Exit, CliError> {
    match command {
        TasksCommand::List {
            status,
            task_type,
            queue,
            error,
            limit,
            after,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            if json {
                // The table shows neither; JSON output is the tasks whole.
                query.push(("include", "payload,result".to_owned()));
            }
            let filters = [
                ("status", status),
                ("type", task_type),
                ("queue", queue),
                ("lastErrorContains", error),
                ("after", after.map(|a| a.to_string())),
            ];
            query.extend(
                filters
                    .into_iter()
                    .filter_map(|(name, value)| value.map(|v| (name, v))),
            );
            let page: TaskPage = client.get("/tasks", &query).await?;
            print(json, &page, |page| {
                let mut rows = table(&[
                    "id",
                    "type",
                    "queue",
                    "status",
                    "attempts",
                    "created",
                    "last error",
                ]);
                for task in &page.tasks {
                    rows.add_row(vec![
                        task.id.to_string(),
                        task.task_type.clone(),
                        task.queue.clone(),
                        task.status.as_str().to_owned(),
                        format!("{}/{}", task.attempt_count, task.max_attempts),
                        task.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        or_dash(task.last_error.as_deref().map(|e| clip(e, 60))),
                    ]);
                }
                rows
            });
            if !json {
                if let Some(next) = page.next_after {
                    eprintln!("more: --after {next}");
                }
            }
            Ok(Exit::Done)
        }
        TasksCommand::Get { id } => {
            let task: TaskView = client.get(&format!("/tasks/{id}"), &[]).await?;
            print(json, &task, task_record);
            Ok(Exit::Done)
        }
        TasksCommand::Create {
            task_type,
            payload,
            queue,
            priority,
            max_attempts,
            run_at,
            idempotency_key,
        } => {
            let payload: Value = serde_json::from_str(&payload)
                .map_err(|e| CliError::Input(format!("--payload is not JSON: {e}")))?;
            let request = CreateTask {
                queue,
                priority,
                max_attempts,
                run_at,
                idempotency_key,
                ..CreateTask::new(task_type, payload)
            };
            let task: TaskView = client.send(Method::POST, "/tasks", Some(&request)).await?;
            print(json, &task, task_record);
            Ok(Exit::Done)
        }
        TasksCommand::Cancel { id } => {
            let path = format!("/tasks/{id}/cancel");
            let task: TaskView = client.send(Method::PUT, &path, None::<&()>).await?;
            print(json, &task, task_record);
            Ok(Exit::Done)
        }
        TasksCommand::Retry { id } => {
            let path = format!("/tasks/{id}/retry");
            let task: TaskView = client.send(Method::POST, &path, None::<&()>).await?;
            print(json, &task, task_record);
            Ok(Exit::Done)
        }
        TasksCommand::Attempts { id } => {
            let list: AttemptList = client.get(&format!("/tasks/{id}/attempts"), &[]).await?;
            print(json, &list, |list| {
                let mut rows = table(&["attempt", "worker", "started", "ms", "outcome", "error"]);
                for a in &list.attempts {
                    rows.add_row(vec![
                        a.attempt.to_string(),
                        or_dash(a.worker_id.as_deref()),
                        or_dash(a.started_at.map(|t| t.format("%H:%M:%S%.3f"))),
                        or_dash(a.duration_ms),
                        or_dash(a.outcome.map(|o| format!("{o:?}").to_uppercase())),
                        or_dash(a.error.as_deref().map(|e| clip(e, 60))),
                    ]);
                }
                rows
            });
            Ok(Exit::Done)
        }
        TasksCommand::Wait {
            id,
            timeout,
            interval_ms,
        } => wait(client, json, id, timeout, interval_ms).await,
        TasksCommand::Import { file } => import(client, json, &file).await,
    }
}

fn task_record(task: &TaskView) -> comfy_table::Table {
    let time = |t: Option<DateTime<Utc>>| or_dash(t.map(|t| t.to_rfc3339()));
    record(vec![
        ("id", task.id.to_string()),
        ("type", task.task_type.clone()),
        ("queue", task.queue.clone()),
        ("status", task.status.as_str().to_owned()),
        (
            "attempts",
            format!("{}/{}", task.attempt_count, task.max_attempts),
        ),
        ("priority", task.priority.to_string()),
        ("created", task.created_at.to_rfc3339()),
        ("scheduled for", task.scheduled_for.to_rfc3339()),
        ("started", time(task.processing_started_at)),
        ("completed", time(task.completed_at)),
        ("next attempt", time(task.next_attempt_at)),
        ("worker", or_dash(task.worker_id.as_deref())),
        ("last error", or_dash(task.last_error.as_deref())),
        ("payload", task.payload.to_string()),
        ("result", or_dash(task.result.as_ref())),
    ])
}

async fn wait(
    client: &Client,
    json: bool,
    id: i64,
    timeout: Option<f64>,
    interval_ms: u64,
) -> Result<Exit, CliError> {
    let deadline = match timeout {
        Some(secs) if secs.is_finite() && secs >= 0.0 => {
            Some(Instant::now() + Duration::from_secs_f64(secs))
        }
        Some(secs) => {
            return Err(CliError::Input(format!(
                "--timeout must be a number of seconds, got {secs}"
            )))
        }
        None => None,
    };
    let path = format!("/tasks/{id}");
    loop {
        let task: TaskView = client.get(&path, &[]).await?;
        let ended = match task.status {
            TaskStatus::Succeeded => Some(Exit::Done),
            TaskStatus::Failed => Some(Exit::TaskFailed),
            TaskStatus::Canceled => Some(Exit::TaskCanceled),
            TaskStatus::Pending | TaskStatus::Running => None,
        };
        let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
        if let Some(exit) = ended.or(timed_out.then_some(Exit::StillRunning)) {
            print(json, &task, task_record);
            return Ok(exit);
        }
        tokio::time::sleep(Duration::from_millis(interval_ms.max(10))).await;
    }
}

/// One batch of the import: each request's line number, and the requests.
type Batch = (Vec<usize>, Vec<CreateTask>);

/// Sends the file's batches one after another; the first refused ends the import, and nothing
/// after it is sent. Every line has an idempotency key (its own, or [`line_key`]), so the same
/// command run again, after a refusal or an interruption anywhere, creates no task twice.
async fn import(client: &Client, json: bool, file: &PathBuf) -> Result<Exit, CliError> {
    let batches = read_batches(file)?;
    let total: usize = batches.iter().map(|(_, tasks)| tasks.len()).sum();
    let bar = indicatif::ProgressBar::new(u64::try_from(total).unwrap_or(u64::MAX));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} tasks, {per_sec}, {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let (mut created, mut sent_lines) = (0, 0);
    let mut refused: Option<CliError> = None;
    for (lines, tasks) in batches {
        let answer: Result<BatchCreated, CliError> = client
            .send(Method::POST, "/tasks/batch", Some(&tasks))
            .await;
        match answer {
            Ok(batch) => {
                created += batch.created;
                sent_lines += tasks.len();
                bar.inc(u64::try_from(tasks.len()).unwrap_or(0));
            }
            Err(e) => {
                refused = Some(not_created_from(e, file, &lines));
                break;
            }
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    // Counts below 2^53: exact as floats.
    #[allow(clippy::cast_precision_loss)]
    let rate = sent_lines as f64 / seconds.max(1e-9);
    let summary = serde_json::json!({ "created": created, "lines": total, "seconds": seconds, "tasksPerSecond": rate.round() });
    if json {
        println!("{summary}");
    } else {
        let again = sent_lines - created;
        println!(
            "created {created} of {total} tasks in {seconds:.2} s ({rate:.0} tasks/s){}",
            if again > 0 {
                format!("; {again} were created by an earlier run")
            } else {
                String::new()
            }
        );
    }
    match refused {
        Some(e) => Err(e),
        None => Ok(Exit::Done),
    }
}

/// The refusal of the batch of `lines`, saying which line was refused and that nothing from
/// the batch's first line on was created.
fn not_created_from(error: CliError, file: &std::path::Path, lines: &[usize]) -> CliError {
    let first = lines.first().copied().unwrap_or(0);
    let unsent = format!(
        "nothing from line {first} of {} on was created; fix it and run the same command \
         again: lines created before are not created twice",
        file.display()
    );
    match error {
        CliError::Refused { status, detail } => CliError::Refused {
            status,
            detail: format!("{}; {unsent}", at_line(lines, &detail)),
        },
        // No answer: the batch may have been created, and nothing after it was sent.
        CliError::Unavailable(detail) => CliError::Unavailable(format!(
            "{detail}; lines from {first} of {} on may not have been created: run the same \
             command again, lines created before are not created twice",
            file.display()
        )),
        other => other,
    }
}

/// DTP's refusal of a batch, said of the file's line: an item's refusal names its index in the
/// batch (`tasks[i]: …`); any other names the batch by its first line.
fn at_line(lines: &[usize], detail: &str) -> String {
    let item = detail
        .strip_prefix("tasks[")
        .and_then(|rest| rest.split_once("]: "))
        .and_then(|(index, reason)| Some((lines.get(index.parse::<usize>().ok()?)?, reason)));
    match item {
        Some((line, reason)) => format!("line {line}: {reason}"),
        None => format!(
            "the batch from line {}: {detail}",
            lines.first().copied().unwrap_or(0)
        ),
    }
}

/// The file's requests in batches, every line read and parsed before anything is sent: a bad
/// line is named and nothing is created.
fn read_batches(file: &PathBuf) -> Result<Vec<Batch>, CliError> {
    let name = file.display().to_string();
    let reader: Box<dyn BufRead> = if name == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let opened = std::fs::File::open(file)
            .map_err(|e| CliError::Input(format!("cannot open {name}: {e}")))?;
        Box::new(std::io::BufReader::new(opened))
    };
    // The file's own name, whatever directory the command runs in.
    let identity = std::fs::canonicalize(file)
        .map(|path| path.display().to_string())
        .unwrap_or(name.clone());
    let mut batches: Vec<Batch> = Vec::new();
    let mut batch_bytes = 0;
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| CliError::Input(format!("{name}:{number}: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let common::object::Object(mut request) =
            serde_json::from_str::<common::object::Object<CreateTask>>(&line)
                .map_err(|e| CliError::Input(format!("{name}:{number}: {e}")))?;
        if request.idempotency_key.is_none() {
            request.idempotency_key = Some(line_key(&identity, number, &line));
        }
        // As sent: a number's text may grow on its way through a value (`1e15`).
        let bytes = serde_json::to_vec(&request).map_or(line.len(), |sent| sent.len()) + 1;
        match batches.last_mut() {
            Some((lines, tasks))
                if tasks.len() < IMPORT_BATCH && batch_bytes + bytes <= IMPORT_BATCH_BYTES =>
            {
                lines.push(number);
                tasks.push(request);
                batch_bytes += bytes;
            }
            _ => {
                batches.push((vec![number], vec![request]));
                batch_bytes = bytes;
            }
        }
    }
    Ok(batches)
}
