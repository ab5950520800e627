use std::collections::BTreeMap;

use kairos_core::Channel;
use serde::{Deserialize, Serialize};

use crate::activity::ActivityParams;
use crate::channel::BetaPrior;
use crate::profile::ProfileConfig;
use crate::{LearnError, Result};

/// Learner configuration; use [`LearnParams::check`] before use.
///
/// The activity parameters are starting values: training replaces them with
/// values fitted to the store's own data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnParams {
    pub half_life_days: f64,
    pub bandwidth_hours: f64,
    pub day_strength: f64,
    pub prior_strength: f64,
    /// Beta prior of a channel's engagement rate where too little data exists
    /// to fit one: its mean and its weight in sends.
    pub channel_prior_rate: f64,
    pub channel_prior_strength: f64,
    /// Hours after a send within which an open or click is attributed to it.
    pub attribution_hours: BTreeMap<Channel, f64>,
}

impl Default for LearnParams {
    fn default() -> Self {
        let hours = |c| match c {
            Channel::Push | Channel::Sms => 24.0,
            Channel::Email | Channel::InApp | Channel::Web => 72.0,
        };
        Self {
            half_life_days: 60.0,
            bandwidth_hours: 1.0,
            day_strength: 0.0,
            prior_strength: 10.0,
            channel_prior_rate: 0.15,
            channel_prior_strength: 4.0,
            attribution_hours: Channel::ALL.iter().map(|&c| (c, hours(c))).collect(),
        }
    }
}

/// Parameters that passed [`LearnParams::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidLearnParams {
    pub params: LearnParams,
    pub activity: ActivityParams,
    pub channel_prior: BetaPrior,
    /// The profile update with the configured half-life.
    pub profile: ProfileConfig,
}

impl Default for ValidLearnParams {
    fn default() -> Self {
        LearnParams::default()
            .check()
            .unwrap_or_else(|e| unreachable!("the defaults are valid: {e}"))
    }
}

impl std::ops::Deref for ValidLearnParams {
    type Target = LearnParams;
    fn deref(&self) -> &LearnParams {
        &self.params
    }
}

impl LearnParams {
    pub fn check(self) -> Result<ValidLearnParams> {
        let activity = ActivityParams {
            half_life_days: self.half_life_days,
            bandwidth_hours: self.bandwidth_hours,
            day_strength: self.day_strength,
            day_pooling: 0.0,
            day_concentration: crate::activity::DEFAULT_DAY_CONCENTRATION,
            prior_strength: self.prior_strength,
            segment_temperature: 0.0,
        }
        .check()?;
        let invalid = |name, reason: String| LearnError::InvalidParam { name, reason };
        if !(self.channel_prior_rate > 0.0 && self.channel_prior_rate < 1.0) {
            return Err(invalid(
                "channel_prior_rate",
                format!(
                    "must lie strictly between 0 and 1, got {}",
                    self.channel_prior_rate
                ),
            ));
        }
        if !(self.channel_prior_strength.is_finite() && self.channel_prior_strength > 0.0) {
            return Err(invalid(
                "channel_prior_strength",
                format!("must be positive, got {}", self.channel_prior_strength),
            ));
        }
        let mut attribution_hours = [0.0; 5];
        for c in Channel::ALL {
            let h =
                self.attribution_hours.get(&c).copied().ok_or_else(|| {
                    invalid("attribution_hours", format!("no value for channel {c}"))
                })?;
            if !(h.is_finite() && h > 0.0 && h <= 24.0 * 90.0) {
                return Err(invalid(
                    "attribution_hours",
                    format!("{c}: {h} is not in (0, 2160]"),
                ));
            }
            attribution_hours[c.index()] = h;
        }
        Ok(ValidLearnParams {
            channel_prior: BetaPrior::from_mean(
                self.channel_prior_rate,
                self.channel_prior_strength,
            ),
            profile: ProfileConfig {
                half_life_days: self.half_life_days,
                attribution_hours,
            },
            activity,
            params: self,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_nonsense() {
        assert!(LearnParams::default().check().is_ok());
        let mut no_push = LearnParams::default();
        no_push.attribution_hours.remove(&Channel::Push);
        for bad in [
            LearnParams {
                half_life_days: 0.0,
                ..LearnParams::default()
            },
            LearnParams {
                bandwidth_hours: f64::NAN,
                ..LearnParams::default()
            },
            LearnParams {
                prior_strength: -1.0,
                ..LearnParams::default()
            },
            LearnParams {
                day_strength: -1.5,
                ..LearnParams::default()
            },
            LearnParams {
                channel_prior_rate: 1.0,
                ..LearnParams::default()
            },
            no_push,
        ] {
            assert!(bad.clone().check().is_err(), "{bad:?}");
        }
    }
}
