//! Serde for instants stored in binary formats: `#[serde(with = ...)]`
//! modules that write an instant as (seconds, nanoseconds) since the Unix
//! epoch in binary formats (postcard) and as chrono writes it (an RFC 3339
//! string) in human-readable ones (JSON).
//!
//! Profiles and reservations are read for every decision; parsing their
//! instants back from text was a measurable part of a campaign's cost.
//! Exact: every `DateTime<Utc>` round-trips.

use chrono::{DateTime, Utc};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One instant, written as [the module](self) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Compact(DateTime<Utc>);

impl Serialize for Compact {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            self.0.serialize(s)
        } else {
            (self.0.timestamp(), self.0.timestamp_subsec_nanos()).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Compact {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            DateTime::<Utc>::deserialize(d).map(Compact)
        } else {
            let (secs, nanos) = <(i64, u32)>::deserialize(d)?;
            DateTime::from_timestamp(secs, nanos)
                .map(Compact)
                .ok_or_else(|| D::Error::custom(format!("instant out of range: {secs}s {nanos}ns")))
        }
    }
}

/// `DateTime<Utc>`.
pub mod one {
    use super::*;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        Compact(*t).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        Compact::deserialize(d).map(|c| c.0)
    }
}

/// `Option<DateTime<Utc>>`.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        t.map(Compact).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Ok(Option::<Compact>::deserialize(d)?.map(|c| c.0))
    }
}

/// `Vec<DateTime<Utc>>`.
pub mod vec {
    use super::*;

    pub fn serialize<S: Serializer>(t: &[DateTime<Utc>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(t.iter().map(|t| Compact(*t)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DateTime<Utc>>, D::Error> {
        Ok(Vec::<Compact>::deserialize(d)?
            .into_iter()
            .map(|c| c.0)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "one")]
        at: DateTime<Utc>,
        #[serde(with = "option")]
        maybe: Option<DateTime<Utc>>,
        #[serde(with = "option")]
        none: Option<DateTime<Utc>>,
        #[serde(with = "vec")]
        many: Vec<DateTime<Utc>>,
    }

    fn sample() -> Sample {
        let t = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        Sample {
            at: t("2026-03-02T19:30:00.123456789Z"),
            maybe: Some(t("1969-12-31T23:59:59.5Z")),
            none: None,
            many: vec![t("2026-11-01T01:30:00-04:00"), t("2262-04-12T00:00:00Z")],
        }
    }

    #[test]
    fn binary_round_trips_exactly_and_is_compact() {
        let s = sample();
        let bytes = postcard::to_stdvec(&s).unwrap_or_default();
        assert_eq!(postcard::from_bytes::<Sample>(&bytes).ok(), Some(s));
        // Four instants as text would take over 100 bytes.
        assert!(bytes.len() < 40, "{} bytes", bytes.len());
    }

    #[test]
    fn json_is_what_chrono_writes() {
        let s = sample();
        let json = serde_json::to_value(&s).unwrap_or_default();
        assert_eq!(json["at"], serde_json::json!(s.at));
        assert_eq!(json["maybe"], serde_json::json!(s.maybe));
        assert_eq!(json["none"], serde_json::Value::Null);
        assert_eq!(json["many"], serde_json::json!(s.many));
        assert_eq!(serde_json::from_value::<Sample>(json).ok(), Some(s));
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Many(#[serde(with = "vec")] Vec<DateTime<Utc>>);

    proptest::proptest! {
        /// Lists of instants near one another (a day, a month or a year
        /// apart, across year ends and leap days) and far apart, with any
        /// nanoseconds, come back exactly, each as chrono reads it alone.
        #[test]
        fn lists_read_back_as_each_instant_alone(
            start in -70_000_000_000i64..70_000_000_000,
            steps in proptest::collection::vec((-40_000_000i64..40_000_000, 0u32..1_000_000_000, proptest::prelude::any::<bool>()), 0..40),
        ) {
            let mut secs = start;
            let mut many = Vec::new();
            for (step, nanos, far) in steps {
                secs = if far { step * 3_000 } else { secs.saturating_add(step) };
                if let Some(t) = DateTime::from_timestamp(secs, nanos) {
                    many.push(t);
                }
            }
            let bytes = postcard::to_stdvec(&Many(many.clone())).unwrap_or_default();
            let back = postcard::from_bytes::<Many>(&bytes).map(|m| m.0);
            proptest::prop_assert_eq!(back.ok(), Some(many));
        }
    }

    #[test]
    fn a_list_with_an_instant_out_of_range_is_an_error() {
        let ok = (1_800_000_000i64, 0u32);
        for bad in [
            (i64::MAX, 0u32),
            (1_800_000_100, 2_000_000_000),
            (i64::MIN, 0),
        ] {
            let bytes = postcard::to_stdvec(&vec![ok, bad]).unwrap_or_default();
            assert!(postcard::from_bytes::<Many>(&bytes).is_err(), "{bad:?}");
        }
        // A leap second, as chrono takes it from a timestamp.
        let leap = (1_800_000_059i64 - 1_800_000_059 % 60 + 59, 1_500_000_000u32);
        let bytes = postcard::to_stdvec(&vec![ok, leap]).unwrap_or_default();
        assert_eq!(
            postcard::from_bytes::<Many>(&bytes).ok().map(|m| m.0),
            [ok, leap]
                .iter()
                .map(|&(s, n)| DateTime::from_timestamp(s, n))
                .collect::<Option<Vec<_>>>()
        );
    }

    #[test]
    fn out_of_range_instants_are_an_error_not_a_panic() {
        let bytes = postcard::to_stdvec(&(i64::MAX, 0u32)).unwrap_or_default();
        assert!(postcard::from_bytes::<Compact>(&bytes).is_err());
        let bytes = postcard::to_stdvec(&(0i64, 2_000_000_000u32)).unwrap_or_default();
        assert!(postcard::from_bytes::<Compact>(&bytes).is_err());
    }
}
