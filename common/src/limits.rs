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

/// A queue name ([`is_queue_name`]): holds no other value. Every input that names a queue is
/// read through [`QueueName::parse`], so the rule and the message that states it are in one
/// place.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueName(String);

impl QueueName {
    /// `raw` as a queue name, or the message saying what one is, naming `field`, the input that
    /// held it (`queue`, `filter.queue`).
    pub fn parse(field: &str, raw: &str) -> Result<QueueName, String> {
        if is_queue_name(raw) {
            Ok(QueueName(raw.to_owned()))
        } else {
            Err(format!(
                "{field} must be 1 to 100 characters of A-Z a-z 0-9 _ . : -, got {raw:?}"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_name_holds_only_what_the_rule_allows_and_a_refusal_names_its_field() {
        let name = QueueName::parse("queue", "reports.daily:eu-1_a").expect("a queue name");
        assert_eq!(name.as_str(), "reports.daily:eu-1_a");
        for bad in ["", "has space", "slash/", "é", &"q".repeat(101)] {
            let refused = QueueName::parse("filter.queue", bad).expect_err(bad);
            assert!(
                refused
                    .starts_with("filter.queue must be 1 to 100 characters of A-Z a-z 0-9 _ . : -"),
                "{refused}"
            );
        }
        assert!(QueueName::parse("queue", &"q".repeat(100)).is_ok());
    }
}
