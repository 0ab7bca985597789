//! Retry delays: exponential backoff with full jitter, capped.

use std::time::Duration;

use rand::Rng;

/// Backoff policy: the delay before retry `n` is uniform in `[0, min(cap, base * 2^(n-1))]`.
///
/// Full jitter spreads the retries of tasks that failed together (a downstream outage) instead of
/// sending them back at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first retry's delay.
    pub base: Duration,
    /// No delay is ever longer than this.
    pub cap: Duration,
}

impl Backoff {
    /// The largest delay allowed after failed attempt `attempt` (1-based).
    pub fn ceiling(&self, attempt: i32) -> Duration {
        let doublings = u32::try_from(attempt.saturating_sub(1))
            .unwrap_or(0)
            .min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// A random delay for the retry after failed attempt `attempt`.
    pub fn delay(&self, attempt: i32) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Backoff = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(5),
    };

    #[test]
    fn ceiling_doubles_per_attempt_until_the_cap() {
        assert_eq!(POLICY.ceiling(1), Duration::from_millis(100));
        assert_eq!(POLICY.ceiling(2), Duration::from_millis(200));
        assert_eq!(POLICY.ceiling(4), Duration::from_millis(800));
        assert_eq!(POLICY.ceiling(7), Duration::from_secs(5));
        assert_eq!(POLICY.ceiling(100), Duration::from_secs(5));
    }

    #[test]
    fn delays_stay_within_zero_and_the_ceiling() {
        for attempt in 1..=100 {
            for _ in 0..20 {
                assert!(POLICY.delay(attempt) <= POLICY.ceiling(attempt));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn a_delay_never_exceeds_the_cap_nor_its_attempt_s_ceiling(
            base_ms in 1u64..10_000,
            cap_ms in 1u64..1_000_000,
            attempt in -5i32..200,
        ) {
            let policy = Backoff {
                base: Duration::from_millis(base_ms),
                cap: Duration::from_millis(cap_ms),
            };
            let delay = policy.delay(attempt);
            proptest::prop_assert!(delay <= policy.cap);
            proptest::prop_assert!(delay <= policy.ceiling(attempt));
        }

        #[test]
        fn the_ceiling_is_base_doubled_per_attempt_up_to_the_cap(
            base_ms in 1u64..10_000,
            cap_ms in 1u64..1_000_000,
            attempt in 1i32..20,
        ) {
            let policy = Backoff {
                base: Duration::from_millis(base_ms),
                cap: Duration::from_millis(cap_ms),
            };
            let doubled = base_ms.saturating_mul(1 << (attempt - 1));
            proptest::prop_assert_eq!(policy.ceiling(attempt), Duration::from_millis(doubled.min(cap_ms)));
            proptest::prop_assert!(policy.ceiling(attempt) <= policy.ceiling(attempt + 1));
        }
    }

    #[test]
    fn delays_are_jittered() {
        let delays: std::collections::HashSet<_> = (0..50).map(|_| POLICY.delay(6)).collect();
        assert!(delays.len() > 10, "expected spread, got {delays:?}");
    }
}
