//! A simulated population with hidden weekly habits, for demos, training and
//! scoring decisions against the truth. Deterministic for a seed.
//!
//! Each customer has a time zone (DST and half-hour offsets included), one or
//! two weekly habits (days, a local start time, a duration) plus background
//! activity, a session rate, channel reachability and per-channel
//! responsiveness. The hidden truth of a send on channel `c` at `t` is
//!
//! ```text
//! P(engage) = r_c · (0.2 + 0.8 · P(the customer is active within W_c after t))
//! ```
//!
//! with `W_c` the channel's response window (email 4 h, push and SMS 1 h,
//! in-app and web 24 h). History: organic sessions drawn from the habits, and
//! company sends at daytime hours convenient to the company, answered by
//! opens (and some clicks) drawn from the truth. The history records when a
//! session starts; each customer's sessions last a hidden 5 to 30 minutes, so
//! a customer whose last session is still going on at the end of the history
//! is around then for certain (`P(active) = 1`), on every channel.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use kairos_core::time::{local_minute_of_day, quarter_of_week};
use kairos_core::{Channel, CustomerId, Device, Event, EventId, EventType, QUARTERS_PER_WEEK};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Poisson};
use serde::Serialize;

use crate::QuietHours;

pub const ZONES: [&str; 8] = [
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Asia/Kuala_Lumpur",
    "America/St_Johns",
    "Asia/Kathmandu",
    "America/Los_Angeles",
];

/// Response window per channel, in quarter hours, by [`Channel::index`].
pub const WINDOW_QUARTERS: [usize; 5] = [16, 4, 4, 96, 96];
const MEAN_RATE: [f64; 5] = [0.18, 0.14, 0.22, 0.30, 0.06];
/// Customers' rates on a channel are Beta(m·s, (1 - m)·s) with this `s`.
const RATE_STRENGTH: f64 = 8.0;
const REACH: [f64; 5] = [0.95, 0.6, 0.5, 0.6, 0.3];

#[derive(Debug, Clone, Serialize)]
pub struct Habit {
    /// Monday first.
    pub days: [bool; 7],
    pub start_minute: u32,
    pub minutes: u32,
    pub weight: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimCustomer {
    pub id: String,
    #[serde(serialize_with = "tz_name")]
    pub tz: Tz,
    pub habits: Vec<Habit>,
    /// Share of sessions at random times.
    pub background: f64,
    pub sessions_per_week: f64,
    pub reachable: [bool; 5],
    pub rates: [f64; 5],
    /// How long a session lasts, in minutes (hidden: events mark its start).
    pub session_minutes: u32,
    /// When the last session of the history began.
    pub last_session: Option<DateTime<Utc>>,
    /// Activity density per local quarter hour of the week (sums to 1).
    #[serde(skip)]
    pub density: Vec<f64>,
}

fn tz_name<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

impl SimCustomer {
    fn build_density(&mut self) {
        let q = QUARTERS_PER_WEEK;
        let mut d = vec![self.background / q as f64; q];
        let total_weight: f64 = self.habits.iter().map(|h| h.weight).sum();
        for h in &self.habits {
            let days = h.days.iter().filter(|x| **x).count().max(1);
            let quarters = (h.minutes / 15).max(1) as usize;
            let share =
                (1.0 - self.background) * h.weight / total_weight / (days * quarters) as f64;
            for (day, on) in h.days.iter().enumerate() {
                if *on {
                    for k in 0..quarters {
                        d[(day * 96 + (h.start_minute / 15) as usize + k) % q] += share;
                    }
                }
            }
        }
        self.density = d;
    }

    /// Whether the last session of the history is going on at `t`.
    pub fn in_session(&self, t: DateTime<Utc>) -> bool {
        self.last_session
            .is_some_and(|s| s <= t && t < s + Duration::minutes(i64::from(self.session_minutes)))
    }

    /// P(active within the channel's window after `t`).
    pub fn active_within(&self, channel: Channel, t: DateTime<Utc>) -> f64 {
        if self.in_session(t) {
            return 1.0;
        }
        let start = quarter_of_week(t, self.tz);
        let mass: f64 = (0..WINDOW_QUARTERS[channel.index()])
            .map(|k| self.density[(start + k) % QUARTERS_PER_WEEK])
            .sum();
        1.0 - (-self.sessions_per_week * mass).exp()
    }

