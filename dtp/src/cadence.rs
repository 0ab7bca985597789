//! A schedule's cadence: a cron pattern read in a time zone. The pattern is standard cron (5
//! fields) or has seconds first (6 fields); times are found in the zone's local time, so a
//! schedule at 03:00 in `Europe/Paris` runs at 03:00 Paris time on both sides of a daylight
//! saving change (croner and chrono-tz do the calendar arithmetic).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// The longest pattern stored (the `schedules.cron` check).
const MAX_PATTERN: usize = 200;

/// A parsed, valid cadence.
#[derive(Debug, Clone)]
pub struct Cadence {
    cron: Cron,
    zone: Tz,
}

impl Cadence {
    /// Reads `pattern` in `zone`, refusing (with the reason, for a 422) an unknown zone, a
    /// pattern that is not cron, and a pattern that never fires.
    pub fn parse(pattern: &str, zone: &str) -> Result<Cadence, String> {
        let zone = Tz::from_str(zone).map_err(|_| {
            format!("unknown time zone {zone:?}: use an IANA name such as UTC or Europe/Paris")
        })?;
        if pattern.chars().count() > MAX_PATTERN {
            return Err(format!(
                "cron is {} characters long; at most {MAX_PATTERN}",
                pattern.chars().count()
            ));
        }
        let fields = pattern.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "cron {pattern:?} has {fields} fields: use 5 (minute hour day month weekday) \
                 or 6 (seconds first)"
            ));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(pattern)
            .map_err(|e| format!("invalid cron {pattern:?}: {e}"))?;
        let cadence = Cadence { cron, zone };
        if cadence.next_after(Utc::now()).is_none() {
            return Err(format!("cron {pattern:?} never fires"));
        }
        Ok(cadence)
    }

    /// The first tick strictly after `time`; `None` when there is none.
    pub fn next_after(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&time.with_timezone(&self.zone), false)
            .ok()
            .map(|tick| tick.with_timezone(&Utc))
    }

    /// The ticks from `first` (itself a tick) to `last`, both included, at most `most` of them
    /// (the latest ones when there are more).
    pub fn ticks_between(
        &self,
        first: DateTime<Utc>,
        last: DateTime<Utc>,
        most: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut ticks = Vec::new();
        let mut tick = Some(first);
        while let Some(at) = tick.filter(|at| *at <= last) {
            ticks.push(at);
            if ticks.len() > most {
                ticks.remove(0);
            }
            tick = self.next_after(at);
        }
        ticks
    }

    /// The latest tick at or before `time`.
    pub fn latest_at_or_before(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&time.with_timezone(&self.zone), true)
            .ok()
            .map(|tick| tick.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid time")
    }

    #[test]
    fn a_daily_tick_keeps_its_local_time_across_daylight_saving_changes() {
        let nightly = Cadence::parse("0 3 * * *", "Europe/Paris").expect("valid");
        // Paris is UTC+1 in winter, UTC+2 from the last Sunday of March (2026-03-29).
        let before = nightly.next_after(utc(2026, 3, 27, 12, 0, 0));
        assert_eq!(before, Some(utc(2026, 3, 28, 2, 0, 0)), "03:00 CET");
        let after = nightly.next_after(utc(2026, 3, 28, 12, 0, 0));
        assert_eq!(after, Some(utc(2026, 3, 29, 1, 0, 0)), "03:00 CEST");
    }

    #[test]
    fn a_tick_in_the_hour_skipped_by_spring_forward_is_not_invented() {
        // 02:30 does not exist in Paris on 2026-03-29 (clocks go from 02:00 to 03:00).
        let cadence = Cadence::parse("30 2 * * *", "Europe/Paris").expect("valid");
        let next = cadence
            .next_after(utc(2026, 3, 28, 12, 0, 0))
            .expect("a tick");
        assert_ne!(
            next,
            utc(2026, 3, 29, 0, 30, 0),
            "no tick at a local time that never was"
        );
    }

    #[test]
    fn seconds_come_first_in_six_fields() {
        let every_two = Cadence::parse("*/2 * * * * *", "UTC").expect("valid");
        let start = utc(2026, 1, 1, 0, 0, 1);
        assert_eq!(every_two.next_after(start), Some(utc(2026, 1, 1, 0, 0, 2)));
        assert_eq!(
            every_two.latest_at_or_before(start),
            Some(utc(2026, 1, 1, 0, 0, 0))
        );
    }

    #[test]
    fn the_ticks_between_two_times_are_listed_up_to_a_limit_keeping_the_latest() {
        let every_second = Cadence::parse("* * * * * *", "UTC").expect("valid");
        let start = utc(2026, 1, 1, 0, 0, 0);
        let ticks = every_second.ticks_between(start, utc(2026, 1, 1, 0, 0, 4), 10);
        assert_eq!(ticks.len(), 5);
        let capped = every_second.ticks_between(start, utc(2026, 1, 1, 0, 0, 4), 2);
        assert_eq!(capped, [utc(2026, 1, 1, 0, 0, 3), utc(2026, 1, 1, 0, 0, 4)]);
    }

    #[test]
    fn bad_patterns_zones_and_patterns_that_never_fire_are_refused() {
        assert!(Cadence::parse("0 3 * * *", "Mars/Olympus").is_err());
        assert!(Cadence::parse("not cron", "UTC").is_err());
        assert!(Cadence::parse("* * * *", "UTC").is_err());
        assert!(Cadence::parse("0 0 0 1 1 * 2030", "UTC").is_err());
        assert!(Cadence::parse("61 * * * *", "UTC").is_err());
        assert!(
            Cadence::parse("0 0 30 2 *", "UTC").is_err(),
            "30 February never comes"
        );
    }
}
