//! `dtp schedules …`.

use clap::Subcommand;
use common::{CreateTask, NewSchedule, Schedule, ScheduleList};
use reqwest::Method;

use super::output::{clip, or_dash, print, record, table};
use super::{CliError, Client, Exit};

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Every schedule with its next and last run.
    List,
    /// Creates a schedule: each tick of `--cron` in `--timezone` enqueues `--task`.
    Create {
        /// Its name.
        name: String,
        /// Five fields, or six with seconds first.
        #[arg(long)]
        cron: String,
        /// An IANA time zone.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// The task each tick creates: a create request, as JSON.
        #[arg(long)]
        task: String,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
    },
    /// Deletes a schedule (the tasks it created stay).
    Delete {
        /// Its name.
        name: String,
    },
}

pub async fn run(client: &Client, json: bool, command: SchedulesCommand) -> Result<Exit, CliError> {
    match command {
        SchedulesCommand::List => {
            let list: ScheduleList = client.get("/schedules", &[]).await?;
            print(json, &list, |list| {
                let mut rows = table(&[
                    "schedule", "cron", "timezone", "type", "paused", "next run", "last run",
                ]);
                for s in &list.schedules {
                    rows.add_row(vec![
                        s.name.clone(),
                        s.cron.clone(),
                        s.timezone.clone(),
                        s.task.task_type.clone(),
                        s.paused.to_string(),
                        or_dash(s.next_run_at.map(|t| t.to_rfc3339())),
                        or_dash(s.last_run_at.map(|t| t.to_rfc3339())),
                    ]);
                }
                rows
            });
            Ok(Exit::Done)
        }
        SchedulesCommand::Create {
            name,
            cron,
            timezone,
            task,
            paused,
        } => {
            let task: common::object::Object<CreateTask> = serde_json::from_str(&task)
                .map_err(|e| CliError::Input(format!("--task is not a create request: {e}")))?;
            let schedule = NewSchedule {
                name,
                cron,
                timezone,
                task: task.0,
                paused,
            };
            let created: Schedule = client
                .send(Method::POST, "/schedules", Some(&schedule))
                .await?;
            print(json, &created, |s| {
                record(vec![
                    ("schedule", s.name.clone()),
                    ("cron", s.cron.clone()),
                    ("timezone", s.timezone.clone()),
                    (
                        "task",
                        clip(&serde_json::to_string(&s.task).unwrap_or_default(), 80),
                    ),
                    ("paused", s.paused.to_string()),
                    ("next run", or_dash(s.next_run_at.map(|t| t.to_rfc3339()))),
                ])
            });
            Ok(Exit::Done)
        }
        SchedulesCommand::Delete { name } => {
            if name.is_empty() || name.contains(['/', '?', '#', '%']) {
                return Err(CliError::Input(format!("{name:?} is not a schedule name")));
            }
            client
                .send_empty(Method::DELETE, &format!("/schedules/{name}"))
                .await?;
            if json {
                println!("{}", serde_json::json!({ "deleted": name }));
            } else {
                println!("deleted schedule {name}");
            }
            Ok(Exit::Done)
        }
    }
}
