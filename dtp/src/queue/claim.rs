//! Claiming due tasks and renewing the leases of running ones.

use std::sync::LazyLock;

use rand::seq::SliceRandom;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgExecutor};

use super::ready::{ready_queues, ClaimKey};
use super::{millis, TaskId};

/// A task just claimed: what its worker needs to run it and to fence its outcome.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedTask {
    /// Task id.
    pub id: i64,
    /// Handler name.
    #[sqlx(rename = "type")]
    pub task_type: String,
    /// Handler input.
    pub payload: Value,
    /// This attempt's number.
    pub attempt_count: i32,
    /// Drawn at random by the claim; with the attempt number, the [`Fence`] of this attempt.
    pub claim_token: i64,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Per-task execution timeout.
    pub timeout_ms: Option<i64>,
    /// Its queue.
    pub queue: String,
    /// Seconds from the task being due (`run_at`) to this claim.
    pub queue_wait_seconds: f64,
    /// The creating request's trace context, if it was stored.
    pub traceparent: Option<String>,
    /// Its priority.
    pub priority: i32,
    /// When it became due.
    pub run_at: DateTime<Utc>,
}

impl ClaimedTask {
    /// The task id.
    pub fn task_id(&self) -> TaskId {
        TaskId(self.id)
    }

    /// Where it stood in its queue's claim order.
    pub fn claim_key(&self) -> ClaimKey {
        ClaimKey::of(self.priority, self.run_at, self.id)
    }

    /// What every write about this attempt is fenced on.
    pub fn fence(&self) -> Fence {
        Fence {
            attempt: self.attempt_count,
            claim_token: self.claim_token,
        }
    }
}

/// What every write about one attempt is fenced on (besides `status = 'RUNNING'`): the attempt
/// number and the token its claim drew. The attempt number alone cannot tell a claim the
/// database lost in a crash (claims commit asynchronously) from the next claim of the same
/// attempt number; the token can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fence {
    /// The attempt's number (`attempt_count` once claimed).
    pub attempt: i32,
    /// The claim's token.
    pub claim_token: i64,
}

impl Fence {
    /// The fence as SQL: the task `task` (a table name or alias) is RUNNING the attempt
    /// `attempt` under the claim `token` (SQL expressions, e.g. `$2` or `done.attempt`). Every
    /// write about one attempt is fenced by this clause.
    ///
    /// The state is compared through `coalesce`, so that PostgreSQL cannot serve the statement
    /// from `tasks_running_lease`, and finds each task through its primary key instead. That
    /// partial index holds an entry for every claim until vacuum removes the dead ones; when
    /// the statistics say few tasks run (true after any ANALYZE: at most a few slots' worth
    /// run at a time), the planner walked it whole and matched each entry against the ids.
    /// On a table of 5,000,000 finished tasks a completion then took up to 1.6 s, and the
    /// drain fell from 14,600 to 470 tasks/s (`cargo bench --bench big_table`).
    pub(super) fn sql(task: &str, attempt: &str, token: &str) -> String {
        format!(
            "{} and {task}.attempt_count = {attempt} and {task}.claim_token = {token}",
            Self::running(task)
        )
    }

    /// The ids, attempt numbers and claim tokens of `held`, as the three arrays a statement
    /// unnests to fence each of them.
    pub(super) fn columns(held: &[(TaskId, Fence)]) -> (Vec<i64>, Vec<i32>, Vec<i64>) {
        let ids = held.iter().map(|(id, _)| id.0).collect();
        let attempts = held.iter().map(|(_, f)| f.attempt).collect();
        let tokens = held.iter().map(|(_, f)| f.claim_token).collect();
        (ids, attempts, tokens)
    }

    /// `task` (a table name or alias) is RUNNING, compared as [`Fence::sql`] explains: for a
    /// statement that finds its tasks by id.
    pub(super) fn running(task: &str) -> String {
        format!("coalesce({task}.status, '') = 'RUNNING'")
    }
}

