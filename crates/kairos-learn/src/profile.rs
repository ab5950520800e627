//! Per-customer statistics, updated online at ingest.
//!
//! Every count is an exponentially decayed sum `Σ 2^(-(R - tᵢ)/h)` held at a
//! reference instant `R` (the latest event seen). Adding an event older than
//! `R` adds its decayed weight; a newer one first moves `R` forward. The sum is
//! therefore the same whatever order events arrive in.
//!
//! Channel engagement is attributed to sends: an open or click counts when it
//! names a `message_id` whose send on the same channel is known and it comes
//! within the channel's attribution window after that send, once per message
//! (an open then a click is one engagement). Whichever of the send and the
//! response arrives first, the engagement is counted when both are known, so
//! arrival order does not matter here either. Responses without a
//! `message_id` cannot be attributed and are activity only.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use kairos_core::{
    instant_serde, Channel, Device, Event, EventType, HourOfWeek, HOURS_PER_WEEK, QUARTERS_PER_DAY,
};
use serde::{Deserialize, Serialize};

/// Most categories kept per customer for affinity; the lightest are dropped.
const MAX_CATEGORIES: usize = 32;

/// What the online update needs: the decay and the attribution windows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProfileConfig {
    pub half_life_days: f64,
    /// Attribution window per channel, in hours, by [`Channel::index`].
    pub attribution_hours: [f64; 5],
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self {
            half_life_days: 60.0,
            attribution_hours: [72.0, 24.0, 24.0, 72.0, 72.0],
        }
    }
}

impl ProfileConfig {
    pub fn window(&self, channel: Channel) -> Duration {
        Duration::seconds((self.attribution_hours[channel.index()] * 3600.0) as i64)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// Decayed number of sends.
    pub sends: f32,
    /// Decayed number of attributed engagements.
    pub engagements: f32,
    /// Decayed engagements per local hour of week (empty until the first one).
    #[serde(with = "kairos_core::f32_block")]
    pub engagement_how: Vec<f32>,
    pub sends_total: u32,
    pub engagements_total: u32,
    pub bounces_total: u32,
    #[serde(with = "instant_serde::option")]
    pub last_sent_at: Option<DateTime<Utc>>,
    #[serde(with = "instant_serde::option")]
    pub unsubscribed_at: Option<DateTime<Utc>>,
    /// The latest sends (at most 32), oldest first, for caps and fatigue.
    #[serde(default, with = "instant_serde::vec")]
    pub recent_sends: Vec<DateTime<Utc>>,
}

/// Sends and responses kept per message (a message is normally sent once).
const MAX_PER_MESSAGE: usize = 8;

/// What is known of one message to one customer, for attribution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageState {
    /// Send times, oldest first.
    #[serde(with = "instant_serde::vec")]
    pub sends: Vec<DateTime<Utc>>,
    /// Open and click times, oldest first.
    #[serde(with = "instant_serde::vec")]
    pub responses: Vec<DateTime<Utc>>,
    /// The response the engagement is attributed to, once there is one.
    #[serde(with = "instant_serde::option")]
    pub counted_at: Option<DateTime<Utc>>,
}

/// What a new event changes in a message's engagement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    None,
    /// A new engagement, at this response time.
    Count(DateTime<Utc>),
    /// The engagement is now attributed to an earlier response.
    Move {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    /// The engagement, at this response time, is gone: the send it followed
    /// made way for earlier ones (at most 8 are kept per message).
    Uncount(DateTime<Utc>),
}

/// The key of a message in a customer's message states: "channel:message_id".
pub fn message_key(event: &Event) -> Option<String> {
    match (&event.message_id, event.channel) {
        (Some(m), Some(c)) => Some(format!("{c}:{m}")),
        _ => None,
    }
}

/// Whether `event` concerns attribution (a send, or a non-automated open or click).
pub fn concerns_attribution(event: &Event) -> bool {
    event.kind == EventType::MessageSent || (event.kind.is_engagement() && !event.automated)
}

fn insert_sorted(v: &mut Vec<DateTime<Utc>>, t: DateTime<Utc>) {
    if let Err(pos) = v.binary_search(&t) {
        if pos < MAX_PER_MESSAGE {
            v.insert(pos, t);
            v.truncate(MAX_PER_MESSAGE);
        }
    }
}

