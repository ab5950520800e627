//! Frequency caps: per channel and over all channels, per local calendar day
//! and per rolling 7 days.
//!
//! What counts: messages sent (from `message_sent` events) and planned sends
//! (reservations of `send` decisions until they are confirmed and reported,
//! refused, or their deadline passes). A send at `t` is allowed when, with it,
//! no local day and no 7-day window containing `t` goes over its limit, so a
//! planned send later in the week is protected as well as the past.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use kairos_core::time::LocalClock;
use kairos_core::Channel;
use serde::{Deserialize, Serialize};

/// At most `day` sends per local day and `week` per rolling 7 days (0: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapLimits {
    #[serde(default)]
    pub day: u32,
    #[serde(default)]
    pub week: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caps {
    #[serde(default)]
    pub email: CapLimits,
    #[serde(default)]
    pub push: CapLimits,
    #[serde(default)]
    pub sms: CapLimits,
    #[serde(default)]
    pub in_app: CapLimits,
    #[serde(default)]
    pub web: CapLimits,
    /// Every channel together.
    #[serde(default)]
    pub all: CapLimits,
}

impl Caps {
    pub fn channel(&self, c: Channel) -> CapLimits {
        match c {
            Channel::Email => self.email,
            Channel::Push => self.push,
            Channel::Sms => self.sms,
            Channel::InApp => self.in_app,
            Channel::Web => self.web,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CapPeriod {
    Day,
    Week,
}

/// Which limit a send would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CapHit {
    /// `None`: the limit over all channels.
    pub channel: Option<Channel>,
    pub period: CapPeriod,
    pub used: u32,
    pub limit: u32,
}

impl CapHit {
    pub fn describe(&self) -> String {
        let what = match self.channel {
            Some(Channel::Email) => "emails",
            Some(Channel::Push) => "pushes",
            Some(Channel::Sms) => "SMS",
            Some(Channel::InApp) => "in-app messages",
            Some(Channel::Web) => "web messages",
            None => "messages",
        };
        let when = match self.period {
            CapPeriod::Day => "that day",
            CapPeriod::Week => "within 7 days",
        };
        format!(
            "{} of {} allowed {what} already sent or planned {when}",
            self.used, self.limit
        )
    }
}

/// A customer's sends and planned sends, per channel, oldest first, as Unix
/// seconds (read in the customer's zone for every decision: no calendar
/// conversion on the way).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapState {
    sends: [Vec<i64>; 5],
}

impl CapState {
    pub fn add(&mut self, channel: Channel, at: DateTime<Utc>) {
        let at = at.timestamp();
        let v = &mut self.sends[channel.index()];
        let pos = v.partition_point(|t| *t <= at);
        v.insert(pos, at);
    }

    /// [`CapState::add`] for each of `times`: appended at once, and put in
    /// order only if they are not (a profile keeps its sends oldest first).
    pub fn add_many(&mut self, channel: Channel, times: &[DateTime<Utc>]) {
        let v = &mut self.sends[channel.index()];
        v.extend(times.iter().map(DateTime::timestamp));
        if !v.is_sorted() {
            v.sort_unstable();
        }
    }

    /// How many sends, on every channel, fall in `(after, until]`, to the
    /// second (sends are kept in whole seconds).
    pub fn count_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> usize {
        let (after, until) = (after.timestamp(), until.timestamp());
        self.sends
            .iter()
            .map(|v| v.partition_point(|t| *t <= until) - v.partition_point(|t| *t <= after))
            .sum()
    }

    /// The sends read in the customer's zone once, for many checks at
    /// instants from `from` (Unix seconds) on. Every send is read (for its
    /// quarter of the week, see [`PreparedCaps::quarters_until`]), but only
    /// those less than 8 days before `from` go into the list over all
    /// channels: no local day or 7-day window around a later instant
    /// reaches the others.
    pub fn prepare<'a>(
        &self,
        caps: &'a Caps,
        clock: &mut LocalClock,
        from: i64,
    ) -> PreparedCaps<'a> {
        // Kept in order by `add`; one list, channel after channel.
        let mut per = Vec::with_capacity(self.sends.iter().map(Vec::len).sum());
        let mut bounds = [0usize; 6];
        for (c, times) in self.sends.iter().enumerate() {
            per.extend(times.iter().map(|&secs| {
                let local = clock.read_secs(secs);
                (secs, local.day, local.quarter as u16)
            }));
            bounds[c + 1] = per.len();
        }
        let since = from.saturating_sub(RECENT_SECS);
        let recent: [&[Sent]; 5] = std::array::from_fn(|c| {
            let list = &per[bounds[c]..bounds[c + 1]];
            &list[list.partition_point(|(x, ..)| *x <= since)..]
        });
        let all = merge(recent);
        PreparedCaps {
            caps,
            per,
            bounds,
            all,
            from,
        }
    }

    /// Whether one more send on `channel` at `t` keeps every limit; the first limit broken otherwise.
    pub fn check(
        &self,
        caps: &Caps,
        channel: Channel,
        t: DateTime<Utc>,
        tz: Tz,
    ) -> Result<(), CapHit> {
        let mut clock = LocalClock::new(tz);
        let day = clock.read(t).day;
        self.prepare(caps, &mut clock, t.timestamp())
            .check(channel, t.timestamp(), day)
    }
}

