//! `#[serde(serialize_with = ...)]` for instants in answers: the same RFC
//! 3339 text chrono's own `Serialize` writes (fractional seconds only where
//! there are any, `Z` for UTC), formatted first and then written as one
//! string. chrono hands the serializer its text a character at a time,
//! and JSON serializers escape each one on its own; a campaign writes four
//! instants in each of a million answers.

use chrono::{DateTime, SecondsFormat, TimeZone};
use serde::Serializer;

pub fn serialize<Tz: TimeZone, S: Serializer>(t: &DateTime<Tz>, s: S) -> Result<S::Ok, S::Error>
where
    Tz::Offset: std::fmt::Display,
{
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// `Option<DateTime<_>>`: `null` for none.
pub fn option<Tz: TimeZone, S: Serializer>(
    t: &Option<DateTime<Tz>>,
    s: S,
) -> Result<S::Ok, S::Error>
where
    Tz::Offset: std::fmt::Display,
{
    match t {
        Some(t) => serialize(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{FixedOffset, Utc};
    use proptest::prelude::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Fast {
        #[serde(serialize_with = "super::serialize")]
        utc: chrono::DateTime<Utc>,
        #[serde(serialize_with = "super::option")]
        local: Option<chrono::DateTime<FixedOffset>>,
        #[serde(serialize_with = "super::option")]
        none: Option<chrono::DateTime<Utc>>,
    }

    #[derive(Serialize)]
    struct Chrono {
        utc: chrono::DateTime<Utc>,
        local: Option<chrono::DateTime<FixedOffset>>,
        none: Option<chrono::DateTime<Utc>>,
    }

    fn both(secs: i64, nanos: u32, offset_minutes: i32) -> Option<(String, String)> {
        let utc = chrono::DateTime::from_timestamp(secs, nanos)?;
        let local = utc.with_timezone(&FixedOffset::east_opt(offset_minutes * 60)?);
        let fast = serde_json::to_string(&Fast {
            utc,
            local: Some(local),
            none: None,
        })
        .ok()?;
        let chrono = serde_json::to_string(&Chrono {
            utc,
            local: Some(local),
            none: None,
        })
        .ok()?;
        Some((fast, chrono))
    }

    #[test]
    fn writes_what_chrono_writes() {
        // Whole seconds, milli-, micro- and nanoseconds, UTC and offsets
        // either side (half hours, the date line), before the epoch.
        for (secs, nanos, offset) in [
            (1_796_000_000, 0, 0),
            (1_796_000_000, 500_000_000, 330),
            (1_796_000_000, 123_000, -210),
            (1_796_000_000, 528_668_870, 345),
            (-1, 999_999_999, -720),
            (0, 1, 840),
        ] {
            let (fast, chrono) = both(secs, nanos, offset).unwrap_or_default();
            assert!(!fast.is_empty());
            assert_eq!(fast, chrono);
        }
    }

    proptest! {
        #[test]
        fn any_instant_and_offset_writes_what_chrono_writes(
            secs in -62_000_000_000i64..250_000_000_000,
            nanos in prop_oneof![Just(0u32), 0u32..1_000, (0u32..1_000).prop_map(|m| m * 1_000_000), 0u32..1_000_000_000],
            offset in -1439i32..1440,
        ) {
            if let Some((fast, chrono)) = both(secs, nanos, offset) {
                prop_assert_eq!(fast, chrono);
            }
        }
    }
}