/// One claim: who claims, which types it can run, from which queues, how many, for how long,
/// and the token that will fence the attempts it starts.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// Written on each claimed task (`workerId`).
    pub worker_id: &'a str,
    /// Only tasks of these types are claimed: a process never takes work it has no handler for.
    pub task_types: &'a [String],
    /// At most this many tasks.
    pub limit: i64,
    /// Of `limit`, how many the claimer starts at once (its free slots); it holds the rest for
    /// slots about to free up (`worker::ahead`). A queue with a rate limit gives no more than
    /// these: a task held for a slot would start later than the token it spent, and the
    /// queue's starts could outrun its rate by what was held.
    pub start_now: i64,
    /// Lease of each claimed task (database clock).
    pub lease: Duration,
    /// Drawn by the claimer before it sends the claim, so that a claim whose answer was lost
    /// can still be found and released ([`release_lost_claim`](super::release_lost_claim)).
    pub token: i64,
    /// The queues to claim from, each from its cursor: those the claimer knows to hold ready
    /// tasks (the [`Claimed::frontier`] of its last claim, the queues found by
    /// [`ready_queues`](super::ready_queues) and those announced since). `None`: the claim
    /// finds them first, from their start, one more statement.
    pub queues: Option<&'a [QueueCursor]>,
    /// Some queue may be paused or limited ([`restricted_queues`]): the claim reads the queues'
    /// settings and takes the claim lock of the limited ones first, in a transaction. When
    /// `false`, the claim is one statement that obeys no queue setting: only a claimer that
    /// looked (at most a second ago, see `worker::claim_loop`) may say so.
    pub restricted_queues: bool,
}

impl<'a> Claim<'a> {
    /// A claim with a fresh random token that finds the queues with work itself and obeys
    /// every queue setting.
    pub fn new(worker_id: &'a str, task_types: &'a [String], limit: i64, lease: Duration) -> Self {
        Claim {
            worker_id,
            task_types,
            limit,
            start_now: limit,
            lease,
            token: rand::random(),
            queues: None,
            restricted_queues: true,
        }
    }
}

/// A queue a claimer takes from, and the claim key its next claim there starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCursor {
    /// The queue.
    pub queue: String,
    /// Every ready task of the queue before this key was, when the claimer last looked, taken,
    /// gone, or of a type it does not run; announcements move it back.
    pub from: ClaimKey,
    /// Set when an announcement moved the cursor back to a higher priority than it stood at:
    /// where it stood. The claim walks the higher priorities from `from` and stops before this
    /// one's; once they give less than the claim asked, the cursor comes back here. So the
    /// walk never crosses the start of a lower priority, where the dead entries of the tasks
    /// claimed before lie.
    pub resume: Option<ClaimKey>,
}

impl QueueCursor {
    /// A queue to claim from its start.
    pub fn start(queue: String) -> Self {
        QueueCursor {
            queue,
            from: ClaimKey::START,
            resume: None,
        }
    }

    /// Moves the cursor back to cover a ready task at `first` ([`ClaimKey::START`]: somewhere
    /// in the queue).
    pub fn announced(&mut self, first: ClaimKey) {
        if first == ClaimKey::START {
            *self = QueueCursor::start(std::mem::take(&mut self.queue));
            return;
        }
        match self.resume {
            None if first.neg_priority < self.from.neg_priority => {
                self.resume = Some(self.from);
                self.from = first;
            }
            None => self.from = self.from.min(first),
            Some(resume) if first.neg_priority < resume.neg_priority => {
                self.from = self.from.min(first);
            }
            Some(resume) => self.resume = Some(resume.min(first)),
        }
    }
}