impl MessageState {
    /// The earliest response within `window` after some send: the message's
    /// engagement, a function of the sets of sends and responses only.
    pub fn engagement(&self, window: Duration) -> Option<DateTime<Utc>> {
        self.responses
            .iter()
            .copied()
            .find(|r| self.sends.iter().any(|s| s <= r && *r - *s <= window))
    }

    /// Adds `event` to the message's state and says how the engagement changes.
    pub fn link(&mut self, event: &Event, window: Duration) -> Attribution {
        match event.kind {
            EventType::MessageSent => insert_sorted(&mut self.sends, event.timestamp),
            k if k.is_engagement() && !event.automated => {
                insert_sorted(&mut self.responses, event.timestamp)
            }
            _ => return Attribution::None,
        }
        let now = self.engagement(window);
        let change = match (self.counted_at, now) {
            (None, Some(to)) => Attribution::Count(to),
            (Some(from), Some(to)) if from != to => Attribution::Move { from, to },
            (Some(from), None) => Attribution::Uncount(from),
            _ => Attribution::None,
        };
        self.counted_at = now;
        change
    }
}

/// The layout of [`ProfileState`] (and [`MessageState`]) as stored: raised
/// with every change to their fields. Stores keep them in postcard, which
/// keeps no field names, so profiles written in another layout are
/// recomputed from their events. 2: activity per quarter of the day.
/// 3: responses to messages leave the activity once organic activity is seen.
/// 4: instants as numbers, not text ([`instant_serde`]).
/// 5: the per-hour and per-quarter counts as blocks of bytes
/// ([`kairos_core::f32_block`]).
pub const PROFILE_LAYOUT: u32 = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileState {
    /// Reference instant of every decayed sum.
    #[serde(with = "instant_serde::option")]
    pub reference: Option<DateTime<Utc>>,
    /// Every event accepted for this customer.
    pub events: u64,
    /// Events counted in `activity`: organic activity (customer-initiated,
    /// not automated, not a response to a message); responses to messages
    /// (opens, clicks) only while the customer has no organic activity.
    pub activity_events: u64,
    /// Decayed activity events per local hour of week (168).
    #[serde(with = "kairos_core::f32_block")]
    pub activity: Vec<f32>,
    /// The last organic activity: presence not in response to a message.
    #[serde(with = "instant_serde::option")]
    pub last_active_at: Option<DateTime<Utc>>,
    /// Per channel, indexed by [`Channel::index`].
    pub channels: Vec<ChannelStats>,
    pub app_opens: u32,
    pub email_opens_known_device: f32,
    pub email_opens_mobile: f32,
    pub category_weights: BTreeMap<String, f32>,
    /// The activity events per local quarter hour of the day (96): where
    /// in its hours a customer's activity falls, on whichever day. (Empty
    /// where a profile is read without it: the hours alone are used.)
    #[serde(default, with = "kairos_core::f32_block")]
    pub quarter_of_day: Vec<f32>,
}

impl Default for ProfileState {
    fn default() -> Self {
        Self {
            reference: None,
            events: 0,
            activity_events: 0,
            activity: vec![0.0; HOURS_PER_WEEK],
            last_active_at: None,
            channels: vec![ChannelStats::default(); Channel::ALL.len()],
            app_opens: 0,
            email_opens_known_device: 0.0,
            email_opens_mobile: 0.0,
            category_weights: BTreeMap::new(),
            quarter_of_day: vec![0.0; QUARTERS_PER_DAY],
        }
    }
}

impl ProfileState {
    /// Activities per week, from the decayed and the total count of organic
    /// activity. Both grow with a customer's history, the decayed one less
    /// and less: for a steady rate over `T` days with half-life `h`, decayed
    /// / total = `(1 - 2^(-T/h)) / (T/h · ln 2)`, which gives `T`, and the
    /// total over `T` is the rate (with `T` at least a week). Unlike the
    /// decayed count alone, it does not confuse a short history with a
    /// quiet customer.
    pub fn weekly_activity(&self, half_life_days: f64) -> f64 {
        let total = self.activity_events as f64;
        let decayed: f64 = self.activity.iter().map(|&v| f64::from(v)).sum();
        if total <= 0.0 || decayed <= 0.0 || half_life_days <= 0.0 {
            return 0.0;
        }
        let ratio = (decayed / total).min(1.0);
        let days = history_half_lives(ratio) * half_life_days;
        total / days.max(7.0) * 7.0
    }
}

