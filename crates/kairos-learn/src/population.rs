//! The population prior: where customers in general are active.

use chrono::{DateTime, Utc};
use kairos_core::HOURS_PER_WEEK;
use serde::{Deserialize, Serialize};

use crate::posterior::{smooth, Basis};
use crate::{LearnError, ProfileState, Result, ValidLearnParams};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Population {
    /// 168 probabilities summing to 1.
    pub hour_of_week: Vec<f64>,
    /// Customers it was fitted on (0 for the uniform fallback).
    pub customers: u64,
    pub trained_at: Option<DateTime<Utc>>,
    /// What a decision based on this prior reports as its basis.
    #[serde(default = "global")]
    pub basis: Basis,
}

fn global() -> Basis {
    Basis::Global
}

impl Population {
    /// Every hour equally likely: the prior before anything is known.
    pub fn uniform() -> Self {
        Self {
            hour_of_week: vec![1.0 / HOURS_PER_WEEK as f64; HOURS_PER_WEEK],
            customers: 0,
            trained_at: None,
            basis: Basis::Global,
        }
    }

    /// Checks that a loaded model is a proper distribution.
    pub fn validate(self) -> Result<Self> {
        let sum: f64 = self.hour_of_week.iter().sum();
        if self.hour_of_week.len() != HOURS_PER_WEEK
            || self
                .hour_of_week
                .iter()
                .any(|p| !p.is_finite() || *p <= 0.0)
            || (sum - 1.0).abs() > 1e-6
        {
            return Err(LearnError::InvalidModel(format!(
                "population hour_of_week must be {HOURS_PER_WEEK} positive probabilities summing to 1 \
                 (got {} values summing to {sum})",
                self.hour_of_week.len()
            )));
        }
        Ok(self)
    }
}

/// Accumulates customers' activity into a population prior. Each customer
/// with activity counts once, whatever their volume, so heavy users do not
/// drown out everyone else.
#[derive(Debug, Clone)]
pub struct PopulationFit {
    sum: Vec<f64>,
    customers: u64,
    bandwidth_hours: f64,
}

impl PopulationFit {
    pub fn new(params: &ValidLearnParams) -> Self {
        Self {
            sum: vec![0.0; HOURS_PER_WEEK],
            customers: 0,
            bandwidth_hours: params.bandwidth_hours,
        }
    }

    pub fn add(&mut self, profile: &ProfileState) {
        let smoothed = smooth(&profile.activity, self.bandwidth_hours);
        let total: f64 = smoothed.iter().sum();
        if total <= 0.0 {
            return;
        }
        for (s, v) in self.sum.iter_mut().zip(smoothed) {
            *s += v / total;
        }
        self.customers += 1;
    }

    /// The fitted prior; one uniform pseudo-customer keeps every hour possible.
    pub fn finish(self, trained_at: DateTime<Utc>) -> Population {
        let uniform = 1.0 / HOURS_PER_WEEK as f64;
        let denom = self.customers as f64 + 1.0;
        Population {
            hour_of_week: self.sum.iter().map(|s| (s + uniform) / denom).collect(),
            customers: self.customers,
            trained_at: Some(trained_at),
            basis: Basis::Global,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_customer_counts_once() {
        let params = ValidLearnParams::default();
        let mut fit = PopulationFit::new(&params);
        let mut heavy = ProfileState::default();
        heavy.activity[10] = 1000.0;
        let mut light = ProfileState::default();
        light.activity[100] = 1.0;
        fit.add(&heavy);
        fit.add(&light);
        fit.add(&ProfileState::default()); // no activity: ignored
        let pop = fit
            .finish(DateTime::from_timestamp(0, 0).unwrap_or_default())
            .validate();
        let pop = pop.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pop.customers, 2);
        assert!((pop.hour_of_week[10] - pop.hour_of_week[100]).abs() < 1e-9);
        assert!(Population::uniform().validate().is_ok());
        let broken = Population {
            hour_of_week: vec![0.5; 168],
            ..Population::uniform()
        };
        assert!(broken.validate().is_err());
    }
}
