//! Timestamps on the wire: RFC 3339, UTC, millisecond precision (`2026-01-29T20:51:42.077Z`).
//!
//! Use with `#[serde(with = "common::timestamp")]` or `common::timestamp::option`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// Serializes with exactly three fractional digits and a `Z` suffix.
pub fn serialize<S: Serializer>(value: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&value.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Accepts any RFC 3339 timestamp and converts it to UTC.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| serde::de::Error::custom(format!("invalid RFC 3339 timestamp {text:?}: {e}")))
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
    fn offsets_are_converted_to_utc_when_read() {
        let holder: Holder =
            serde_json::from_str(r#"{"at":"2026-01-29T21:51:42.077+01:00"}"#).expect("parses");
        assert_eq!(holder.at.to_rfc3339(), "2026-01-29T20:51:42.077+00:00");
    }
}