    /// How much of the customer's rate a send on `channel` at `t` gets:
    /// `0.2 + 0.8 · P(active within the window)`.
    pub fn exposure(&self, channel: Channel, t: DateTime<Utc>) -> f64 {
        0.2 + 0.8 * self.active_within(channel, t)
    }

    /// The hidden truth: probability that a send on `channel` at `t` is engaged with.
    pub fn p_engage(&self, channel: Channel, t: DateTime<Utc>) -> f64 {
        if !self.reachable[channel.index()] {
            return 0.0;
        }
        self.rates[channel.index()] * self.exposure(channel, t)
    }

    fn sample_session(&self, week_start: DateTime<Utc>, rng: &mut StdRng) -> DateTime<Utc> {
        // A local quarter of the week from the density, then a minute in it.
        let u: f64 = rng.gen();
        let mut acc = 0.0;
        let mut quarter = QUARTERS_PER_WEEK - 1;
        for (i, d) in self.density.iter().enumerate() {
            acc += d;
            if u < acc {
                quarter = i;
                break;
            }
        }
        local_week_time(
            week_start,
            self.tz,
            quarter as i64 * 15 + rng.gen_range(0..15),
        )
    }

    /// The attributes a client would PUT for this customer.
    pub fn attributes(&self) -> serde_json::Value {
        let mut channels = serde_json::Map::new();
        for c in Channel::ALL {
            channels.insert(
                c.to_string(),
                serde_json::json!({"reachable": self.reachable[c.index()], "consent": self.reachable[c.index()]}),
            );
        }
        serde_json::json!({"timezone": self.tz.name(), "channels": channels})
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub customers: usize,
    pub weeks: u32,
    pub seed: u64,
    /// End of the history ("now").
    pub end: DateTime<Utc>,
    /// Company sends per reachable channel per week.
    pub sends_per_week: f64,
    /// Number of the first customer (ids are "sim-NNNNN"), to generate a large
    /// population in parts.
    pub id_offset: usize,
}

#[derive(Debug, Clone)]
pub struct Population {
    pub customers: Vec<SimCustomer>,
    pub events: Vec<Event>,
}

impl Population {
    /// Each customer's position, by id.
    pub fn index(&self) -> std::collections::HashMap<&str, usize> {
        self.customers
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.as_str(), i))
            .collect()
    }
}

fn local_monday(t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    use chrono::{Datelike, NaiveTime};
    let local = t.with_timezone(&tz).date_naive();
    let monday = local - Duration::days(i64::from(local.weekday().num_days_from_monday()));
    kairos_core::time::resolve_local(monday.and_time(NaiveTime::MIN), tz)
}

/// The instant `minutes` of local time into the week that begins at
/// `week_start` (a local Monday 00:00 in `tz`): on the local clock, so that a
/// habit keeps its local hour through the week of a DST change.
fn local_week_time(week_start: DateTime<Utc>, tz: Tz, minutes: i64) -> DateTime<Utc> {
    let local = week_start.with_timezone(&tz).naive_local() + Duration::minutes(minutes);
    kairos_core::time::resolve_local(local, tz)
}

fn event(
    n: &mut u64,
    customer: &str,
    kind: EventType,
    at: DateTime<Utc>,
    channel: Option<Channel>,
    message: Option<String>,
) -> Option<Event> {
    *n += 1;
    Some(Event {
        event_id: EventId::parse(format!("sim-{n}")).ok()?,
        customer_id: CustomerId::parse(customer).ok()?,
        kind,
        timestamp: at,
        channel,
        message_id: message,
        decision_id: None,
        experiment: None,
        variant: None,
        device: Some(Device::Mobile),
        automated: false,
        category: None,
        properties: None,
    })
}