/// The history length `x = T / h` (in half-lives) at which a steady rate's
/// decayed count is `ratio` of its total: the root of
/// `f(x) = (1 - 2^-x) / (x · ln 2) = ratio`, between 1e-6 and 1e3 (the
/// nearer end where there is none inside). Newton's method on ln x (f falls
/// from 1 towards 0 and d f / d ln x = 2^-x - f(x), from the same
/// exponential), kept inside a shrinking bracket: at most six steps for
/// histories longer than 1e-4 half-lives.
fn history_half_lives(ratio: f64) -> f64 {
    history_half_lives_in_steps(ratio).0
}

/// [`history_half_lives`], and the number of Newton (or halving) steps it took.
fn history_half_lives_in_steps(ratio: f64) -> (f64, usize) {
    const C: f64 = std::f64::consts::LN_2;
    // ln 1e-6 and ln 1e3.
    let (mut lo, mut hi) = (-13.815_510_557_964_274_f64, 6.907_755_278_982_137_f64);
    // f(x) ≈ 1 - c·x/2 for short histories and 1 / (c·x) for long ones.
    let mut u = ((1.0 / ratio.max(1e-300) - 1.0) * 2.0 / C)
        .clamp(1e-6, 1e3)
        .ln();
    for step in 1..=100 {
        let x = u.exp();
        // 1 - 2^-x without the cancellation of short histories.
        let gone = -(-x * C).exp_m1();
        let e = 1.0 - gone;
        let f = gone / (x * C);
        let g = f - ratio;
        if g > 0.0 {
            lo = u;
        } else {
            hi = u;
        }
        let slope = e - f;
        let mut next = u - g / slope;
        // Converged, whichever side of the bracket the last step lands on:
        // at the root `g` is 0 (or rounding) and the step with it, and a
        // step to the bracket's edge must not be taken for a failed one
        // (a halving from there took some 40 more steps).
        if next.is_finite() && (next - u).abs() < 1e-12 {
            return (next.exp(), step);
        }
        if !(next.is_finite() && next > lo && next < hi) {
            next = 0.5 * (lo + hi);
        }
        if hi - lo < 1e-12 {
            return (next.exp(), step);
        }
        u = next;
    }
    (u.exp(), 100)
}

/// 2^(-age/h) for an age in seconds and a half-life in days.
pub(crate) fn decay_factor(age_seconds: f64, half_life_days: f64) -> f64 {
    (-(age_seconds / (half_life_days * 86_400.0)) * std::f64::consts::LN_2).exp()
}

/// Sends kept per channel for fatigue and caps.
pub const RECENT_SENDS: usize = 32;

