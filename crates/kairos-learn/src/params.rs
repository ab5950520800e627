use serde::{Deserialize, Serialize};

use crate::{LearnError, Result};

/// Learner parameters as configured; use [`LearnParams::check`] before use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnParams {
    /// Half-life of the weight of past behaviour, in days.
    pub half_life_days: f64,
    /// Standard deviation, in hours, of the circular kernel that spreads each
    /// observed hour over its neighbours.
    pub bandwidth_hours: f64,
    /// Weight of the prior, in pseudo-events: a customer with this many
    /// (decayed) events is half personal, half prior.
    pub prior_strength: f64,
    /// Beta prior of a channel's engagement rate: mean and pseudo-sends.
    pub channel_prior_rate: f64,
    pub channel_prior_strength: f64,
}

impl Default for LearnParams {
    fn default() -> Self {
        Self {
            half_life_days: 60.0,
            bandwidth_hours: 1.0,
            prior_strength: 10.0,
            channel_prior_rate: 0.15,
            channel_prior_strength: 4.0,
        }
    }
}

/// Parameters that passed [`LearnParams::check`]. The default is the
/// default [`LearnParams`], which passes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValidLearnParams(LearnParams);

impl std::ops::Deref for ValidLearnParams {
    type Target = LearnParams;
    fn deref(&self) -> &LearnParams {
        &self.0
    }
}

impl LearnParams {
    pub fn check(self) -> Result<ValidLearnParams> {
        let positive = |name: &'static str, v: f64, max: f64| {
            if v.is_finite() && v > 0.0 && v <= max {
                Ok(())
            } else {
                Err(LearnError::InvalidParam {
                    name,
                    reason: format!("must be a number in (0, {max}], got {v}"),
                })
            }
        };
        positive("half_life_days", self.half_life_days, 36_500.0)?;
        positive("bandwidth_hours", self.bandwidth_hours, 24.0)?;
        positive("prior_strength", self.prior_strength, 1e6)?;
        positive("channel_prior_strength", self.channel_prior_strength, 1e6)?;
        if !(self.channel_prior_rate > 0.0 && self.channel_prior_rate < 1.0) {
            return Err(LearnError::InvalidParam {
                name: "channel_prior_rate",
                reason: format!(
                    "must lie strictly between 0 and 1, got {}",
                    self.channel_prior_rate
                ),
            });
        }
        Ok(ValidLearnParams(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_nonsense() {
        assert!(LearnParams::default().check().is_ok());
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
                channel_prior_rate: 1.0,
                ..LearnParams::default()
            },
        ] {
            assert!(bad.clone().check().is_err(), "{bad:?}");
        }
    }
}
