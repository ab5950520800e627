//! `#[serde(serialize_with = ...)]` for instants in answers: the same RFC
//! 3339 text chrono's own `Serialize` writes (fractional seconds only where
//! there are any, `Z` for UTC), written into a buffer on the stack and then
//! given to the serializer as one string. chrono hands the serializer its
//! text a character at a time, and JSON serializers escape each one on its
//! own; a campaign writes seven instants in each of a million answers.

use chrono::{DateTime, Datelike, Offset, SecondsFormat, TimeZone, Timelike};
use serde::Serializer;

/// The longest text [`write`] makes: date, time, nine decimals, offset.
const LONGEST: usize = 19 + 10 + 6;

pub fn serialize<Tz: TimeZone, S: Serializer>(t: &DateTime<Tz>, s: S) -> Result<S::Ok, S::Error>
where
    Tz::Offset: std::fmt::Display,
{
    let mut buf = [0u8; LONGEST];
    match write(t, &mut buf).and_then(|n| std::str::from_utf8(&buf[..n]).ok()) {
        Some(text) => s.serialize_str(text),
        None => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    }
}

/// `t` as `to_rfc3339_opts(AutoSi, true)` writes it, into `buf`: its
/// length, or `None` for what only chrono writes (years outside 0-9999, a
/// leap second, an offset with seconds).
fn write<Tz: TimeZone>(t: &DateTime<Tz>, buf: &mut [u8; LONGEST]) -> Option<usize> {
    let local = t.naive_local();
    let offset = t.offset().fix().local_minus_utc();
    let year = u32::try_from(local.year()).ok().filter(|y| *y <= 9999)?;
    let nanos = local.nanosecond();
    if nanos >= 1_000_000_000 || offset % 60 != 0 {
        return None;
    }
    let mut out = Text { buf, at: 0 };
    out.digits(year, 4)
        .byte(b'-')
        .digits(local.month(), 2)
        .byte(b'-');
    out.digits(local.day(), 2)
        .byte(b'T')
        .digits(local.hour(), 2)
        .byte(b':');
    out.digits(local.minute(), 2)
        .byte(b':')
        .digits(local.second(), 2);
    // All the non-zero decimals, by threes.
    if nanos != 0 {
        out.byte(b'.');
        if nanos % 1_000_000 == 0 {
            out.digits(nanos / 1_000_000, 3);
        } else if nanos % 1_000 == 0 {
            out.digits(nanos / 1_000, 6);
        } else {
            out.digits(nanos, 9);
        }
    }
    if offset == 0 {
        out.byte(b'Z');
    } else {
        let minutes = offset.unsigned_abs() / 60;
        out.byte(if offset < 0 { b'-' } else { b'+' });
        out.digits(minutes / 60, 2)
            .byte(b':')
            .digits(minutes % 60, 2);
    }
    Some(out.at)
}

/// ASCII text being written into a buffer long enough for it.
struct Text<'a> {
    buf: &'a mut [u8; LONGEST],
    at: usize,
}

impl Text<'_> {
    /// `value` in `width` decimal digits, zeros first.
    fn digits(&mut self, value: u32, width: usize) -> &mut Self {
        let mut v = value;
        for b in self.buf[self.at..self.at + width].iter_mut().rev() {
            *b = b'0' + (v % 10) as u8;
            v /= 10;
        }
        self.at += width;
        self
    }

    fn byte(&mut self, b: u8) -> &mut Self {
        self.buf[self.at] = b;
        self.at += 1;
        self
    }
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
            // Years chrono writes with a sign and more digits.
            (300_000_000_000, 0, 0),
            (-70_000_000_000, 250_000_000, 60),
        ] {
            let (fast, chrono) = both(secs, nanos, offset).unwrap_or_default();
            assert!(!fast.is_empty());
            assert_eq!(fast, chrono);
        }
    }

    #[test]
    fn a_leap_second_is_written_as_chrono_writes_it() {
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .map(|t| t.and_utc());
        let leap = leap.unwrap_or_default();
        let fast = serde_json::to_string(&Fast {
            utc: leap,
            local: None,
            none: None,
        })
        .unwrap_or_default();
        assert!(fast.contains("23:59:60.500Z"), "{fast}");
        let chrono = serde_json::to_string(&Chrono {
            utc: leap,
            local: None,
            none: None,
        });
        assert_eq!(Some(fast), chrono.ok());
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