/// Generates customers and their history.
pub fn generate(cfg: &SimConfig) -> Population {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut customers = Vec::with_capacity(cfg.customers);
    let mut events = Vec::new();
    let mut n = 0u64;
    let start = cfg.end - Duration::weeks(i64::from(cfg.weeks));
    for i in 0..cfg.customers {
        let tz: Tz = ZONES[rng.gen_range(0..ZONES.len())]
            .parse()
            .unwrap_or(Tz::UTC);
        let habits = (0..rng.gen_range(1..=2))
            .map(|_| {
                let weekdays = rng.gen_bool(0.6);
                let mut days = [false; 7];
                for (d, on) in days.iter_mut().enumerate() {
                    *on = if weekdays {
                        d < 5 && rng.gen_bool(0.7)
                    } else {
                        d >= 5 || rng.gen_bool(0.15)
                    };
                }
                if !days.iter().any(|d| *d) {
                    days[rng.gen_range(0..7)] = true;
                }
                Habit {
                    days,
                    start_minute: rng.gen_range(6 * 4..23 * 4) * 15,
                    minutes: rng.gen_range(4..=12) * 15,
                    weight: rng.gen_range(0.5..1.5),
                }
            })
            .collect();
        let mut reachable = [false; 5];
        let mut rates = [0.0; 5];
        for c in Channel::ALL {
            reachable[c.index()] = rng.gen_bool(REACH[c.index()]);
            let m = MEAN_RATE[c.index()];
            rates[c.index()] = Beta::new(m * RATE_STRENGTH, (1.0 - m) * RATE_STRENGTH)
                .map(|b| b.sample(&mut rng))
                .unwrap_or(m);
        }
        // In-app needs the app, like push.
        reachable[Channel::InApp.index()] = reachable[Channel::Push.index()];
        let mut c = SimCustomer {
            id: format!("sim-{:05}", i + cfg.id_offset),
            tz,
            habits,
            background: rng.gen_range(0.05..0.3),
            sessions_per_week: rng.gen_range(2.0..9.0),
            reachable,
            rates,
            // From a generator of its own, so that the rest of the
            // population does not depend on it.
            session_minutes: StdRng::seed_from_u64(
                cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i + cfg.id_offset) as u64,
            )
            .gen_range(5..=30),
            last_session: None,
            density: Vec::new(),
        };
        c.build_density();

        // Only the end of the history is scored with the session going on.
        let mut last_session = None;
        let mut week = local_monday(start, tz);
        while week < cfg.end {
            let sessions = Poisson::new(c.sessions_per_week)
                .map(|p| p.sample(&mut rng) as u64)
                .unwrap_or(0);
            for _ in 0..sessions {
                let at = c.sample_session(week, &mut rng);
                if at >= start && at < cfg.end {
                    last_session = last_session.max(Some(at));
                    let kind = if c.reachable[Channel::Push.index()] {
                        EventType::AppOpen
                    } else {
                        EventType::SessionStart
                    };
                    events.extend(event(&mut n, &c.id, kind, at, None, None));
                }
            }
            for ch in Channel::ALL {
                if !c.reachable[ch.index()] {
                    continue;
                }
                let sends = Poisson::new(cfg.sends_per_week)
                    .map(|p| p.sample(&mut rng) as u64)
                    .unwrap_or(0);
                for s in 0..sends {
                    // Company-convenient: a random day, 08:00-21:00 local.
                    let at = local_week_time(
                        week,
                        tz,
                        rng.gen_range(0..7) * 1440 + rng.gen_range(8 * 60..21 * 60),
                    );
                    if at < start || at >= cfg.end {
                        continue;
                    }
                    let msg = format!("{}-{}-{}-{s}", c.id, ch, at.timestamp());
                    events.extend(event(
                        &mut n,
                        &c.id,
                        EventType::MessageSent,
                        at,
                        Some(ch),
                        Some(msg.clone()),
                    ));
                    if rng.gen_bool(c.p_engage(ch, at).clamp(0.0, 1.0)) {
                        let window = WINDOW_QUARTERS[ch.index()] as i64 * 15;
                        let open = at + Duration::minutes(rng.gen_range(1..window.max(2)));
                        if open < cfg.end {
                            events.extend(event(
                                &mut n,
                                &c.id,
                                EventType::MessageOpened,
                                open,
                                Some(ch),
                                Some(msg.clone()),
                            ));
                            if rng.gen_bool(0.3) {
                                events.extend(event(
                                    &mut n,
                                    &c.id,
                                    EventType::MessageClicked,
                                    open + Duration::minutes(1),
                                    Some(ch),
                                    Some(msg),
                                ));
                            }
                        }
                    }
                }
            }
            week += Duration::weeks(1);
            week = local_monday(week + Duration::hours(12), tz);
        }
        c.last_session = last_session;
        customers.push(c);
    }
    events.sort_by_key(|e| e.timestamp);
    Population { customers, events }
}

