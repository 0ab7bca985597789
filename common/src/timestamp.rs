//! Timestamps on the wire: RFC 3339, UTC, millisecond precision (`2026-01-29T20:51:42.077Z`).
//!
//! Use with `#[serde(with = "common::timestamp")]` or `common::timestamp::option`. Every time a
//! client gives (a JSON field, a query parameter, a form, a CLI flag) is read by [`parse`].

use std::ops::RangeInclusive;

use chrono::{DateTime, Datelike, NaiveDateTime, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// The years a given time may fall in, in UTC. PostgreSQL's text form has no year 0 and
/// chrono reads signed years: a time outside these is refused as input, never stored.
pub const YEARS: RangeInclusive<i32> = 1..=9999;

/// A time given as input: RFC 3339, or a date and time without an offset (what a browser's
/// `datetime-local` input sends), read as UTC; in [`YEARS`] once in UTC. The error says what
/// is accepted and quotes `text`.
pub fn parse(text: &str) -> Result<DateTime<Utc>, String> {
    let raw = text.trim();
    let refused = || {
        format!(
            "must be a time from year {} to {} such as 2026-12-01T09:30:00Z, got {text:?}",
            YEARS.start(),
            YEARS.end()
        )
    };
    let time = match DateTime::parse_from_rfc3339(raw) {
        Ok(time) => time.with_timezone(&Utc),
        Err(_) => ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(raw, format).ok())
            .map(|naive| naive.and_utc())
            .ok_or_else(refused)?,
    };
    // A leap second (`23:59:60`) is stored as the next second: on the last day of 9999, the
    // first of 10000.
    if !YEARS.contains(&time.year()) || time.nanosecond() >= 1_000_000_000 {
        return Err(refused());
    }
    Ok(time)
}

/// Serializes with exactly three fractional digits and a `Z` suffix.
pub fn serialize<S: Serializer>(value: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&value.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Accepts what [`parse`] accepts, converted to UTC.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// The same format for optional timestamps (`null` when absent).
pub mod option {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes `None` as `null`.
    pub fn serialize<S: Serializer>(
        value: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(t) => super::serialize(t, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Accepts `null` or an RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super")] DateTime<Utc>);
        Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(t)| t))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Holder {
        #[serde(with = "super")]
        at: chrono::DateTime<chrono::Utc>,
    }

    #[test]
    fn timestamps_are_written_with_milliseconds_and_z() {
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 1, 29, 20, 51, 42)
            .single()
            .expect("valid date")
            + chrono::Duration::microseconds(77_123);
        let json = serde_json::to_string(&Holder { at }).expect("serializes");
        assert_eq!(json, r#"{"at":"2026-01-29T20:51:42.077Z"}"#);
    }

    #[test]
    fn times_outside_years_1_to_9999_in_utc_are_refused() {
        for text in [
            "0000-01-01T00:00:00+00:01",
            "0001-01-01T00:00:00+00:01",
            "9999-12-31T23:59:00-00:01",
            "+10000-01-01T00:00:00Z",
            "9999-12-31T23:59:60Z",
            "-0001-01-01T00:00:00Z",
            "tomorrow",
        ] {
            let refused = super::parse(text).expect_err(text);
            assert!(refused.contains("year 1 to 9999"), "{refused}");
            let json = format!(r#"{{"at":"{text}"}}"#);
            assert!(serde_json::from_str::<Holder>(&json).is_err(), "{json}");
        }
        for text in [
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999Z",
            "2026-12-01T09:30",
        ] {
            super::parse(text).expect(text);
        }
    }

    #[test]
    fn offsets_are_converted_to_utc_when_read() {
        let holder: Holder =
            serde_json::from_str(r#"{"at":"2026-01-29T21:51:42.077+01:00"}"#).expect("parses");
        assert_eq!(holder.at.to_rfc3339(), "2026-01-29T20:51:42.077+00:00");
    }
}