/// What one claim took, and whether a limited queue may have held some back.
#[derive(Debug, Default)]
pub struct Claimed {
    /// The tasks now RUNNING under the claim's worker.
    pub tasks: Vec<ClaimedTask>,
    /// A queue with a concurrency or rate limit exists: its tasks may become claimable without
    /// any notification (a token accrues, a task of another process ends), so the claimer
    /// should look again soon.
    pub limited_queues: bool,
    /// The queues this claim took from under their limits: their tasks are to start first
    /// (see [`Claim::start_now`]).
    pub held_to_limits: Vec<String>,
    /// The queues worth claiming from next, in the order given, each cursor moved past the
    /// tasks taken: every queue of the claim but those it found empty (see `frontier`).
    pub frontier: Vec<QueueCursor>,
    /// Some queue had no share in this claim (more queues than the limit): the next claim,
    /// the queues turned, may find work even if this one took nothing.
    pub turns_left: bool,
}

/// Every queue with ready tasks ([`ready_queues`]), each to claim from its start, in a random
/// order: with fewer slots than queues, the first queues win the ties.
pub async fn every_ready_queue(db: impl PgExecutor<'_>) -> Result<Vec<QueueCursor>, sqlx::Error> {
    let mut ready = ready_queues(db).await?;
    ready.shuffle(&mut rand::rng());
    Ok(ready.into_iter().map(QueueCursor::start).collect())
}

/// Whether any queue is paused or limited (a partial index of the queue settings).
pub async fn restricted_queues(db: impl PgExecutor<'_>) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "select exists (select 1 from queues where {RESTRICTED})"
    ))
    .fetch_one(db)
    .await
}

/// A queue whose settings change what the claim may take.
const RESTRICTED: &str =
    "paused or concurrency_limit is not null or rate_limit_per_second is not null";

/// Most limited queues one claim locks (and takes from).
const MAX_LOCKED: i64 = 64;

/// The first key of the advisory locks that serialize the claims of one limited queue across
/// all processes (the second is the queue name's hash). Arbitrary, fixed: "DTPQ".
const CLAIM_LOCK_CLASS: i32 = 0x4454_5051;

/// Claims up to `claim.limit` ready tasks of `claim.task_types` and marks them RUNNING under a
/// lease (database clock) held by `claim.worker_id` and fenced by `claim.token`.
///
/// Each queue is walked from its cursor in `tasks_ready`, so a claim costs what it takes, not
/// what was claimed before it (see [`super::ready`]). Between queues the claim is fair: it
/// takes an equal share of the limit from each queue, so a busy queue cannot starve a small
/// one, and every queue's first task before any queue's second, the queues taking turns in the
/// order given (a random one when the claimer names none). Within a queue: highest priority
/// first, then the longest due. Rows other claimers hold locked are skipped. A claim may take
/// fewer than `limit` while more is ready (a queue had less than its share): claim again while
/// a claim takes anything.
///
/// Paused queues are skipped. A limited queue is claimed only under its claim lock (an
/// advisory lock held to the commit): the lock is taken in a first statement, and the claim,
/// a second statement, counts the queue's RUNNING tasks and spends its rate tokens in a
/// snapshot taken after the lock, which therefore sees every earlier claim of the queue. A
/// queue whose lock another process holds is skipped this time.
pub async fn claim_available(
    conn: &mut PgConnection,
    claim: &Claim<'_>,
) -> Result<Claimed, sqlx::Error> {
    let found: Vec<QueueCursor>;
    let queues = match claim.queues {
        Some(queues) => queues,
        None => {
            found = every_ready_queue(&mut *conn).await?;
            &found
        }
    };
    if queues.is_empty() {
        return Ok(Claimed::default());
    }
    if !claim.restricted_queues {
        let open = shares(queues, claim.limit);
        let tasks = claim_statement(&mut *conn, claim, &open, &[]).await?;
        return Ok(Claimed {
            frontier: frontier(queues, &tasks, &open, &[]),
            turns_left: open.len() < queues.len(),
            tasks,
            limited_queues: false,
            held_to_limits: Vec::new(),
        });
    }
    let mut tx = conn.begin().await?;
    let names: Vec<&str> = queues.iter().map(|q| q.queue.as_str()).collect();
    // Every restricted queue, to skip the paused ones; the claim locks only limited queues it
    // would take from, at most MAX_LOCKED of them, drawn at random: the locks come from the
    // server's shared lock table, and a lock held on a queue this claim does not serve would
    // keep the processes that do from it.
    let settings: Vec<(String, bool, bool)> = sqlx::query_as(&format!(
        r#"
        select name, paused,
               case when wanted and pick <= {MAX_LOCKED}
                    then pg_try_advisory_xact_lock({CLAIM_LOCK_CLASS}, hashtext(name))
                    else false end
        from (
            select name, paused, wanted,
                   row_number() over (partition by wanted order by random()) as pick
            from (select name, paused, not paused and name = any($1) as wanted
                  from queues where {RESTRICTED}) restricted
        ) drawn
        "#
    ))
    .bind(&names)
    .fetch_all(&mut *tx)
    .await?;
    let limited_queues = settings
        .iter()
        .any(|(name, paused, _)| !paused && names.contains(&name.as_str()));
    let skipped: Vec<&str> = settings
        .iter()
        .filter(|(_, _, locked)| !locked)
        .map(|(name, _, _)| name.as_str())
        .collect();
    let unskipped: Vec<QueueCursor> = queues
        .iter()
        .filter(|q| !skipped.contains(&q.queue.as_str()))
        .cloned()
        .collect();
    let open = shares(&unskipped, claim.limit);
    let locked: Vec<String> = settings
        .iter()
        .filter(|(_, _, locked)| *locked)
        .map(|(name, _, _)| name.clone())
        .collect();
    let tasks = if open.is_empty() {
        Vec::new()
    } else {
        claim_statement(&mut *tx, claim, &open, &locked).await?
    };
    tx.commit().await?;
    Ok(Claimed {
        frontier: frontier(queues, &tasks, &open, &locked),
        turns_left: open.len() < unskipped.len(),
        tasks,
        limited_queues,
        held_to_limits: locked,
    })
}