/// The best (channel, slot) in a window by the hidden truth, over the
/// channels given, outside quiet hours.
pub fn oracle(
    c: &SimCustomer,
    channels: &[Channel],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    quiet: Option<QuietHours>,
) -> Option<(Channel, DateTime<Utc>, f64)> {
    let mut best: Option<(Channel, DateTime<Utc>, f64)> = None;
    let mut t = from;
    while t <= to {
        if quiet.is_none_or(|q| !q.contains(local_minute_of_day(t, c.tz))) {
            for &ch in channels {
                let v = c.p_engage(ch, t);
                if best.is_none_or(|b| v > b.2) {
                    best = Some((ch, t, v));
                }
            }
        }
        t += Duration::minutes(15);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SimConfig {
        SimConfig {
            customers: 50,
            weeks: 8,
            seed: 3,
            end: DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
                .map(|t| t.to_utc())
                .unwrap_or_default(),
            sends_per_week: 2.0,
            id_offset: 0,
        }
    }

    #[test]
    fn deterministic_and_plausible() {
        let a = generate(&cfg());
        let b = generate(&cfg());
        assert_eq!(a.events, b.events);
        assert_eq!(a.customers.len(), 50);
        for c in &a.customers {
            assert!((c.density.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        let sends = a
            .events
            .iter()
            .filter(|e| e.kind == EventType::MessageSent)
            .count();
        let opens = a
            .events
            .iter()
            .filter(|e| e.kind == EventType::MessageOpened)
            .count();
        assert!(
            sends > 500 && opens > 30 && opens < sends / 2,
            "{sends} sends, {opens} opens"
        );
        let end = cfg().end;
        assert!(a
            .events
            .iter()
            .all(|e| e.timestamp < end && e.timestamp >= end - Duration::weeks(8)));
    }

    #[test]
    fn a_session_going_on_at_the_end_reaches_every_channel() {
        let pop = generate(&cfg());
        let mut c = pop.customers[0].clone();
        assert!((5..=30).contains(&c.session_minutes));
        let last = c.last_session.unwrap_or_default();
        assert!(last < cfg().end && last > cfg().end - Duration::weeks(2));
        assert!(pop
            .events
            .iter()
            .any(|e| e.customer_id.as_str() == c.id && e.timestamp == last));
        c.session_minutes = 10;
        let during = last + Duration::minutes(9);
        let after = last + Duration::minutes(10);
        assert!(
            c.in_session(during)
                && !c.in_session(after)
                && !c.in_session(last - Duration::minutes(1))
        );
        for ch in Channel::ALL {
            assert_eq!(c.active_within(ch, during), 1.0);
            assert!(c.active_within(ch, after) < 1.0);
        }
    }

    #[test]
    fn rate_posterior_weighs_exposure() {
        assert!((rate_posterior_mean(0.2, &[]) - 0.2).abs() < 1e-3);
        // 200 sends, 20 opens: at full exposure the rate is about 10%; when
        // the customer was around for only half of them, about 20%.
        let full: Vec<(f64, bool)> = (0..200).map(|i| (1.0, i % 10 == 0)).collect();
        let half: Vec<(f64, bool)> = (0..200).map(|i| (0.5, i % 10 == 0)).collect();
        assert!((rate_posterior_mean(0.2, &full) - 0.1).abs() < 0.01);
        assert!((rate_posterior_mean(0.2, &half) - 0.2).abs() < 0.02);
    }

    #[test]
    fn informed_ceiling_lies_between_the_baselines_and_the_oracle() {
        let pop = generate(&cfg());
        let (from, to) = (cfg().end, cfg().end + Duration::days(7));
        let mut policies = baselines(&pop, from, to, 1);
        policies.insert(0, informed_ceiling(&pop, from, to));
        let scores = score_policies(&pop, from, to, policies);
        let share = |name: &str| {
            scores
                .iter()
                .find(|s| s.policy == name)
                .map_or(f64::NAN, |s| s.share_of_oracle)
        };
        let ceiling = share("known timing, inferred rates");
        assert!(ceiling < 1.0 && ceiling > 0.8, "{scores:?}");
        assert!(ceiling > share("most frequent hour") + 0.2, "{scores:?}");
    }

    #[test]
    fn losses_split_into_timing_channel_and_unsent() {
        let pop = generate(&cfg());
        let (from, to) = (cfg().end, cfg().end + Duration::days(7));
        let reachable = |c: &SimCustomer| -> Vec<Channel> {
            Channel::ALL
                .into_iter()
                .filter(|ch| c.reachable[ch.index()])
                .collect()
        };
        let policies: Vec<Policy<'_>> = vec![
            (
                "oracle's choices".into(),
                Box::new(move |_, c: &SimCustomer| {
                    oracle(c, &reachable(c), from, to, None).map(|o| (o.0, o.1))
                }),
            ),
            // The oracle's channel, a day later than its time (or earlier
            // when that leaves the window).
            (
                "right channel, wrong day".into(),
                Box::new(move |_, c: &SimCustomer| {
                    let (ch, at, _) = oracle(c, &reachable(c), from, to, None)?;
                    let later = at + Duration::days(1);
                    Some((
                        ch,
                        if later <= to {
                            later
                        } else {
                            at - Duration::days(1)
                        },
                    ))
                }),
            ),
            // Customers with an even index only, each on their best channel.
            (
                "half the customers".into(),
                Box::new(move |i, c: &SimCustomer| {
                    let o = oracle(c, &reachable(c), from, to, None)?;
                    (i % 2 == 0).then_some((o.0, o.1))
                }),
            ),
            // The worst reachable channel at its own best time.
            (
                "worst channel, best time".into(),
                Box::new(move |_, c: &SimCustomer| {
                    reachable(c)
                        .into_iter()
                        .filter_map(|ch| oracle(c, &[ch], from, to, None))
                        .min_by(|a, b| a.2.total_cmp(&b.2))
                        .map(|o| (o.0, o.1))
                }),
            ),
        ];
        let scores = score_policies(&pop, from, to, policies);
        let oracle_total = scores[0].expected_engagements;
        for s in &scores {
            let lost = s.lost_to_timing + s.lost_to_channel + s.lost_unsent;
            assert!(
                (oracle_total - s.expected_engagements - lost).abs() < 1e-9,
                "{s:?}"
            );
        }
        let row = |name: &str| {
            scores
                .iter()
                .find(|s| s.policy == name)
                .cloned()
                .unwrap_or_default()
        };
        let exact = row("oracle's choices");
        assert!((exact.share_of_oracle - 1.0).abs() < 1e-12, "{exact:?}");
        assert!(exact.lost_to_timing.abs() + exact.lost_to_channel.abs() < 1e-12);
        let late = row("right channel, wrong day");
        assert!(
            late.lost_to_timing > 0.5 && late.lost_to_channel.abs() < 1e-12,
            "{late:?}"
        );
        let half = row("half the customers");
        assert!(half.lost_unsent > 0.3 * oracle_total && half.lost_to_timing.abs() < 1e-12);
        let worst = row("worst channel, best time");
        assert!(
            worst.lost_to_channel > 1.0 && worst.lost_to_timing.abs() < 1e-12,
            "{worst:?}"
        );

        // Pooling two populations adds the losses up.
        let mut pooled = late.clone();
        pooled.pool(&late, 2.0 * oracle_total);
        assert!((pooled.share_of_oracle - late.share_of_oracle).abs() < 1e-12);
        assert!((pooled.lost_to_timing - 2.0 * late.lost_to_timing).abs() < 1e-9);
    }

    #[test]
    fn habits_keep_their_local_hour_through_a_dst_change() {
        use chrono::{Datelike, Timelike};
        // London leaves summer time at 02:00 on Sunday 25 October 2026.
        let tz: Tz = "Europe/London".parse().unwrap_or(Tz::UTC);
        let mut c = SimCustomer {
            id: "dst".into(),
            tz,
            habits: vec![Habit {
                days: [false, false, false, false, false, false, true],
                start_minute: 19 * 60,
                minutes: 60,
                weight: 1.0,
            }],
            background: 0.0,
            sessions_per_week: 5.0,
            reachable: [true; 5],
            rates: [0.2; 5],
            session_minutes: 10,
            last_session: None,
            density: Vec::new(),
        };
        c.build_density();
        let week = local_monday(
            DateTime::parse_from_rfc3339("2026-10-22T12:00:00Z")
                .map(|t| t.to_utc())
                .unwrap_or_default(),
            tz,
        );
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let local = c.sample_session(week, &mut rng).with_timezone(&tz);
            assert_eq!(local.date_naive().to_string(), "2026-10-25");
            assert_eq!((local.weekday(), local.hour()), (chrono::Weekday::Sun, 19));
        }
        // The company's sends too: 08:00-21:00 local on every day of that week.
        let pop = generate(&SimConfig {
            customers: 40,
            weeks: 6,
            end: DateTime::parse_from_rfc3339("2026-11-03T12:00:00Z")
                .map(|t| t.to_utc())
                .unwrap_or_default(),
            ..cfg()
        });
        let zones: std::collections::HashMap<&str, Tz> = pop
            .customers
            .iter()
            .map(|c| (c.id.as_str(), c.tz))
            .collect();
        let sends: Vec<u32> = pop
            .events
            .iter()
            .filter(|e| e.kind == EventType::MessageSent)
            .map(|e| {
                e.timestamp
                    .with_timezone(&zones[e.customer_id.as_str()])
                    .hour()
            })
            .collect();
        assert!(sends.len() > 500 && sends.iter().all(|h| (8..21).contains(h)));
    }

    #[test]
    fn truth_favours_the_habit() {
        let pop = generate(&cfg());
        let c = &pop.customers[0];
        let peak = c
            .density
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        let monday = local_monday(cfg().end, c.tz);
        let at_peak = monday + Duration::minutes(peak as i64 * 15 - 15);
        let off_peak = monday + Duration::minutes(((peak + 336) % 672) as i64 * 15);
        assert!(c.active_within(Channel::Push, at_peak) > c.active_within(Channel::Push, off_peak));
    }
}

/// A named policy: for a customer (by index), a channel and a send time, or nothing.
pub type Policy<'a> = (
    String,
    Box<dyn Fn(usize, &SimCustomer) -> Option<(Channel, DateTime<Utc>)> + 'a>,
);

/// A policy's total expected engagement against the oracle's, and where
/// the rest was lost (in expected engagements; the three add up to the
/// oracle's total minus the policy's).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyScore {
    pub policy: String,
    pub expected_engagements: f64,
    pub share_of_oracle: f64,
    /// Lost to the time taken on the channel the policy chose: that
    /// channel's best slot in the window against the one taken.
    pub lost_to_timing: f64,
    /// Lost to the channel: the oracle's best against the best slot on the
    /// channel taken.
    pub lost_to_channel: f64,
    /// Lost where the policy sent nothing to a reachable customer.
    pub lost_unsent: f64,
}

