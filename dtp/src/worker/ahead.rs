//! Tasks claimed ahead of free slots, and the slot hand-over that starts them.
//!
//! A claim costs a round trip and a commit, however many tasks it takes. When tasks are short,
//! claiming only as many as there are free slots capped a worker at one claim per
//! `concurrency` tasks: 17,000 tasks/s for the standard workload (concurrency 10), against
//! 37,000 when the same worker had 50 slots and claimed 50 at a time. So besides a task for each
//! free slot, the claim loop claims [`AHEAD_PER_FINISHED`] more for each task its slots finished
//! since its previous claim (at most [`MAX_AHEAD_PER_SLOT`] per slot) and holds them here; a
//! slot whose task is done takes the next one from here at once, without waiting for the
//! database. Long tasks finish nothing during a claim, so nothing is claimed ahead of them: a
//! task is held a few claims' round trips, and never long behind a slow task ([`MAX_HOLD`]).
//!
//! A held task is RUNNING in the database under this worker's name and lease, and listed in
//! `running` from its claim: the heartbeat renews its lease, a cancel or a lapsed lease aborts
//! it, and an aborted one is dropped when its turn comes instead of run. What is held when the
//! worker stops, or longer than [`MAX_HOLD`], is handed back uncounted and in its place in the
//! queue (`queue::release_unstarted`), as if never claimed; if that fails (the database is
//! down), it stays held, its lease renewed, until handing back succeeds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::running::Attempt;

/// Tasks claimed ahead per task finished during the previous claim: enough to cover a few
/// claims' round trips, so that the held tasks rarely run out before the next claim answers.
const AHEAD_PER_FINISHED: usize = 4;
/// Most tasks claimed ahead, per slot.
const MAX_AHEAD_PER_SLOT: usize = 10;
/// Longest a task waits here for a slot (all slots taken by tasks slower than the ones before
/// them) before it is handed back for any process to take. It also bounds how long after its
/// claim a held task may start: a queue paused meanwhile starts none of them later than this.
pub(super) const MAX_HOLD: Duration = Duration::from_millis(500);

pub(super) struct ClaimedAhead {
    held: Mutex<VecDeque<Attempt>>,
    /// Tasks done in a slot since the claim loop last asked.
    finished: AtomicUsize,
    /// The claim loop waits until at most this many are held; then `low` is signalled.
    low_water: AtomicUsize,
    low: Notify,
    /// The worker is stopping: slots take no more held tasks.
    closed: AtomicBool,
}

impl ClaimedAhead {
    pub(super) fn new() -> Self {
        ClaimedAhead {
            held: Mutex::new(VecDeque::new()),
            finished: AtomicUsize::new(0),
            low_water: AtomicUsize::new(0),
            low: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Holds a claimed attempt until a slot takes it.
    pub(super) fn hold(&self, attempt: Attempt) {
        self.lock().push_back(attempt);
    }

    /// Puts back, first and in their order, attempts taken out to be handed back when that
    /// failed: they are still this worker's, and their leases are still renewed.
    pub(super) fn put_back(&self, attempts: Vec<Attempt>) {
        let mut held = self.lock();
        for attempt in attempts.into_iter().rev() {
            held.push_front(attempt);
        }
    }

    /// A slot's task is done: the next held attempt for the slot to run, if any. None once
    /// the oldest has been held [`MAX_HOLD`]: the slot is given back, which wakes the claim
    /// loop to hand that one back and start the others.
    pub(super) fn next_for_slot(&self) -> Option<Attempt> {
        self.finished.fetch_add(1, Ordering::Relaxed);
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let mut held = self.lock();
        if held
            .front()
            .is_none_or(|oldest| oldest.held_since.elapsed() >= MAX_HOLD)
        {
            return None;
        }
        let next = held.pop_front();
        if held.len() <= self.low_water.load(Ordering::Relaxed) {
            self.low.notify_one();
        }
        next
    }

    /// The next held attempt for a slot that was free (only the claim loop frees them while
    /// attempts are held: after a panic, or at start).
    pub(super) fn next(&self) -> Option<Attempt> {
        self.lock().pop_front()
    }

    /// Slots take no more held tasks (the worker is stopping).
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// How many to hold ahead now, for `slots` slots: [`AHEAD_PER_FINISHED`] for each task
    /// finished since the last call (about one claim ago), at most [`MAX_AHEAD_PER_SLOT`] per
    /// slot.
    pub(super) fn wanted(&self, slots: usize) -> usize {
        let finished = self.finished.swap(0, Ordering::Relaxed);
        finished
            .saturating_mul(AHEAD_PER_FINISHED)
            .min(slots.saturating_mul(MAX_AHEAD_PER_SLOT))
    }

    /// Resolves once at most `low_water` attempts are held (at once if they are already).
    pub(super) async fn drained_to(&self, low_water: usize) {
        self.low_water.store(low_water, Ordering::Relaxed);
        let notified = self.low.notified();
        if self.len() <= low_water {
            return;
        }
        notified.await;
    }

    /// Takes out every attempt held for [`MAX_HOLD`] or longer (all of them with `all`), in
    /// the order claimed.
    pub(super) fn take_held(&self, all: bool) -> Vec<Attempt> {
        let mut held = self.lock();
        let stale = if all {
            held.len()
        } else {
            held.iter()
                .take_while(|attempt| attempt.held_since.elapsed() >= MAX_HOLD)
                .count()
        };
        held.drain(..stale).collect()
    }

    /// When the oldest held attempt has been held [`MAX_HOLD`]; `None` while none is held.
    pub(super) fn oldest_due(&self) -> Option<Instant> {
        self.lock()
            .front()
            .map(|oldest| oldest.held_since + MAX_HOLD)
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Attempt>> {
        // Every operation is one push, pop or drain: a panic cannot leave the queue half-changed.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
