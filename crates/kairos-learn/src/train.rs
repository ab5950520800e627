//! Training every model from customers' histories, with no IO: the caller
//! feeds each customer's events and gets a [`ModelBundle`].

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use kairos_core::{Channel, Event, EventType};

use std::collections::HashMap;

use chrono::Duration;

use crate::activity::{ActivityModel, QuarterMass};
use crate::channel::{BetaPrior, ChannelPriors};
use crate::exposure::{mean_presence, presence, typical_presence};
use crate::fit::{fit_activity, ActivityHistory, FitOptions};
use crate::model::{DataSize, Manifest, ModelBundle, FORMAT};
use crate::posterior::ChannelEstimate;
use crate::profile::RECENT_SENDS;
use crate::profile::{concerns_attribution, message_key, Attribution, MessageState};
use crate::profile::{ProfileConfig, ProfileState};
use crate::response::{fit_response, lift, SendContext, SendRow};
use crate::Result;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub fit: FitOptions,
    /// Prior for channels with too little data to fit one.
    pub channel_fallback: BetaPrior,
    /// Customers with sends a channel needs for its own prior.
    pub min_channel_customers: usize,
    /// Attribution of engagements to sends (the decay is refitted).
    pub profile: ProfileConfig,
    /// Response window per channel, in quarter hours (the decision engine's).
    pub response_quarters: [usize; 5],
    /// Logged sends needed before a response model is fitted.
    pub min_response_sends: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            fit: FitOptions::default(),
            channel_fallback: BetaPrior::from_mean(0.15, 4.0),
            min_channel_customers: 20,
            profile: ProfileConfig::default(),
            response_quarters: [16, 4, 4, 96, 96],
            min_response_sends: 500,
        }
    }
}

/// Collects customers' histories, then fits the models.
#[derive(Debug, Default)]
pub struct Trainer {
    histories: Vec<ActivityHistory>,
    channel_obs: Vec<Vec<(u32, u32)>>,
    /// Customers with sends, replayed for the response model once the
    /// activity model and channel priors are fitted.
    senders: Vec<(u64, Tz, Vec<Event>)>,
    /// (history index, trait pairs) of customers with traits.
    traits: Vec<(usize, Vec<String>)>,
    size: DataSize,
}

/// Trait pairs kept for placing customers in segments (most common first).
const MAX_TRAIT_PAIRS: usize = 2000;
/// Customers a trait pair needs to be kept.
const MIN_TRAIT_CUSTOMERS: f64 = 10.0;

impl Trainer {
    pub fn new() -> Self {
        Self {
            channel_obs: vec![Vec::new(); Channel::ALL.len()],
            ..Self::default()
        }
    }

    /// Adds one customer's traits (from their attributes), after [`Self::add`].
    pub fn add_traits(&mut self, traits: &serde_json::Map<String, serde_json::Value>) {
        let pairs = crate::activity::trait_pairs(traits);
        if !pairs.is_empty() && !self.histories.is_empty() {
            self.traits.push((self.histories.len() - 1, pairs));
        }
    }

    /// Adds one customer's events (any order), local time in `tz`.
    pub fn add(&mut self, tz: Tz, events: &[Event], opts: &TrainOptions) {
        let mut sorted: Vec<&Event> = events.iter().collect();
        sorted.sort_by_key(|e| e.timestamp);
        let history = ActivityHistory::from_events(sorted.iter().copied(), tz);
        self.size.customers += 1;
        self.size.events += events.len() as u64;
        self.size.activities += history.observations.len() as u64;
        self.size.sends += events
            .iter()
            .filter(|e| e.kind == EventType::MessageSent)
            .count() as u64;
        if sorted.iter().any(|e| e.kind == EventType::MessageSent) {
            let (profile, _) = ProfileState::from_events(sorted.iter().copied(), tz, &opts.profile);
            for (obs, stats) in self.channel_obs.iter_mut().zip(&profile.channels) {
                if stats.sends_total > 0 {
                    obs.push((stats.sends_total, stats.engagements_total));
                }
            }
            let hash = sorted
                .first()
                .map_or(0, |e| fnv1a(e.customer_id.as_str().as_bytes()));
            self.senders
                .push((hash, tz, sorted.into_iter().cloned().collect()));
        }
        self.histories.push(history);
    }