impl PolicyScore {
    /// Adds another population's score of the same policy; the share is
    /// recomputed against `oracle`, the pooled oracle's engagements.
    pub fn pool(&mut self, other: &PolicyScore, oracle: f64) {
        self.expected_engagements += other.expected_engagements;
        self.lost_to_timing += other.lost_to_timing;
        self.lost_to_channel += other.lost_to_channel;
        self.lost_unsent += other.lost_unsent;
        self.share_of_oracle = self.expected_engagements / oracle.max(f64::MIN_POSITIVE);
    }

    /// The column names of [`Self::line`].
    pub fn header() -> String {
        format!(
            "{:<28} {:>12} {:>10}   lost to: {:>7} {:>8} {:>7}",
            "policy", "engagements", "of oracle", "timing", "channel", "unsent"
        )
    }

    /// One line of a table: the engagements, the share of the oracle and
    /// the losses as shares of `oracle`, the oracle's engagements.
    pub fn line(&self, oracle: f64) -> String {
        let pct = |x: f64| 100.0 * x / oracle.max(f64::MIN_POSITIVE);
        format!(
            "{:<28} {:>12.2} {:>9.1}%            {:>6.1}% {:>7.1}% {:>6.1}%",
            self.policy,
            self.expected_engagements,
            100.0 * self.share_of_oracle,
            pct(self.lost_to_timing),
            pct(self.lost_to_channel),
            pct(self.lost_unsent)
        )
    }
}

