//! `dtp workers …`.

use clap::Subcommand;
use common::WorkerList;

use super::output::{or_dash, print, table};
use super::{CliError, Client, Exit};

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// The workers seen lately, with their busy slots and last report.
    List {
        /// Only those that reported within this many seconds.
        #[arg(long, default_value_t = 300)]
        seen_within: u32,
    },
}

pub async fn run(client: &Client, json: bool, command: WorkersCommand) -> Result<Exit, CliError> {
    match command {
        WorkersCommand::List { seen_within } => {
            let query = [("seenWithinSeconds", seen_within.to_string())];
            let list: WorkerList = client.get("/workers", &query).await?;
            print(json, &list, |list| {
                let mut rows = table(&[
                    "worker",
                    "host",
                    "busy",
                    "slots",
                    "last seen",
                    "stopped",
                    "types",
                ]);
                for w in &list.workers {
                    rows.add_row(vec![
                        w.id.clone(),
                        w.host.clone(),
                        w.busy.to_string(),
                        w.concurrency.to_string(),
                        w.last_seen_at.format("%H:%M:%S").to_string(),
                        or_dash(w.stopped_at.map(|t| t.format("%H:%M:%S"))),
                        w.types.join(" "),
                    ]);
                }
                rows
            });
            Ok(Exit::Done)
        }
    }
}