    pub fn finish(
        self,
        trained_at: DateTime<Utc>,
        version: String,
        source: String,
        opts: &TrainOptions,
    ) -> Result<ModelBundle> {
        let (mut activity, report) = fit_activity(&self.histories, &opts.fit)?;
        if !activity.segments.is_empty() {
            let mut table: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
            for (i, pairs) in &self.traits {
                let counts = self.histories[*i].counts(activity.params.half_life_days);
                if counts.iter().sum::<f64>() == 0.0 {
                    continue;
                }
                let r = activity.responsibilities(&counts);
                for p in pairs {
                    let row = table.entry(p.clone()).or_insert_with(|| vec![0.0; r.len()]);
                    row.iter_mut().zip(&r).for_each(|(a, b)| *a += b);
                }
            }
            let mut kept: Vec<(String, Vec<f64>)> = table
                .into_iter()
                .filter(|(_, row)| row.iter().sum::<f64>() >= MIN_TRAIT_CUSTOMERS)
                .collect();
            kept.sort_by(|a, b| b.1.iter().sum::<f64>().total_cmp(&a.1.iter().sum::<f64>()));
            kept.truncate(MAX_TRAIT_PAIRS);
            activity.trait_segments = kept.into_iter().collect();
        }
        let channels = ChannelPriors::fit(
            &self.channel_obs,
            opts.channel_fallback,
            opts.min_channel_customers,
        );
        let profile = ProfileConfig {
            half_life_days: activity.params.half_life_days,
            ..opts.profile
        };
        let mut rows = Vec::new();
        for (hash, tz, events) in &self.senders {
            send_rows(
                *hash,
                *tz,
                events,
                &activity,
                &channels,
                &profile,
                opts.response_quarters,
                &mut rows,
            );
        }
        let response = fit_response(&rows, opts.response_quarters, opts.min_response_sends)?;
        ModelBundle {
            manifest: Manifest {
                format: FORMAT,
                version,
                trained_at: Some(trained_at),
                source,
                data: self.size,
                activity: Some(report),
                response: response.as_ref().map(|r| r.calibration.clone()),
            },
            activity,
            channels,
            response,
        }
        .validate()
    }
}