/// Scores policies over the population: each maps a customer to a
/// (channel, send time) or nothing. The oracle picks the true best channel
/// and slot in [from, to] among reachable channels.
pub fn score_policies(
    pop: &Population,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    policies: Vec<Policy<'_>>,
) -> Vec<PolicyScore> {
    let best: Vec<f64> = pop
        .customers
        .iter()
        .map(|c| {
            let reachable: Vec<Channel> = Channel::ALL
                .into_iter()
                .filter(|ch| c.reachable[ch.index()])
                .collect();
            oracle(c, &reachable, from, to, None).map_or(0.0, |o| o.2)
        })
        .collect();
    let oracle_total: f64 = best.iter().sum();
    let mut rows = vec![PolicyScore {
        policy: "oracle (hidden truth)".into(),
        expected_engagements: oracle_total,
        share_of_oracle: 1.0,
        ..PolicyScore::default()
    }];
    for (name, policy) in policies {
        let mut row = PolicyScore {
            policy: name,
            ..PolicyScore::default()
        };
        for ((i, c), best) in pop.customers.iter().enumerate().zip(&best) {
            let Some((ch, t)) = policy(i, c) else {
                row.lost_unsent += best;
                continue;
            };
            let value = c.p_engage(ch, t);
            let on_channel = oracle(c, &[ch], from, to, None).map_or(0.0, |o| o.2);
            row.expected_engagements += value;
            row.lost_to_timing += on_channel - value;
            row.lost_to_channel += best - on_channel;
        }
        row.share_of_oracle = row.expected_engagements / oracle_total.max(f64::MIN_POSITIVE);
        rows.push(row);
    }
    rows
}

