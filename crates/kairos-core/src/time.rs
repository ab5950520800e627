//! Hour of week and local time, always derived from an IANA zone (chrono-tz).
//!
//! DST rules, deliberately:
//! - An instant always has exactly one local time, so `hour_of_week` is total.
//!   On a spring-forward day one local hour never occurs (New York 2026-03-08
//!   02:00-02:59); on a fall-back day one local hour occurs twice and both UTC
//!   hours map to it.
//! - A local wall-clock time that does not exist (inside the gap) resolves to the
//!   instant the clock shows that time plus the gap, as if the clock had not yet
//!   moved forward: 02:30 in New York on 2026-03-08 is 03:30 EDT.
//! - A local time that occurs twice resolves to its first occurrence.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::CoreError;

pub const HOURS_PER_WEEK: usize = 168;
pub const QUARTERS_PER_WEEK: usize = HOURS_PER_WEEK * 4;
pub const QUARTERS_PER_DAY: usize = 96;

/// Weekday names, Monday first.
pub const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Hour of the week in local time: 0 = Monday 00:00-00:59 ... 167 = Sunday 23:00-23:59.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HourOfWeek(u8);

impl HourOfWeek {
    pub fn new(how: usize) -> Option<Self> {
        (how < HOURS_PER_WEEK).then_some(Self(how as u8))
    }

    /// The hour `how` mod 168.
    pub fn wrapping(how: usize) -> Self {
        Self((how % HOURS_PER_WEEK) as u8)
    }

    /// The local hour of week of `instant` in `tz`.
    pub fn of(instant: DateTime<Utc>, tz: Tz) -> Self {
        let local = instant.with_timezone(&tz);
        Self((local.weekday().num_days_from_monday() * 24 + local.hour()) as u8)
    }

    pub fn index(self) -> usize {
        self.0 as usize
    }

    pub fn weekday_name(self) -> &'static str {
        WEEKDAYS[self.index() / 24]
    }

    pub fn hour_of_day(self) -> usize {
        self.index() % 24
    }
}

/// Local quarter-hour of the week (0..672) of `instant` in `tz`.
pub fn quarter_of_week(instant: DateTime<Utc>, tz: Tz) -> usize {
    let local = instant.with_timezone(&tz);
    let how = (local.weekday().num_days_from_monday() * 24 + local.hour()) as usize;
    how * 4 + local.minute() as usize / 15
}

/// Appends the last two decimal digits of `n` ("07"): explanations are
/// written piece by piece, for every decision.
pub fn push_two_digits(s: &mut String, n: u32) {
    s.push(char::from(b'0' + (n / 10 % 10) as u8));
    s.push(char::from(b'0' + (n % 10) as u8));
}

/// "Monday 19:00-21:00" for the hours `start..=end` (inclusive, may wrap the week).
pub fn window_label(start: HourOfWeek, end: HourOfWeek) -> String {
    let end_hour = (end.hour_of_day() + 1) % 24;
    let mut s = String::with_capacity(32);
    s.push_str(start.weekday_name());
    s.push(' ');
    push_two_digits(&mut s, start.hour_of_day() as u32);
    s.push_str(":00-");
    if !(start.index() / 24 == end.index() / 24 && end.index() >= start.index()) {
        let end_day = HourOfWeek(((end.index() + 1) % HOURS_PER_WEEK) as u8);
        s.push_str(end_day.weekday_name());
        s.push(' ');
    }
    push_two_digits(&mut s, end_hour as u32);
    s.push_str(":00");
    s
}

/// The UTC instant of a local wall-clock time, DST rules as in the module docs.
pub fn resolve_local(naive: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Inside a gap: read the wall time with the offset in force just before it.
            let before = tz
                .from_local_datetime(&(naive - Duration::hours(6)))
                .earliest()
                .map(|t| t.offset().fix())
                .unwrap_or_else(|| tz.offset_from_utc_datetime(&naive).fix());
            (naive - Duration::seconds(i64::from(before.local_minus_utc()))).and_utc()
        }
    }
}

