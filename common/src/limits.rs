//! Bounds of the contract that more than one place enforces: both services' validation, DTP's
//! configuration, and the schema (`migrations/dtp/0001_create_tasks.sql` checks `max_attempts`
//! with the same bounds; the OpenAPI attributes on the wire types repeat them as literals,
//! which the derive requires).

use std::ops::RangeInclusive;

/// Allowed `maxAttempts`, in DTP's create request, TaskPilot's bind request and
/// `DTP_DEFAULT_MAX_ATTEMPTS`.
pub const MAX_ATTEMPTS: RangeInclusive<i32> = 1..=100;