/// The usual baselines: a random reachable channel at a random time; 10:00
/// local for everyone on their first reachable channel; and the customer's
/// most frequent local hour (from their history) on their first reachable channel.
pub fn baselines<'a>(
    pop: &'a Population,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    seed: u64,
) -> Vec<Policy<'a>> {
    let first = |c: &SimCustomer| Channel::ALL.into_iter().find(|ch| c.reachable[ch.index()]);
    // Local wall-clock times are looked for on the quarter hours of the window.
    let quarter = 15 * 60;
    let aligned = DateTime::from_timestamp(
        (from.timestamp() + quarter - 1).div_euclid(quarter) * quarter,
        0,
    )
    .unwrap_or(from);
    let next_local = move |c: &SimCustomer, minute: u32| -> Option<DateTime<Utc>> {
        let mut t = aligned;
        while t <= to {
            if local_minute_of_day(t, c.tz) == minute {
                return Some(t);
            }
            t += Duration::minutes(15);
        }
        None
    };
    let mut frequent: Vec<Option<(usize, u32)>> = vec![None; pop.customers.len()];
    let index = pop.index();
    let mut counts = vec![[0u32; 168]; pop.customers.len()];
    for e in pop.events.iter().filter(|e| e.is_organic_activity()) {
        if let Some(&i) = index.get(e.customer_id.as_str()) {
            counts[i][kairos_core::HourOfWeek::of(e.timestamp, pop.customers[i].tz).index()] += 1;
        }
    }
    for (i, c) in counts.iter().enumerate() {
        frequent[i] = c
            .iter()
            .enumerate()
            .max_by_key(|(h, n)| (**n, std::cmp::Reverse(*h)))
            .map(|(h, n)| (h, *n));
    }
    vec![
        (
            "random channel and time".to_string(),
            Box::new(move |i: usize, c: &SimCustomer| {
                let mut rng = StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9));
                let reachable: Vec<Channel> = Channel::ALL
                    .into_iter()
                    .filter(|ch| c.reachable[ch.index()])
                    .collect();
                let ch = *reachable.get(rng.gen_range(0..reachable.len().max(1)))?;
                let span = (to - from).num_minutes().max(1);
                Some((ch, from + Duration::minutes(rng.gen_range(0..span))))
            }),
        ),
        (
            "10:00 local for everyone".to_string(),
            Box::new(move |_, c: &SimCustomer| Some((first(c)?, next_local(c, 600)?))),
        ),
        (
            "most frequent hour".to_string(),
            Box::new(move |i, c: &SimCustomer| {
                let (how, _) = frequent[i]?;
                let mut t = aligned;
                while t <= to {
                    if kairos_core::HourOfWeek::of(t, c.tz).index() == how
                        && local_minute_of_day(t, c.tz) % 60 == 0
                    {
                        return Some((first(c)?, t));
                    }
                    t += Duration::minutes(15);
                }
                None
            }),
        ),
    ]
}

