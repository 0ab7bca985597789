//! `dtp top`: every queue's counts and rates, redrawn in the terminal every interval until
//! Ctrl-C. Rates are the change of the finished counts between two reads of `GET /queues`, so
//! they are the whole fleet's, whichever process is asked.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Args;
use common::{Queue, QueueList};

use super::output::{or_dash, table};
use super::{CliError, Client, Exit};

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Time between reads, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Stop after this many frames (none: until Ctrl-C).
    #[arg(long)]
    iterations: Option<u64>,
}

/// Clears the terminal and puts the cursor home, so each frame replaces the last.
const CLEAR: &str = "\x1b[2J\x1b[H";

pub async fn run(client: &Client, url: &str, json: bool, args: TopArgs) -> Result<Exit, CliError> {
    let interval = Duration::from_millis(args.interval_ms.max(100));
    let mut previous: Option<(Instant, HashMap<String, Queue>)> = None;
    let mut frames = 0;
    loop {
        let list: QueueList = client.get("/queues", &[]).await?;
        let now = Instant::now();
        let queues: HashMap<String, Queue> = list
            .queues
            .into_iter()
            .map(|q| (q.name.clone(), q))
            .collect();
        let frame = Frame::between(previous.as_ref(), now, &queues);
        if json {
            println!("{}", frame.json());
        } else {
            print!("{CLEAR}{}", frame.text(url, interval));
        }
        previous = Some((now, queues));
        frames += 1;
        if args.iterations.is_some_and(|most| frames >= most) {
            return Ok(Exit::Done);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(Exit::Done),
        }
    }
}

/// One queue's line of a frame.
struct Line {
    queue: String,
    paused: bool,
    pending: i64,
    running: i64,
    /// Per second since the last frame (none on the first).
    rates: Option<[f64; 3]>,
    oldest_due_ms: Option<i64>,
}

struct Frame {
    lines: Vec<Line>,
}

impl Frame {
    fn between(
        previous: Option<&(Instant, HashMap<String, Queue>)>,
        now: Instant,
        queues: &HashMap<String, Queue>,
    ) -> Frame {
        let mut names: Vec<&String> = queues.keys().collect();
        names.sort();
        let lines = names
            .into_iter()
            .filter_map(|name| queues.get(name))
            .map(|q| {
                let rates = previous.map(|(then, before)| {
                    let seconds = (now - *then).as_secs_f64().max(1e-3);
                    let was = before.get(&q.name).map(|b| &b.counts);
                    let delta = |now: i64, then: Option<i64>| {
                        // Counts fall when retention prunes: a rate is never negative.
                        #[allow(clippy::cast_precision_loss)]
                        let d = (now - then.unwrap_or(now)).max(0) as f64;
                        d / seconds
                    };
                    [
                        delta(q.counts.succeeded, was.map(|c| c.succeeded)),
                        delta(q.counts.failed, was.map(|c| c.failed)),
                        delta(q.counts.canceled, was.map(|c| c.canceled)),
                    ]
                });
                Line {
                    queue: q.name.clone(),
                    paused: q.paused,
                    pending: q.counts.pending,
                    running: q.counts.running,
                    rates,
                    oldest_due_ms: q.oldest_pending_age_ms,
                }
            })
            .collect();
        Frame { lines }
    }

    fn text(&self, url: &str, interval: Duration) -> String {
        let mut rows = table(&[
            "queue",
            "state",
            "pending",
            "running",
            "succeeded/s",
            "failed/s",
            "canceled/s",
            "oldest due",
        ]);
        let rate = |line: &Line, i: usize| or_dash(line.rates.map(|r| format!("{:.1}", r[i])));
        for line in &self.lines {
            rows.add_row(vec![
                line.queue.clone(),
                if line.paused { "paused" } else { "active" }.to_owned(),
                line.pending.to_string(),
                line.running.to_string(),
                rate(line, 0),
                rate(line, 1),
                rate(line, 2),
                or_dash(
                    line.oldest_due_ms
                        .map(|ms| format!("{:.1} s", ms as f64 / 1000.0)),
                ),
            ]);
        }
        let pending: i64 = self.lines.iter().map(|l| l.pending).sum();
        let running: i64 = self.lines.iter().map(|l| l.running).sum();
        let done: f64 = self
            .lines
            .iter()
            .filter_map(|l| l.rates)
            .map(|r| r[0])
            .sum();
        format!(
            "dtp top: {url}, every {:.1} s (Ctrl-C quits)\n{rows}\n{pending} pending, {running} running, {done:.1} succeeded/s\n",
            interval.as_secs_f64()
        )
    }

    fn json(&self) -> serde_json::Value {
        let queues: Vec<serde_json::Value> = self
            .lines
            .iter()
            .map(|l| {
                let rate = |i: usize| l.rates.map(|r| r[i]);
                serde_json::json!({
                    "queue": l.queue,
                    "paused": l.paused,
                    "pending": l.pending,
                    "running": l.running,
                    "succeededPerSecond": rate(0),
                    "failedPerSecond": rate(1),
                    "canceledPerSecond": rate(2),
                    "oldestPendingAgeMs": l.oldest_due_ms,
                })
            })
            .collect();
        serde_json::json!({ "queues": queues })
    }
}
