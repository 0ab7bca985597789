//! Bounds and names of the contract that more than one place enforces: both services' validation, DTP's
//! configuration, and the schema (`migrations/dtp/0001_create_tasks.sql` checks `max_attempts`
//! with the same bounds; the OpenAPI attributes on the wire types repeat them as literals,
//! which the derive requires).

use std::ops::RangeInclusive;

/// Allowed `maxAttempts`, in DTP's create request, TaskPilot's bind request and
/// `DTP_DEFAULT_MAX_ATTEMPTS`.
pub const MAX_ATTEMPTS: RangeInclusive<i32> = 1..=100;

/// The queue a task is in when its create request names none.
pub const DEFAULT_QUEUE: &str = "default";

/// Whether `name` is a queue name: 1..=100 characters of `[A-Za-z0-9_.:-]`. The services check
/// it on every request; the schema checks only the length (`migrations/dtp/0005_task_queue.sql`
/// says why), so a program embedding `dtp` that writes through `dtp::queue` must check too.
pub fn is_queue_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}