/// Parses an RFC 3339 instant with an explicit offset, naming `field` on error.
pub fn parse_instant(field: &str, s: &str) -> Result<DateTime<Utc>, CoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            CoreError::invalid(
                field,
                format!("{s:?} is not an RFC 3339 timestamp with an offset (e.g. 2026-03-02T19:30:00+08:00): {e}"),
            )
        })
}

/// Parses an IANA time zone name.
pub fn parse_tz(name: &str) -> Result<Tz, CoreError> {
    name.parse::<Tz>()
        .map_err(|_| CoreError::UnknownTimeZone(name.to_string()))
}

/// A local time of day, "HH:MM", as used by quiet hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LocalTimeOfDay(NaiveTime);

impl LocalTimeOfDay {
    pub fn minutes(self) -> u32 {
        self.0.hour() * 60 + self.0.minute()
    }

    pub fn from_minutes(m: u32) -> Option<Self> {
        NaiveTime::from_hms_opt(m / 60, m % 60, 0).map(Self)
    }
}

impl FromStr for LocalTimeOfDay {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NaiveTime::parse_from_str(s, "%H:%M")
            .ok()
            .filter(|_| s.len() == 5)
            .map(Self)
            .ok_or_else(|| {
                CoreError::invalid("time", format!("{s:?} is not a local time \"HH:MM\""))
            })
    }
}

impl TryFrom<String> for LocalTimeOfDay {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<LocalTimeOfDay> for String {
    fn from(t: LocalTimeOfDay) -> Self {
        t.to_string()
    }
}

impl fmt::Display for LocalTimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%H:%M"))
    }
}