/// A [`CapState`] read in the customer's zone: checks allocate nothing.
#[derive(Debug, Clone)]
pub struct PreparedCaps<'a> {
    caps: &'a Caps,
    /// Every channel's sends, channel after channel, each channel's sorted.
    per: Vec<Sent>,
    /// Channel `c`'s sends are `per[bounds[c]..bounds[c + 1]]`.
    bounds: [usize; 6],
    /// The sends of every channel from 8 days before `from` on, sorted.
    all: Vec<Sent>,
    /// Checks are exact at this instant (Unix seconds) and later.
    from: i64,
}

/// A send read in the customer's zone: Unix seconds, local day, local
/// quarter hour of the week.
type Sent = (i64, i64, u16);

/// How far before the first checked instant sends still count: a 7-day
/// window, and a day's margin.
const RECENT_SECS: i64 = 8 * 86_400;

/// Lists sorted by instant merged into one: at each step the earliest of
/// the lists' next sends (a send's local reading follows from its instant).
fn merge(lists: [&[Sent]; 5]) -> Vec<Sent> {
    let mut out: Vec<Sent> = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
    let mut next = [0usize; 5];
    loop {
        let mut first: Option<(usize, Sent)> = None;
        for (i, list) in lists.iter().enumerate() {
            if let Some(&x) = list.get(next[i]) {
                if first.is_none_or(|(_, f)| x.0 < f.0) {
                    first = Some((i, x));
                }
            }
        }
        let Some((i, x)) = first else {
            return out;
        };
        out.push(x);
        next[i] += 1;
    }
}

const WEEK_SECS: i64 = 7 * 86_400;

fn count_day(times: &[Sent], day: i64) -> u32 {
    // Sorted by instant, so local days are sorted too.
    let lo = times.partition_point(|(_, d, _)| *d < day);
    let hi = times.partition_point(|(_, d, _)| *d <= day);
    (hi - lo) as u32
}

/// The most sends in any 7-day window [s, s + 7d) containing `t`, counting `t`.
fn max_week(times: &[Sent], t: i64) -> u32 {
    let count = |s: i64| {
        let lo = times.partition_point(|(x, ..)| *x < s);
        let hi = times.partition_point(|(x, ..)| *x < s + WEEK_SECS);
        (hi - lo) as u32
    };
    // The count only changes at sends: try windows starting at t and at each
    // send in (t - 7d, t].
    let first = times.partition_point(|(x, ..)| *x <= t - WEEK_SECS);
    let last = times.partition_point(|(x, ..)| *x <= t);
    let mut best = count(t) + 1;
    for (x, ..) in &times[first..last] {
        best = best.max(count(*x) + 1);
    }
    best
}

/// How long a cap hit found at one slot holds for later slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapSpan {
    /// Every slot of this local day.
    Day(i64),
    /// Every slot before this instant (Unix seconds).
    Until(i64),
}

impl CapSpan {
    /// Whether a slot at `secs` on local day `day` is certainly capped too.
    #[inline]
    pub fn covers(self, secs: i64, day: i64) -> bool {
        match self {
            CapSpan::Day(d) => d == day,
            CapSpan::Until(u) => secs < u,
        }
    }
}

/// The first instant after `t` at which the count of sends in some 7-day
/// window around it can change: a send entering (`x > t`) or leaving
/// (`x + 7d > t`).
fn next_week_change(times: &[Sent], t: i64) -> i64 {
    let entering = times
        .get(times.partition_point(|(x, ..)| *x <= t))
        .map_or(i64::MAX, |(x, ..)| *x);
    let leaving = times
        .get(times.partition_point(|(x, ..)| *x + WEEK_SECS <= t))
        .map_or(i64::MAX, |(x, ..)| *x + WEEK_SECS);
    entering.min(leaving)
}