impl ProfileState {
    /// Adds one event, its local hour taken in `tz`; `attribution` is what
    /// the event changes in its message's engagement (see [`MessageState::link`]).
    pub fn observe(
        &mut self,
        event: &Event,
        tz: Tz,
        cfg: &ProfileConfig,
        attribution: Attribution,
    ) {
        let t = event.timestamp;
        let w = self.weight_at(t, cfg.half_life_days) as f32;
        self.events += 1;
        let quarter = kairos_core::time::quarter_of_week(t, tz);
        let how = quarter / 4;

        // The weekly habit counts what the customer did on their own; a
        // response to a message comes at a time the sender chose, and would
        // teach the send times back to the sender. Responses stand in only
        // while nothing organic is known: the first organic activity clears
        // them. "Last active" (and the "already came back" check) is organic.
        if event.shows_presence() {
            let organic = event.is_organic_activity();
            let organic_seen = self.last_active_at.is_some();
            if organic && !organic_seen {
                self.activity_events = 0;
                self.activity.iter_mut().for_each(|v| *v = 0.0);
                self.quarter_of_day.iter_mut().for_each(|v| *v = 0.0);
            }
            if organic || !organic_seen {
                self.activity_events += 1;
                self.activity[how] += w;
                self.quarter_of_day.resize(QUARTERS_PER_DAY, 0.0);
                self.quarter_of_day[quarter % QUARTERS_PER_DAY] += w;
            }
            if organic {
                self.last_active_at = Some(self.last_active_at.map_or(t, |l| l.max(t)));
            }
            if event.kind == EventType::AppOpen {
                self.app_opens += 1;
            }
            if let Some(cat) = &event.category {
                if matches!(event.kind, EventType::PageView | EventType::MessageClicked) {
                    *self.category_weights.entry(cat.clone()).or_insert(0.0) += w;
                    self.trim_categories();
                }
            }
        }

        let Some(channel) = event.channel else { return };
        match attribution {
            Attribution::None => {}
            Attribution::Count(r) => {
                self.add_engagement(channel, r, tz, cfg, 1.0);
                self.channels[channel.index()].engagements_total += 1;
            }
            Attribution::Move { from, to } => {
                self.add_engagement(channel, from, tz, cfg, -1.0);
                self.add_engagement(channel, to, tz, cfg, 1.0);
            }
            Attribution::Uncount(r) => {
                self.add_engagement(channel, r, tz, cfg, -1.0);
                let stats = &mut self.channels[channel.index()];
                stats.engagements_total = stats.engagements_total.saturating_sub(1);
            }
        }
        let stats = &mut self.channels[channel.index()];
        match event.kind {
            EventType::MessageSent => {
                stats.sends += w;
                stats.sends_total += 1;
                stats.last_sent_at = Some(stats.last_sent_at.map_or(t, |l| l.max(t)));
                let pos = stats.recent_sends.partition_point(|s| *s < t);
                stats.recent_sends.insert(pos, t);
                if stats.recent_sends.len() > RECENT_SENDS {
                    stats.recent_sends.remove(0);
                }
            }
            EventType::MessageBounced => stats.bounces_total += 1,
            EventType::Unsubscribed => {
                stats.unsubscribed_at = Some(stats.unsubscribed_at.map_or(t, |l| l.max(t)));
            }
            EventType::MessageOpened if channel == Channel::Email && !event.automated => {
                if let Some(device) = event.device {
                    self.email_opens_known_device += w;
                    if device == Device::Mobile || device == Device::Tablet {
                        self.email_opens_mobile += w;
                    }
                }
            }
            _ => {}
        }
    }

    fn add_engagement(
        &mut self,
        channel: Channel,
        at: DateTime<Utc>,
        tz: Tz,
        cfg: &ProfileConfig,
        sign: f32,
    ) {
        let w = sign * self.weight_at(at, cfg.half_life_days) as f32;
        let stats = &mut self.channels[channel.index()];
        stats.engagements = (stats.engagements + w).max(0.0);
        if stats.engagement_how.is_empty() {
            stats.engagement_how = vec![0.0; HOURS_PER_WEEK];
        }
        let slot = &mut stats.engagement_how[HourOfWeek::of(at, tz).index()];
        *slot = (*slot + w).max(0.0);
    }

    /// The weight of an event at `t` relative to the reference, moving the
    /// reference (and decaying every sum) when `t` is newer.
    fn weight_at(&mut self, t: DateTime<Utc>, half_life_days: f64) -> f64 {
        match self.reference {
            Some(r) if t <= r => {
                decay_factor((r - t).num_milliseconds() as f64 / 1000.0, half_life_days)
            }
            Some(r) => {
                let f = decay_factor((t - r).num_milliseconds() as f64 / 1000.0, half_life_days);
                self.scale(f as f32);
                self.reference = Some(t);
                1.0
            }
            None => {
                self.reference = Some(t);
                1.0
            }
        }
    }

    fn scale(&mut self, f: f32) {
        self.activity.iter_mut().for_each(|v| *v *= f);
        self.quarter_of_day.iter_mut().for_each(|v| *v *= f);
        for c in &mut self.channels {
            c.sends *= f;
            c.engagements *= f;
            c.engagement_how.iter_mut().for_each(|v| *v *= f);
        }
        self.email_opens_known_device *= f;
        self.email_opens_mobile *= f;
        self.category_weights.values_mut().for_each(|v| *v *= f);
    }