/// Minutes since local midnight of `instant` in `tz`.
pub fn local_minute_of_day(instant: DateTime<Utc>, tz: Tz) -> u32 {
    let l = instant.with_timezone(&tz);
    l.hour() * 60 + l.minute()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn naive(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn tz(name: &str) -> Tz {
        parse_tz(name).unwrap_or_else(|e| panic!("{e}"))
    }

    /// (zone, UTC instant, expected local hour of week)
    #[test]
    fn hour_of_week_table() {
        let cases = [
            // New York spring forward 2026-03-08 (Sunday): 01:59 EST, then 03:00 EDT.
            ("America/New_York", "2026-03-08T06:59:00Z", 6 * 24 + 1),
            ("America/New_York", "2026-03-08T07:00:00Z", 6 * 24 + 3),
            // New York fall back 2026-11-01 (Sunday): 01:xx happens twice.
            ("America/New_York", "2026-11-01T05:30:00Z", 6 * 24 + 1),
            ("America/New_York", "2026-11-01T06:30:00Z", 6 * 24 + 1),
            ("America/New_York", "2026-11-01T07:30:00Z", 6 * 24 + 2),
            // London: BST from 2026-03-29 01:00Z, back to GMT 2026-10-25 01:00Z.
            ("Europe/London", "2026-03-29T00:59:00Z", 6 * 24),
            ("Europe/London", "2026-03-29T01:00:00Z", 6 * 24 + 2),
            ("Europe/London", "2026-10-25T00:30:00Z", 6 * 24 + 1),
            ("Europe/London", "2026-10-25T01:30:00Z", 6 * 24 + 1),
            // Sydney: AEDT ends 2026-04-05 03:00 local -> 02:00; starts 2026-10-04 02:00 -> 03:00.
            ("Australia/Sydney", "2026-04-04T15:30:00Z", 6 * 24 + 2),
            ("Australia/Sydney", "2026-04-04T16:30:00Z", 6 * 24 + 2),
            ("Australia/Sydney", "2026-10-03T15:59:00Z", 6 * 24 + 1),
            ("Australia/Sydney", "2026-10-03T16:00:00Z", 6 * 24 + 3),
            // Kolkata, +05:30 all year: the week turns at 18:30Z on Sunday.
            ("Asia/Kolkata", "2026-11-22T18:29:59Z", 167),
            ("Asia/Kolkata", "2026-11-22T18:30:00Z", 0),
            // Kuala Lumpur, +08:00: Monday 2026-11-23 19:30 local.
            ("Asia/Kuala_Lumpur", "2026-11-23T11:30:00Z", 19),
        ];
        for (zone, at, expected) in cases {
            assert_eq!(
                HourOfWeek::of(utc(at), tz(zone)).index(),
                expected,
                "{zone} {at}"
            );
        }
    }

    /// (zone, local wall time, expected UTC instant)
    #[test]
    fn resolve_local_table() {
        let cases = [
            // Skipped hour: 02:30 does not exist, read with the pre-gap offset (EST).
            (
                "America/New_York",
                "2026-03-08 02:30",
                "2026-03-08T07:30:00Z",
            ),
            // Repeated hour: the first 01:30 (EDT).
            (
                "America/New_York",
                "2026-11-01 01:30",
                "2026-11-01T05:30:00Z",
            ),
            (
                "America/New_York",
                "2026-11-01 03:00",
                "2026-11-01T08:00:00Z",
            ),
            ("Europe/London", "2026-03-29 01:30", "2026-03-29T01:30:00Z"),
            ("Europe/London", "2026-10-25 01:30", "2026-10-25T00:30:00Z"),
            (
                "Australia/Sydney",
                "2026-10-04 02:30",
                "2026-10-03T16:30:00Z",
            ),
            (
                "Australia/Sydney",
                "2026-04-05 02:30",
                "2026-04-04T15:30:00Z",
            ),
            ("Asia/Kolkata", "2026-11-23 00:00", "2026-11-22T18:30:00Z"),
        ];
        for (zone, local, expected) in cases {
            assert_eq!(
                resolve_local(naive(local), tz(zone)),
                utc(expected),
                "{zone} {local}"
            );
        }
    }

    #[test]
    fn labels_windows() {
        let h = |i| HourOfWeek::new(i).unwrap_or(HourOfWeek(0));
        assert_eq!(window_label(h(19), h(20)), "Monday 19:00-21:00");
        assert_eq!(window_label(h(163), h(164)), "Sunday 19:00-21:00");
        assert_eq!(window_label(h(23), h(24)), "Monday 23:00-Tuesday 01:00");
        assert_eq!(window_label(h(167), h(0)), "Sunday 23:00-Monday 01:00");
        assert_eq!(window_label(h(167), h(167)), "Sunday 23:00-00:00");
    }

    #[test]
    fn local_time_of_day_parses_strictly() {
        assert_eq!(
            "21:00".parse::<LocalTimeOfDay>().map(|t| t.minutes()),
            Ok(21 * 60)
        );
        assert!("9:00".parse::<LocalTimeOfDay>().is_err());
        assert!("24:00".parse::<LocalTimeOfDay>().is_err());
        assert!("21:00:00".parse::<LocalTimeOfDay>().is_err());
    }

    const ZONES: [&str; 8] = [
        "America/New_York",
        "Europe/London",
        "Australia/Sydney",
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "Australia/Lord_Howe",
        "America/St_Johns",
        "Pacific/Chatham",
    ];

    proptest! {
        /// The hour of week is the local weekday and hour, and an hour later it
        /// moves by 0 (repeated hour), 1, or 2 (skipped hour), never otherwise.
        #[test]
        fn hour_of_week_follows_the_local_clock(
            secs in 1_577_836_800i64..1_893_456_000i64, // 2020..2030
            zone in 0usize..ZONES.len(),
        ) {
            let zone = tz(ZONES[zone]);
            let t = DateTime::from_timestamp(secs, 0).unwrap_or_default();
            let local = t.with_timezone(&zone);
            let how = HourOfWeek::of(t, zone).index();
            prop_assert_eq!(how, local.weekday().num_days_from_monday() as usize * 24 + local.hour() as usize);
            let next = HourOfWeek::of(t + Duration::hours(1), zone).index();
            let step = (next + HOURS_PER_WEEK - how) % HOURS_PER_WEEK;
            prop_assert!(step <= 2, "step {} at {}", step, t);
            prop_assert_eq!(quarter_of_week(t, zone) / 4, how);
        }

        /// Resolving an instant's own wall time gives the instant back, except
        /// in a repeated hour, where it gives the first occurrence (never later).
        #[test]
        fn resolve_local_round_trips(
            secs in 1_577_836_800i64..1_893_456_000i64,
            zone in 0usize..ZONES.len(),
        ) {
            let zone = tz(ZONES[zone]);
            let t = DateTime::from_timestamp(secs - secs % 60, 0).unwrap_or_default();
            let back = resolve_local(t.with_timezone(&zone).naive_local(), zone);
            prop_assert!(back <= t);
            prop_assert!(t - back <= Duration::hours(1));
            prop_assert_eq!(back.with_timezone(&zone).naive_local(), t.with_timezone(&zone).naive_local());
        }

        /// Any wall time, even one in a gap, resolves to an instant whose local
        /// time is at most the gap later.
        #[test]
        fn resolve_local_is_total(
            day in 0i64..3650,
            minute in 0u32..1440,
            zone in 0usize..ZONES.len(),
        ) {
            let zone = tz(ZONES[zone]);
            let date = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap_or_default() + Duration::days(day);
            let wall = date.and_hms_opt(minute / 60, minute % 60, 0).unwrap_or_default();
            let shown = resolve_local(wall, zone).with_timezone(&zone).naive_local();
            prop_assert!(shown >= wall && shown - wall <= Duration::hours(1), "{} -> {}", wall, shown);
        }
    }
}

/// A zone's UTC offsets from [`OFFSETS_FROM`] to [`OFFSETS_UNTIL`] as a
/// table: the first second of each offset and the offset, in order, read
/// from chrono-tz once per zone and process (a day at a time, the first
/// second of a new offset found by bisection: no zone changes its offset
/// twice within a day). An offset is then a binary search over the zone's
/// changes (121 for New York) instead of a calendar conversion and
/// chrono-tz's own search, and holds until the next change.
#[derive(Debug)]
struct OffsetTable {
    starts: Vec<i64>,
    offsets: Vec<i64>,
}

/// 2000-01-01 and 2060-01-01 (UTC): instants outside are looked up directly.
const OFFSETS_FROM: i64 = 946_684_800;
const OFFSETS_UNTIL: i64 = 2_840_140_800;

/// The UTC offset at `secs` in `tz`, in seconds, from chrono-tz.
fn zone_offset(tz: Tz, secs: i64) -> i64 {
    let t = DateTime::from_timestamp(secs, 0).unwrap_or_default();
    i64::from(
        tz.offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc(),
    )
}

impl OffsetTable {
    fn build(tz: Tz) -> Self {
        const DAY: i64 = 86_400;
        let mut here = zone_offset(tz, OFFSETS_FROM);
        let (mut starts, mut offsets) = (vec![OFFSETS_FROM], vec![here]);
        let mut t = OFFSETS_FROM;
        while t < OFFSETS_UNTIL {
            let next = (t + DAY).min(OFFSETS_UNTIL);
            let there = zone_offset(tz, next);
            if there != here {
                let (mut lo, mut hi) = (t, next);
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if zone_offset(tz, mid) == here {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                starts.push(hi);
                offsets.push(there);
                here = there;
            }
            t = next;
        }
        Self { starts, offsets }
    }

    /// The table of `tz`, built on first use and kept for the process (a
    /// zone's table is a few kilobytes, and there are some 600 zones). Each
    /// zone has its own slot, found by the zone's place in chrono-tz's list:
    /// once built, a table is read with one atomic load and no lock, so
    /// threads deciding for customers of many zones never write to a shared
    /// cache line (a lock taken per zone change kept one line moving between
    /// the cores).
    fn of(tz: Tz) -> &'static Self {
        use std::sync::OnceLock;
        static TABLES: OnceLock<Vec<OnceLock<&'static OffsetTable>>> = OnceLock::new();
        let slots = TABLES.get_or_init(|| {
            (0..chrono_tz::TZ_VARIANTS.len())
                .map(|_| OnceLock::new())
                .collect()
        });
        let build = || -> &'static OffsetTable { Box::leak(Box::new(Self::build(tz))) };
        match slots.get(tz as usize) {
            Some(slot) => slot.get_or_init(build),
            // Unreachable: every zone's place is below the list's length
            // (tested). Were it reached, the table would be built and not kept.
            None => build(),
        }
    }

    /// The offset at `secs` and the span it holds for, `(offset, from,
    /// until)`; `None` outside the table's range.
    #[inline]
    fn span(&self, secs: i64) -> Option<(i64, i64, i64)> {
        if !(OFFSETS_FROM..OFFSETS_UNTIL).contains(&secs) {
            return None;
        }
        // starts[0] is OFFSETS_FROM, at or before `secs`: i >= 1.
        let i = self.starts.partition_point(|s| *s <= secs);
        let until = self.starts.get(i).copied().unwrap_or(OFFSETS_UNTIL);
        Some((self.offsets[i - 1], self.starts[i - 1], until))
    }

    #[cfg(test)]
    fn offset(&self, tz: Tz, secs: i64) -> i64 {
        self.span(secs)
            .map_or_else(|| zone_offset(tz, secs), |s| s.0)
    }
}

/// Local time of many instants in one zone, cheaply: the UTC offset is looked
/// up once per span in which it cannot change (DST changes are at least days
/// apart), in the zone's offset table, and everything else is arithmetic.
#[derive(Debug, Clone)]
pub struct LocalClock {
    tz: Tz,
    table: Option<&'static OffsetTable>,
    /// Offset in seconds valid for instants in [from, until).
    span: (i64, i64, i64),
    /// The offset at an instant already looked up: the far end of the last span.
    ahead: Option<(i64, i64)>,
    /// The last instant looked up alone and its offset, not yet a span.
    last: Option<(i64, i64)>,
}

/// A local reading of an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalReading {
    /// Local quarter hour of the week (0..672, Monday 00:00 first).
    pub quarter: usize,
    /// Minutes since local midnight.
    pub minute: u32,
    /// Local calendar day, as days since 1970-01-01.
    pub day: i64,
}

