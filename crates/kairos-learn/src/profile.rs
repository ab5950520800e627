//! Per-customer statistics, updated online at ingest.
//!
//! Every count is an exponentially decayed sum `Σ 2^(-(R - tᵢ)/h)` held at a
//! reference instant `R` (the latest event seen). Adding an event older than
//! `R` adds its decayed weight; a newer one first moves `R` forward. The sum is
//! therefore the same whatever order events arrive in.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use kairos_core::{Channel, Device, Event, EventType, HourOfWeek, HOURS_PER_WEEK};
use serde::{Deserialize, Serialize};

use crate::ValidLearnParams;

/// Most categories kept per customer for affinity; the lightest are dropped.
const MAX_CATEGORIES: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// Decayed number of sends.
    pub sends: f32,
    /// Decayed number of messages engaged with (first open or click of each message).
    pub engagements: f32,
    /// Decayed engagements per local hour of week (empty until the first one).
    pub engagement_how: Vec<f32>,
    pub sends_total: u32,
    pub engagements_total: u32,
    pub bounces_total: u32,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub unsubscribed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileState {
    /// Reference instant of every decayed sum.
    pub reference: Option<DateTime<Utc>>,
    /// Every event accepted for this customer.
    pub events: u64,
    /// Organic (customer-initiated, not automated) events.
    pub activity_events: u64,
    /// Decayed organic activity per local hour of week (168).
    pub activity: Vec<f32>,
    pub last_active_at: Option<DateTime<Utc>>,
    /// Per channel, indexed by [`Channel::index`].
    pub channels: Vec<ChannelStats>,
    pub app_opens: u32,
    pub email_opens_known_device: f32,
    pub email_opens_mobile: f32,
    pub category_weights: BTreeMap<String, f32>,
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
        }
    }
}

/// 2^(-age/h) for an age in seconds and a half-life in days.
pub(crate) fn decay_factor(age_seconds: f64, half_life_days: f64) -> f64 {
    (-(age_seconds / (half_life_days * 86_400.0)) * std::f64::consts::LN_2).exp()
}

