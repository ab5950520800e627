//! Training every model from customers' histories, with no IO: the caller
//! feeds each customer's events and gets a [`ModelBundle`].

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use kairos_core::{Channel, Event, EventType, HourOfWeek};

use crate::channel::{BetaPrior, ChannelPriors};
use crate::fit::{fit_activity, ActivityHistory, FitOptions, Observation};
use crate::model::{DataSize, Manifest, ModelBundle, FORMAT};
use crate::profile::{ProfileConfig, ProfileState};
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
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            fit: FitOptions::default(),
            channel_fallback: BetaPrior::from_mean(0.15, 4.0),
            min_channel_customers: 20,
            profile: ProfileConfig::default(),
        }
    }
}

/// Collects customers' histories, then fits the models.
#[derive(Debug, Default)]
pub struct Trainer {
    histories: Vec<ActivityHistory>,
    channel_obs: Vec<Vec<(u32, u32)>>,
    size: DataSize,
}

impl Trainer {
    pub fn new() -> Self {
        Self {
            channel_obs: vec![Vec::new(); Channel::ALL.len()],
            ..Self::default()
        }
    }

    /// Adds one customer's events (any order), local time in `tz`.
    pub fn add(&mut self, tz: Tz, events: &[Event], opts: &TrainOptions) {
        let mut sorted: Vec<&Event> = events.iter().collect();
        sorted.sort_by_key(|e| e.timestamp);
        let observations: Vec<Observation> = sorted
            .iter()
            .filter(|e| e.is_organic_activity())
            .map(|e| Observation {
                at: e.timestamp.timestamp(),
                how: HourOfWeek::of(e.timestamp, tz).index() as u8,
            })
            .collect();
        self.size.customers += 1;
        self.size.events += events.len() as u64;
        self.size.activities += observations.len() as u64;
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
        }
        self.histories.push(ActivityHistory::new(observations));
    }

    pub fn finish(
        self,
        trained_at: DateTime<Utc>,
        version: String,
        source: String,
        opts: &TrainOptions,
    ) -> Result<ModelBundle> {
        let (activity, report) = fit_activity(&self.histories, &opts.fit)?;
        let channels = ChannelPriors::fit(
            &self.channel_obs,
            opts.channel_fallback,
            opts.min_channel_customers,
        );
        ModelBundle {
            manifest: Manifest {
                format: FORMAT,
                version,
                trained_at: Some(trained_at),
                source,
                data: self.size,
                activity: Some(report),
            },
            activity,
            channels,
        }
        .validate()
    }
}