/// How far ahead an offset is assumed to hold once checked at both ends (no
/// zone changes its offset twice within a day).
const SPAN_SECS: i64 = 24 * 3600;

impl LocalClock {
    pub fn new(tz: Tz) -> Self {
        Self {
            tz,
            table: None,
            span: (0, i64::MIN, i64::MIN),
            ahead: None,
            last: None,
        }
    }

    /// The offset at `secs` from chrono-tz: outside the zone's table.
    fn offset_at(&self, secs: i64) -> i64 {
        zone_offset(self.tz, secs)
    }

    /// The UTC offset at `secs`, in seconds. From 2000 to 2060 the zone's
    /// table gives the span between two changes, which later instants
    /// share. Outside it, an instant far from the last one costs one lookup;
    /// the next instant within a day of it turns that lookup into a span
    /// (one more lookup), which later instants share.
    #[inline]
    pub fn offset(&mut self, secs: i64) -> i64 {
        let (offset, from, until) = self.span;
        if secs >= from && secs < until {
            return offset;
        }
        // Within the zone's table, a span lasts until the next change.
        let tz = self.tz;
        if let Some(span) = self
            .table
            .get_or_insert_with(|| OffsetTable::of(tz))
            .span(secs)
        {
            self.span = span;
            return span.0;
        }
        if let Some((at, here)) = self.last.take() {
            if secs > at && secs - at < SPAN_SECS {
                self.extend(at, here);
                let (offset, from, until) = self.span;
                if secs >= from && secs < until {
                    return offset;
                }
            }
        }
        // Reading on from the end of the last span: its far end was checked already.
        let here = match self.ahead {
            Some((at, offset)) if at == secs => offset,
            _ => self.offset_at(secs),
        };
        self.last = Some((secs, here));
        self.span = (here, secs, secs + 1);
        here
    }