impl ProfileState {
    /// Adds one event, its local hour taken in `tz`.
    ///
    /// `first_response` says whether an open or click is the first response to
    /// its message (the caller keeps that set); only first responses count as
    /// channel engagements, so an open followed by a click counts once.
    pub fn observe(
        &mut self,
        event: &Event,
        tz: Tz,
        params: &ValidLearnParams,
        first_response: bool,
    ) {
        let t = event.timestamp;
        let w = self.weight_at(t, params) as f32;
        self.events += 1;
        let how = HourOfWeek::of(t, tz).index();

        if event.is_organic_activity() {
            self.activity_events += 1;
            self.activity[how] += w;
            self.last_active_at = Some(self.last_active_at.map_or(t, |l| l.max(t)));
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
        let stats = &mut self.channels[channel.index()];
        match event.kind {
            EventType::MessageSent => {
                stats.sends += w;
                stats.sends_total += 1;
                stats.last_sent_at = Some(stats.last_sent_at.map_or(t, |l| l.max(t)));
            }
            EventType::MessageBounced => stats.bounces_total += 1,
            EventType::Unsubscribed => {
                stats.unsubscribed_at = Some(stats.unsubscribed_at.map_or(t, |l| l.max(t)));
            }
            EventType::MessageOpened | EventType::MessageClicked if !event.automated => {
                if first_response {
                    stats.engagements += w;
                    stats.engagements_total += 1;
                    if stats.engagement_how.is_empty() {
                        stats.engagement_how = vec![0.0; HOURS_PER_WEEK];
                    }
                    stats.engagement_how[how] += w;
                }
                if channel == Channel::Email && event.kind == EventType::MessageOpened {
                    if let Some(device) = event.device {
                        self.email_opens_known_device += w;
                        if device == Device::Mobile || device == Device::Tablet {
                            self.email_opens_mobile += w;
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// The weight of an event at `t` relative to the reference, moving the
    /// reference (and decaying every sum) when `t` is newer.
    fn weight_at(&mut self, t: DateTime<Utc>, params: &ValidLearnParams) -> f64 {
        match self.reference {
            Some(r) if t <= r => decay_factor(
                (r - t).num_milliseconds() as f64 / 1000.0,
                params.half_life_days,
            ),
            Some(r) => {
                let f = decay_factor(
                    (t - r).num_milliseconds() as f64 / 1000.0,
                    params.half_life_days,
                );
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

    /// Factor that brings the sums from the reference instant to `now`.
    pub fn decay_to(&self, now: DateTime<Utc>, params: &ValidLearnParams) -> f64 {
        match self.reference {
            Some(r) if now > r => decay_factor(
                (now - r).num_milliseconds() as f64 / 1000.0,
                params.half_life_days,
            ),
            _ => 1.0,
        }
    }

    /// Builds a profile from a customer's whole history (e.g. after a time-zone change).
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = &'a Event>,
        tz: Tz,
        params: &ValidLearnParams,
    ) -> Self {
        let mut p = Self::default();
        let mut responded = std::collections::HashSet::new();
        for e in events {
            let first = first_response(e, |key| responded.insert(key.to_owned()));
            p.observe(e, tz, params, first);
        }
        p
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

/// Whether `event` is the first response to its message, asking `insert`
/// (which returns true when the key was new) about the message's key. Opens
/// and clicks with no `message_id` each count.
pub fn first_response(event: &Event, insert: impl FnOnce(&str) -> bool) -> bool {
    if !event.kind.is_engagement() || event.automated {
        return false;
    }
    match (&event.message_id, event.channel) {
        (Some(m), Some(c)) => insert(&format!("{c}:{m}")),
        _ => true,
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
        let params = ValidLearnParams::default();
        let tz: Tz = "Asia/Kuala_Lumpur".parse().unwrap_or(Tz::UTC);
        let a = ev(1, "session_start", "2026-01-05T11:30:00Z", None, None); // Mon 19:30 local
        let b = ev(2, "session_start", "2026-03-06T11:30:00Z", None, None); // 60 days later, Fri 19:30
        let p = ProfileState::from_events([&a, &b], tz, &params);
        assert!((p.activity[19] - 0.5).abs() < 1e-6, "{}", p.activity[19]);
        assert!((p.activity[4 * 24 + 19] - 1.0).abs() < 1e-6);
        assert_eq!(p.activity_events, 2);
        assert_eq!(p.last_active_at, Some(b.timestamp));
    }

    #[test]
    fn an_open_and_a_click_of_one_message_engage_once() {
        let params = ValidLearnParams::default();
        let events = [
            ev(
                1,
                "message_sent",
                "2026-01-05T10:00:00Z",
                Some("email"),
                Some("m1"),
            ),
            ev(
                2,
                "message_opened",
                "2026-01-05T11:00:00Z",
                Some("email"),
                Some("m1"),
            ),
            ev(
                3,
                "message_clicked",
                "2026-01-05T11:01:00Z",
                Some("email"),
                Some("m1"),
            ),
            ev(
                4,
                "message_sent",
                "2026-01-06T10:00:00Z",
                Some("email"),
                Some("m2"),
            ),
        ];
        let p = ProfileState::from_events(&events, Tz::UTC, &params);
        let email = &p.channels[Channel::Email.index()];
        assert_eq!((email.sends_total, email.engagements_total), (2, 1));
        // Sends and deliveries are not activity; the open and click are.
        assert_eq!(p.activity_events, 2);
    }

    proptest! {
        /// The same events in any order give the same profile (up to rounding).
        #[test]
        fn order_does_not_matter(
            offsets in proptest::collection::vec((0i64..10_000_000, 0usize..3), 1..60),
            seed in any::<u64>(),
        ) {
            let params = ValidLearnParams::default();
            let kinds = ["session_start", "app_open", "page_view"];
            let base = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").map(|t| t.to_utc()).unwrap_or_default();
            let events: Vec<Event> = offsets.iter().enumerate().map(|(i, (s, k))| {
                let ts = (base + chrono::Duration::seconds(*s)).to_rfc3339();
                ev(i, kinds[*k], &ts, None, None)
            }).collect();
            let mut shuffled = events.clone();
            // Deterministic shuffle from the seed.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let a = ProfileState::from_events(&events, Tz::UTC, &params);
            let b = ProfileState::from_events(&shuffled, Tz::UTC, &params);
            prop_assert_eq!(a.reference, b.reference);
            prop_assert_eq!(a.activity_events, b.activity_events);
            for (x, y) in a.activity.iter().zip(&b.activity) {
                prop_assert!((x - y).abs() <= 1e-4 * x.abs().max(1.0), "{} vs {}", x, y);
            }
        }
    }
}