    fn trim_categories(&mut self) {
        while self.category_weights.len() > MAX_CATEGORIES {
            let lightest = self
                .category_weights
                .iter()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(k, _)| k.clone());
            match lightest {
                Some(k) => self.category_weights.remove(&k),
                None => break,
            };
        }
    }

    /// Builds a profile from a customer's whole history, and the message
    /// states it implies (e.g. after a time-zone or half-life change).
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = &'a Event>,
        tz: Tz,
        cfg: &ProfileConfig,
    ) -> (Self, HashMap<String, MessageState>) {
        let mut p = Self::default();
        let mut messages: HashMap<String, MessageState> = HashMap::new();
        for e in events {
            let attribution = match (message_key(e), e.channel) {
                (Some(key), Some(ch)) if concerns_attribution(e) => {
                    messages.entry(key).or_default().link(e, cfg.window(ch))
                }
                _ => Attribution::None,
            };
            p.observe(e, tz, cfg, attribution);
        }
        (p, messages)
    }

    pub fn has_app(&self) -> bool {
        self.app_opens > 0
            || self.channels[Channel::Push.index()].engagements_total > 0
            || self.channels[Channel::InApp.index()].engagements_total > 0
    }

    pub fn email_open_mobile_share(&self) -> Option<f64> {
        (self.email_opens_known_device > 0.0)
            .then(|| f64::from(self.email_opens_mobile / self.email_opens_known_device))
    }

    /// Share of page views and clicks per content category.
    pub fn category_affinity(&self) -> BTreeMap<String, f64> {
        let total: f32 = self.category_weights.values().sum();
        if total <= 0.0 {
            return BTreeMap::new();
        }
        self.category_weights
            .iter()
            .map(|(k, v)| (k.clone(), f64::from(v / total)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_core::RawEvent;
    use proptest::prelude::*;

    fn ev(id: usize, kind: &str, ts: &str, channel: Option<&str>, message: Option<&str>) -> Event {
        let now = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .map(|t| t.to_utc())
            .unwrap_or_default();
        Event::from_raw(
            RawEvent {
                event_id: Some(format!("e{id}")),
                customer_id: Some("c".into()),
                kind: Some(kind.into()),
                timestamp: Some(ts.into()),
                channel: channel.map(Into::into),
                message_id: message.map(Into::into),
                ..RawEvent::default()
            },
            now,
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn counts_local_hours_and_decays_by_half_life() {
        let cfg = ProfileConfig::default();
        let tz: Tz = "Asia/Kuala_Lumpur".parse().unwrap_or(Tz::UTC);
        let a = ev(1, "session_start", "2026-01-05T11:30:00Z", None, None); // Mon 19:30 local
        let b = ev(2, "session_start", "2026-03-06T11:30:00Z", None, None); // 60 days later, Fri 19:30
        let (p, _) = ProfileState::from_events([&a, &b], tz, &cfg);
        assert!((p.activity[19] - 0.5).abs() < 1e-6, "{}", p.activity[19]);
        assert!((p.activity[4 * 24 + 19] - 1.0).abs() < 1e-6);
        // Both at 19:30 local, whatever the day: one quarter of the day.
        assert!((p.quarter_of_day[19 * 4 + 2] - 1.5).abs() < 1e-6);
        let rest: f32 = p.quarter_of_day.iter().sum::<f32>() - p.quarter_of_day[78];
        assert_eq!(rest, 0.0);
        assert_eq!(p.activity_events, 2);
        assert_eq!(p.last_active_at, Some(b.timestamp));
    }

    #[test]
    fn profiles_kept_before_quarters_of_the_day_take_them_up() {
        let cfg = ProfileConfig::default();
        let tz = Tz::UTC;
        let a = ev(1, "app_open", "2026-01-05T19:45:00Z", None, None);
        let (p, _) = ProfileState::from_events([&a], tz, &cfg);
        let mut old = serde_json::to_value(&p).unwrap_or_default();
        old.as_object_mut().map(|o| o.remove("quarter_of_day"));
        let mut old: ProfileState = serde_json::from_value(old).unwrap_or_else(|e| panic!("{e}"));
        assert!(old.quarter_of_day.is_empty());
        let b = ev(2, "app_open", "2026-01-06T08:00:00Z", None, None);
        old.observe(&b, tz, &cfg, Attribution::None);
        assert_eq!(old.quarter_of_day.len(), 96);
        assert!(old.quarter_of_day[32] > 0.99 && old.quarter_of_day[79] == 0.0);
        assert!((old.activity[19] - p.activity[19] * 0.99).abs() < 0.01);
    }

    #[test]
    fn engagement_is_attributed_to_its_send_within_the_window() {
        let cfg = ProfileConfig::default();
        let email = Some("email");
        let events = [
            ev(1, "message_sent", "2026-01-05T10:00:00Z", email, Some("m1")),
            ev(
                2,
                "message_opened",
                "2026-01-05T11:00:00Z",
                email,
                Some("m1"),
            ),
            ev(
                3,
                "message_clicked",
                "2026-01-05T11:01:00Z",
                email,
                Some("m1"),
            ),
            ev(4, "message_sent", "2026-01-06T10:00:00Z", email, Some("m2")),
            // Opened 5 days later: outside the 72 h window.
            ev(
                5,
                "message_opened",
                "2026-01-11T10:00:00Z",
                email,
                Some("m2"),
            ),
            // A response to a message never sent, and one without a message id.
            ev(
                6,
                "message_opened",
                "2026-01-07T10:00:00Z",
                email,
                Some("m9"),
            ),
            ev(7, "message_opened", "2026-01-07T10:00:00Z", email, None),
        ];
        let (p, _) = ProfileState::from_events(&events, Tz::UTC, &cfg);
        let stats = &p.channels[Channel::Email.index()];
        assert_eq!((stats.sends_total, stats.engagements_total), (2, 1));
        // With no organic activity, opens and clicks stand in for it; sends never.
        assert_eq!(p.activity_events, 5);
        // The response arriving before its send counts as well.
        let (q, _) = ProfileState::from_events([&events[1], &events[0]], Tz::UTC, &cfg);
        assert_eq!(q.channels[Channel::Email.index()].engagements_total, 1);
    }

    #[test]
    fn responses_stand_in_for_the_habit_until_organic_activity_is_seen() {
        let cfg = ProfileConfig::default();
        let email = Some("email");
        let responses = [
            ev(1, "message_sent", "2026-01-05T10:00:00Z", email, Some("m1")),
            ev(
                2,
                "message_opened",
                "2026-01-05T10:20:00Z",
                email,
                Some("m1"),
            ),
            ev(
                3,
                "message_clicked",
                "2026-01-05T10:21:00Z",
                email,
                Some("m1"),
            ),
        ];
        let (p, _) = ProfileState::from_events(&responses, Tz::UTC, &cfg);
        assert_eq!(p.activity_events, 2, "all there is: the responses");
        assert!(p.activity[10] > 1.9 && p.quarter_of_day[41] > 1.9);
        assert_eq!(p.last_active_at, None, "a response is not coming back");

        // One session: the habit is the customer's own from then on, and
        // a later response leaves it alone too.
        let session = ev(4, "session_start", "2026-01-06T20:05:00Z", None, None);
        let later = [
            ev(5, "message_sent", "2026-01-07T10:00:00Z", email, Some("m2")),
            ev(
                6,
                "message_opened",
                "2026-01-07T10:30:00Z",
                email,
                Some("m2"),
            ),
        ];
        let all: Vec<&Event> = responses.iter().chain([&session]).chain(&later).collect();
        let (q, _) = ProfileState::from_events(all.iter().copied(), Tz::UTC, &cfg);
        assert_eq!(q.activity_events, 1);
        assert!(q.activity[24 + 20] > 0.99);
        assert_eq!(q.activity.iter().sum::<f32>(), q.activity[24 + 20]);
        assert_eq!(q.quarter_of_day.iter().sum::<f32>(), q.quarter_of_day[80]);
        assert_eq!(q.last_active_at, Some(session.timestamp));
        // The responses still count as engagements with their sends.
        assert_eq!(q.channels[Channel::Email.index()].engagements_total, 2);
        // Whichever came first.
        let (r, _) = ProfileState::from_events(all.iter().rev().copied(), Tz::UTC, &cfg);
        assert_eq!(r.activity_events, 1);
        assert!((r.activity[24 + 20] - q.activity[24 + 20]).abs() < 1e-5);
        assert_eq!(r.activity.iter().sum::<f32>(), r.activity[24 + 20]);
    }

    /// A message keeps its 8 earliest sends. An open counted after a late
    /// send is taken back when earlier sends arriving afterwards push that
    /// send out, as if they had arrived first.
    #[test]
    fn an_engagement_whose_send_made_way_is_taken_back() {
        let cfg = ProfileConfig::default();
        let email = Some("email");
        let mut events = vec![
            ev(0, "message_sent", "2026-01-20T10:00:00Z", email, Some("m")),
            ev(
                1,
                "message_opened",
                "2026-01-20T11:00:00Z",
                email,
                Some("m"),
            ),
        ];
        for d in 1..=8 {
            let ts = format!("2026-01-0{d}T10:00:00Z");
            events.push(ev(1 + d, "message_sent", &ts, email, Some("m")));
        }
        let (late, messages) = ProfileState::from_events(&events, Tz::UTC, &cfg);
        let mut in_order = events.clone();
        in_order.sort_by_key(|e| e.timestamp);
        let (early, same) = ProfileState::from_events(&in_order, Tz::UTC, &cfg);
        assert_eq!(messages, same);
        assert_eq!(messages["email:m"].counted_at, None);
        for p in [&late, &early] {
            let stats = &p.channels[Channel::Email.index()];
            assert_eq!((stats.sends_total, stats.engagements_total), (9, 0));
            assert!(stats.engagements.abs() < 1e-6, "{}", stats.engagements);
        }
        // With the open's own send among the 8 kept, it counts once.
        let (kept, _) = ProfileState::from_events(&events[..9], Tz::UTC, &cfg);
        assert_eq!(kept.channels[Channel::Email.index()].engagements_total, 1);
    }

    fn kinds() -> impl Strategy<Value = (&'static str, Option<&'static str>)> {
        prop_oneof![
            Just(("session_start", None)),
            Just(("app_open", None)),
            Just(("message_sent", Some("push"))),
            Just(("message_opened", Some("push"))),
            Just(("message_clicked", Some("email"))),
            Just(("message_sent", Some("email"))),
        ]
    }

    proptest! {
        /// The same events in any order, or split in any way, give the same
        /// profile (up to float rounding).
        #[test]
        fn order_does_not_matter(
            items in proptest::collection::vec((0i64..5_000_000, kinds(), 0usize..4), 1..60),
            seed in any::<u64>(),
        ) {
            let cfg = ProfileConfig::default();
            let base = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").map(|t| t.to_utc()).unwrap_or_default();
            let events: Vec<Event> = items.iter().enumerate().map(|(i, (s, (k, ch), m))| {
                let ts = (base + Duration::seconds(*s)).to_rfc3339();
                let msg = format!("m{m}");
                ev(i, k, &ts, *ch, ch.map(|_| msg.as_str()))
            }).collect();
            let mut shuffled = events.clone();
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let (a, ma) = ProfileState::from_events(&events, Tz::UTC, &cfg);
            let (b, mb) = ProfileState::from_events(&shuffled, Tz::UTC, &cfg);
            prop_assert_eq!(ma, mb);
            prop_assert_eq!(a.reference, b.reference);
            prop_assert_eq!(a.activity_events, b.activity_events);
            let close = |x: f32, y: f32| (x - y).abs() <= 1e-4 * x.abs().max(1.0);
            for (x, y) in a.activity.iter().zip(&b.activity).chain(a.quarter_of_day.iter().zip(&b.quarter_of_day)) {
                prop_assert!(close(*x, *y), "{} vs {}", x, y);
            }
            for (ca, cb) in a.channels.iter().zip(&b.channels) {
                prop_assert_eq!(ca.sends_total, cb.sends_total);
                prop_assert_eq!(ca.engagements_total, cb.engagements_total);
                prop_assert!(close(ca.sends, cb.sends) && close(ca.engagements, cb.engagements));
            }
        }
    }

    /// The history length is found where there is one, and the nearer
    /// bound where the ratio lies beyond it.
    #[test]
    fn history_length_solves_the_decay_ratio() {
        let f = |x: f64| -(-x * std::f64::consts::LN_2).exp_m1() / (x * std::f64::consts::LN_2);
        for k in 1..2000 {
            let x = 10f64.powf(-5.9 + 8.8 * k as f64 / 2000.0);
            let solved = history_half_lives(f(x));
            assert!((solved / x - 1.0).abs() < 1e-8, "x {x}: {solved}");
        }
        // No root inside: the nearer end.
        assert!((history_half_lives(1.0) / 1e-6 - 1.0).abs() < 1e-9);
        assert!((history_half_lives(1e-9) / 1e3 - 1.0).abs() < 1e-9);
    }

    /// Newton's method finds the history length in a few steps wherever
    /// the root lies, also where the decay ratio is met exactly on a step
    /// (an exact hit used to be taken for a step off the bracket, and 40
    /// halvings followed).
    #[test]
    fn history_length_takes_few_steps() {
        let f = |x: f64| -(-x * std::f64::consts::LN_2).exp_m1() / (x * std::f64::consts::LN_2);
        for k in 1..2000 {
            let x = 10f64.powf(-5.9 + 8.8 * k as f64 / 2000.0);
            let (solved, steps) = history_half_lives_in_steps(f(x));
            assert!((solved / x - 1.0).abs() < 1e-8, "x {x}: {solved}");
            // Below 1e-4 half-lives (minutes) f is flat to within 1e-4.
            let most = if x >= 1e-4 { 6 } else { 12 };
            assert!(steps <= most, "x {x}: {steps} steps");
        }
        // 7 days at a half-life of 30: the case that took 42 steps.
        let (_, steps) = history_half_lives_in_steps(f(7.0 / 30.0));
        assert!(steps <= 6, "{steps} steps");
    }

    /// A steady 4 activities a week reads as about 4 a week after 2 weeks and
    /// after 10; the decayed count alone would differ by far more.
    #[test]
    fn weekly_activity_separates_rate_from_history_length() {
        let tz: Tz = "Europe/London".parse().unwrap_or(Tz::UTC);
        let cfg = ProfileConfig::default();
        let start = DateTime::parse_from_rfc3339("2026-01-05T09:00:00Z")
            .map(|t| t.to_utc())
            .unwrap_or_default();
        let rate_after = |weeks: i64, per_week: i64| {
            let mut p = ProfileState::default();
            for k in 0..weeks * per_week {
                let at = start + Duration::minutes(k * 7 * 24 * 60 / per_week);
                let e = Event {
                    event_id: kairos_core::EventId::parse(format!("e{k}"))
                        .unwrap_or_else(|e| panic!("{e}")),
                    customer_id: kairos_core::CustomerId::parse("c")
                        .unwrap_or_else(|e| panic!("{e}")),
                    kind: EventType::AppOpen,
                    timestamp: at,
                    channel: None,
                    message_id: None,
                    decision_id: None,
                    experiment: None,
                    variant: None,
                    device: None,
                    automated: false,
                    category: None,
                    properties: None,
                };
                p.observe(&e, tz, &cfg, Attribution::None);
            }
            (
                p.weekly_activity(cfg.half_life_days),
                p.activity.iter().map(|v| f64::from(*v)).sum::<f64>(),
            )
        };
        let (short, short_decayed) = rate_after(2, 4);
        let (long, long_decayed) = rate_after(10, 4);
        assert!((short - 4.0).abs() < 0.6, "{short}");
        assert!((long - 4.0).abs() < 0.6, "{long}");
        assert!(long_decayed > 3.0 * short_decayed);
        let (busy, _) = rate_after(10, 12);
        assert!((busy - 12.0).abs() < 1.5, "{busy}");
        assert_eq!(ProfileState::default().weekly_activity(60.0), 0.0);
    }
}