/// The queues one claim of `limit` takes from, in turn, each with its share: the limit split
/// evenly, the first queues taking what does not divide, and with more queues than the limit
/// one task from each of the first `limit`. The shares add up to the limit, so the claim locks
/// no row it does not take: a row locked and then left would be skipped by other claimers,
/// whose cursors would move past it.
fn shares(queues: &[QueueCursor], limit: i64) -> Vec<(QueueCursor, i64)> {
    let count = i64::try_from(queues.len()).unwrap_or(i64::MAX).max(1);
    let (each, extra) = (limit / count, limit % count);
    queues
        .iter()
        .zip(0_i64..)
        .map(|(queue, turn)| (queue.clone(), each + i64::from(turn < extra)))
        .filter(|(_, share)| *share > 0)
        .collect()
}

/// The queues worth claiming from after a claim from `open` (each with its share, out of
/// `queues`) took `tasks`:
///
/// - a queue walked up to its `resume` that gave less than its share has no more there: it
///   resumes (a limited queue, which may give less for its limits, gives up the resume and
///   walks on from where it is);
/// - a queue that gave tasks starts after the last of them;
/// - one that gave nothing holds nothing this claimer can take (unless it was held to its
///   limits, `limited`), and is left out until it is announced again or found by the next look
///   at every queue;
/// - the others (skipped, or not this claim's turn) stay as they were.
fn frontier(
    queues: &[QueueCursor],
    tasks: &[ClaimedTask],
    open: &[(QueueCursor, i64)],
    limited: &[String],
) -> Vec<QueueCursor> {
    queues
        .iter()
        .filter_map(|cursor| {
            let Some((_, share)) = open.iter().find(|(q, _)| q.queue == cursor.queue) else {
                return Some(cursor.clone());
            };
            let taken: Vec<ClaimKey> = tasks
                .iter()
                .filter(|task| task.queue == cursor.queue)
                .map(ClaimedTask::claim_key)
                .collect();
            let is_limited = limited.contains(&cursor.queue);
            let gave_less = i64::try_from(taken.len()).unwrap_or(i64::MAX) < *share;
            let from = taken.iter().max().map_or(cursor.from, |last| last.after());
            let (from, resume) = match cursor.resume {
                Some(resume) if gave_less && !is_limited => (resume, None),
                Some(_) if is_limited => (from, None),
                resume @ Some(_) => (from, resume),
                None if taken.is_empty() && !is_limited => return None,
                None => (from, None),
            };
            Some(QueueCursor {
                queue: cursor.queue.clone(),
                from,
                resume,
            })
        })
        .collect()
}