/// Posterior mean of a customer's rate `r` on a channel, from their logged
/// sends as `(exposure, engaged)` with `P(engaged) = r · exposure`, under the
/// population's Beta prior (numerically, on a grid).
fn rate_posterior_mean(prior_mean: f64, sends: &[(f64, bool)]) -> f64 {
    const GRID: usize = 1000;
    let (a, b) = (
        prior_mean * RATE_STRENGTH,
        (1.0 - prior_mean) * RATE_STRENGTH,
    );
    let log_post: Vec<(f64, f64)> = (0..GRID)
        .map(|i| {
            let r = (i as f64 + 0.5) / GRID as f64;
            let prior = (a - 1.0) * r.ln() + (b - 1.0) * (1.0 - r).ln();
            let lik: f64 = sends
                .iter()
                .map(|&(e, y)| if y { (r * e).ln() } else { (1.0 - r * e).ln() })
                .sum();
            (r, prior + lik)
        })
        .collect();
    let top = log_post
        .iter()
        .map(|x| x.1)
        .fold(f64::NEG_INFINITY, f64::max);
    let (num, den) = log_post.iter().fold((0.0, 0.0), |(n, d), &(r, l)| {
        let w = (l - top).exp();
        (n + r * w, d + w)
    });
    num / den
}

/// A reference for how much of the oracle any policy can be expected to
/// reach from this history: it knows each customer's hidden timing exactly
/// (so each channel's true best slot), but, like any real policy, must infer
/// how responsive the customer is on each channel from their logged sends and
/// opens. It does so optimally: the exact posterior under the population's
/// rate distribution, with each past send weighted by the true chance the
/// customer was around after it. It picks the channel with the highest
/// expected value at its best slot.
pub fn informed_ceiling<'a>(
    pop: &'a Population,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Policy<'a> {
    let index = pop.index();
    let opened: std::collections::HashSet<(&str, &str)> = pop
        .events
        .iter()
        .filter(|e| e.kind == EventType::MessageOpened)
        .filter_map(|e| Some((e.customer_id.as_str(), e.message_id.as_deref()?)))
        .collect();
    // Per customer and channel: each logged send's exposure and outcome.
    let mut sends = vec![[(); 5].map(|_| Vec::<(f64, bool)>::new()); pop.customers.len()];
    for e in pop
        .events
        .iter()
        .filter(|e| e.kind == EventType::MessageSent)
    {
        let (Some(&i), Some(ch), Some(msg)) = (
            index.get(e.customer_id.as_str()),
            e.channel,
            e.message_id.as_deref(),
        ) else {
            continue;
        };
        let c = &pop.customers[i];
        let exposure = c.exposure(ch, e.timestamp);
        let engaged = opened.contains(&(e.customer_id.as_str(), msg));
        sends[i][ch.index()].push((exposure, engaged));
    }
    (
        "known timing, inferred rates".to_string(),
        Box::new(move |i: usize, c: &SimCustomer| {
            Channel::ALL
                .into_iter()
                .filter(|ch| c.reachable[ch.index()])
                .filter_map(|ch| {
                    let (_, at, _) = oracle(c, &[ch], from, to, None)?;
                    // The slot's value for a customer of rate r is r · timing.
                    let timing = c.exposure(ch, at);
                    let rate = rate_posterior_mean(MEAN_RATE[ch.index()], &sends[i][ch.index()]);
                    Some((ch, at, rate * timing))
                })
                .fold(
                    None::<(Channel, DateTime<Utc>, f64)>,
                    |best, x| match best {
                        Some(b) if b.2 >= x.2 => Some(b),
                        _ => Some(x),
                    },
                )
                .map(|(ch, at, _)| (ch, at))
        }),
    )
}
