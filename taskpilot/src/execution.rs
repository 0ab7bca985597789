//! The ExecutionView: DTP's task mapped to TaskPilot's normalized view, with latency figures.
//! It reports DTP's state as is; it never decides execution state.

use chrono::{DateTime, Utc};
use common::{Attempt, ExecutionView, TaskView};

/// The view of `task` and its `attempts` (oldest first). Each latency is `null` until both of
/// its ends exist.
pub fn execution_view(task: TaskView, attempts: Vec<Attempt>) -> ExecutionView {
    let started = task.processing_started_at;
    let completed = task.completed_at;
    ExecutionView {
        scheduler_task_id: task.id,
        queue: task.queue,
        status: task.status,
        attempt_count: task.attempt_count,
        max_attempts: task.max_attempts,
        retry_state: task.retry_state,
        queue_latency_ms: started.map(|s| millis_between(task.scheduled_for, s)),
        processing_latency_ms: started.zip(completed).map(|(s, c)| millis_between(s, c)),
        end_to_end_latency_ms: completed.map(|c| millis_between(task.scheduled_for, c)),
        scheduled_for: task.scheduled_for,
        processing_started_at: started,
        completed_at: completed,
        next_attempt_at: task.next_attempt_at,
        last_error: task.last_error,
        attempts,
    }
}

/// Whole milliseconds from `from` to `to`, on the millisecond timestamps DTP sends, so that
/// queue + processing = end-to-end exactly.
fn millis_between(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    to.timestamp_millis() - from.timestamp_millis()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use common::{RetryState, TaskStatus};
    use serde_json::json;

    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_769_719_902_077 + ms)
            .single()
            .expect("valid")
    }

    fn task(started: Option<i64>, completed: Option<i64>) -> TaskView {
        TaskView {
            id: 9,
            task_type: "demo".into(),
            payload: json!(null),
            queue: "default".into(),
            status: TaskStatus::Succeeded,
            attempt_count: 1,
            max_attempts: 3,
            retry_state: RetryState::Completed,
            priority: 0,
            scheduled_for: at(0),
            processing_started_at: started.map(at),
            completed_at: completed.map(at),
            next_attempt_at: None,
            last_error: None,
            result: None,
            worker_id: None,
            timeout_ms: None,
            idempotency_key: None,
            created_at: at(0),
            updated_at: at(0),
        }
    }

    fn execution_view_of(task: TaskView) -> ExecutionView {
        execution_view(task, Vec::new())
    }

    #[test]
    fn latencies_are_the_differences_of_the_timestamps() {
        let view = execution_view_of(task(Some(32), Some(96)));
        assert_eq!(view.queue_latency_ms, Some(32));
        assert_eq!(view.processing_latency_ms, Some(64));
        assert_eq!(view.end_to_end_latency_ms, Some(96));
        assert_eq!(view.scheduler_task_id, 9);
    }

    #[test]
    fn latencies_are_null_until_both_ends_exist() {
        let pending = execution_view_of(task(None, None));
        assert_eq!(
            (
                pending.queue_latency_ms,
                pending.processing_latency_ms,
                pending.end_to_end_latency_ms
            ),
            (None, None, None)
        );
        let running = execution_view_of(task(Some(5), None));
        assert_eq!(running.queue_latency_ms, Some(5));
        assert_eq!(running.processing_latency_ms, None);
        assert_eq!(running.end_to_end_latency_ms, None);
        let canceled_before_start = execution_view_of(task(None, Some(40)));
        assert_eq!(canceled_before_start.queue_latency_ms, None);
        assert_eq!(canceled_before_start.end_to_end_latency_ms, Some(40));
    }
}