impl PreparedCaps<'_> {
    /// Channel `channel`'s sends, sorted.
    fn channel(&self, channel: Channel) -> &[Sent] {
        let c = channel.index();
        &self.per[self.bounds[c]..self.bounds[c + 1]]
    }

    /// The local quarters of the week of the sends on `channel` at or
    /// before `secs`, oldest first.
    pub fn quarters_until(&self, channel: Channel, secs: i64) -> impl Iterator<Item = usize> + '_ {
        self.channel(channel)
            .iter()
            .take_while(move |(x, ..)| *x <= secs)
            .map(|(.., q)| usize::from(*q))
    }

    /// No limit applies at all: every check passes.
    pub fn unlimited(&self) -> bool {
        let none = |l: CapLimits| l.day == 0 && l.week == 0;
        none(self.caps.all) && Channel::ALL.iter().all(|c| none(self.caps.channel(*c)))
    }

    /// Whether one more send on `channel` at `secs` (local day `day`) keeps every limit.
    pub fn check(&self, channel: Channel, secs: i64, day: i64) -> Result<(), CapHit> {
        self.check_span(channel, secs, day).map_err(|(hit, _)| hit)
    }

    /// [`Self::check`], and on a hit how long it holds: a daily cap holds for
    /// the whole local day; a weekly one at least until the returned instant
    /// (Unix seconds), the next time a send enters or leaves a 7-day window
    /// around the slot. Searching slots in time order can skip that span.
    pub fn check_span(
        &self,
        channel: Channel,
        secs: i64,
        day: i64,
    ) -> Result<(), (CapHit, CapSpan)> {
        debug_assert!(secs >= self.from, "checked before the prepared instant");
        for (scope, times, limits) in [
            (
                Some(channel),
                self.channel(channel),
                self.caps.channel(channel),
            ),
            (None, self.all.as_slice(), self.caps.all),
        ] {
            if limits.day > 0 {
                let used = count_day(times, day);
                if used + 1 > limits.day {
                    return Err((
                        CapHit {
                            channel: scope,
                            period: CapPeriod::Day,
                            used,
                            limit: limits.day,
                        },
                        CapSpan::Day(day),
                    ));
                }
            }
            if limits.week > 0 {
                let with = max_week(times, secs);
                if with > limits.week {
                    return Err((
                        CapHit {
                            channel: scope,
                            period: CapPeriod::Week,
                            used: with - 1,
                            limit: limits.week,
                        },
                        CapSpan::Until(next_week_change(times, secs)),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.to_utc())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn caps() -> Caps {
        Caps {
            push: CapLimits { day: 1, week: 0 },
            all: CapLimits { day: 0, week: 3 },
            ..Caps::default()
        }
    }

    #[test]
    fn a_push_a_day_in_local_days() {
        let tz: Tz = "Asia/Kuala_Lumpur".parse().unwrap_or(Tz::UTC);
        let mut s = CapState::default();
        s.add(Channel::Push, utc("2026-11-23T02:00:00Z")); // Monday 10:00 local
        let hit = s
            .check(&caps(), Channel::Push, utc("2026-11-23T11:00:00Z"), tz)
            .err();
        assert_eq!(
            hit.map(|h| (h.channel, h.period, h.used, h.limit)),
            Some((Some(Channel::Push), CapPeriod::Day, 1, 1))
        );
        assert!(hit.is_some_and(
            |h| h.describe() == "1 of 1 allowed pushes already sent or planned that day"
        ));
        // 16:30 UTC is 00:30 Tuesday in Kuala Lumpur: another local day.
        assert!(s
            .check(&caps(), Channel::Push, utc("2026-11-23T16:30:00Z"), tz)
            .is_ok());
        // Email is not capped per day.
        assert!(s
            .check(&caps(), Channel::Email, utc("2026-11-23T11:00:00Z"), tz)
            .is_ok());
    }

    #[test]
    fn rolling_week_protects_later_planned_sends_too() {
        let tz = Tz::UTC;
        let mut s = CapState::default();
        s.add(Channel::Email, utc("2026-11-16T10:00:00Z"));
        s.add(Channel::Sms, utc("2026-11-18T10:00:00Z"));
        // Two sends in the past 7 days: a third fits.
        assert!(s
            .check(&caps(), Channel::Email, utc("2026-11-20T10:00:00Z"), tz)
            .is_ok());
        s.add(Channel::Email, utc("2026-11-22T10:00:00Z")); // planned
                                                            // Now 11-20 would put four sends in (11-16, 11-23]: over 3.
        let hit = s
            .check(&caps(), Channel::Email, utc("2026-11-20T10:00:00Z"), tz)
            .err();
        assert_eq!(
            hit.map(|h| (h.channel, h.period)),
            Some((None, CapPeriod::Week))
        );
        // After the first send leaves the window, room again.
        assert!(s
            .check(&caps(), Channel::Email, utc("2026-12-03T10:00:00Z"), tz)
            .is_ok());
    }
}
#[cfg(test)]
mod agree {
    use super::*;
    use proptest::prelude::*;
    proptest! {
        /// Sends added together, in any order and onto any others, are the
        /// sends added one at a time.
        #[test]
        fn many_at_once_as_one_at_a_time(
            before in proptest::collection::vec((0usize..5, -20_000i64..20_000), 0..8),
            many in proptest::collection::vec(-20_000i64..20_000, 0..12),
            sorted in any::<bool>(),
            c in 0usize..5,
        ) {
            let base = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
            let mut one = CapState::default();
            for (c, m) in &before { one.add(Channel::ALL[*c], base + chrono::Duration::minutes(*m)); }
            let mut together = one.clone();
            let mut times: Vec<DateTime<Utc>> = many.iter().map(|m| base + chrono::Duration::minutes(*m)).collect();
            if sorted { times.sort(); }
            for t in &times { one.add(Channel::ALL[c], *t); }
            together.add_many(Channel::ALL[c], &times);
            prop_assert_eq!(one, together);
        }

        #[test]
        fn prepared_and_direct_agree(sends in proptest::collection::vec((0usize..5, -20_000i64..20_000), 0..12), t in -10_000i64..10_000) {
            let base = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
            let caps = Caps { email: CapLimits{day:1,week:5}, push: CapLimits{day:1,week:7}, sms: CapLimits{day:1,week:3}, in_app: CapLimits{day:3,week:14}, web: CapLimits::default(), all: CapLimits{day:3,week:14} };
            let mut s = CapState::default();
            for (c, m) in &sends { s.add(Channel::ALL[*c], base + chrono::Duration::minutes(*m)); }
            let at = base + chrono::Duration::minutes(t);
            let mut clock = LocalClock::new(Tz::UTC);
            let day = clock.read(at).day;
            let p = s.prepare(&caps, &mut clock, at.timestamp());
            // Prepared with every send in the list over all channels.
            let every = s.prepare(&caps, &mut clock, i64::MIN);
            for c in Channel::ALL {
                prop_assert_eq!(p.check(c, at.timestamp(), day).is_ok(), s.check(&caps, c, at, Tz::UTC).is_ok());
                // Now and for two weeks on, the recent sends decide as all do.
                for k in 0..(14 * 24) {
                    let t = at.timestamp() + k * 3600;
                    let d = clock.read_secs(t).day;
                    prop_assert_eq!(p.check_span(c, t, d), every.check_span(c, t, d));
                }
            }
            // Every channel's sends, merged in order; with a later start, those
            // of the 8 days before it and later.
            let mut sorted: Vec<Sent> = p.per.clone();
            sorted.sort_unstable();
            prop_assert_eq!(&every.all, &sorted);
            sorted.retain(|(x, ..)| *x > at.timestamp() - 8 * 86_400);
            prop_assert_eq!(&p.all, &sorted);
            // The sends of the 7 days up to `at`, counted by bisection.
            let week_ago = at - chrono::Duration::days(7);
            let within = sends
                .iter()
                .map(|(_, m)| base + chrono::Duration::minutes(*m))
                .filter(|x| *x > week_ago && *x <= at)
                .count();
            prop_assert_eq!(s.count_between(week_ago, at), within);
        }
    }

    proptest::proptest! {
        /// A hit's span is sound: every later slot it covers is capped too,
        /// so the engine may skip those slots unchecked.
        #[test]
        fn a_cap_span_covers_only_capped_slots(
            sends in proptest::collection::vec((0usize..2, -20_000i64..20_000), 0..12),
            day in 0u32..3,
            week in 0u32..6,
            all_week in 0u32..8,
            zone in 0usize..3,
        ) {
            let tz: Tz = ["UTC", "America/New_York", "Australia/Sydney"][zone].parse().unwrap_or(Tz::UTC);
            let caps = Caps {
                push: CapLimits { day, week },
                all: CapLimits { day: 0, week: all_week },
                ..Caps::default()
            };
            let base = DateTime::from_timestamp(1_793_491_200, 0).unwrap_or_default();
            let mut state = CapState::default();
            for (c, m) in &sends {
                state.add([Channel::Push, Channel::Email][*c], base + chrono::Duration::minutes(*m));
            }
            let mut clock = LocalClock::new(tz);
            let slots: Vec<(i64, i64)> = (-700..700)
                .map(|k| {
                    let t = base.timestamp() + k * 15 * 60;
                    (t, clock.read_secs(t).day)
                })
                .collect();
            let prepared = state.prepare(&caps, &mut clock, slots[0].0);
            for (i, (t, d)) in slots.iter().enumerate() {
                if let Err((_, span)) = prepared.check_span(Channel::Push, *t, *d) {
                    for (t2, d2) in slots[i..].iter().take_while(|(t2, d2)| span.covers(*t2, *d2)) {
                        proptest::prop_assert!(
                            prepared.check(Channel::Push, *t2, *d2).is_err(),
                            "{:?} from {} covers {} which is not capped", span, t, t2
                        );
                    }
                }
            }
        }
    }
}