    /// Makes the span from `secs`, where the offset is `here`: a day long,
    /// or up to the first second of a new offset within the day.
    fn extend(&mut self, secs: i64, here: i64) {
        let ahead = self.offset_at(secs + SPAN_SECS);
        self.ahead = Some((secs + SPAN_SECS, ahead));
        let until = if ahead == here {
            secs + SPAN_SECS
        } else {
            // A change within the span: find the first second of the new offset.
            let (mut lo, mut hi) = (secs, secs + SPAN_SECS);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if self.offset_at(mid) == here {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            hi
        };
        self.span = (here, secs, until);
    }

    pub fn read(&mut self, instant: DateTime<Utc>) -> LocalReading {
        self.read_secs(instant.timestamp())
    }

    /// Reads `from`, `from + 15 min`, ... up to `to` (inclusive), in order,
    /// as runs of quarter hours: `f(t, reading, n)` stands for the `n`
    /// instants `t + 15 min·i` (`i < n`), read `reading` with its minute
    /// 15·i later and its quarter i later. A run stays within one offset
    /// and one local day (so its quarters do not wrap the week); only the
    /// first instant of each is read, the rest follow without dividing.
    pub fn for_each_run(
        &mut self,
        from: i64,
        to: i64,
        mut f: impl FnMut(i64, LocalReading, usize),
    ) {
        const STEP: i64 = 900;
        let mut t = from;
        while t <= to {
            let mut r = self.read_secs(t);
            // The span read_secs just checked holds its offset until `until`.
            let until = self.span.2.min(to.saturating_add(1));
            loop {
                let left = (until - t + STEP - 1) / STEP;
                let to_midnight = i64::from((1440 - r.minute).div_ceil(15));
                let n = left.min(to_midnight);
                f(t, r, n as usize);
                t += n * STEP;
                if t >= until {
                    break;
                }
                // The next local day, at the same offset.
                r.minute = r.minute + 15 * n as u32 - 1440;
                r.day += 1;
                r.quarter = (r.quarter + n as usize) % QUARTERS_PER_WEEK;
            }
        }
    }

    /// [`Self::read`] for Unix seconds.
    #[inline]
    pub fn read_secs(&mut self, secs: i64) -> LocalReading {
        let local = secs + self.offset(secs);
        let day = local.div_euclid(86_400);
        let minute = (local.rem_euclid(86_400) / 60) as u32;
        // 1970-01-01 was a Thursday: Monday-based weekday 3.
        let weekday = (day + 3).rem_euclid(7) as usize;
        LocalReading {
            quarter: weekday * 96 + (minute / 15) as usize,
            minute,
            day,
        }
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;
    use proptest::prelude::*;

    /// The offset tables say what chrono-tz says: at both sides of every
    /// change they hold, and every 7 h 13 min from a year before the
    /// tables' range to a year after it, in zones with half-hour DST
    /// (Lord Howe), negative DST (Dublin), DST suspended for Ramadan
    /// (Casablanca), two-hour DST (Troll), offsets of 45 minutes (Kathmandu,
    /// Chatham) and a skipped day (Apia).
    #[test]
    fn offset_tables_agree_with_chrono_tz() {
        for zone in [
            "America/New_York",
            "Europe/London",
            "Australia/Sydney",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
            "Asia/Kathmandu",
            "Pacific/Chatham",
            "Africa/Casablanca",
            "Europe/Dublin",
            "Antarctica/Troll",
            "America/St_Johns",
            "Asia/Tehran",
            "America/Santiago",
            "Pacific/Apia",
            "Europe/Moscow",
            "Asia/Gaza",
            "UTC",
        ] {
            let tz: Tz = zone.parse().unwrap_or_else(|e| panic!("{zone}: {e}"));
            let table = OffsetTable::of(tz);
            assert!(table.starts.windows(2).all(|w| w[0] < w[1]), "{zone}");
            for &start in &table.starts[1..] {
                for t in [start - 1, start] {
                    assert_eq!(table.offset(tz, t), zone_offset(tz, t), "{zone} at {t}");
                }
            }
            let mut t = OFFSETS_FROM - 366 * 86_400;
            while t < OFFSETS_UNTIL + 366 * 86_400 {
                assert_eq!(table.offset(tz, t), zone_offset(tz, t), "{zone} at {t}");
                t += 7 * 3600 + 13 * 60;
            }
        }
        // New York changes twice a year through the range.
        let ny = OffsetTable::of("America/New_York".parse().unwrap_or(Tz::UTC));
        assert_eq!(ny.starts.len(), 1 + 2 * 60);
    }

    /// Each of chrono-tz's zones has a slot of its own, and gets its own
    /// table from it, from any thread.
    #[test]
    fn every_zone_has_its_own_table_slot() {
        let n = chrono_tz::TZ_VARIANTS.len();
        let mut seen = vec![false; n];
        for tz in chrono_tz::TZ_VARIANTS {
            let i = tz as usize;
            assert!(i < n && !seen[i], "{tz:?} at {i}");
            seen[i] = true;
        }
        let zones = ["America/New_York", "Asia/Kolkata", "Europe/London"];
        let tables: Vec<Vec<usize>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        zones
                            .iter()
                            .map(|z| {
                                let tz: Tz = z.parse().unwrap_or(Tz::UTC);
                                std::ptr::from_ref(OffsetTable::of(tz)) as usize
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        assert_eq!(tables[0], tables[1], "one table per zone, shared");
        assert_eq!(tables[0].len(), 3);
        assert!(tables[0][0] != tables[0][1] && tables[0][1] != tables[0][2]);
        let kolkata = OffsetTable::of(Tz::Asia__Kolkata);
        assert_eq!(kolkata.offset(Tz::Asia__Kolkata, 1_800_000_000), 19_800);
    }

    /// Every quarter hour across DST changes, read in order as the engine
    /// does, including the first instant of each new offset.
    #[test]
    fn quarter_hours_across_dst_changes() {
        let cases = [
            ("Australia/Sydney", "2026-10-03T00:00:00Z"),
            ("Australia/Sydney", "2026-04-04T00:00:00Z"),
            ("America/New_York", "2026-03-07T12:00:00Z"),
            ("America/New_York", "2026-10-31T12:00:00Z"),
            ("Europe/London", "2026-03-28T12:00:00Z"),
            ("Australia/Lord_Howe", "2026-10-03T00:00:00Z"),
            // Before and across the start of the offset tables' range.
            ("America/New_York", "1998-10-24T12:00:00Z"),
            ("Europe/London", "1999-03-27T12:00:00Z"),
            ("Australia/Sydney", "1999-12-31T00:00:00Z"),
            // Across its end.
            ("Pacific/Auckland", "2059-12-31T00:00:00Z"),
        ];
        for (zone, from) in cases {
            let tz: Tz = zone.parse().unwrap_or(Tz::UTC);
            let start = DateTime::parse_from_rfc3339(from)
                .map(|t| t.to_utc())
                .unwrap_or_default();
            let mut clock = LocalClock::new(tz);
            for k in 0..(4 * 72) {
                let t = start + Duration::minutes(15 * k);
                assert_eq!(clock.read(t).quarter, quarter_of_week(t, tz), "{zone} {t}");
                assert_eq!(
                    clock.read(t).minute,
                    local_minute_of_day(t, tz),
                    "{zone} {t}"
                );
            }
        }
    }

    proptest! {
        /// Runs of quarter hours read the same as reading each instant.
        #[test]
        fn quarter_hours_step_like_single_reads(
            start in 880_000_000i64..2_900_000_000i64,
            zone in 0usize..6,
            quarters in 0i64..3000,
        ) {
            let zones = ["America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kathmandu", "Australia/Lord_Howe", "America/St_Johns"];
            let tz: Tz = zones[zone].parse().unwrap_or(Tz::UTC);
            let from = start - start % 900;
            let mut read = Vec::new();
            LocalClock::new(tz).for_each_run(from, from + quarters * 900, |t, r, n| {
                assert!(n > 0);
                for i in 0..n {
                    let minute = r.minute + 15 * i as u32;
                    assert!(minute < 1440, "a run stays within its local day");
                    let quarter = r.quarter + i;
                    assert!(quarter < QUARTERS_PER_WEEK, "and within the week");
                    read.push((t + 900 * i as i64, LocalReading { quarter, minute, day: r.day }));
                }
            });
            prop_assert_eq!(read.len() as i64, quarters + 1);
            let mut single = LocalClock::new(tz);
            for (t, r) in read {
                prop_assert_eq!(r, single.read_secs(t), "{}", t);
                let at = DateTime::from_timestamp(t, 0).unwrap_or_default();
                prop_assert_eq!(r.quarter, quarter_of_week(at, tz));
            }
        }

        /// Instants in any order, days or minutes apart (sends on several
        /// channels, read one channel after another), read as chrono-tz has them.
        #[test]
        fn any_order_matches_chrono_tz(
            instants in proptest::collection::vec(880_000_000i64..2_900_000_000i64, 1..60),
            near in proptest::collection::vec(0i64..200_000, 1..60),
            zone in 0usize..4,
        ) {
            let zones = ["America/New_York", "Australia/Lord_Howe", "Africa/Casablanca", "Europe/London"];
            let tz: Tz = zones[zone].parse().unwrap_or(Tz::UTC);
            let mut clock = LocalClock::new(tz);
            for (i, base) in instants.iter().enumerate() {
                for secs in [*base, base + near[i % near.len()]] {
                    let t = DateTime::from_timestamp(secs, 0).unwrap_or_default();
                    prop_assert_eq!(clock.read_secs(secs).quarter, quarter_of_week(t, tz), "{}", secs);
                    prop_assert_eq!(clock.read_secs(secs).minute, local_minute_of_day(t, tz), "{}", secs);
                }
            }
        }

        /// The fast reading equals chrono-tz's, across DST, in every zone,
        /// for instants read in increasing order as the engine does.
        #[test]
        fn matches_chrono_tz(
            start in 880_000_000i64..2_900_000_000i64,
            zone in 0usize..6,
            steps in proptest::collection::vec(1i64..20_000, 1..300),
        ) {
            let zones = ["America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata", "Australia/Lord_Howe", "America/St_Johns"];
            let tz: Tz = zones[zone].parse().unwrap_or(Tz::UTC);
            let mut clock = LocalClock::new(tz);
            let mut secs = start - start % 60;
            for step in steps {
                secs += step * 60;
                let t = DateTime::from_timestamp(secs, 0).unwrap_or_default();
                let fast = clock.read(t);
                let local = t.with_timezone(&tz);
                prop_assert_eq!(fast.quarter, quarter_of_week(t, tz), "{}", t);
                prop_assert_eq!(fast.minute, local_minute_of_day(t, tz));
                prop_assert_eq!(fast.day, local.date_naive().signed_duration_since(chrono::NaiveDate::default()).num_days());
            }
        }
    }
}
