//! The outcomes of one kind that one fenced statement writes, and how a part that fails is
//! split or replaced.

use std::collections::HashMap;
use std::time::Duration;

use common::{AttemptOutcome, TaskStatus};
use serde_json::Value;

use super::{Recorded, MAX_BATCH};
use crate::queue::{self, AttemptFailure, Failure, Fence, TaskId};

/// Outcomes of one kind, written by one statement.
pub(super) enum Part {
    Succeeded(Vec<(TaskId, Fence, Value)>),
    /// `refusals`: these failures already stand for outcomes the database refused.
    Failed {
        failed: Vec<AttemptFailure>,
        refusals: bool,
    },
    HandedBack(Vec<(TaskId, Fence)>),
}

impl Part {
    pub(super) fn len(&self) -> usize {
        match self {
            Part::Succeeded(items) => items.len(),
            Part::Failed { failed, .. } => failed.len(),
            Part::HandedBack(items) => items.len(),
        }
    }

    /// This part in parts of at most [`MAX_BATCH`], in order.
    pub(super) fn chunks(self) -> Vec<Part> {
        let mut parts = vec![self];
        while parts.last().is_some_and(|p| p.len() > MAX_BATCH) {
            let last = parts.pop().map(|p| p.split_at(MAX_BATCH));
            parts.extend(last.into_iter().flat_map(|(a, b)| [a, b]));
        }
        parts
    }

    pub(super) fn split(self) -> (Part, Part) {
        let half = self.len() / 2;
        self.split_at(half)
    }

    fn split_at(self, at: usize) -> (Part, Part) {
        match self {
            Part::Succeeded(mut items) => {
                let rest = items.split_off(at);
                (Part::Succeeded(items), Part::Succeeded(rest))
            }
            Part::Failed {
                mut failed,
                refusals,
            } => {
                let rest = failed.split_off(at);
                (
                    Part::Failed { failed, refusals },
                    Part::Failed {
                        failed: rest,
                        refusals,
                    },
                )
            }
            Part::HandedBack(mut items) => {
                let rest = items.split_off(at);
                (Part::HandedBack(items), Part::HandedBack(rest))
            }
        }
    }

    /// Writes the part in one fenced statement: what was recorded, by attempt, for those whose
    /// fence held.
    pub(super) async fn write(
        &self,
        db: &mut sqlx::PgConnection,
    ) -> Result<Vec<((TaskId, Fence), Recorded)>, sqlx::Error> {
        Ok(match self {
            Part::Succeeded(items) => {
                let fences: HashMap<TaskId, Fence> =
                    items.iter().map(|(id, fence, _)| (*id, *fence)).collect();
                let ids = queue::mark_succeeded_many(db, items).await?;
                fenced(ids, &fences, AttemptOutcome::Succeeded)
            }
            Part::Failed { failed, .. } => {
                let asked: HashMap<TaskId, &AttemptFailure> =
                    failed.iter().map(|f| (f.id, f)).collect();
                let rows = queue::mark_failed_many(db, failed).await?;
                rows.into_iter()
                    .filter_map(|(id, left)| {
                        let failed = *asked.get(&id)?;
                        let outcome = match (failed.failure, left.status()) {
                            (Failure::TimedOut, _) => AttemptOutcome::Timeout,
                            (_, TaskStatus::Pending) => AttemptOutcome::Retry,
                            _ => AttemptOutcome::Failed,
                        };
                        let recorded = Recorded {
                            outcome,
                            failure: Some((failed.clone(), left)),
                        };
                        Some(((id, failed.fence), recorded))
                    })
                    .collect()
            }
            Part::HandedBack(items) => {
                let fences: HashMap<TaskId, Fence> = items.iter().copied().collect();
                let ids = queue::release_many(db, items).await?;
                fenced(ids, &fences, AttemptOutcome::Released)
            }
        })
    }

    /// What to write instead of this one outcome, which the database refused as data: a
    /// failure naming the refusal, unless it is one already.
    pub(super) fn refused(self, refusal: &sqlx::Error) -> Option<Part> {
        let (id, fence, what) = match &self {
            Part::Succeeded(items) => {
                let (id, fence, _) = items.first()?;
                (*id, *fence, "result")
            }
            Part::Failed {
                failed,
                refusals: false,
            } => {
                let failed = failed.first()?;
                (failed.id, failed.fence, "outcome")
            }
            Part::Failed { refusals: true, .. } | Part::HandedBack(_) => return None,
        };
        tracing::warn!(task_id = %id, attempt = fence.attempt, error = %refusal, "{what} refused by the database: recording the refusal as the attempt's failure");
        Some(Part::Failed {
            failed: vec![AttemptFailure {
                id,
                fence,
                error: format!("the attempt's {what} could not be stored: {refusal}"),
                retry_delay: Duration::ZERO,
                failure: Failure::Permanent,
            }],
            refusals: true,
        })
    }
}

/// `ids`, the tasks whose fence held, each recorded as `outcome`, keyed by their attempt.
fn fenced(
    ids: Vec<TaskId>,
    fences: &HashMap<TaskId, Fence>,
    outcome: AttemptOutcome,
) -> Vec<((TaskId, Fence), Recorded)> {
    ids.into_iter()
        .filter_map(|id| Some(((id, *fences.get(&id)?), Recorded::new(outcome))))
        .collect()
}

/// Whether a part that failed with `e` is split in two: the database refused one of its
/// outcomes as data, or a statement or lock wait ran out of time (a row another transaction
/// holds).
pub(super) fn splits(e: &sqlx::Error) -> bool {
    apikit::db::is_invalid_data(e)
        || matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|code| code == "57014" || code == "55P03"))
}