/// The claim itself, from the queues `open` (each from its cursor, for its share), holding
/// those in `limited` (whose claim locks the caller holds) to their limits.
async fn claim_statement(
    db: impl PgExecutor<'_>,
    claim: &Claim<'_>,
    open: &[(QueueCursor, i64)],
    limited: &[String],
) -> Result<Vec<ClaimedTask>, sqlx::Error> {
    let statement: &str = match (limited.is_empty(), open.len()) {
        (_, 0) => return Ok(Vec::new()),
        (true, 1) => &CLAIM_ONE,
        (true, _) => &CLAIM,
        (false, _) => &CLAIM_LIMITED,
    };
    let names: Vec<&str> = open.iter().map(|(q, _)| q.queue.as_str()).collect();
    let neg_priorities: Vec<i32> = open.iter().map(|(q, _)| q.from.neg_priority).collect();
    let run_ats: Vec<DateTime<Utc>> = open.iter().map(|(q, _)| q.from.run_at).collect();
    let ids: Vec<i64> = open.iter().map(|(q, _)| q.from.id).collect();
    let shares: Vec<i64> = open.iter().map(|(_, share)| *share).collect();
    let until: Vec<i32> = open
        .iter()
        .map(|(q, _)| q.resume.map_or(i32::MAX, |r| r.neg_priority))
        .collect();
    let query = sqlx::query_as(statement)
        .bind(claim.limit)
        .bind(claim.worker_id)
        .bind(millis(claim.lease))
        .bind(claim.token)
        .bind(claim.task_types)
        .bind(names)
        .bind(neg_priorities)
        .bind(run_ats)
        .bind(ids)
        .bind(shares)
        .bind(until);
    let query = if limited.is_empty() {
        query
    } else {
        query.bind(limited).bind(claim.start_now)
    };
    query.fetch_all(db).await
}

// Every claim statement takes `$1` the limit, `$2` the worker, `$3` the lease in milliseconds,
// `$4` the token, `$5` the task types; `$6` the queues in the order they take turns, and
// their cursors as three arrays (`$7` negated priorities, `$8` due times, `$9` ids); `$10` each
// queue's share of the limit (the shares add up to `$1`); `$11` the negated priority each
// queue's walk stops before (a cursor's `resume`).

/// The claim from unlimited queues.
static CLAIM: LazyLock<String> = LazyLock::new(|| claim_sql("", "o.share", ""));