/// FNV-1a, a stable hash for the held-out split.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Replays one customer's events in time order; at each send, records what
/// the profile said just before it, then (once the whole history is known)
/// whether the send was engaged with.
#[allow(clippy::too_many_arguments)]
fn send_rows(
    hash: u64,
    tz: Tz,
    events: &[Event],
    activity: &ActivityModel,
    channels: &ChannelPriors,
    cfg: &ProfileConfig,
    quarters: [usize; 5],
    rows: &mut Vec<SendRow>,
) {
    let mut state = ProfileState::default();
    let mut messages: HashMap<String, MessageState> = HashMap::new();
    // Each send's row, and its message key: its outcome is known at the end.
    let mut pending: Vec<(SendRow, String)> = Vec::new();
    // Per channel, the local quarters of the week of the latest sends, as
    // the profile keeps their times.
    let mut sent: [Vec<usize>; 5] = Default::default();
    for e in events {
        // A send on a channel, and its local quarter of the week.
        let send = match (e.kind, e.channel) {
            (EventType::MessageSent, Some(channel)) => {
                Some((channel, kairos_core::time::quarter_of_week(e.timestamp, tz)))
            }
            _ => None,
        };
        if let (Some((channel, quarter)), Some(key)) = (send, message_key(e)) {
            let post = activity.posterior(&state.activity);
            let mass = QuarterMass::with_quarters(&post.hour_of_week, &state.quarter_of_day);
            let len = quarters[channel.index()];
            let (local_hour, weekend) = SendContext::local_time(e.timestamp, tz);
            let week_ago = e.timestamp - Duration::days(7);
            let sends_7d = state
                .channels
                .iter()
                .map(|c| {
                    c.recent_sends
                        .iter()
                        .filter(|t| **t > week_ago && **t <= e.timestamp)
                        .count()
                })
                .sum::<usize>();
            let window_mass = mass.mass(quarter, len);
            let activity = state.weekly_activity(cfg.half_life_days);
            let typical = typical_presence(&mass, len, activity);
            let earlier = &sent[channel.index()];
            let context = SendContext {
                lift: lift(window_mass, len),
                activity,
                evidence: post.evidence,
                rate: ChannelEstimate::new(&state.channels[channel.index()], channels.get(channel))
                    .rate,
                days_since_active: state.last_active_at.map_or(30.0, |l| {
                    (e.timestamp - l).num_seconds().max(0) as f64 / 86_400.0
                }),
                sends_7d: sends_7d as f64,
                local_hour,
                weekend,
                channel,
            };
            let row = SendRow {
                context,
                engaged: false,
                customer_hash: hash,
                presence: presence(activity * window_mass),
                typical_presence: typical,
                sent_presence_before: mean_presence(earlier.iter().copied(), &mass, len, activity)
                    .unwrap_or(typical),
                sends_before: f64::from(state.channels[channel.index()].sends),
                engagements_before: f64::from(state.channels[channel.index()].engagements),
                sends_total_before: f64::from(state.channels[channel.index()].sends_total),
                engagements_total_before: f64::from(
                    state.channels[channel.index()].engagements_total,
                ),
            };
            pending.push((row, key));
        }
        // Every send counts as an earlier one, with or without a message id,
        // as in the profile's recent sends.
        if let Some((channel, quarter)) = send {
            let earlier = &mut sent[channel.index()];
            earlier.push(quarter);
            if earlier.len() > RECENT_SENDS {
                earlier.remove(0);
            }
        }
        let attribution = match (message_key(e), e.channel) {
            (Some(key), Some(ch)) if concerns_attribution(e) => {
                messages.entry(key).or_default().link(e, cfg.window(ch))
            }
            _ => Attribution::None,
        };
        state.observe(e, tz, cfg, attribution);
    }
    for (mut row, key) in pending {
        let window = cfg.window(row.context.channel);
        row.engaged = messages
            .get(&key)
            .is_some_and(|m| m.engagement(window).is_some());
        rows.push(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_core::RawEvent;

    fn event(n: usize, kind: &str, at: &str, channel: Option<&str>) -> Event {
        let raw = RawEvent {
            event_id: Some(format!("e{n}")),
            customer_id: Some("c".into()),
            kind: Some(kind.into()),
            timestamp: Some(at.into()),
            channel: channel.map(Into::into),
            message_id: channel.map(|_| format!("m{n}")),
            ..RawEvent::default()
        };
        let now = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .map(|t| t.to_utc())
            .unwrap_or_default();
        Event::from_raw(raw, now).unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// Each send's row reads the customer's earlier sends on the channel
    /// with the profile at that send: the first has none (its typical
    /// presence stands in), a push sent while the customer is usually
    /// around raises the mean, and one sent while they never are lowers it.
    #[test]
    fn rows_read_the_earlier_sends_with_the_profile_then() {
        let mut events: Vec<Event> = (0..6)
            .map(|k| {
                let day = 5 + 7 * k;
                let at = if day <= 31 {
                    format!("2026-10-{day:02}T19:10:00Z")
                } else {
                    format!("2026-11-{:02}T19:10:00Z", day - 31)
                };
                event(k, "app_open", &at, None)
            })
            .collect();
        let push = Some("push");
        events.push(event(10, "message_sent", "2026-11-09T19:00:00Z", push));
        events.push(event(11, "message_sent", "2026-11-11T04:00:00Z", push));
        events.push(event(12, "message_sent", "2026-11-16T12:00:00Z", push));
        events.sort_by_key(|e| e.timestamp);
        let rows_of = |events: &[Event]| {
            let mut rows = Vec::new();
            send_rows(
                1,
                Tz::UTC,
                events,
                &ActivityModel::untrained(crate::ActivityParams::default()),
                &ChannelPriors::uniform(BetaPrior::from_mean(0.1, 10.0)),
                &ProfileConfig::default(),
                [16, 4, 4, 96, 96],
                &mut rows,
            );
            rows
        };
        let rows = rows_of(&events);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].sent_presence_before, rows[0].typical_presence);
        assert!(
            rows[1].sent_presence_before > 2.0 * rows[1].typical_presence,
            "{:?}",
            rows[1]
        );
        assert!(rows[2].sent_presence_before < rows[1].sent_presence_before);
        assert!(rows[2].sent_presence_before > rows[2].typical_presence);
        assert_eq!(
            (rows[2].sends_total_before, rows[2].engagements_total_before),
            (2.0, 0.0)
        );

        // A push without a message id has no row of its own, but is an
        // earlier send all the same (sent while away, it lowers the mean).
        let mut unnamed = event(13, "message_sent", "2026-11-12T04:00:00Z", push);
        unnamed.message_id = None;
        let mut more = events.clone();
        more.push(unnamed);
        more.sort_by_key(|e| e.timestamp);
        let with = rows_of(&more);
        assert_eq!(with.len(), 3);
        assert_eq!(with[2].sends_total_before, 3.0);
        assert!(with[2].sent_presence_before < rows[2].sent_presence_before);
    }
}