/// The claim when some of the queues (`$12`, their claim locks held) are limited: each of those
/// gives no more than its limit less what runs now, and the whole tokens its bucket holds (it
/// refills at the rate, up to a tenth of a second's worth and at least one), and a rate-limited
/// one no more than the claimer starts at once (`$13`); the tokens spent are written back.
/// least() and greatest() ignore nulls: a limit that is not set is null.
///
/// What runs now: the queue's RUNNING tasks, and those canceled less than a lease (`$3`) ago
/// after they had started: a canceled attempt's handler runs on until its worker hears of the
/// cancel, at the latest when its lease, as last renewed, runs out (as for `queue::retry`).
/// Times are the statement's, which began after the lock: `now()` is the transaction's start,
/// possibly before the previous holder of the lock spent its tokens.
static CLAIM_LIMITED: LazyLock<String> = LazyLock::new(|| {
    claim_sql(
        r#"
        held as (
            select q.name,
                   case when q.rate_limit_per_second is not null then least(
                       greatest(1, q.rate_limit_per_second / 10),
                       q.rate_tokens + q.rate_limit_per_second
                           * extract(epoch from statement_timestamp() - q.rate_refilled_at))
                   end as tokens,
                   q.concurrency_limit
                       - (select count(*) from tasks r
                          where r.status = 'RUNNING' and r.queue = q.name)
                       - (select count(*) from tasks c
                          where c.status = 'CANCELED' and c.attempt_count > 0
                            and c.queue = q.name
                            and c.completed_at > statement_timestamp()
                                                 - $3 * interval '1 millisecond')
                       as free_slots
            from queues q
            where q.name = any($12::text[])
        ),"#,
        "coalesce((select greatest(0, least(o.share, h.free_slots, floor(h.tokens), \
                                            case when h.tokens is not null then $13 end))::bigint \
                   from held h where h.name = o.queue), o.share)",
        r#",
        spent as (
            update queues q
            set rate_tokens = h.tokens - (select count(*) from next n where n.queue = q.name),
                rate_refilled_at = statement_timestamp()
            from held h
            where q.name = h.name and h.tokens is not null
        )"#,
    )
});

/// A claim statement: `with` the CTEs `before`, each queue of `$6` giving `per_queue` tasks at
/// most from its cursor, then the CTEs `after`.
fn claim_sql(before: &str, per_queue: &str, after: &str) -> String {
    claim_sql_with(
        before,
        &format!(
            r#"
            select id, queue from (
                select c.id, c.queue, o.pos,
                       row_number() over (partition by o.pos
                                          order by -c.priority, c.run_at, c.id) as rank
                from unnest($6::text[], $7::integer[], $8::timestamptz[], $9::bigint[],
                            $10::bigint[], $11::integer[])
                    with ordinality as o(queue, neg_priority, due, after_id, share, until, pos)
                cross join lateral (
                    select id, queue, priority, run_at from tasks
                    where status = 'PENDING' and not waiting and queue = o.queue
                      and (-priority, run_at, id) >= (o.neg_priority, o.due, o.after_id)
                      and -priority < o.until
                      and {DUE}
                    order by -priority, run_at, id
                    limit {per_queue}
                    for update skip locked
                ) c
            ) ranked
            -- Every queue's first task before any queue's second, and between queues in the
            -- order given (the claimer turns it between claims): the order they start in.
            order by rank, pos
            limit $1"#
        ),
        after,
    )
}

/// The claim from the one queue `$6[1]`, unlimited: a plain walk of its part of tasks_ready
/// from its cursor. The same claim as [`CLAIM`] with one queue, without ranking what it found
/// (which cost the standard workload 7 %).
static CLAIM_ONE: LazyLock<String> = LazyLock::new(|| {
    claim_sql_with(
        "",
        &format!(
            r#"
            select id, queue from tasks
            where status = 'PENDING' and not waiting and queue = ($6::text[])[1]
              and (-priority, run_at, id)
                  >= (($7::integer[])[1], ($8::timestamptz[])[1], ($9::bigint[])[1])
              and -priority < ($11::integer[])[1]
              and {DUE}
            order by -priority, run_at, id
            limit least($1, ($10::bigint[])[1])
            for update skip locked"#
        ),
        "",
    )
});

/// A ready task a claim may take: due, and of a type the claimer runs. Due is checked again
/// for the tasks a process of the release before makes ready before they are due, against the
/// clock rather than the transaction's start: every task made ready due was due before the
/// claim could see it, and one skipped as not yet due could fall behind the claimer's cursor.
// Not `type = any($5)`: on a table without statistics yet (a new database, a burst just
// enqueued) the planner takes that for one matching row and sorts the whole backlog instead
// of walking tasks_ready; a function's result is estimated to match nearly every row,
// which keeps the index walk.
const DUE: &str = "run_at <= clock_timestamp() and array_position($5::text[], type) is not null";

/// A claim statement whose `next` CTE (the ids and queues of the tasks to take, their rows
/// locked) is `next`, between the CTEs `before` and `after`.
fn claim_sql_with(before: &str, next: &str, after: &str) -> String {
    format!(
        r#"
        with {before}
        next as ({next}
        ){after}
        update tasks t
        set status = 'RUNNING',
            attempt_count = t.attempt_count + 1,
            worker_id = $2,
            claim_token = $4,
            lease_expires_at = now() + $3 * interval '1 millisecond',
            processing_started_at = coalesce(t.processing_started_at, now()),
            attempt_started_at = now(),
            next_attempt_at = null,
            updated_at = now()
        -- Not `from next where t.id = next.id`: without statistics (a new table) the planner
        -- makes that a hash join over a sequential scan of every task, so its generic plan is
        -- never cached and each claim is planned anew. The array keeps it a primary-key lookup.
        where t.id = any(array(select id from next))
        returning t.id, t.type, t.payload, t.attempt_count, t.claim_token, t.max_attempts,
                  t.timeout_ms, t.queue, t.traceparent, t.priority, t.run_at,
                  extract(epoch from now() - t.run_at)::float8 as queue_wait_seconds
        "#
    )
}

/// What a round of lease renewal found.
#[derive(Debug, Default)]
pub struct Renewed {
    /// Attempts whose fence held: their leases were extended.
    pub renewed: Vec<(TaskId, Fence)>,
    /// Tasks another transaction was changing at that moment (the completer writing this
    /// worker's outcome, a cancel): neither renewed nor known to be lost. The next round reads
    /// them again.
    pub busy: Vec<TaskId>,
}

/// Extends the lease of each `(task, fence)` whose fence still holds. A held attempt in neither
/// list of the answer was canceled or rescued: its worker must stop.
///
/// The renewal never waits for a row lock. The completer writes the same rows in the order its
/// outcomes came, the renewal in the order it holds them; waiting on each other, they deadlocked
/// until PostgreSQL's deadlock check broke one off a second later, by which time short leases
/// had run out and their tasks were rescued and run twice.
pub async fn renew_leases(
    db: impl PgExecutor<'_>,
    held: &[(TaskId, Fence)],
    lease: Duration,
) -> Result<Renewed, sqlx::Error> {
    let (ids, attempts, tokens) = Fence::columns(held);
    let fenced = Fence::sql("t", "held.attempt", "held.token");
    // `free`: the attempts still ours whose rows nobody else is writing, locked as an UPDATE of
    // non-key columns locks them (so not against the key-share locks of attempt-history
    // inserts). An attempt still ours in this statement's snapshot but whose row another
    // transaction holds is busy; one no longer ours (or whose task is gone) is neither.
    let rows: Vec<(i64, i32, i64, bool)> = sqlx::query_as(&format!(
        r#"
        with held as (
            select * from unnest($1::bigint[], $2::integer[], $3::bigint[])
                as held(id, attempt, token)
        ),
        free as (
            select t.id from tasks t join held on t.id = held.id
            where {fenced}
            order by t.id
            for no key update of t skip locked
        ),
        renewed as (
            update tasks t
            set lease_expires_at = now() + $4 * interval '1 millisecond'
            where t.id in (select id from free)
            returning t.id, t.attempt_count, t.claim_token
        )
        select id, attempt_count, claim_token, true from renewed
        union all
        select held.id, held.attempt, held.token, false from held
        where held.id not in (select id from free)
          and exists (select 1 from tasks t where t.id = held.id and {fenced})
        "#
    ))
    .bind(&ids)
    .bind(&attempts)
    .bind(&tokens)
    .bind(millis(lease))
    .fetch_all(db)
    .await?;
    let mut answer = Renewed::default();
    for (id, attempt, claim_token, renewed) in rows {
        if renewed {
            let fence = Fence {
                attempt,
                claim_token,
            };
            answer.renewed.push((TaskId(id), fence));
        } else {
            answer.busy.push(TaskId(id));
        }
    }
    Ok(answer)
}
